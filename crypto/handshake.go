package crypto

import (
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
)

// Handshake (secure profile). Three messages, one and a half round trips:
//
//	server → client  ServerHello    salt, KDF parameters, server nonce,
//	                                preferred mode/key size and allow-lists
//	client → server  ClientHello    chosen mode/key size, client nonce,
//	                                client key-confirmation tag
//	server → client  ServerFinished server key-confirmation tag
//
// Both sides then hold a Session. A wrong passphrase is detected by the
// server when it checks the ClientHello (ErrWrongKey), and by the client
// when it checks the ServerFinished. The server never runs the slow KDF
// during a handshake: it holds a MasterKey derived once.
const (
	// NonceSize is the size of each side's handshake nonce.
	NonceSize = 32
	// ConfirmSize is the size of a key-confirmation tag.
	ConfirmSize = 32
	// HandshakeVersion is the version byte of the three messages.
	HandshakeVersion = 1

	serverHelloFixed   = 56
	clientHelloSize    = 72
	serverFinishedSize = 40
)

var (
	serverHelloMagic    = [4]byte{'M', 'R', 'S', 'H'}
	clientHelloMagic    = [4]byte{'M', 'R', 'C', 'H'}
	serverFinishedMagic = [4]byte{'M', 'R', 'S', 'F'}
)

// ServerHello is the server's first message. Wire format (LE integers):
//
//	0  4  "MRSH"          24 32 server nonce
//	4  1  version (1)     56 n  salt
//	5  1  mode
//	6  1  key size
//	7  1  KDF algorithm
//	8  2  accepted modes (bit i = mode i)
//	10 1  accepted key sizes (bit i = key size i)
//	11 1  salt length n (16..64)
//	12 4  iterations (PBKDF2) or passes (Argon2id)
//	16 4  Argon2id memory in KiB (0 for PBKDF2)
//	20 1  Argon2id threads (0 for PBKDF2)
//	21 3  reserved, zero
type ServerHello struct {
	Mode           Mode
	KeySize        KeySize
	AcceptModes    ModeSet
	AcceptKeySizes KeySizeSet
	KDF            KDFParams
	Salt           []byte
	Nonce          [NonceSize]byte
}

// MarshalBinary encodes m.
func (m *ServerHello) MarshalBinary() ([]byte, error) {
	if !m.Mode.Valid() || !m.KeySize.Valid() || len(m.Salt) < MinSaltSize || len(m.Salt) > MaxSaltSize ||
		m.AcceptModes&^AllModes != 0 || m.AcceptKeySizes&^AllKeySizes != 0 {
		return nil, fmt.Errorf("%w: invalid ServerHello", ErrMalformed)
	}
	if err := m.KDF.validate(); err != nil {
		return nil, err
	}
	b := make([]byte, serverHelloFixed+len(m.Salt))
	copy(b, serverHelloMagic[:])
	b[4], b[5], b[6], b[7] = HandshakeVersion, byte(m.Mode), byte(m.KeySize), byte(m.KDF.Algorithm)
	binary.LittleEndian.PutUint16(b[8:], uint16(m.AcceptModes))
	b[10], b[11] = byte(m.AcceptKeySizes), byte(len(m.Salt))
	putU32(b[12:], m.KDF.Iterations)
	putU32(b[16:], m.KDF.MemoryKiB)
	b[20] = m.KDF.Threads
	copy(b[24:], m.Nonce[:])
	copy(b[56:], m.Salt)
	return b, nil
}

// UnmarshalBinary decodes and validates b (exact length, no trailing bytes).
func (m *ServerHello) UnmarshalBinary(b []byte) error {
	if err := msgPrefix(b, serverHelloMagic, serverHelloFixed, "ServerHello"); err != nil {
		return err
	}
	n := int(b[11])
	if n < MinSaltSize || n > MaxSaltSize {
		return fmt.Errorf("%w: ServerHello salt length %d", ErrMalformed, n)
	}
	if len(b) != serverHelloFixed+n {
		return fmt.Errorf("%w: ServerHello is %d bytes, want %d", ErrMalformed, len(b), serverHelloFixed+n)
	}
	if b[21]|b[22]|b[23] != 0 {
		return fmt.Errorf("%w: ServerHello reserved bytes set", ErrMalformed)
	}
	am, ak := ModeSet(binary.LittleEndian.Uint16(b[8:])), KeySizeSet(b[10])
	if am&^AllModes != 0 || ak&^AllKeySizes != 0 {
		return fmt.Errorf("%w: ServerHello allow-list has unknown bits", ErrMalformed)
	}
	mode, ks, err := modeAndSize(b[5], b[6])
	if err != nil {
		return err
	}
	kdf := KDFParams{Algorithm: KDFAlgorithm(b[7]), Iterations: getU32(b[12:]), MemoryKiB: getU32(b[16:]), Threads: b[20]}
	if err := kdf.validate(); err != nil {
		return err
	}
	*m = ServerHello{Mode: mode, KeySize: ks, AcceptModes: am, AcceptKeySizes: ak, KDF: kdf,
		Salt: append([]byte(nil), b[56:]...)}
	copy(m.Nonce[:], b[24:56])
	return nil
}

// ClientHello is the client's answer. Wire format:
//
//	0 4 "MRCH"   5 1 mode      7 1 reserved, zero   40 32 confirmation tag
//	4 1 version  6 1 key size  8 32 client nonce
type ClientHello struct {
	Mode    Mode
	KeySize KeySize
	Nonce   [NonceSize]byte
	Confirm [ConfirmSize]byte
}

// MarshalBinary encodes m.
func (m *ClientHello) MarshalBinary() ([]byte, error) {
	if !m.Mode.Valid() || !m.KeySize.Valid() {
		return nil, fmt.Errorf("%w: invalid ClientHello", ErrMalformed)
	}
	b := make([]byte, clientHelloSize)
	copy(b, clientHelloMagic[:])
	b[4], b[5], b[6] = HandshakeVersion, byte(m.Mode), byte(m.KeySize)
	copy(b[8:], m.Nonce[:])
	copy(b[40:], m.Confirm[:])
	return b, nil
}

// UnmarshalBinary decodes and validates b.
func (m *ClientHello) UnmarshalBinary(b []byte) error {
	if err := msgPrefix(b, clientHelloMagic, clientHelloSize, "ClientHello"); err != nil {
		return err
	}
	if len(b) != clientHelloSize || b[7] != 0 {
		return fmt.Errorf("%w: ClientHello length or reserved byte", ErrMalformed)
	}
	mode, ks, err := modeAndSize(b[5], b[6])
	if err != nil {
		return err
	}
	*m = ClientHello{Mode: mode, KeySize: ks}
	copy(m.Nonce[:], b[8:40])
	copy(m.Confirm[:], b[40:])
	return nil
}

// ServerFinished is the server's key confirmation. Wire format:
//
//	0 4 "MRSF"   4 1 version   5 3 reserved, zero   8 32 confirmation tag
type ServerFinished struct {
	Confirm [ConfirmSize]byte
}

// MarshalBinary encodes m.
func (m *ServerFinished) MarshalBinary() ([]byte, error) {
	b := make([]byte, serverFinishedSize)
	copy(b, serverFinishedMagic[:])
	b[4] = HandshakeVersion
	copy(b[8:], m.Confirm[:])
	return b, nil
}

// UnmarshalBinary decodes and validates b.
func (m *ServerFinished) UnmarshalBinary(b []byte) error {
	if err := msgPrefix(b, serverFinishedMagic, serverFinishedSize, "ServerFinished"); err != nil {
		return err
	}
	if len(b) != serverFinishedSize || b[5]|b[6]|b[7] != 0 {
		return fmt.Errorf("%w: ServerFinished length or reserved bytes", ErrMalformed)
	}
	copy(m.Confirm[:], b[8:])
	return nil
}

func msgPrefix(b []byte, magic [4]byte, minLen int, name string) error {
	if len(b) < minLen {
		return fmt.Errorf("%w: %s is %d bytes, want at least %d", ErrMalformed, name, len(b), minLen)
	}
	if [4]byte(b[:4]) != magic {
		return fmt.Errorf("%w: not a %s", ErrMalformed, name)
	}
	if b[4] != HandshakeVersion {
		return fmt.Errorf("%w: %s version %d", ErrUnsupported, name, b[4])
	}
	return nil
}

func modeAndSize(m, k byte) (Mode, KeySize, error) {
	if !Mode(m).Valid() || !KeySize(k).Valid() {
		return 0, 0, fmt.Errorf("%w: mode %d / key size %d", ErrUnsupported, m, k)
	}
	return Mode(m), KeySize(k), nil
}

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
	cfg   ServerConfig
	hello []byte
	nonce [NonceSize]byte
	done  bool
}

// NewServerHandshake starts a handshake: send Hello() to the client. Its
// cost is one 32-byte read from crypto/rand; no KDF runs here.
func NewServerHandshake(cfg ServerConfig) (*ServerHandshake, error) {
	if cfg.Key == nil {
		return nil, fmt.Errorf("%w: ServerConfig.Key is nil", ErrInvalidKey)
	}
	if err := checkModes(cfg.Mode, cfg.KeySize, cfg.AcceptModes, cfg.AcceptKeySizes, cfg.AllowECB); err != nil {
		return nil, err
	}
	h := &ServerHandshake{cfg: cfg}
	if _, err := rand.Read(h.nonce[:]); err != nil {
		return nil, err
	}
	sh := ServerHello{Mode: cfg.Mode, KeySize: cfg.KeySize, AcceptModes: cfg.AcceptModes,
		AcceptKeySizes: cfg.AcceptKeySizes, KDF: cfg.Key.params, Salt: cfg.Key.salt, Nonce: h.nonce}
	var err error
	if h.hello, err = sh.MarshalBinary(); err != nil {
		return nil, err
	}
	return h, nil
}

// Hello returns the encoded ServerHello to send.
func (h *ServerHandshake) Hello() []byte { return h.hello }

// Finish checks the client's ClientHello and returns the server Session and
// the encoded ServerFinished to send. A wrong passphrase (or any change to
// either hello in transit) gives ErrWrongKey; a mode outside the server's
// allow-list gives a *ModeMismatchError.
func (h *ServerHandshake) Finish(clientHello []byte) (*Session, []byte, error) {
	if h.done {
		return nil, nil, fmt.Errorf("%w: handshake already finished", ErrUnsupported)
	}
	var ch ClientHello
	if err := ch.UnmarshalBinary(clientHello); err != nil {
		return nil, nil, err
	}
	c := &h.cfg
	if (ch.Mode != c.Mode && !c.AcceptModes.Has(ch.Mode)) || (ch.KeySize != c.KeySize && !c.AcceptKeySizes.Has(ch.KeySize)) {
		return nil, nil, mismatch(c.Mode, c.KeySize, ch.Mode, ch.KeySize)
	}
	ks, err := newKeySchedule(c.Key, h.hello, clientHello, &ch.Nonce, &h.nonce)
	if err != nil {
		return nil, nil, err
	}
	if !hmac.Equal(ks.clientConfirm(), ch.Confirm[:]) {
		return nil, nil, ErrWrongKey
	}
	var sf ServerFinished
	copy(sf.Confirm[:], ks.serverConfirm(ch.Confirm[:]))
	fin, _ := sf.MarshalBinary()
	s, err := ks.session(ch.Mode, ch.KeySize, true)
	if err != nil {
		return nil, nil, err
	}
	h.done = true
	return s, fin, nil
}

// ClientHandshake is the client side of one connection's handshake.
type ClientHandshake struct {
	hello []byte
	ks    *keySchedule
	mode  Mode
	size  KeySize
	done  bool
}

// NewClientHandshake processes the server's ServerHello: it negotiates the
// mode and key size, gets the master key for the announced salt from the
// keyring (stretching the passphrase only for a salt not seen before), and
// prepares the ClientHello to send (Hello()).
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
	ch := ClientHello{Mode: mode, KeySize: size}
	if _, err := rand.Read(ch.Nonce[:]); err != nil {
		return nil, err
	}
	hello, _ := ch.MarshalBinary() // confirm tag is filled in below
	ks, err := newKeySchedule(mk, serverHello, hello, &ch.Nonce, &sh.Nonce)
	if err != nil {
		return nil, err
	}
	copy(hello[clientHelloSize-ConfirmSize:], ks.clientConfirm())
	return &ClientHandshake{hello: hello, ks: ks, mode: mode, size: size}, nil
}

// Hello returns the encoded ClientHello to send.
func (h *ClientHandshake) Hello() []byte { return h.hello }

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
	if !hmac.Equal(h.ks.serverConfirm(h.hello[clientHelloSize-ConfirmSize:]), sf.Confirm[:]) {
		return nil, ErrWrongKey
	}
	s, err := h.ks.session(h.mode, h.size, false)
	if err != nil {
		return nil, err
	}
	h.done = true
	return s, nil
}

// keySchedule: PRK = HKDF-Extract(SHA-256, salt = clientNonce ‖ serverNonce,
// IKM = master key); th = SHA-256(ServerHello ‖ ClientHello minus its tag).
type keySchedule struct {
	prk []byte
	th  [sha256.Size]byte
}

func newKeySchedule(mk *MasterKey, serverHello, clientHello []byte, cn, sn *[NonceSize]byte) (*keySchedule, error) {
	salt := make([]byte, 0, 2*NonceSize)
	salt = append(append(salt, cn[:]...), sn[:]...)
	prk, err := hkdf.Extract(sha256.New, mk.key[:], salt)
	if err != nil {
		return nil, err
	}
	th := sha256.New()
	th.Write(serverHello)
	th.Write(clientHello[:clientHelloSize-ConfirmSize])
	ks := &keySchedule{prk: prk}
	th.Sum(ks.th[:0])
	return ks, nil
}

func (k *keySchedule) confirm(label string, extra []byte) []byte {
	key, err := hkdf.Expand(sha256.New, k.prk, label+string(k.th[:]), 32)
	if err != nil {
		panic(err) // only for absurd lengths
	}
	m := hmac.New(sha256.New, key)
	m.Write(k.th[:])
	m.Write(extra)
	clear(key)
	return m.Sum(nil)
}

func (k *keySchedule) clientConfirm() []byte { return k.confirm("marmot v1 confirm c2s", nil) }
func (k *keySchedule) serverConfirm(clientTag []byte) []byte {
	return k.confirm("marmot v1 confirm s2c", clientTag)
}

func (k *keySchedule) session(m Mode, size KeySize, server bool) (*Session, error) {
	c2s, err := newDirection(k.prk, "marmot v1 c2s", k.th[:], m, size, !server)
	if err != nil {
		return nil, err
	}
	s2c, err := newDirection(k.prk, "marmot v1 s2c", k.th[:], m, size, server)
	if err != nil {
		return nil, err
	}
	clear(k.prk)
	s := &Session{mode: m, size: size, server: server, send: c2s, recv: s2c}
	if server {
		s.send, s.recv = s2c, c2s
	}
	return s, nil
}
