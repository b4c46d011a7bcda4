package crypto_test

import (
	"errors"
	"fmt"

	mcrypto "github.com/marmotws/marmot/crypto"
)

// A secure-profile connection: the server stretches its passphrase once at
// startup; each connection then costs a three-message handshake and HKDF.
func Example() {
	// Server startup (once per process; the salt is shared by a cluster).
	salt, _ := mcrypto.NewSalt()
	master, err := mcrypto.DeriveMasterKey([]byte("s3cret passphrase"), salt,
		mcrypto.KDFParams{Iterations: 100_000}) // 0 → 600 000
	if err != nil {
		panic(err)
	}
	server := mcrypto.ServerConfig{Key: master, Mode: mcrypto.ModeGCM, KeySize: mcrypto.KeySize256}

	// Client startup: a keyring stretches once per salt it sees.
	keyring, _ := mcrypto.NewKeyring([]byte("s3cret passphrase"))
	client := mcrypto.ClientConfig{Keyring: keyring, Mode: mcrypto.ModeGCM, KeySize: mcrypto.KeySize256}

	// Per connection.
	sh, _ := mcrypto.NewServerHandshake(server)
	ch, err := mcrypto.NewClientHandshake(client, sh.Hello()) // ServerHello →
	if err != nil {
		panic(err)
	}
	srv, finished, err := sh.Finish(ch.Hello()) // ← ClientHello
	if err != nil {
		panic(err) // errors.Is(err, ErrWrongKey) on a wrong passphrase
	}
	cli, err := ch.Finish(finished) // ServerFinished →
	if err != nil {
		panic(err)
	}

	frame, _ := cli.Seal(nil, []byte("hello"))
	plain, err := srv.Open(nil, frame)
	fmt.Println(string(plain), err)

	_, err = srv.Open(nil, frame) // the same frame again
	fmt.Println(errors.Is(err, mcrypto.ErrReplay))
	// Output:
	// hello <nil>
	// true
}

// The compat profile talks to the Delphi seed components. Every frame is
// header ‖ random IV ‖ PKCS#7-padded ciphertext, with no authentication.
func ExampleCompatCodec() {
	codec, err := mcrypto.NewCompatCodec("MySecretKey123!", mcrypto.CompatConfig{
		Mode: mcrypto.ModeCBC, KeySize: mcrypto.KeySize256, // the seed's defaults
		Salt: mcrypto.SaltCurrent,
		// accept whatever (non-ECB) mode a peer announces, like seed HEAD
		AcceptModes:    mcrypto.AllModes &^ mcrypto.ModeSetOf(mcrypto.ModeECB),
		AcceptKeySizes: mcrypto.AllKeySizes,
	})
	if err != nil {
		panic(err)
	}
	frame, _ := codec.SealWithIV(nil, []byte("The quick brown fox jumps over the lazy dog"),
		[16]byte{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15})
	fmt.Printf("%x\n", frame[:16])
	plain, mode, size, err := codec.Open(nil, frame)
	fmt.Println(string(plain), mode, size, err)

	_, _, _, err = codec.Open(nil, []byte(`{"type":0}`))
	fmt.Println(err)
	// Output:
	// 4d524f4d010000000200000000000000
	// The quick brown fox jumps over the lazy dog CBC 256 <nil>
	// crypto: not an encrypted frame
}

func ExampleParseHeader() {
	h, err := mcrypto.ParseHeader([]byte("MROM\x05\x00\x00\x00\x02\x00\x00\x00\x01\x00\x00\x00"))
	fmt.Println(h.Mode, h.KeySize, h.Profile(), err)
	// Output: GCM 256 secure <nil>
}

func ExampleModeMismatchError() {
	gcm, _ := mcrypto.NewCompatCodec("pw", mcrypto.CompatConfig{Mode: mcrypto.ModeGCM, KeySize: mcrypto.KeySize128})
	cbc, _ := mcrypto.NewCompatCodec("pw", mcrypto.CompatConfig{Mode: mcrypto.ModeCBC, KeySize: mcrypto.KeySize256})
	frame, _ := gcm.Seal(nil, []byte("hi"))
	_, _, _, err := cbc.Open(nil, frame)
	var mm *mcrypto.ModeMismatchError
	if errors.As(err, &mm) {
		fmt.Println(mm.LocalMode, mm.LocalKeySize, "vs", mm.PeerMode, mm.PeerKeySize)
	}
	fmt.Println(err)
	// Output:
	// CBC 256 vs GCM 128
	// crypto: AES mode or key size mismatch: local AES-256-CBC, peer AES-128-GCM (not in the allow-list)
}

// A server picks the handshake by what the client announced in its upgrade
// request (marmot.HeaderHandshake): NewServerHandshake for a current client,
// NewLegacyServerHandshake for one from before forward secrecy, which is
// refused unless the server allows it.
func ExampleNewLegacyServerHandshake() {
	salt, _ := mcrypto.NewSalt()
	master, _ := mcrypto.DeriveMasterKey([]byte("s3cret passphrase"), salt, mcrypto.KDFParams{Iterations: 100_000})
	server := mcrypto.ServerConfig{Key: master, Mode: mcrypto.ModeGCM, KeySize: mcrypto.KeySize256}

	_, err := mcrypto.NewLegacyServerHandshake(server)
	fmt.Println(errors.Is(err, mcrypto.ErrDowngrade))

	server.AllowLegacyHandshake = true // while old clients remain
	hs, err := mcrypto.NewLegacyServerHandshake(server)
	fmt.Println(hs.Version(), err)

	// A current client refuses that legacy hello whatever its settings: a
	// server that speaks version 2 sends it only if the client's
	// announcement was removed in transit.
	keyring, _ := mcrypto.NewKeyring([]byte("s3cret passphrase"))
	_, err = mcrypto.NewClientHandshake(mcrypto.ClientConfig{Keyring: keyring, Mode: mcrypto.ModeGCM,
		KeySize: mcrypto.KeySize256, AllowLegacyHandshake: true}, hs.Hello())
	fmt.Println(errors.Is(err, mcrypto.ErrDowngrade))
	// Output:
	// true
	// 1 <nil>
	// true
}
