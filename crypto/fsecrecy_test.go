package crypto

import (
	"bytes"
	"crypto/rand"
	"encoding/json"
	"errors"
	"maps"
	"os/exec"
	"testing"
)

// seqBytes is from, from+1, ... (n bytes): the KAT's fixed entropy.
func seqBytes(from, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(from + i)
	}
	return b
}

// The known answers, from testdata/handshake_v2_kat.mjs.
const (
	katServerHello    = "4d5253480205020000000010e80300000000000000000000000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f358072d6365880d1aeea329adf9121383851ed21a28e3b75e965d0d2cd166254000102030405060708090a0b0c0d0e0f"
	katClientHello    = "4d52434802050200404142434445464748494a4b4c4d4e4f505152535455565758595a5b5c5d5e5f675dd574ed7789310b3d2e7681f3790b466c773b1521fecf36577958371ea52fe294a97abbd817f70639fed3a4b0398229b22864b081b204d64230ad6c00dfa4"
	katServerFinished = "4d5253460200000054db1f9d5d6d47395e8f7f67a763414a7209b3d8f871f29ec1afed814c66b676"
	katC2s0           = "4d524f4d05000000020000000100000000000000000000001500000013ee6a8c8aa746e65042bac284bc662d6b929faa8a4605babf3d7d8a2470caf79db50d9ffd"
	katS2c0           = "4d524f4d0500000002000000010000000000000000000000150000006e55e7a501f4669c0b2ea697e27b7d5348bca72d2624f00e605ced6a709b8085cc0f3aeeb5"
)

// TestHandshakeV2KnownAnswer fixes both sides' nonces and X25519 keys
// through the entropy hook and checks every handshake message and the first
// frame each way against vectors computed by an independent WebCrypto
// implementation, testdata/handshake_v2_kat.mjs (the inputs are the same).
func TestHandshakeV2KnownAnswer(t *testing.T) {
	mk, err := DeriveMasterKey([]byte("marmot kat passphrase"), seqBytes(0, 16), KDFParams{Iterations: 1000})
	if err != nil {
		t.Fatal(err)
	}
	sh, err := NewServerHandshake(ServerConfig{Key: mk, Mode: ModeGCM, KeySize: KeySize256, entropy: bytes.NewReader(seqBytes(0x00, 64))})
	if err != nil {
		t.Fatal(err)
	}
	if got := sh.Hello(); !bytes.Equal(got, unhex(t, katServerHello)) {
		t.Fatalf("ServerHello\n got %x\nwant %s", got, katServerHello)
	}
	ch, err := NewClientHandshake(ClientConfig{Keyring: testKeyring(t, "marmot kat passphrase"), Mode: ModeGCM, KeySize: KeySize256,
		Limits: testLimits, entropy: bytes.NewReader(seqBytes(0x40, 64))}, sh.Hello())
	if err != nil {
		t.Fatal(err)
	}
	if got := ch.Hello(); !bytes.Equal(got, unhex(t, katClientHello)) {
		t.Fatalf("ClientHello\n got %x\nwant %s", got, katClientHello)
	}
	ss, fin, err := sh.Finish(ch.Hello())
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(fin, unhex(t, katServerFinished)) {
		t.Fatalf("ServerFinished\n got %x\nwant %s", fin, katServerFinished)
	}
	cs, err := ch.Finish(fin)
	if err != nil {
		t.Fatal(err)
	}
	if ch.Version() != HandshakeVersion || sh.Version() != HandshakeVersion {
		t.Fatalf("versions %d/%d", ch.Version(), sh.Version())
	}
	for _, d := range []struct {
		from, to *Session
		plain    string
		want     string
	}{{cs, ss, "hello from the client", katC2s0}, {ss, cs, "hello from the server", katS2c0}} {
		frame, err := d.from.Seal(nil, []byte(d.plain))
		if err != nil || !bytes.Equal(frame, unhex(t, d.want)) {
			t.Fatalf("frame %q\n got %x\nwant %s (%v)", d.plain, frame, d.want, err)
		}
		if p, err := d.to.Open(nil, frame); err != nil || string(p) != d.plain {
			t.Fatalf("open %q: %q %v", d.plain, p, err)
		}
	}
}

// TestHandshakeV2KnownAnswerReference reruns the WebCrypto reference
// (with Node, which CI has) so the vectors above and the script that
// produced them cannot drift apart.
func TestHandshakeV2KnownAnswerReference(t *testing.T) {
	node, err := exec.LookPath("node")
	if err != nil {
		t.Skip("node not installed")
	}
	out, err := exec.Command(node, "testdata/handshake_v2_kat.mjs").Output()
	if err != nil {
		t.Fatalf("node: %v", err)
	}
	var got map[string]string
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"serverHello": katServerHello, "clientHello": katClientHello, "serverFinished": katServerFinished, "c2s0": katC2s0, "s2c0": katS2c0}
	if !maps.Equal(got, want) {
		t.Fatalf("the WebCrypto reference now says\n%s", out)
	}
}

var kr0 = func() *Keyring {
	kr, err := NewKeyring([]byte("correct horse battery staple"))
	if err != nil {
		panic(err)
	}
	return kr
}()

func fsServer(allowLegacy bool) ServerConfig {
	return ServerConfig{Key: testMaster, Mode: ModeGCM, KeySize: KeySize256, AllowLegacyHandshake: allowLegacy}
}

func fsClient(allowLegacy bool) ClientConfig {
	return ClientConfig{Keyring: kr0, Mode: ModeGCM, KeySize: KeySize256, Limits: testLimits, AllowLegacyHandshake: allowLegacy}
}

// oldServer is a server from before version 2.
func oldServer(t *testing.T) *ServerHandshake {
	t.Helper()
	sh, err := NewLegacyServerHandshake(fsServer(true))
	if err != nil {
		t.Fatal(err)
	}
	asOldServer(t, sh)
	return sh
}

// oldClient is a client from before version 2: it speaks version 1 and
// knows nothing of the sentinel. It returns the ClientHello and the key
// schedule that checks the server's Finished.
func oldClient(t *testing.T, serverHello []byte) ([]byte, *keySchedule) {
	t.Helper()
	var sh ServerHello
	if err := sh.UnmarshalBinary(serverHello); err != nil {
		t.Fatal(err)
	}
	if sh.Version != HandshakeV1 {
		t.Fatalf("an old client cannot read a version %d ServerHello", sh.Version)
	}
	mk, err := kr0.MasterKey(sh.Salt, sh.KDF)
	if err != nil {
		t.Fatal(err)
	}
	ch := ClientHello{Version: HandshakeV1, Mode: sh.Mode, KeySize: sh.KeySize}
	_, _ = rand.Read(ch.Nonce[:])
	b, _ := ch.MarshalBinary()
	ks, err := newKeySchedule(HandshakeV1, mk, nil, serverHello, b, &ch.Nonce, &sh.Nonce)
	if err != nil {
		t.Fatal(err)
	}
	copy(b[clientHelloSizeV1-ConfirmSize:], ks.clientConfirm())
	return b, ks
}

func TestHandshakeDowngrade(t *testing.T) {
	// Current on both sides: version 2, whatever the legacy settings.
	for _, allow := range []bool{false, true} {
		sh, _ := NewServerHandshake(fsServer(allow))
		ch, err := NewClientHandshake(fsClient(allow), sh.Hello())
		if err != nil || ch.Version() != HandshakeVersion || len(ch.Hello()) != clientHelloSizeV2 {
			t.Fatalf("allow=%v: %v", allow, err)
		}
	}

	// An old client (no announcement): refused by default, before any
	// message is sent.
	if _, err := NewLegacyServerHandshake(fsServer(false)); !errors.Is(err, ErrDowngrade) {
		t.Fatalf("legacy handshake without AllowLegacyHandshake: %v", err)
	}
	// ... and served version 1 when the server allows it.
	sh, err := NewLegacyServerHandshake(fsServer(true))
	if err != nil || sh.Version() != HandshakeV1 {
		t.Fatal(err)
	}
	hello, ks := oldClient(t, sh.Hello())
	ss, fin, err := sh.Finish(hello)
	if err != nil {
		t.Fatalf("old client refused by a server that allows it: %v", err)
	}
	var sf ServerFinished
	if err := sf.UnmarshalBinary(fin); err != nil || sf.Version != HandshakeV1 || !bytes.Equal(sf.Confirm[:], ks.serverConfirm(hello[clientHelloSizeV1-ConfirmSize:])) {
		t.Fatalf("old client cannot check the server's Finished: %v", err)
	}
	cs, _ := ks.session(ModeGCM, KeySize256, false)
	frame, _ := cs.Seal(nil, []byte("legacy"))
	if p, err := ss.Open(nil, frame); err != nil || string(p) != "legacy" {
		t.Fatalf("legacy session: %q %v", p, err)
	}

	// A current client whose announcement was removed in transit gets the
	// legacy ServerHello with the sentinel: refused even with
	// AllowLegacyHandshake, before the KDF runs.
	for _, allow := range []bool{false, true} {
		sh, _ := NewLegacyServerHandshake(fsServer(true))
		if _, err := NewClientHandshake(fsClient(allow), sh.Hello()); !errors.Is(err, ErrDowngrade) {
			t.Fatalf("sentinel, client allow=%v: %v", allow, err)
		}
		// Removing the sentinel in transit breaks key confirmation.
		bad := bytes.Clone(sh.Hello())
		bad[serverHelloFixedV1-1] ^= 0xff
		ch, err := NewClientHandshake(fsClient(true), bad)
		if err != nil {
			t.Fatal(err)
		}
		if _, _, err := sh.Finish(ch.Hello()); !errors.Is(err, ErrWrongKey) {
			t.Fatalf("sentinel removed in transit: %v", err)
		}
	}

	// An old server (version 1, no sentinel): refused by a current client
	// by default, accepted with AllowLegacyHandshake.
	if _, err := NewClientHandshake(fsClient(false), oldServer(t).Hello()); !errors.Is(err, ErrDowngrade) {
		t.Fatalf("old server, client default: %v", err)
	}
	old := oldServer(t)
	ch, err := NewClientHandshake(fsClient(true), old.Hello())
	if err != nil || ch.Version() != HandshakeV1 || len(ch.Hello()) != clientHelloSizeV1 {
		t.Fatalf("old server, client allows: %v", err)
	}
	ss, fin, err = old.Finish(ch.Hello())
	if err != nil {
		t.Fatal(err)
	}
	if cs, err = ch.Finish(fin); err != nil {
		t.Fatal(err)
	}
	frame, _ = ss.Seal(nil, []byte("v1"))
	if p, err := cs.Open(nil, frame); err != nil || string(p) != "v1" {
		t.Fatalf("%q %v", p, err)
	}

	// A version-2 server handed a version-1 ClientHello (an attacker
	// rewriting the client's answer) refuses it as a downgrade; a
	// version-2 client handed a version-1 ServerFinished too.
	sh, _ = NewServerHandshake(fsServer(true))
	v1hello, _ := oldClient(t, func() []byte { s := oldServer(t); return s.Hello() }())
	if _, _, err := sh.Finish(v1hello); !errors.Is(err, ErrDowngrade) {
		t.Fatalf("v1 ClientHello in a v2 handshake: %v", err)
	}
	sh, _ = NewServerHandshake(fsServer(false))
	ch, _ = NewClientHandshake(fsClient(false), sh.Hello())
	_, fin, err = sh.Finish(ch.Hello())
	if err != nil {
		t.Fatal(err)
	}
	fin[4] = HandshakeV1
	if _, err := ch.Finish(fin); !errors.Is(err, ErrDowngrade) {
		t.Fatalf("v1 ServerFinished in a v2 handshake: %v", err)
	}
}

// The point of version 2: an eavesdropper who recorded a connection and
// later learns the passphrase (the master key) decrypts a version-1
// connection but not a version-2 one, whose keys also need the X25519
// shared secret. The attack is run on both, so the test fails if it stops
// working on version 1 (the harness is broken) or starts working on 2.
func TestForwardSecrecyRecordedTraffic(t *testing.T) {
	type recording struct {
		serverHello, clientHello []byte
		frame                    []byte
	}
	record := func(legacy bool) recording {
		var sh *ServerHandshake
		var err error
		if legacy {
			sh = oldServer(t)
		} else {
			sh, err = NewServerHandshake(fsServer(false))
		}
		if err != nil {
			t.Fatal(err)
		}
		ch, err := NewClientHandshake(fsClient(legacy), sh.Hello())
		if err != nil {
			t.Fatal(err)
		}
		_, fin, err := sh.Finish(ch.Hello())
		if err != nil {
			t.Fatal(err)
		}
		cs, err := ch.Finish(fin)
		if err != nil {
			t.Fatal(err)
		}
		frame, _ := cs.Seal(nil, []byte("the secret"))
		return recording{sh.Hello(), ch.Hello(), frame}
	}
	// The attacker knows the master key and every byte on the wire, and
	// guesses the shared secret it cannot compute (all zeros; any guess is
	// as good).
	attack := func(r recording) error {
		var sh ServerHello
		var ch ClientHello
		if err := errors.Join(sh.UnmarshalBinary(r.serverHello), ch.UnmarshalBinary(r.clientHello)); err != nil {
			t.Fatal(err)
		}
		var dh []byte
		if sh.Version != HandshakeV1 {
			dh = make([]byte, 32)
		}
		ks, err := newKeySchedule(sh.Version, testMaster, dh, r.serverHello, r.clientHello, &ch.Nonce, &sh.Nonce)
		if err != nil {
			t.Fatal(err)
		}
		ss, err := ks.session(ch.Mode, ch.KeySize, true)
		if err != nil {
			t.Fatal(err)
		}
		_, err = ss.Open(nil, r.frame)
		return err
	}
	if err := attack(record(true)); err != nil {
		t.Fatalf("the leaked passphrase no longer opens a recorded version-1 frame (%v): the harness is wrong", err)
	}
	if err := attack(record(false)); !errors.Is(err, ErrAuthFailed) {
		t.Fatalf("leaked passphrase on a recorded version-2 frame: %v", err)
	}
}

// Low-order X25519 points (here all zeros, whose shared secret is zero)
// would make the exchange contribute nothing; both sides refuse them.
func TestHandshakeLowOrderEphemeral(t *testing.T) {
	sh, _ := NewServerHandshake(fsServer(false))
	ch, _ := NewClientHandshake(fsClient(false), sh.Hello())
	bad := bytes.Clone(ch.Hello())
	clear(bad[40:72])
	if _, _, err := sh.Finish(bad); !errors.Is(err, ErrMalformed) {
		t.Fatalf("zero client key: %v", err)
	}
	badHello := bytes.Clone(sh.Hello())
	clear(badHello[serverHelloFixedV1:serverHelloFixedV2])
	if _, err := NewClientHandshake(fsClient(false), badHello); !errors.Is(err, ErrMalformed) {
		t.Fatalf("zero server key: %v", err)
	}
}

// A recorded ClientHello replayed into another connection's handshake
// fails: the server's nonce and ephemeral key are fresh.
func TestHandshakeReplayedClientHello(t *testing.T) {
	sh, _ := NewServerHandshake(fsServer(false))
	ch, _ := NewClientHandshake(fsClient(false), sh.Hello())
	if _, _, err := sh.Finish(ch.Hello()); err != nil {
		t.Fatal(err)
	}
	sh2, _ := NewServerHandshake(fsServer(false))
	if _, _, err := sh2.Finish(ch.Hello()); !errors.Is(err, ErrWrongKey) {
		t.Fatalf("replayed ClientHello: %v", err)
	}
}
