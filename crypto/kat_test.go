package crypto

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"encoding/base64"
	"encoding/hex"
	"hash/crc32"
	"strings"
	"testing"
)

func unhex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(strings.ReplaceAll(s, " ", ""))
	if err != nil {
		t.Fatalf("bad hex %q: %v", s, err)
	}
	return b
}

// mORMot TEST_AES_REF inputs (test.core.crypt.pas ToAesReference).
func mormotRefInputs(ks KeySize) (key, iv, padded []byte) {
	key = bytes.Repeat([]byte{'x'}, ks.Bytes())
	iv = []byte{0xef, 0xcd, 0xab, 0x90, 0x78, 0x56, 0x34, 0x12, 0x21, 0x43, 0x65, 0x87, 0xa9, 0xcb, 0xed, 0x0f}
	padded = append(bytes.Repeat([]byte{'x'}, 50), bytes.Repeat([]byte{14}, 14)...)
	return
}

// TEST_AES_REF: base64url (no padding) of the 64-byte ciphertext.
var testAESRef = map[KeySize]map[Mode]string{
	KeySize128: {
		ModeECB: "aS24Jm0RHPz26P_RHqX-pGktuCZtERz89uj_0R6l_qRpLbgmbREc_Pbo_9Eepf6kB7pVFdRAcIoVhoTQPytzTQ",
		ModeCBC: "i1vnbHBw0VZZdm-nlhq7H3N-C3oMLGfooWnwjI0F_X3QgeV6s-Q8ujVIbgpX5Bwu8tOn1SoUHHP4VS0VK5cOyQ",
		ModeCFB: "9rlcKw63fOzEbXUpoCUDLPqt7TuuSjLGHdlDMneP0nrY4LLFbrc3MrLV6JoXmQM6d4FvmlsQpImuk9LWaf8hXw",
		ModeOFB: "9rlcKw63fOzEbXUpoCUDLHuJV24miApjh5nwI-vJo4ODczlsBPQH-mKdBzlUwKOZ8bEV1IUEF6gVGsT-GOuA3w",
		ModeCTR: "9rlcKw63fOzEbXUpoCUDLPODC-Nwu96PUeytu204bloDoO7QOmLe8SSHM2P0kB5NW3VPROV5QLaVhYfld4uZBA",
		ModeGCM: "gUZBx61sQ4gV3RZ-qpZrkQDnlu88Jb4mGPWorawImGYK4ei1yy3oRPPYBTclVHoRVRwHnHMB1NnGGq3T0qbZmw",
	},
	KeySize192: {
		ModeECB: "3S2QhC78T0eesG3hiqtA2N0tkIQu_E9HnrBt4YqrQNjdLZCELvxPR56wbeGKq0DYJob7gbbvgBaFdm_Bwed4RQ",
		ModeCBC: "yua7dkKtXp0pM5n3VFoZrKhdt1ppikmmhFBKzflv32uY6cm4X3ZDZZnlAujYFBAWYR9fJXvhKmCcPljunWP2Zw",
		ModeCFB: "Lp2JYG5d-d4TZagr2FMfqRxp9GCAHtCNcV5HmNoZpt34jqelBTDnTPagl9ZsIkrKRM_m0i3o0PWyK7hf6h9evg",
		ModeOFB: "Lp2JYG5d-d4TZagr2FMfqcygVkV4gZnunc1EDx63mo2B0WfIDhpjtPSVuiXjXBUlPcEVs_YVJoPmIbJDD_mwpQ",
		ModeCTR: "Lp2JYG5d-d4TZagr2FMfqc-3Wr2DBpXIPh2l-OjSsqlAcEVs8vH6tbc5_5G59H_wTCxihPcc8yz8f_fyGiDEaQ",
		ModeGCM: "hBeEH6I4wWS55pvTLfjz5PxR1nq13tv920aVPw1sMbbraVjQ7Z7vD272rMCOrfMz4b9CFK7SUqh92pR6YIId8A",
	},
	KeySize256: {
		ModeECB: "Kw50ybT0hl8MXw1IcBFm5isOdMm09IZfDF8NSHARZuYrDnTJtPSGXwxfDUhwEWbmn9aUUA6_ZwXpKRiFMlXRiw",
		ModeCBC: "uSh1TguJYyEhud6DBzk8TZrD01xIULmMHX0gRFAGaf2vDinDfDprSxCm5Fd49HN0a6EoBrK1cCqanTWqyuyM8A",
		ModeCFB: "PYynVHoDmi6SK5qdbNUp5IPwHRadBtT6rf97pdIP3MHk1q1rZHNzquVCOF5_oSMs0rqP7bJ6j6BvWpzTGcvEPQ",
		ModeOFB: "PYynVHoDmi6SK5qdbNUp5IFTsstbPmW8RbyfJ1fh1x2N2vQw5n_5DtDYx-49wgZnu5MEthDAT2h7XPqNIFgfdw",
		ModeCTR: "PYynVHoDmi6SK5qdbNUp5NDiW4s3_P_KGDXarkzNgBrxUjjzTUzVJ29q9Uq75xI3eTczo57cI5ibqZ-BvbYRLw",
		ModeGCM: "rUvWiPrboNKztxCcC6Cq5GWAlbLOk_UO-GddAmNnHCIpbBSz-q6xqXP0aw0REnW9usdCu2DZZ28B2GbaOfydrg",
	},
}

// TEST_AES_GCM tags, TEST_AES_MAC tags.
var (
	testAESGCM = map[KeySize]string{
		KeySize128: "7C1DA6408329D2D2E393609DB188129E",
		KeySize192: "EFF784967837F6BB0007276CA9C9F936",
		KeySize256: "5F3411F163FF157C4A802DB5FF835823",
	}
	testAESMAC = map[Mode]map[KeySize]string{
		ModeCFC: {
			KeySize128: "a6353d1260ec249aa1da751d9e888978258194e4454a0d719b39152b39d7b7a9",
			KeySize192: "80f2ef4b22b48b4a0bcca7a9c509a2467b620569597d0791b9b56243fe03af1b",
			KeySize256: "c13dc3e510b02ecd5eec947dfd934fc256b308318dcbc16bc9aabf7b616fffb5",
		},
		ModeOFC: {
			KeySize128: "a6353d1260ec249aa1da751d9e8889785716e5bac7e28577164eee94cc2cdaeb",
			KeySize192: "80f2ef4b22b48b4a0bcca7a9c509a2462be402ff0ceb734b81feafb7bbb32d35",
			KeySize256: "c13dc3e510b02ecd5eec947dfd934fc261e76a48caa8808ed4a5979e30fa1fa5",
		},
		ModeCTC: {
			KeySize128: "a6353d1260ec249aa1da751d9e888978d591cb79c5f2e77e2e15bd507aa11b04",
			KeySize192: "80f2ef4b22b48b4a0bcca7a9c509a246041058e5b7e63e90fdb865dc0d8dc216",
			KeySize256: "c13dc3e510b02ecd5eec947dfd934fc27a9bada0c582df6d441b67a8455a1711",
		},
	}
)

// crcTwin maps CFC/OFC/CTC to the mode whose ciphertext they share.
var crcTwin = map[Mode]Mode{ModeCFC: ModeCFB, ModeOFC: ModeOFB, ModeCTC: ModeCTR}

func TestKATMormotAESRef(t *testing.T) {
	for ks := KeySize128; ks <= KeySize256; ks++ {
		key, iv, plain := mormotRefInputs(ks)
		for m := ModeECB; m <= ModeCTC; m++ {
			refMode := m
			if tw, ok := crcTwin[m]; ok {
				refMode = tw // ToAesReference: CFC→CFB, OFC→OFB, CTC→CTR
			}
			want, err := base64.RawURLEncoding.DecodeString(testAESRef[ks][refMode])
			if err != nil {
				t.Fatal(err)
			}
			c, err := NewCipher(m, key)
			if err != nil {
				t.Fatal(err)
			}
			got, err := c.Encrypt(nil, iv, plain)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("AES-%s-%s: got %x want %x", ks, m, got, want)
			}
			back, err := c.Decrypt(nil, iv, got)
			if err != nil || !bytes.Equal(back, plain) {
				t.Errorf("AES-%s-%s: decrypt mismatch (%v)", ks, m, err)
			}
			// in place
			buf := bytes.Clone(plain)
			if _, err := c.Encrypt(buf[:0], iv, buf); err != nil || !bytes.Equal(buf, want) {
				t.Errorf("AES-%s-%s: in-place encrypt mismatch", ks, m)
			}
			if _, err := c.Decrypt(buf[:0], iv, buf); err != nil || !bytes.Equal(buf, plain) {
				t.Errorf("AES-%s-%s: in-place decrypt mismatch", ks, m)
			}
		}
	}
}

func TestKATMormotGCMTag(t *testing.T) {
	for ks := KeySize128; ks <= KeySize256; ks++ {
		key, iv, plain := mormotRefInputs(ks)
		b, _ := aes.NewCipher(key)
		g, _ := cipher.NewGCM(b)
		sealed := g.Seal(nil, iv[:12], plain, nil)
		if got := strings.ToUpper(hex.EncodeToString(sealed[len(plain):])); got != testAESGCM[ks] {
			t.Errorf("GCM-%s tag %s want %s", ks, got, testAESGCM[ks])
		}
		// our tag-less GCM keystream equals Go's GCM ciphertext
		c, _ := NewCipher(ModeGCM, key)
		ct, _ := c.Encrypt(nil, iv, plain)
		if !bytes.Equal(ct, sealed[:len(plain)]) {
			t.Errorf("GCM-%s ciphertext differs from crypto/cipher GCM", ks)
		}
	}
}

func TestKATMormotMAC(t *testing.T) {
	for m, bySize := range testAESMAC {
		for ks, want := range bySize {
			key, iv, plain := mormotRefInputs(ks)
			a, err := NewCRCAEAD(m, key)
			if err != nil {
				t.Fatal(err)
			}
			sealed := a.Seal(nil, iv, MACState{}, plain) // TEST_AES_MAC: zero MAC seed
			if got := hex.EncodeToString(sealed[len(plain):]); got != want {
				t.Errorf("%s-%s MAC %s want %s", m, ks, got, want)
			}
			wantCT, _ := base64.RawURLEncoding.DecodeString(testAESRef[ks][crcTwin[m]])
			if !bytes.Equal(sealed[:len(plain)], wantCT) {
				t.Errorf("%s-%s ciphertext differs from TEST_AES_REF", m, ks)
			}
			back, err := a.Open(nil, iv, MACState{}, sealed)
			if err != nil || !bytes.Equal(back, plain) {
				t.Errorf("%s-%s Open: %v", m, ks, err)
			}
		}
	}
}

// NIST SP 800-38A appendix F (the vectors mORMot's _AES.NistVector checks).
func TestKATNIST80038A(t *testing.T) {
	plain := unhex(t, "6bc1bee22e409f96e93d7e117393172aae2d8a571e03ac9c9eb76fac45af8e5130c81c46a35ce411e5fbc1191a0a52eff69f2445df4f9b17ad2b417be66c3710")
	keys := map[KeySize][]byte{
		KeySize128: unhex(t, "2b7e151628aed2a6abf7158809cf4f3c"),
		KeySize192: unhex(t, "8e73b0f7da0e6452c810f32b809079e562f8ead2522c6b7b"),
		KeySize256: unhex(t, "603deb1015ca71be2b73aef0857d77811f352c073b6108d72d9810a30914dff4"),
	}
	iv := unhex(t, "000102030405060708090a0b0c0d0e0f")
	ctrIV := unhex(t, "f0f1f2f3f4f5f6f7f8f9fafbfcfdfeff")
	vectors := map[Mode]map[KeySize]string{
		ModeECB: {
			KeySize128: "3ad77bb40d7a3660a89ecaf32466ef97f5d3d58503b9699de785895a96fdbaaf43b1cd7f598ece23881b00e3ed0306887b0c785e27e8ad3f8223207104725dd4",
			KeySize192: "bd334f1d6e45f25ff712a214571fa5cc974104846d0ad3ad7734ecb3ecee4eefef7afd2270e2e60adce0ba2face6444e9a4b41ba738d6c72fb16691603c18e0e",
			KeySize256: "f3eed1bdb5d2a03c064b5a7e3db181f8591ccb10d410ed26dc5ba74a31362870b6ed21b99ca6f4f9f153e7b1beafed1d23304b7a39f9f3ff067d8d8f9e24ecc7",
		},
		ModeCBC: {
			KeySize128: "7649abac8119b246cee98e9b12e9197d5086cb9b507219ee95db113a917678b273bed6b8e3c1743b7116e69e222295163ff1caa1681fac09120eca307586e1a7",
			KeySize192: "4f021db243bc633d7178183a9fa071e8b4d9ada9ad7dedf4e5e738763f69145a571b242012fb7ae07fa9baac3df102e008b0e27988598881d920a9e64f5615cd",
			KeySize256: "f58c4c04d6e5f1ba779eabfb5f7bfbd69cfc4e967edb808d679f777bc6702c7d39f23369a9d9bacfa530e26304231461b2eb05e2c39be9fcda6c19078c6a9d1b",
		},
		ModeCFB: {
			KeySize128: "3b3fd92eb72dad20333449f8e83cfb4ac8a64537a0b3a93fcde3cdad9f1ce58b26751f67a3cbb140b1808cf187a4f4dfc04b05357c5d1c0eeac4c66f9ff7f2e6",
			KeySize192: "cdc80d6fddf18cab34c25909c99a417467ce7f7f81173621961a2b70171d3d7a2e1e8a1dd59b88b1c8e60fed1efac4c9c05f9f9ca9834fa042ae8fba584b09ff",
			KeySize256: "dc7e84bfda79164b7ecd8486985d386039ffed143b28b1c832113c6331e5407bdf10132415e54b92a13ed0a8267ae2f975a385741ab9cef82031623d55b1e471",
		},
		ModeOFB: {
			KeySize128: "3b3fd92eb72dad20333449f8e83cfb4a7789508d16918f03f53c52dac54ed8259740051e9c5fecf64344f7a82260edcc304c6528f659c77866a510d9c1d6ae5e",
			KeySize192: "cdc80d6fddf18cab34c25909c99a4174fcc28b8d4c63837c09e81700c11004018d9a9aeac0f6596f559c6d4daf59a5f26d9f200857ca6c3e9cac524bd9acc92a",
			KeySize256: "dc7e84bfda79164b7ecd8486985d38604febdc6740d20b3ac88f6ad82a4fb08d71ab47a086e86eedf39d1c5bba97c4080126141d67f37be8538f5a8be740e484",
		},
		ModeCTR: {
			KeySize128: "874d6191b620e3261bef6864990db6ce9806f66b7970fdff8617187bb9fffdff5ae4df3edbd5d35e5b4f09020db03eab1e031dda2fbe03d1792170a0f3009cee",
			KeySize192: "1abc932417521ca24f2b0459fe7e6e0b090339ec0aa6faefd5ccc2c6f4ce8e941e36b26bd1ebc670d1bd1d665620abf74f78a7f6d29809585a97daec58c6b050",
			KeySize256: "601ec313775789a5b7a7f504bbf3d228f443e3ca4d62b59aca84e990cacaf5c52b0930daa23de94ce87017ba2d84988ddfc9c58db67aada613c2dd08457941a6",
		},
	}
	for m, bySize := range vectors {
		for ks, hx := range bySize {
			want := unhex(t, hx)
			c, err := NewCipher(m, keys[ks])
			if err != nil {
				t.Fatal(err)
			}
			v := iv
			if m == ModeCTR {
				v = ctrIV
			}
			got, _ := c.Encrypt(nil, v, plain)
			if !bytes.Equal(got, want) {
				t.Errorf("SP 800-38A %s-%s: got %x want %x", m, ks, got, want)
			}
			back, _ := c.Decrypt(nil, v, want)
			if !bytes.Equal(back, plain) {
				t.Errorf("SP 800-38A %s-%s: decrypt mismatch", m, ks)
			}
		}
	}
}

// Partial final blocks of our CFB/OFB match crypto/cipher's (deprecated)
// reference implementations at every length.
func TestStreamModesMatchStdlib(t *testing.T) {
	key := bytes.Repeat([]byte{7}, 32)
	iv := bytes.Repeat([]byte{9}, 16)
	b, _ := aes.NewCipher(key)
	for n := 0; n <= 70; n++ {
		src := bytes.Repeat([]byte{byte(n)}, n)
		for _, m := range []Mode{ModeCFB, ModeOFB, ModeCTR} {
			var ref cipher.Stream
			switch m {
			case ModeCFB:
				ref = cipher.NewCFBEncrypter(b, iv) //nolint:staticcheck // reference only
			case ModeOFB:
				ref = cipher.NewOFB(b, iv) //nolint:staticcheck // reference only
			default:
				ref = cipher.NewCTR(b, iv)
			}
			want := make([]byte, n)
			ref.XORKeyStream(want, src)
			c, _ := NewCipher(m, key)
			got, _ := c.Encrypt(nil, iv, src)
			if !bytes.Equal(got, want) {
				t.Fatalf("%s n=%d mismatch", m, n)
			}
			back, _ := c.Decrypt(nil, iv, got)
			if !bytes.Equal(back, src) {
				t.Fatalf("%s n=%d decrypt mismatch", m, n)
			}
		}
	}
}

func TestCRCWordMatchesReference(t *testing.T) {
	tab := crc32.MakeTable(crc32.Castagnoli)
	for _, lane := range []uint32{0, 1, 0xffffffff, 0x12345678, 0xdeadbeef} {
		for _, w := range []uint32{0, 1, 0x80000000, 0xcafebabe} {
			var b [4]byte
			putU32(b[:], w)
			want := ^crc32.Update(^lane, tab, b[:])
			if got := crcWord(lane, w); got != want {
				t.Fatalf("crcWord(%x,%x)=%x want %x", lane, w, got, want)
			}
		}
	}
}

// The CRC "MAC" is linear: flipping a lane word by w in one block and by
// crc(0,w) in the next leaves both accumulators unchanged, so an OFC/CTC
// forgery verifies. This is why the secure profile adds HMAC-SHA256.
func TestCRCMACIsForgeable(t *testing.T) {
	key := bytes.Repeat([]byte{0x42}, 32)
	iv := bytes.Repeat([]byte{1}, 16)
	var nonce [32]byte
	nonce[3] = 99
	for _, m := range []Mode{ModeOFC, ModeCTC} {
		a, _ := NewCRCAEAD(m, key)
		plain := []byte("pay 0000100 EUR to alice, ref 42")
		st := NewMACState(&nonce, []byte("header"))
		sealed := a.Seal(nil, iv, st, plain)
		forged := bytes.Clone(sealed)
		w := uint32(0x00000100)
		var d [4]byte
		putU32(d[:], w)
		for i := range 4 {
			forged[i] ^= d[i]
		}
		putU32(d[:], crcWord(0, w))
		for i := range 4 {
			forged[16+i] ^= d[i]
		}
		got, err := a.Open(nil, iv, st, forged)
		if err != nil {
			t.Fatalf("%s: expected the linear forgery to verify, got %v", m, err)
		}
		if bytes.Equal(got, plain) {
			t.Fatalf("%s: forgery did not change the plaintext", m)
		}
	}
}

func TestCRCAEADTamperAndTail(t *testing.T) {
	key := bytes.Repeat([]byte{0x42}, 16)
	iv := bytes.Repeat([]byte{1}, 16)
	var nonce [32]byte
	for _, m := range []Mode{ModeCFC, ModeOFC, ModeCTC} {
		a, _ := NewCRCAEAD(m, key)
		for _, n := range []int{0, 1, 15, 16, 17, 33} {
			plain := bytes.Repeat([]byte{'p'}, n)
			st := NewMACState(&nonce, nil)
			s := a.Seal(nil, iv, st, plain)
			if got, err := a.Open(nil, iv, st, s); err != nil || !bytes.Equal(got, plain) {
				t.Fatalf("%s n=%d: %v", m, n, err)
			}
			s[len(s)-1] ^= 1
			if _, err := a.Open(nil, iv, st, s); err != ErrAuthFailed {
				t.Fatalf("%s n=%d tampered tag: %v", m, n, err)
			}
		}
	}
	if _, err := NewCRCAEAD(ModeGCM, key); err == nil {
		t.Fatal("NewCRCAEAD accepted GCM")
	}
}
