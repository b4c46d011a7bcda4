package crypto

import (
	"bytes"
	"errors"
	"testing"
)

func TestHandshakeWrongPassphrase(t *testing.T) {
	sh, _ := NewServerHandshake(ServerConfig{Key: testMaster, Mode: ModeGCM, KeySize: KeySize256})
	ch, err := NewClientHandshake(ClientConfig{Keyring: testKeyring(t, "wrong"), Mode: ModeGCM, KeySize: KeySize256, Limits: testLimits}, sh.Hello())
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := sh.Finish(ch.Hello()); !errors.Is(err, ErrWrongKey) || !errors.Is(err, ErrAuthFailed) {
		t.Fatalf("server: %v", err)
	}
}

// A server that does not know the passphrase is caught by the client: it
// can only send a forged ServerFinished, or one from another handshake.
func TestHandshakeImpostorServer(t *testing.T) {
	fake, _ := DeriveMasterKey([]byte("guess"), testMaster.Salt(), testKDF)
	sh, _ := NewServerHandshake(ServerConfig{Key: fake, Mode: ModeGCM, KeySize: KeySize256})
	cc := ClientConfig{Keyring: testKeyring(t, "correct horse battery staple"), Mode: ModeGCM, KeySize: KeySize256, Limits: testLimits}
	ch, err := NewClientHandshake(cc, sh.Hello())
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := sh.Finish(ch.Hello()); !errors.Is(err, ErrWrongKey) {
		t.Fatalf("impostor accepted the client: %v", err)
	}
	var forged ServerFinished
	fb, _ := forged.MarshalBinary()
	if _, err := ch.Finish(fb); !errors.Is(err, ErrWrongKey) {
		t.Fatalf("forged finished: %v", err)
	}
	// a genuine Finished from another handshake (replay) is refused too
	real, _ := NewServerHandshake(ServerConfig{Key: testMaster, Mode: ModeGCM, KeySize: KeySize256})
	other, _ := NewClientHandshake(cc, real.Hello())
	_, otherFin, err := real.Finish(other.Hello())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ch.Finish(otherFin); !errors.Is(err, ErrWrongKey) {
		t.Fatalf("replayed finished: %v", err)
	}
}

func TestHandshakeTamper(t *testing.T) {
	kr := testKeyring(t, "correct horse battery staple")
	cc := ClientConfig{Keyring: kr, Mode: ModeGCM, KeySize: KeySize256, AcceptModes: ModeSetOf(ModeCTR), Limits: testLimits}
	sc := ServerConfig{Key: testMaster, Mode: ModeGCM, KeySize: KeySize256, AcceptModes: ModeSetOf(ModeCTR)}
	// Every byte of the ServerHello (except those the client rejects
	// outright) changes the transcript → ErrWrongKey at the server.
	sh, _ := NewServerHandshake(sc)
	hello := sh.Hello()
	for i := range hello {
		bad := bytes.Clone(hello)
		bad[i] ^= 0x01
		ch, err := NewClientHandshake(cc, bad)
		if err != nil {
			continue // decoder, negotiation or KDF-limit rejection: fine
		}
		if _, _, err := sh.Finish(ch.Hello()); err == nil {
			t.Fatalf("ServerHello byte %d: handshake succeeded", i)
		}
	}
	// Every byte of the ClientHello.
	for i := range clientHelloSizeV2 {
		sh, _ := NewServerHandshake(sc)
		ch, _ := NewClientHandshake(cc, sh.Hello())
		bad := bytes.Clone(ch.Hello())
		bad[i] ^= 0x01
		if _, _, err := sh.Finish(bad); err == nil {
			t.Fatalf("ClientHello byte %d: accepted", i)
		}
	}
	// Every byte of the ServerFinished.
	for i := range serverFinishedSize {
		sh, _ := NewServerHandshake(sc)
		ch, _ := NewClientHandshake(cc, sh.Hello())
		_, fin, err := sh.Finish(ch.Hello())
		if err != nil {
			t.Fatal(err)
		}
		fin[i] ^= 0x01
		if _, err := ch.Finish(fin); err == nil {
			t.Fatalf("ServerFinished byte %d: accepted", i)
		}
	}
}

// A man in the middle rewriting the client's chosen mode to a weaker one
// in the server's allow-list is caught by key confirmation.
func TestHandshakeDowngradeMITM(t *testing.T) {
	kr := testKeyring(t, "correct horse battery staple")
	sh, _ := NewServerHandshake(ServerConfig{Key: testMaster, Mode: ModeGCM, KeySize: KeySize256,
		AcceptModes: ModeSetOf(ModeCTR), AcceptKeySizes: AllKeySizes})
	ch, _ := NewClientHandshake(ClientConfig{Keyring: kr, Mode: ModeGCM, KeySize: KeySize256, Limits: testLimits}, sh.Hello())
	bad := bytes.Clone(ch.Hello())
	bad[5], bad[6] = byte(ModeCTR), byte(KeySize128)
	if _, _, err := sh.Finish(bad); !errors.Is(err, ErrWrongKey) {
		t.Fatalf("%v", err)
	}
}

func TestHandshakeNegotiation(t *testing.T) {
	kr := testKeyring(t, "correct horse battery staple")
	// client's mode is in the server's allow-list → client's mode
	ss, cs := pairWith(t,
		ServerConfig{Key: testMaster, Mode: ModeGCM, KeySize: KeySize256, AcceptModes: ModeSetOf(ModeCTC), AcceptKeySizes: KeySizeSetOf(KeySize128)},
		ClientConfig{Keyring: kr, Mode: ModeCTC, KeySize: KeySize128, Limits: testLimits})
	if ss.Mode() != ModeCTC || cs.Mode() != ModeCTC || ss.KeySize() != KeySize128 {
		t.Fatalf("got %s-%s", ss.Mode(), ss.KeySize())
	}
	// server's mode is in the client's allow-list → server's mode
	ss, _ = pairWith(t,
		ServerConfig{Key: testMaster, Mode: ModeGCM, KeySize: KeySize256},
		ClientConfig{Keyring: kr, Mode: ModeCBC, KeySize: KeySize128, AcceptModes: ModeSetOf(ModeGCM), AcceptKeySizes: AllKeySizes, Limits: testLimits})
	if ss.Mode() != ModeGCM || ss.KeySize() != KeySize256 {
		t.Fatalf("got %s-%s", ss.Mode(), ss.KeySize())
	}
	// no overlap → typed error naming both settings, at the client
	sh, _ := NewServerHandshake(ServerConfig{Key: testMaster, Mode: ModeGCM, KeySize: KeySize256})
	_, err := NewClientHandshake(ClientConfig{Keyring: kr, Mode: ModeCBC, KeySize: KeySize128, Limits: testLimits}, sh.Hello())
	var mm *ModeMismatchError
	if !errors.As(err, &mm) || mm.LocalMode != ModeCBC || mm.PeerMode != ModeGCM || mm.LocalKeySize != KeySize128 || mm.PeerKeySize != KeySize256 {
		t.Fatalf("%v", err)
	}
	t.Log(err)
	// and at the server, for a client hello outside its allow-list
	var ch ClientHello
	ch.Mode, ch.KeySize = ModeCBC, KeySize256
	b, _ := ch.MarshalBinary()
	if _, _, err := sh.Finish(b); !errors.As(err, &mm) || mm.LocalMode != ModeGCM || mm.PeerMode != ModeCBC {
		t.Fatalf("%v", err)
	}
	// ECB needs AllowECB on both sides; the zero config is ECB and refused
	if _, err := NewServerHandshake(ServerConfig{Key: testMaster}); !errors.Is(err, ErrUnsupported) {
		t.Fatalf("zero server config: %v", err)
	}
	sh, _ = NewServerHandshake(ServerConfig{Key: testMaster, Mode: ModeECB, KeySize: KeySize256, AllowECB: true})
	if _, err := NewClientHandshake(ClientConfig{Keyring: kr, Mode: ModeGCM, KeySize: KeySize256, AcceptModes: AllModes &^ ModeSetOf(ModeECB), Limits: testLimits}, sh.Hello()); !errors.Is(err, ErrModeMismatch) {
		t.Fatalf("ECB server: %v", err)
	}
}

func TestHandshakeKDFLimits(t *testing.T) {
	kr := testKeyring(t, "x")
	weak, _ := DeriveMasterKey([]byte("x"), make([]byte, 16), KDFParams{Iterations: 1})
	sh, _ := NewServerHandshake(ServerConfig{Key: weak, Mode: ModeGCM, KeySize: KeySize256})
	// default limits refuse a 1-iteration KDF (offline-attack downgrade)
	if _, err := NewClientHandshake(ClientConfig{Keyring: kr, Mode: ModeGCM, KeySize: KeySize256}, sh.Hello()); !errors.Is(err, ErrUnsupported) {
		t.Fatalf("%v", err)
	}
	// a hostile server asking for 4 billion iterations is refused
	var h ServerHello
	_ = h.UnmarshalBinary(sh.Hello())
	h.KDF.Iterations = 4e9
	b, _ := h.MarshalBinary()
	if _, err := NewClientHandshake(ClientConfig{Keyring: kr, Mode: ModeGCM, KeySize: KeySize256}, b); !errors.Is(err, ErrUnsupported) {
		t.Fatalf("%v", err)
	}
	if kr.Derivations() != 0 {
		t.Fatal("derived despite refusal")
	}
}

func TestHandshakeArgon2id(t *testing.T) {
	p := KDFParams{Algorithm: KDFArgon2id, Iterations: 1, MemoryKiB: 64, Threads: 1}
	mk, err := DeriveMasterKey([]byte("pw"), make([]byte, 16), p)
	if err != nil {
		t.Fatal(err)
	}
	ss, cs := pairWith(t, ServerConfig{Key: mk, Mode: ModeGCM, KeySize: KeySize256},
		ClientConfig{Keyring: testKeyring(t, "pw"), Mode: ModeGCM, KeySize: KeySize256, Limits: KDFLimits{MinArgon2MemoryKiB: 8}})
	f, _ := cs.Seal(nil, []byte("argon"))
	if p, err := ss.Open(nil, f); err != nil || string(p) != "argon" {
		t.Fatal(err)
	}
	// PBKDF2 and Argon2id keys differ
	mk2, _ := DeriveMasterKey([]byte("pw"), make([]byte, 16), KDFParams{Iterations: 1})
	if *mk2.key == *mk.key {
		t.Fatal("same key")
	}
}

// The server stretches the passphrase once; per connection it only does
// HKDF. The client stretches once per salt.
func TestHandshakeKDFOncePerSalt(t *testing.T) {
	saltA, _ := NewSalt()
	mk, err := DeriveMasterKey([]byte("pw"), saltA, testKDF)
	if err != nil {
		t.Fatal(err)
	}
	kr := testKeyring(t, "pw")
	before := kdfCalls.Load()
	for range 50 {
		pairWith(t, ServerConfig{Key: mk, Mode: ModeGCM, KeySize: KeySize256},
			ClientConfig{Keyring: kr, Mode: ModeGCM, KeySize: KeySize256, Limits: testLimits})
	}
	if got := kdfCalls.Load() - before; got != 1 {
		t.Fatalf("%d KDF runs for 50 connections to one salt, want 1 (the client's first)", got)
	}
	if kr.Derivations() != 1 {
		t.Fatalf("keyring derived %d times", kr.Derivations())
	}
	// a second server (other salt) costs the client exactly one more
	saltB, _ := NewSalt()
	mkB, _ := DeriveMasterKey([]byte("pw"), saltB, testKDF)
	for range 5 {
		pairWith(t, ServerConfig{Key: mkB, Mode: ModeGCM, KeySize: KeySize256},
			ClientConfig{Keyring: kr, Mode: ModeGCM, KeySize: KeySize256, Limits: testLimits})
	}
	if kr.Derivations() != 2 {
		t.Fatalf("keyring derived %d times", kr.Derivations())
	}
}

func TestHandshakeFinishTwice(t *testing.T) {
	sh, _ := NewServerHandshake(ServerConfig{Key: testMaster, Mode: ModeGCM, KeySize: KeySize256})
	ch, _ := NewClientHandshake(ClientConfig{Keyring: testKeyring(t, "correct horse battery staple"), Mode: ModeGCM, KeySize: KeySize256, Limits: testLimits}, sh.Hello())
	_, fin, err := sh.Finish(ch.Hello())
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := sh.Finish(ch.Hello()); err == nil {
		t.Fatal("server Finish twice")
	}
	if _, err := ch.Finish(fin); err != nil {
		t.Fatal(err)
	}
	if _, err := ch.Finish(fin); err == nil {
		t.Fatal("client Finish twice")
	}
}

func TestHandshakeMessagesRoundTrip(t *testing.T) {
	for _, v := range []uint8{HandshakeV1, HandshakeVersion} {
		sh := ServerHello{Version: v, Mode: ModeCTC, KeySize: KeySize192, AcceptModes: ModeSetOf(ModeGCM, ModeCBC), AcceptKeySizes: AllKeySizes,
			KDF: KDFParams{Algorithm: KDFArgon2id, Iterations: 3, MemoryKiB: 1024, Threads: 2}, Salt: bytes.Repeat([]byte{7}, 20)}
		sh.Nonce[0] = 1
		if v == HandshakeVersion {
			sh.Ephemeral[5] = 4
		}
		b, err := sh.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		if len(b) != serverHelloFixed(v)+20 {
			t.Fatalf("v%d ServerHello is %d bytes", v, len(b))
		}
		var got ServerHello
		if err := got.UnmarshalBinary(b); err != nil || got.Version != v || got.Mode != sh.Mode || got.KDF != sh.KDF ||
			!bytes.Equal(got.Salt, sh.Salt) || got.Nonce != sh.Nonce || got.AcceptModes != sh.AcceptModes || got.Ephemeral != sh.Ephemeral {
			t.Fatalf("%+v %v", got, err)
		}
		for n := range b {
			if err := got.UnmarshalBinary(b[:n]); !errors.Is(err, ErrMalformed) {
				t.Fatalf("prefix %d: %v", n, err)
			}
		}
		if err := got.UnmarshalBinary(append(b, 0)); !errors.Is(err, ErrMalformed) {
			t.Fatal(err)
		}
		for _, bv := range []byte{0, 3, 255} {
			bad := bytes.Clone(b)
			bad[4] = bv
			if err := got.UnmarshalBinary(bad); !errors.Is(err, ErrUnsupported) {
				t.Fatal(err)
			}
		}
		ch := ClientHello{Version: v, Mode: ModeGCM, KeySize: KeySize256}
		ch.Confirm[31] = 9
		if v == HandshakeVersion {
			ch.Ephemeral[0] = 8
		}
		cb, err := ch.MarshalBinary()
		if err != nil || len(cb) != clientHelloSize(v) {
			t.Fatalf("v%d ClientHello: %d bytes, %v", v, len(cb), err)
		}
		var gc ClientHello
		if err := gc.UnmarshalBinary(cb); err != nil || gc != ch {
			t.Fatal(err)
		}
		sf := ServerFinished{Version: v}
		sf.Confirm[0] = 3
		fb, _ := sf.MarshalBinary()
		var gf ServerFinished
		if err := gf.UnmarshalBinary(fb); err != nil || gf != sf {
			t.Fatal(err)
		}
	}
	// Version 1 has no room for an ephemeral key: refusing to encode one
	// keeps a caller from believing it was sent.
	sh := ServerHello{Version: HandshakeV1, Mode: ModeGCM, KeySize: KeySize256, KDF: testKDF, Salt: make([]byte, 16)}
	sh.Ephemeral[0] = 1
	if _, err := sh.MarshalBinary(); !errors.Is(err, ErrMalformed) {
		t.Fatalf("v1 ServerHello with an ephemeral key: %v", err)
	}
	ch := ClientHello{Version: HandshakeV1, Mode: ModeGCM, KeySize: KeySize256}
	ch.Ephemeral[0] = 1
	if _, err := ch.MarshalBinary(); !errors.Is(err, ErrMalformed) {
		t.Fatalf("v1 ClientHello with an ephemeral key: %v", err)
	}
	if _, err := (&ServerFinished{Version: 3}).MarshalBinary(); !errors.Is(err, ErrUnsupported) {
		t.Fatalf("version 3: %v", err)
	}
}

func TestParseNames(t *testing.T) {
	for m := ModeECB; m < numModes; m++ {
		if p, err := ParseMode(m.String()); err != nil || p != m {
			t.Fatal(m)
		}
	}
	if m, _ := ParseMode("gcm"); m != ModeGCM {
		t.Fatal("gcm")
	}
	if _, err := ParseMode("c64"); !errors.Is(err, ErrUnsupported) {
		t.Fatal("c64")
	}
	for _, s := range []string{"256", "AES256", "aes-256", "256bits"} {
		if k, err := ParseKeySize(s); err != nil || k != KeySize256 || k.Bits() != 256 || k.Bytes() != 32 {
			t.Fatal(s)
		}
	}
	if _, err := ParseKeySize("512"); err == nil {
		t.Fatal("512")
	}
	if p, _ := ParseProfile(""); p != ProfileSecure {
		t.Fatal("default profile")
	}
	if p, _ := ParseProfile("compat"); p != ProfileCompat || p.String() != "compat" {
		t.Fatal("compat")
	}
	if Mode(9).String() != "Mode(9)" || KeySize(3).Bits() != 0 || ModeSetOf(ModeGCM, ModeCBC).String() != "{CBC,GCM}" {
		t.Fatal("strings")
	}
	if AllKeySizes.String() != "{128,192,256}" {
		t.Fatal(AllKeySizes.String())
	}
}
