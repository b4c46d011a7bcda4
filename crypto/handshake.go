package crypto

import (
	"crypto/ecdh"
	"crypto/hmac"
	"crypto/rand"
	"fmt"
	"io"
)

// Handshake (secure profile). Three messages, one and a half round trips:
//
//	server → client  ServerHello    salt, KDF parameters, server nonce,
//	                                server ephemeral X25519 key,
//	                                preferred mode/key size and allow-lists
//	client → server  ClientHello    chosen mode/key size, client nonce,
//	                                client ephemeral X25519 key,
//	                                client key-confirmation tag
//	server → client  ServerFinished server key-confirmation tag
//
// Both sides then hold a Session whose keys come from the passphrase-derived
// master key and the X25519 shared secret, so a passphrase that leaks later
// does not decrypt recorded traffic (forward secrecy). A wrong passphrase is
// detected by the server when it checks the ClientHello (ErrWrongKey), and
// by the client when it checks the ServerFinished. The server never runs the
// slow KDF during a handshake: it holds a MasterKey derived once.
//
// Version 1 of the handshake (no ephemeral keys, no forward secrecy) is
// spoken only by a side configured with AllowLegacyHandshake; otherwise it
// is refused with ErrDowngrade. See docs/ENCRYPTION.md section 2.3.

// downgradeSentinel ends the server nonce of a version-1 ServerHello sent by
// a server that speaks version 2: it ran version 1 only because the client
// did not announce version 2. A version-2 client always announces it, so it
// refuses such a hello: someone removed its announcement. Older clients
// take it for 8 random bytes. (TLS 1.3 protects its downgrades the same
// way, RFC 8446 section 4.1.3.) The nonce is in the transcript, so a man in
// the middle cannot remove the sentinel without failing key confirmation.
var downgradeSentinel = [8]byte{'M', 'R', 'D', 'O', 'W', 'N', 'G', '2'}

// ServerConfig configures the server end. Key is derived once at startup
// (DeriveMasterKey) and shared by every connection.
type ServerConfig struct {
	Key     *MasterKey
	Mode    Mode    // preferred mode
	KeySize KeySize // preferred key size
	// AcceptModes / AcceptKeySizes let a client pick another mode or key
	// size (the server then answers in it). Empty: the client must match.
	AcceptModes    ModeSet
	AcceptKeySizes KeySizeSet
	// AllowECB must be set to use or accept ECB (it leaks plaintext
	// patterns; ModeECB is also the zero Mode).
	AllowECB bool
	// AllowLegacyHandshake lets NewLegacyServerHandshake run handshake
	// version 1 (no forward secrecy) for clients that do not announce
	// version 2. Default false: such clients are refused with ErrDowngrade.
	AllowLegacyHandshake bool

	entropy io.Reader // test hook for nonces and ephemeral keys; nil: crypto/rand
}

// ClientConfig configures the client end.
type ClientConfig struct {
	Keyring *Keyring
	Mode    Mode
	KeySize KeySize
	// AcceptModes / AcceptKeySizes let the client switch to the server's
	// preferred mode or key size when the server does not accept ours.
	AcceptModes    ModeSet
	AcceptKeySizes KeySizeSet
	AllowECB       bool
	Limits         KDFLimits // bounds on the server's KDF parameters
	// AllowLegacyHandshake accepts a server that speaks only handshake
	// version 1 (no forward secrecy). Default false: ErrDowngrade. A
	// version-1 ServerHello from a server that speaks version 2 is refused
	// even so (it means the client's announcement was removed in transit).
	AllowLegacyHandshake bool

	entropy io.Reader // test hook for nonces and ephemeral keys; nil: crypto/rand
}

func checkModes(m Mode, k KeySize, am ModeSet, ak KeySizeSet, allowECB bool) error {
	if !m.Valid() || !k.Valid() || am&^AllModes != 0 || ak&^AllKeySizes != 0 {
		return fmt.Errorf("%w: invalid mode, key size or allow-list", ErrUnsupported)
	}
	if !allowECB && (m == ModeECB || am.Has(ModeECB)) {
		return fmt.Errorf("%w: ECB leaks plaintext patterns and needs AllowECB (is the Mode unset?)", ErrUnsupported)
	}
	return nil
}

// ServerHandshake is the server side of one connection's handshake.
type ServerHandshake struct {
	cfg     ServerConfig
	version uint8
	hello   []byte
	nonce   [NonceSize]byte
	eph     *ecdh.PrivateKey // version 2, until Finish; nil after it
	done    bool
}

// NewServerHandshake starts a version-2 handshake, for a client that
// announced version 2 (see NewLegacyServerHandshake for one that did not):
// send Hello() to the client. Its cost is a 32-byte read from crypto/rand
// and an X25519 key generation; no KDF runs here.
func NewServerHandshake(cfg ServerConfig) (*ServerHandshake, error) {
	return newServerHandshake(cfg, HandshakeVersion)
}

// NewLegacyServerHandshake starts a version-1 handshake (no forward
// secrecy), for a client that did not announce version 2: a marmot client
// from before forward secrecy. Unless cfg.AllowLegacyHandshake is set it
// returns ErrDowngrade. Its ServerHello carries a sentinel at the end of
// the server nonce that current clients refuse, so a man in the middle who
// removes a current client's announcement gains nothing.
func NewLegacyServerHandshake(cfg ServerConfig) (*ServerHandshake, error) {
	if !cfg.AllowLegacyHandshake {
		return nil, fmt.Errorf("%w: the client did not announce handshake version %d (forward secrecy); set AllowLegacyHandshake to accept older clients", ErrDowngrade, HandshakeVersion)
	}
	return newServerHandshake(cfg, HandshakeV1)
}

func newServerHandshake(cfg ServerConfig, v uint8) (*ServerHandshake, error) {
	if cfg.Key == nil {
		return nil, fmt.Errorf("%w: ServerConfig.Key is nil", ErrInvalidKey)
	}
	if err := checkModes(cfg.Mode, cfg.KeySize, cfg.AcceptModes, cfg.AcceptKeySizes, cfg.AllowECB); err != nil {
		return nil, err
	}
	h := &ServerHandshake{cfg: cfg, version: v}
	if err := readEntropy(cfg.entropy, h.nonce[:]); err != nil {
		return nil, err
	}
	sh := ServerHello{Version: v, Mode: cfg.Mode, KeySize: cfg.KeySize, AcceptModes: cfg.AcceptModes,
		AcceptKeySizes: cfg.AcceptKeySizes, KDF: cfg.Key.params, Salt: cfg.Key.salt}
	if v == HandshakeV1 {
		copy(h.nonce[NonceSize-len(downgradeSentinel):], downgradeSentinel[:])
	} else {
		var err error
		if h.eph, err = newEphemeral(cfg.entropy); err != nil {
			return nil, err
		}
		copy(sh.Ephemeral[:], h.eph.PublicKey().Bytes())
	}
	sh.Nonce = h.nonce
	var err error
	if h.hello, err = sh.MarshalBinary(); err != nil {
		return nil, err
	}
	return h, nil
}

// Hello returns the encoded ServerHello to send.
func (h *ServerHandshake) Hello() []byte { return h.hello }

// Version returns the handshake version: HandshakeVersion, or HandshakeV1
// for a legacy handshake (no forward secrecy).
func (h *ServerHandshake) Version() int { return int(h.version) }

// Finish checks the client's ClientHello and returns the server Session and
// the encoded ServerFinished to send. A wrong passphrase (or any change to
// either hello in transit) gives ErrWrongKey; a mode outside the server's
// allow-list gives a *ModeMismatchError; a version-1 ClientHello in a
// version-2 handshake gives ErrDowngrade.
func (h *ServerHandshake) Finish(clientHello []byte) (*Session, []byte, error) {
	if h.done {
		return nil, nil, fmt.Errorf("%w: handshake already finished", ErrUnsupported)
	}
	var ch ClientHello
	if err := ch.UnmarshalBinary(clientHello); err != nil {
		return nil, nil, err
	}
	if ch.Version != h.version {
		return nil, nil, versionMismatch("ClientHello", ch.Version, h.version)
	}
	c := &h.cfg
	if (ch.Mode != c.Mode && !c.AcceptModes.Has(ch.Mode)) || (ch.KeySize != c.KeySize && !c.AcceptKeySizes.Has(ch.KeySize)) {
		return nil, nil, mismatch(c.Mode, c.KeySize, ch.Mode, ch.KeySize)
	}
	dh, err := sharedSecret(h.eph, &ch.Ephemeral)
	if err != nil {
		return nil, nil, err
	}
	ks, err := newKeySchedule(h.version, c.Key, dh, h.hello, clientHello, &ch.Nonce, &h.nonce)
	if err != nil {
		return nil, nil, err
	}
	if !hmac.Equal(ks.clientConfirm(), ch.Confirm[:]) {
		return nil, nil, ErrWrongKey
	}
	sf := ServerFinished{Version: h.version}
	copy(sf.Confirm[:], ks.serverConfirm(ch.Confirm[:]))
	fin, _ := sf.MarshalBinary()
	s, err := ks.session(ch.Mode, ch.KeySize, true)
	if err != nil {
		return nil, nil, err
	}
	h.done, h.eph = true, nil
	return s, fin, nil
}

// ClientHandshake is the client side of one connection's handshake.
type ClientHandshake struct {
	version uint8
	hello   []byte
	ks      *keySchedule
	mode    Mode
	size    KeySize
	done    bool
}

// NewClientHandshake processes the server's ServerHello: it checks the
// handshake version (ErrDowngrade for version 1 unless
// cfg.AllowLegacyHandshake, and always for a version 1 that a version-2
// server was made to send), negotiates the mode and key size, gets the
// master key for the announced salt from the keyring (stretching the
// passphrase only for a salt not seen before), runs its half of the X25519
// exchange and prepares the ClientHello to send (Hello()).
func NewClientHandshake(cfg ClientConfig, serverHello []byte) (*ClientHandshake, error) {
	if cfg.Keyring == nil {
		return nil, fmt.Errorf("%w: ClientConfig.Keyring is nil", ErrInvalidKey)
	}
	if err := checkModes(cfg.Mode, cfg.KeySize, cfg.AcceptModes, cfg.AcceptKeySizes, cfg.AllowECB); err != nil {
		return nil, err
	}
	var sh ServerHello
	if err := sh.UnmarshalBinary(serverHello); err != nil {
		return nil, err
	}
	if sh.Version == HandshakeV1 {
		if [8]byte(sh.Nonce[NonceSize-len(downgradeSentinel):]) == downgradeSentinel {
			return nil, fmt.Errorf("%w: the server speaks handshake version %d but was told this client does not (was the announcement removed in transit?)", ErrDowngrade, HandshakeVersion)
		}
		if !cfg.AllowLegacyHandshake {
			return nil, fmt.Errorf("%w: the server speaks only handshake version 1 (no forward secrecy); set AllowLegacyHandshake to accept it", ErrDowngrade)
		}
	}
	mode, ok1 := negotiate(cfg.Mode, sh.Mode, sh.AcceptModes.Has(cfg.Mode), cfg.AcceptModes.Has(sh.Mode))
	size, ok2 := negotiate(cfg.KeySize, sh.KeySize, sh.AcceptKeySizes.Has(cfg.KeySize), cfg.AcceptKeySizes.Has(sh.KeySize))
	if !ok1 || !ok2 {
		return nil, mismatch(cfg.Mode, cfg.KeySize, sh.Mode, sh.KeySize)
	}
	if mode == ModeECB && !cfg.AllowECB {
		return nil, mismatch(cfg.Mode, cfg.KeySize, sh.Mode, sh.KeySize)
	}
	if err := cfg.Limits.check(sh.KDF); err != nil {
		return nil, err
	}
	mk, err := cfg.Keyring.MasterKey(sh.Salt, sh.KDF)
	if err != nil {
		return nil, err
	}
	ch := ClientHello{Version: sh.Version, Mode: mode, KeySize: size}
	if err := readEntropy(cfg.entropy, ch.Nonce[:]); err != nil {
		return nil, err
	}
	var eph *ecdh.PrivateKey
	if sh.Version != HandshakeV1 {
		if eph, err = newEphemeral(cfg.entropy); err != nil {
			return nil, err
		}
		copy(ch.Ephemeral[:], eph.PublicKey().Bytes())
	}
	dh, err := sharedSecret(eph, &sh.Ephemeral)
	if err != nil {
		return nil, err
	}
	hello, _ := ch.MarshalBinary() // confirm tag is filled in below
	ks, err := newKeySchedule(sh.Version, mk, dh, serverHello, hello, &ch.Nonce, &sh.Nonce)
	if err != nil {
		return nil, err
	}
	copy(hello[len(hello)-ConfirmSize:], ks.clientConfirm())
	return &ClientHandshake{version: sh.Version, hello: hello, ks: ks, mode: mode, size: size}, nil
}

// Hello returns the encoded ClientHello to send.
func (h *ClientHandshake) Hello() []byte { return h.hello }

// Version returns the handshake version the server chose: HandshakeVersion,
// or HandshakeV1 (no forward secrecy) with AllowLegacyHandshake.
func (h *ClientHandshake) Version() int { return int(h.version) }

// Mode returns the negotiated mode (the server will answer in it).
func (h *ClientHandshake) Mode() Mode { return h.mode }

// KeySize returns the negotiated key size.
func (h *ClientHandshake) KeySize() KeySize { return h.size }

// Finish checks the server's ServerFinished and returns the client Session.
// ErrWrongKey means the server does not know the passphrase (or the
// handshake was tampered with).
func (h *ClientHandshake) Finish(serverFinished []byte) (*Session, error) {
	if h.done {
		return nil, fmt.Errorf("%w: handshake already finished", ErrUnsupported)
	}
	var sf ServerFinished
	if err := sf.UnmarshalBinary(serverFinished); err != nil {
		return nil, err
	}
	if sf.Version != h.version {
		return nil, versionMismatch("ServerFinished", sf.Version, h.version)
	}
	if !hmac.Equal(h.ks.serverConfirm(h.hello[len(h.hello)-ConfirmSize:]), sf.Confirm[:]) {
		return nil, ErrWrongKey
	}
	s, err := h.ks.session(h.mode, h.size, false)
	if err != nil {
		return nil, err
	}
	h.done = true
	return s, nil
}

func versionMismatch(msg string, got, want uint8) error {
	if got < want {
		return fmt.Errorf("%w: %s version %d in a version %d handshake", ErrDowngrade, msg, got, want)
	}
	return fmt.Errorf("%w: %s version %d in a version %d handshake", ErrUnsupported, msg, got, want)
}

// readEntropy fills b from r, or from crypto/rand when r is nil.
func readEntropy(r io.Reader, b []byte) error {
	if r == nil {
		_, err := rand.Read(b)
		return err
	}
	_, err := io.ReadFull(r, b)
	return err
}

// newEphemeral makes a fresh X25519 key pair. Any 32 bytes are a valid
// X25519 private key (RFC 7748 clamps them), which lets the test hook fix
// the keys for known-answer tests.
func newEphemeral(r io.Reader) (*ecdh.PrivateKey, error) {
	if r == nil {
		return ecdh.X25519().GenerateKey(rand.Reader)
	}
	var b [32]byte
	if _, err := io.ReadFull(r, b[:]); err != nil {
		return nil, err
	}
	defer clear(b[:])
	return ecdh.X25519().NewPrivateKey(b[:])
}

// sharedSecret is X25519(priv, peer), or nil for version 1 (priv nil). A
// peer key of low order (the all-zero shared secret) is ErrMalformed.
func sharedSecret(priv *ecdh.PrivateKey, peer *[PublicKeySize]byte) ([]byte, error) {
	if priv == nil {
		return nil, nil
	}
	pub, err := ecdh.X25519().NewPublicKey(peer[:])
	if err == nil {
		var dh []byte
		if dh, err = priv.ECDH(pub); err == nil {
			return dh, nil
		}
	}
	return nil, fmt.Errorf("%w: invalid X25519 public key", ErrMalformed)
}
