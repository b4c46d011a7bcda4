package crypto

import (
	"bytes"
	"encoding/hex"
	"errors"
	"testing"
)

// Seed-format vectors (mormot-aes-vectors.md §5): passphrase "MySecretKey123!",
// IV 000102…0f, plaintext "The quick brown fox jumps over the lazy dog".
var seedVectors = []struct {
	mode Mode
	ks   KeySize
	hex  string
}{
	{ModeECB, KeySize128, "4d524f4d000000000000000000000000000102030405060708090a0b0c0d0e0fd4be3426c12b6d4be6bc17f91ce7adc042edcb74d6be636d1b2fa1c862074717cebb775cf5b872c64b56fe874eabd506"},
	{ModeCBC, KeySize128, "4d524f4d010000000000000000000000000102030405060708090a0b0c0d0e0fdcbeb83cf7b63500fb57bdad1a0d37101016abb96433f50bc0e3eace705e381656c8fc90807fa85142cc4392206d975a"},
	{ModeCFB, KeySize128, "4d524f4d020000000000000000000000000102030405060708090a0b0c0d0e0ff64048aa9e81113e8642731eeb155f59a1f069f3ee598794878497c254434caf7ec6c26b60b3dc7dbca966f9b068e00b"},
	{ModeOFB, KeySize128, "4d524f4d030000000000000000000000000102030405060708090a0b0c0d0e0ff64048aa9e81113e8642731eeb155f5966255bb5dc4e95a37649d966f612554ff9c0bf02174185af682cb8305616b4fb"},
	{ModeCTR, KeySize128, "4d524f4d040000000000000000000000000102030405060708090a0b0c0d0e0ff64048aa9e81113e8642731eeb155f597288ebb26cd25c2eb107d8162fbec27eb4eb8b6b7c005b46351132fd8432aca8"},
	{ModeGCM, KeySize128, "4d524f4d050000000000000000000000000102030405060708090a0b0c0d0e0fb8e730ae6c4c03220c13461f3a1d886be0d62720d014bc780717ded7f73449f09278c07fc734f8c60619cfe17380fc02"},
	{ModeCFC, KeySize128, "4d524f4d060000000000000000000000000102030405060708090a0b0c0d0e0ff64048aa9e81113e8642731eeb155f59a1f069f3ee598794878497c254434caf7ec6c26b60b3dc7dbca966f9b068e00b"},
	{ModeOFC, KeySize128, "4d524f4d070000000000000000000000000102030405060708090a0b0c0d0e0ff64048aa9e81113e8642731eeb155f5966255bb5dc4e95a37649d966f612554ff9c0bf02174185af682cb8305616b4fb"},
	{ModeCTC, KeySize128, "4d524f4d080000000000000000000000000102030405060708090a0b0c0d0e0ff64048aa9e81113e8642731eeb155f597288ebb26cd25c2eb107d8162fbec27eb4eb8b6b7c005b46351132fd8432aca8"},
	{ModeECB, KeySize192, "4d524f4d000000000100000000000000000102030405060708090a0b0c0d0e0f1564e91256b07bd055aa18809549ae4443b419fd82854e7558bd98a66116d58705bdbedeab90de529a810f281a8154a8"},
	{ModeCBC, KeySize192, "4d524f4d010000000100000000000000000102030405060708090a0b0c0d0e0fe0de954a0dd527e8a0b4ea17e389ab3647e420939f1616de8f59727dfa724d608f231fa97d8e13c2ee6150ae7ed65137"},
	{ModeCFB, KeySize192, "4d524f4d020000000100000000000000000102030405060708090a0b0c0d0e0f17f1ca65aa8dbfe2ae5a987c78a6c68a131092c4c6262edaa88241a256ba2e26841e816b96fce031f9660ed59a2afaf6"},
	{ModeOFB, KeySize192, "4d524f4d030000000100000000000000000102030405060708090a0b0c0d0e0f17f1ca65aa8dbfe2ae5a987c78a6c68ada690b133c266674869ebc01dccc1a1a6023464aacab7876bfa38544dd6d4e95"},
	{ModeCTR, KeySize192, "4d524f4d040000000100000000000000000102030405060708090a0b0c0d0e0f17f1ca65aa8dbfe2ae5a987c78a6c68ab97b0c0b61283751254d9b8ee0838a30d4887253ce6c1106a62b772da6ddee75"},
	{ModeGCM, KeySize192, "4d524f4d050000000100000000000000000102030405060708090a0b0c0d0e0ff3f9fb38843808014bbafc9281abf2c1c5868928a541a93949f1419a59bc95b9d794af7da1e3ce605ed8044601603d6c"},
	{ModeCFC, KeySize192, "4d524f4d060000000100000000000000000102030405060708090a0b0c0d0e0f17f1ca65aa8dbfe2ae5a987c78a6c68a131092c4c6262edaa88241a256ba2e26841e816b96fce031f9660ed59a2afaf6"},
	{ModeOFC, KeySize192, "4d524f4d070000000100000000000000000102030405060708090a0b0c0d0e0f17f1ca65aa8dbfe2ae5a987c78a6c68ada690b133c266674869ebc01dccc1a1a6023464aacab7876bfa38544dd6d4e95"},
	{ModeCTC, KeySize192, "4d524f4d080000000100000000000000000102030405060708090a0b0c0d0e0f17f1ca65aa8dbfe2ae5a987c78a6c68ab97b0c0b61283751254d9b8ee0838a30d4887253ce6c1106a62b772da6ddee75"},
	{ModeECB, KeySize256, "4d524f4d000000000200000000000000000102030405060708090a0b0c0d0e0ff915a40f659698a726385f75e598fae4d9da8c80d13340d678a15094a936539db0e41732b841516e0c3e420690ac3f1e"},
	{ModeCBC, KeySize256, "4d524f4d010000000200000000000000000102030405060708090a0b0c0d0e0f587a2c56e0d9455006df648ee20f9dfcbcd44fa27daf19f8f7db30004bee920e207c2336758e29d1e2c69a0593ea31a4"},
	{ModeCFB, KeySize256, "4d524f4d020000000200000000000000000102030405060708090a0b0c0d0e0f84df6cb3f7301b1c88baeeb774090fb9d31ed71ee34ae021eeea5e8f004c096ae403c3af5b13ef214a34a6792163cbf3"},
	{ModeOFB, KeySize256, "4d524f4d030000000200000000000000000102030405060708090a0b0c0d0e0f84df6cb3f7301b1c88baeeb774090fb93f695e551fa939cea1b009d9e0e971caabae1f06991d27012f8321eb12224bb8"},
	{ModeCTR, KeySize256, "4d524f4d040000000200000000000000000102030405060708090a0b0c0d0e0f84df6cb3f7301b1c88baeeb774090fb9fd997bd34f6ce388f8f52069c77456c2f794f2739d02e761d4c74ca6a09304be"},
	{ModeGCM, KeySize256, "4d524f4d050000000200000000000000000102030405060708090a0b0c0d0e0feeee39a6147078d3af4d3af96b828cdd74f0b91ab486473cf37807cdcd68509c4f91cdac2d835babf879f7cec3e70806"},
	{ModeCFC, KeySize256, "4d524f4d060000000200000000000000000102030405060708090a0b0c0d0e0f84df6cb3f7301b1c88baeeb774090fb9d31ed71ee34ae021eeea5e8f004c096ae403c3af5b13ef214a34a6792163cbf3"},
	{ModeOFC, KeySize256, "4d524f4d070000000200000000000000000102030405060708090a0b0c0d0e0f84df6cb3f7301b1c88baeeb774090fb93f695e551fa939cea1b009d9e0e971caabae1f06991d27012f8321eb12224bb8"},
	{ModeCTC, KeySize256, "4d524f4d080000000200000000000000000102030405060708090a0b0c0d0e0f84df6cb3f7301b1c88baeeb774090fb9fd997bd34f6ce388f8f52069c77456c2f794f2739d02e761d4c74ca6a09304be"},
}

const (
	seedPass  = "MySecretKey123!"
	seedPlain = "The quick brown fox jumps over the lazy dog"
)

var seedIV = [16]byte{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15}

func compat(t testing.TB, m Mode, k KeySize, v SaltVariant) *CompatCodec {
	t.Helper()
	c, err := NewCompatCodec(seedPass, CompatConfig{Mode: m, KeySize: k, Salt: v, AllowECB: true})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestCompatKeys(t *testing.T) {
	for v, want := range map[SaltVariant]string{
		SaltCurrent:  "6242775b0c333f28c4e3c0308dcb1df1ccb021ef889723a808f7c692a35364d2",
		SaltJuly2025: "2b8a45e216ae7359fbe72bc79989ad8250928f0985572587a381735f23c42b0b",
	} {
		k, err := CompatKey(seedPass, v)
		if err != nil || hex.EncodeToString(k) != want {
			t.Errorf("%s: %x %v", v, k, err)
		}
	}
	if _, err := CompatKey("", SaltCurrent); !errors.Is(err, ErrInvalidKey) {
		t.Errorf("empty passphrase: %v", err)
	}
}

func TestCompatSeedVectors(t *testing.T) {
	if len(seedVectors) != 27 {
		t.Fatalf("%d vectors", len(seedVectors))
	}
	for _, v := range seedVectors {
		want := unhex(t, v.hex)
		c := compat(t, v.mode, v.ks, SaltCurrent)
		got, err := c.SealWithIV(nil, []byte(seedPlain), seedIV)
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("%s-%s seal: %x (%v)", v.mode, v.ks, got, err)
		}
		plain, m, k, err := c.Open(nil, want)
		if err != nil || string(plain) != seedPlain || m != v.mode || k != v.ks {
			t.Errorf("%s-%s open: %q %s %s %v", v.mode, v.ks, plain, m, k, err)
		}
	}
}

func TestCompatExtraVectors(t *testing.T) {
	cases := []struct {
		m     Mode
		k     KeySize
		v     SaltVariant
		plain string
		hex   string
	}{
		{ModeCBC, KeySize256, SaltCurrent, "", "4d524f4d010000000200000000000000000102030405060708090a0b0c0d0e0f8b378329b8f78531afed417e0f01ec7a"},
		{ModeCTR, KeySize128, SaltCurrent, "0123456789abcdef", "4d524f4d040000000000000000000000000102030405060708090a0b0c0d0e0f92191fb9dbc14e6ad55b700ee706541f04f7838216b7214ed237a7705adcf21a"},
		{ModeCBC, KeySize256, SaltJuly2025, seedPlain, "4d524f4d010000000200000000000000000102030405060708090a0b0c0d0e0f2e7fe22ccd2644dc84e62de077d761aa9829e2d291a15fe518bea3bbebdb3596456c2ecb4cf99809511b1b0bf44efa41"},
	}
	for _, tc := range cases {
		c := compat(t, tc.m, tc.k, tc.v)
		got, _ := c.SealWithIV(nil, []byte(tc.plain), seedIV)
		if hex.EncodeToString(got) != tc.hex {
			t.Errorf("%s-%s-%s: %x", tc.m, tc.k, tc.v, got)
		}
		p, _, _, err := c.Open(nil, unhex(t, tc.hex))
		if err != nil || string(p) != tc.plain {
			t.Errorf("%s-%s-%s open: %v", tc.m, tc.k, tc.v, err)
		}
	}
	// The two salt variants are not wire-compatible.
	cur, old := compat(t, ModeCBC, KeySize256, SaltCurrent), compat(t, ModeCBC, KeySize256, SaltJuly2025)
	f, _ := old.Seal(nil, []byte(seedPlain))
	if p, _, _, err := cur.Open(nil, f); err == nil && string(p) == seedPlain {
		t.Error("current codec opened a July-2025 frame")
	}
}

func TestCompatRoundTripAllModes(t *testing.T) {
	for _, n := range testSizes {
		plain := testPlain(n)
		for m := ModeECB; m < numModes; m++ {
			for k := KeySize128; k < numKeySizes; k++ {
				c := compat(t, m, k, SaltCurrent)
				f, err := c.Seal(nil, plain)
				if err != nil {
					t.Fatal(err)
				}
				if len(f) != c.SealedSize(n) {
					t.Fatalf("SealedSize %d != %d", c.SealedSize(n), len(f))
				}
				p, gm, gk, err := c.Open([]byte("x"), f)
				if err != nil || !bytes.Equal(p[1:], plain) || p[0] != 'x' || gm != m || gk != k {
					t.Fatalf("%s-%s n=%d: %v", m, k, n, err)
				}
			}
		}
	}
}

func TestCompatCoordination(t *testing.T) {
	gcm128 := compat(t, ModeGCM, KeySize128, SaltCurrent)
	f, _ := gcm128.Seal(nil, []byte("hi"))

	strict := compat(t, ModeCBC, KeySize256, SaltCurrent)
	_, _, _, err := strict.Open(nil, f)
	var mm *ModeMismatchError
	if !errors.Is(err, ErrModeMismatch) || !errors.As(err, &mm) ||
		mm.LocalMode != ModeCBC || mm.LocalKeySize != KeySize256 || mm.PeerMode != ModeGCM || mm.PeerKeySize != KeySize128 {
		t.Fatalf("strict: %v", err)
	}
	t.Log(err)

	// only the mode allowed: key size still mismatches
	half, _ := NewCompatCodec(seedPass, CompatConfig{Mode: ModeCBC, KeySize: KeySize256, AcceptModes: ModeSetOf(ModeGCM)})
	if _, _, _, err := half.Open(nil, f); !errors.Is(err, ErrModeMismatch) {
		t.Fatalf("half: %v", err)
	}

	// HEAD-style auto-coordination (allow everything but ECB)
	auto, _ := NewCompatCodec(seedPass, CompatConfig{Mode: ModeCBC, KeySize: KeySize256,
		AcceptModes: AllModes &^ ModeSetOf(ModeECB), AcceptKeySizes: AllKeySizes})
	p, m, k, err := auto.Open(nil, f)
	if err != nil || string(p) != "hi" || m != ModeGCM || k != KeySize128 {
		t.Fatalf("auto: %q %s %s %v", p, m, k, err)
	}
	// answer in the peer's mode
	reply, err := auto.SealAs(nil, []byte("ok"), m, k)
	if err != nil {
		t.Fatal(err)
	}
	if p, _, _, err := gcm128.Open(nil, reply); err != nil || string(p) != "ok" {
		t.Fatalf("reply: %v", err)
	}
	// ECB is never accepted without AllowECB
	ecb := compat(t, ModeECB, KeySize256, SaltCurrent)
	fe, _ := ecb.Seal(nil, []byte("hi"))
	if _, _, _, err := auto.Open(nil, fe); !errors.Is(err, ErrModeMismatch) {
		t.Fatalf("ECB accepted: %v", err)
	}
	if _, err := NewCompatCodec(seedPass, CompatConfig{}); !errors.Is(err, ErrUnsupported) {
		t.Fatalf("zero config (ECB) accepted: %v", err)
	}
}

func TestCompatErrors(t *testing.T) {
	c := compat(t, ModeCBC, KeySize256, SaltCurrent)
	f, _ := c.SealWithIV(nil, []byte(seedPlain), seedIV)

	check := func(name string, frame []byte, want error) {
		t.Helper()
		p, _, _, err := c.Open(nil, frame)
		if !errors.Is(err, want) {
			t.Errorf("%s: got %v want %v", name, err, want)
		}
		if p != nil {
			t.Errorf("%s: returned plaintext", name)
		}
	}
	check("plaintext", []byte(`{"type":0,"text":"hello"}`), ErrNotEncrypted)
	check("empty", nil, ErrNotEncrypted)
	check("short magic", f[:3], ErrTruncated)
	check("header only", f[:16], ErrTruncated)
	check("iv only", f[:32], ErrTruncated)
	check("unaligned", f[:len(f)-1], ErrMalformed)
	bad := bytes.Clone(f)
	bad[4] = 9
	check("mode 9", bad, ErrUnsupported)
	bad = bytes.Clone(f)
	bad[12] = 1
	check("secure version", bad, ErrUnsupported)
	wrong, _ := NewCompatCodec("not the password", CompatConfig{Mode: ModeCBC, KeySize: KeySize256})
	wf, _ := wrong.SealWithIV(nil, []byte(seedPlain), seedIV)
	check("wrong passphrase", wf, ErrBadPadding)
	// bad padding byte values
	for _, pad := range []byte{0, 17, 255} {
		key, _ := CompatKey(seedPass, SaltCurrent)
		raw, _ := NewCipher(ModeCBC, key)
		blk := bytes.Repeat([]byte{pad}, 16)
		ct, _ := raw.Encrypt(nil, seedIV[:], blk)
		frame := append(append(bytes.Clone(f[:16]), seedIV[:]...), ct...)
		check("pad byte", frame, ErrBadPadding)
	}
}
