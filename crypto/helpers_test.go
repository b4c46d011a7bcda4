package crypto

import (
	"crypto/rand"
	"testing"
)

var testSizes = []int{0, 1, 15, 16, 17, 4 << 10, 1 << 20}

func testPlain(n int) []byte {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return b
}

// testKDF is a deliberately cheap KDF so tests run fast.
var testKDF = KDFParams{Iterations: 1000}

var testLimits = KDFLimits{MinPBKDF2Iterations: 1, MinArgon2MemoryKiB: 8}

var testMaster = func() *MasterKey {
	mk, err := DeriveMasterKey([]byte("correct horse battery staple"), make([]byte, 16), testKDF)
	if err != nil {
		panic(err)
	}
	return mk
}()

func testKeyring(t testing.TB, pass string) *Keyring {
	t.Helper()
	kr, err := NewKeyring([]byte(pass))
	if err != nil {
		t.Fatal(err)
	}
	return kr
}

// pair runs a full handshake and returns (server, client) sessions.
func pair(t testing.TB, m Mode, k KeySize) (*Session, *Session) {
	t.Helper()
	return pairWith(t, ServerConfig{Key: testMaster, Mode: m, KeySize: k, AllowECB: true},
		ClientConfig{Keyring: testKeyring(t, "correct horse battery staple"), Mode: m, KeySize: k, AllowECB: true, Limits: testLimits})
}

func pairWith(t testing.TB, sc ServerConfig, cc ClientConfig) (*Session, *Session) {
	t.Helper()
	return pairStart(t, NewServerHandshake, sc, cc)
}

// pairStart runs a full handshake begun by start (NewServerHandshake or
// NewLegacyServerHandshake). A legacy handshake is made an old server's
// (asOldServer), so that a client allowing the legacy handshake takes it.
func pairStart(t testing.TB, start func(ServerConfig) (*ServerHandshake, error), sc ServerConfig, cc ClientConfig) (*Session, *Session) {
	t.Helper()
	sh, err := start(sc)
	if err != nil {
		t.Fatal(err)
	}
	if sh.Version() == HandshakeV1 {
		asOldServer(t, sh)
	}
	ch, err := NewClientHandshake(cc, sh.Hello())
	if err != nil {
		t.Fatal(err)
	}
	ss, fin, err := sh.Finish(ch.Hello())
	if err != nil {
		t.Fatal(err)
	}
	cs, err := ch.Finish(fin)
	if err != nil {
		t.Fatal(err)
	}
	return ss, cs
}

// asOldServer turns a legacy handshake into one from a server before
// version 2: a version-1 ServerHello whose nonce is random to the end, with
// no downgrade sentinel.
func asOldServer(t testing.TB, sh *ServerHandshake) {
	t.Helper()
	_, _ = rand.Read(sh.nonce[NonceSize-len(downgradeSentinel):])
	c := &sh.cfg
	hello := ServerHello{Version: HandshakeV1, Mode: c.Mode, KeySize: c.KeySize, AcceptModes: c.AcceptModes,
		AcceptKeySizes: c.AcceptKeySizes, KDF: c.Key.params, Salt: c.Key.salt, Nonce: sh.nonce}
	var err error
	if sh.hello, err = hello.MarshalBinary(); err != nil {
		t.Fatal(err)
	}
}
