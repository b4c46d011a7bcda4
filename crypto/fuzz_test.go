package crypto

import (
	"bytes"
	"sync"
	"testing"
)

var fuzzSessions struct {
	once   sync.Once
	server []*Session
	frames [][]byte
}

func fuzzSetup(t testing.TB) {
	fuzzSessions.once.Do(func() {
		for _, m := range []Mode{ModeGCM, ModeCBC, ModeCTC, ModeECB, ModeCFB} {
			ss, cs := pair(t, m, KeySize256)
			fuzzSessions.server = append(fuzzSessions.server, ss)
			for _, p := range []string{"", "a", "hello, world, this is seventeen+"} {
				f, _ := cs.Seal(nil, []byte(p))
				fuzzSessions.frames = append(fuzzSessions.frames, f)
			}
		}
	})
}

func FuzzSecureOpen(f *testing.F) {
	fuzzSetup(f)
	for _, fr := range fuzzSessions.frames {
		f.Add(fr)
	}
	f.Add([]byte("MROM"))
	f.Fuzz(func(t *testing.T, frame []byte) {
		for _, s := range fuzzSessions.server {
			out, err := s.Open(nil, frame)
			if err == nil {
				// Only the genuine frames can ever open: anything else is a forgery.
				genuine := false
				for _, g := range fuzzSessions.frames {
					genuine = genuine || bytes.Equal(g, frame)
				}
				if !genuine {
					t.Fatalf("forged frame accepted by %s session", s.Mode())
				}
			} else if out != nil {
				t.Fatal("plaintext returned with an error")
			}
			if len(out) > len(frame) {
				t.Fatal("output larger than frame")
			}
		}
	})
}

var fuzzCompat = sync.OnceValue(func() *CompatCodec {
	c, err := NewCompatCodec(seedPass, CompatConfig{Mode: ModeCBC, KeySize: KeySize256,
		AcceptModes: AllModes, AcceptKeySizes: AllKeySizes, AllowECB: true})
	if err != nil {
		panic(err)
	}
	return c
})

func FuzzCompatOpen(f *testing.F) {
	for _, v := range seedVectors {
		f.Add(unhex(f, v.hex))
	}
	f.Add([]byte("MROM\x05\x00\x00\x00"))
	f.Fuzz(func(t *testing.T, frame []byte) {
		c := fuzzCompat()
		plain, m, k, err := c.Open(nil, frame)
		if err != nil {
			if plain != nil {
				t.Fatal("plaintext with error")
			}
			return
		}
		// Re-sealing with the frame's IV, mode and key size must give the
		// frame back byte for byte.
		again, err := c.sealWith(nil, plain, [16]byte(frame[16:32]), m, k)
		if err != nil || !bytes.Equal(again, frame) {
			t.Fatalf("re-seal mismatch (%v)", err)
		}
	})
}

// FuzzHandshakeDecode feeds the three handshake decoders (both versions)
// and the handshakes behind them: canonical re-encoding, and nothing
// random ever passes key confirmation.
func FuzzHandshakeDecode(f *testing.F) {
	sc := ServerConfig{Key: testMaster, Mode: ModeGCM, KeySize: KeySize256, AcceptModes: ModeSetOf(ModeCTR), AllowLegacyHandshake: true}
	kr, _ := NewKeyring([]byte("correct horse battery staple"))
	cc := ClientConfig{Keyring: kr, Mode: ModeGCM, KeySize: KeySize256, AcceptModes: AllModes &^ 1, AcceptKeySizes: AllKeySizes,
		Limits:               KDFLimits{MinPBKDF2Iterations: 1, MaxPBKDF2Iterations: 2000, MinArgon2MemoryKiB: 8, MaxArgon2MemoryKiB: 64, MaxArgon2Passes: 1},
		AllowLegacyHandshake: true}
	for _, start := range []func(ServerConfig) (*ServerHandshake, error){NewServerHandshake, NewLegacyServerHandshake} {
		sh, _ := start(sc)
		f.Add(sh.Hello())
		// The legacy hello carries the sentinel, which the client refuses:
		// seed a sentinel-free one too.
		hello := bytes.Clone(sh.Hello())
		hello[serverHelloFixedV1-1] ^= 0xff
		f.Add(hello)
		if ch, err := NewClientHandshake(cc, hello); err == nil {
			f.Add(ch.Hello())
		}
		if ch, err := NewClientHandshake(cc, sh.Hello()); err == nil {
			f.Add(ch.Hello())
			_, fin, _ := sh.Finish(ch.Hello())
			f.Add(fin)
		}
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var s ServerHello
		if s.UnmarshalBinary(b) == nil {
			if e, err := s.MarshalBinary(); err != nil || !bytes.Equal(e, b) {
				t.Fatalf("ServerHello not canonical: %v", err)
			}
			if h, err := NewClientHandshake(cc, b); err == nil && len(h.Hello()) != clientHelloSize(s.Version) {
				t.Fatal("bad ClientHello size")
			}
		}
		var c ClientHello
		if c.UnmarshalBinary(b) == nil {
			if e, err := c.MarshalBinary(); err != nil || !bytes.Equal(e, b) {
				t.Fatalf("ClientHello not canonical: %v", err)
			}
			cfg := sc
			cfg.AcceptModes = AllModes &^ 1
			for _, start := range []func(ServerConfig) (*ServerHandshake, error){NewServerHandshake, NewLegacyServerHandshake} {
				srv, _ := start(cfg)
				if _, _, err := srv.Finish(b); err == nil {
					t.Fatal("random ClientHello passed key confirmation")
				}
			}
		}
		var sf ServerFinished
		if sf.UnmarshalBinary(b) == nil {
			if e, err := sf.MarshalBinary(); err != nil || !bytes.Equal(e, b) {
				t.Fatalf("ServerFinished not canonical: %v", err)
			}
		}
		_, _ = ParseHeader(b)
	})
}
