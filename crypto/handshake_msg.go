package crypto

import (
	"encoding/binary"
	"fmt"
)

// The three handshake messages of the secure profile and their decoders.
// Every decoder requires the exact length, zero reserved bytes and known
// values, allocates at most the salt, and is fuzzed (FuzzHandshakeDecode).
// Version 2 adds an X25519 ephemeral public key to each hello; version 1
// (no forward secrecy) is decoded so that a peer that allows it can still
// talk to older peers. The layouts are in docs/ENCRYPTION.md section 2.3.
const (
	// NonceSize is the size of each side's handshake nonce.
	NonceSize = 32
	// ConfirmSize is the size of a key-confirmation tag.
	ConfirmSize = 32
	// PublicKeySize is the size of an X25519 ephemeral public key.
	PublicKeySize = 32
	// HandshakeVersion is the current handshake version: 2, with an
	// ephemeral X25519 exchange, so that a passphrase that leaks later does
	// not decrypt recorded traffic (forward secrecy).
	HandshakeVersion = 2
	// HandshakeV1 is the first handshake, without forward secrecy. A peer
	// uses it only with AllowLegacyHandshake, to talk to older peers.
	HandshakeV1 = 1

	serverHelloFixedV1 = 56
	serverHelloFixedV2 = serverHelloFixedV1 + PublicKeySize
	clientHelloSizeV1  = 72
	clientHelloSizeV2  = clientHelloSizeV1 + PublicKeySize
	serverFinishedSize = 40
)

var (
	serverHelloMagic    = [4]byte{'M', 'R', 'S', 'H'}
	clientHelloMagic    = [4]byte{'M', 'R', 'C', 'H'}
	serverFinishedMagic = [4]byte{'M', 'R', 'S', 'F'}
)

// version returns v, or HandshakeVersion for the zero value.
func version(v uint8) (uint8, error) {
	switch v {
	case 0:
		return HandshakeVersion, nil
	case HandshakeV1, HandshakeVersion:
		return v, nil
	}
	return 0, fmt.Errorf("%w: handshake version %d", ErrUnsupported, v)
}

func serverHelloFixed(v uint8) int {
	if v == HandshakeV1 {
		return serverHelloFixedV1
	}
	return serverHelloFixedV2
}

func clientHelloSize(v uint8) int {
	if v == HandshakeV1 {
		return clientHelloSizeV1
	}
	return clientHelloSizeV2
}

// ServerHello is the server's first message. Wire format (LE integers):
//
//	0  4  "MRSH"          24 32 server nonce
//	4  1  version (1, 2)  56 32 server ephemeral X25519 public key (version 2 only)
//	5  1  mode            88 n  salt (at 56 in version 1)
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
	// Version is HandshakeVersion or HandshakeV1; zero means
	// HandshakeVersion.
	Version        uint8
	Mode           Mode
	KeySize        KeySize
	AcceptModes    ModeSet
	AcceptKeySizes KeySizeSet
	KDF            KDFParams
	Salt           []byte
	Nonce          [NonceSize]byte
	// Ephemeral is the server's X25519 public key (version 2 only; it must
	// be zero in version 1).
	Ephemeral [PublicKeySize]byte
}

// MarshalBinary encodes m.
func (m *ServerHello) MarshalBinary() ([]byte, error) {
	v, err := version(m.Version)
	if err != nil {
		return nil, err
	}
	if !m.Mode.Valid() || !m.KeySize.Valid() || len(m.Salt) < MinSaltSize || len(m.Salt) > MaxSaltSize ||
		m.AcceptModes&^AllModes != 0 || m.AcceptKeySizes&^AllKeySizes != 0 ||
		(v == HandshakeV1 && m.Ephemeral != [PublicKeySize]byte{}) {
		return nil, fmt.Errorf("%w: invalid ServerHello", ErrMalformed)
	}
	if err := m.KDF.validate(); err != nil {
		return nil, err
	}
	fixed := serverHelloFixed(v)
	b := make([]byte, fixed+len(m.Salt))
	copy(b, serverHelloMagic[:])
	b[4], b[5], b[6], b[7] = v, byte(m.Mode), byte(m.KeySize), byte(m.KDF.Algorithm)
	binary.LittleEndian.PutUint16(b[8:], uint16(m.AcceptModes))
	b[10], b[11] = byte(m.AcceptKeySizes), byte(len(m.Salt))
	putU32(b[12:], m.KDF.Iterations)
	putU32(b[16:], m.KDF.MemoryKiB)
	b[20] = m.KDF.Threads
	copy(b[24:], m.Nonce[:])
	if v != HandshakeV1 {
		copy(b[serverHelloFixedV1:], m.Ephemeral[:])
	}
	copy(b[fixed:], m.Salt)
	return b, nil
}

// UnmarshalBinary decodes and validates b (exact length, no trailing bytes).
func (m *ServerHello) UnmarshalBinary(b []byte) error {
	v, err := msgPrefix(b, serverHelloMagic, serverHelloFixedV1, "ServerHello")
	if err != nil {
		return err
	}
	fixed := serverHelloFixed(v)
	n := int(b[11])
	if n < MinSaltSize || n > MaxSaltSize {
		return fmt.Errorf("%w: ServerHello salt length %d", ErrMalformed, n)
	}
	if len(b) != fixed+n {
		return fmt.Errorf("%w: ServerHello is %d bytes, want %d", ErrMalformed, len(b), fixed+n)
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
	*m = ServerHello{Version: v, Mode: mode, KeySize: ks, AcceptModes: am, AcceptKeySizes: ak, KDF: kdf,
		Salt: append([]byte(nil), b[fixed:]...)}
	copy(m.Nonce[:], b[24:56])
	if v != HandshakeV1 {
		copy(m.Ephemeral[:], b[serverHelloFixedV1:fixed])
	}
	return nil
}

// ClientHello is the client's answer. Wire format:
//
//	0 4 "MRCH"           7 1 reserved, zero     40 32 client ephemeral X25519 public key (version 2 only)
//	4 1 version (1, 2)   8 32 client nonce       72 32 confirmation tag (at 40 in version 1)
//	5 1 mode
//	6 1 key size
type ClientHello struct {
	// Version is HandshakeVersion or HandshakeV1; zero means
	// HandshakeVersion.
	Version   uint8
	Mode      Mode
	KeySize   KeySize
	Nonce     [NonceSize]byte
	Ephemeral [PublicKeySize]byte // version 2 only; zero in version 1
	Confirm   [ConfirmSize]byte
}

// MarshalBinary encodes m.
func (m *ClientHello) MarshalBinary() ([]byte, error) {
	v, err := version(m.Version)
	if err != nil {
		return nil, err
	}
	if !m.Mode.Valid() || !m.KeySize.Valid() || (v == HandshakeV1 && m.Ephemeral != [PublicKeySize]byte{}) {
		return nil, fmt.Errorf("%w: invalid ClientHello", ErrMalformed)
	}
	size := clientHelloSize(v)
	b := make([]byte, size)
	copy(b, clientHelloMagic[:])
	b[4], b[5], b[6] = v, byte(m.Mode), byte(m.KeySize)
	copy(b[8:], m.Nonce[:])
	if v != HandshakeV1 {
		copy(b[40:], m.Ephemeral[:])
	}
	copy(b[size-ConfirmSize:], m.Confirm[:])
	return b, nil
}

// UnmarshalBinary decodes and validates b.
func (m *ClientHello) UnmarshalBinary(b []byte) error {
	v, err := msgPrefix(b, clientHelloMagic, clientHelloSizeV1, "ClientHello")
	if err != nil {
		return err
	}
	size := clientHelloSize(v)
	if len(b) != size || b[7] != 0 {
		return fmt.Errorf("%w: ClientHello length or reserved byte", ErrMalformed)
	}
	mode, ks, err := modeAndSize(b[5], b[6])
	if err != nil {
		return err
	}
	*m = ClientHello{Version: v, Mode: mode, KeySize: ks}
	copy(m.Nonce[:], b[8:40])
	if v != HandshakeV1 {
		copy(m.Ephemeral[:], b[40:72])
	}
	copy(m.Confirm[:], b[size-ConfirmSize:])
	return nil
}

// ServerFinished is the server's key confirmation. Wire format (the same
// in both versions):
//
//	0 4 "MRSF"   4 1 version (1, 2)   5 3 reserved, zero   8 32 confirmation tag
type ServerFinished struct {
	// Version is HandshakeVersion or HandshakeV1; zero means
	// HandshakeVersion.
	Version uint8
	Confirm [ConfirmSize]byte
}

// MarshalBinary encodes m.
func (m *ServerFinished) MarshalBinary() ([]byte, error) {
	v, err := version(m.Version)
	if err != nil {
		return nil, err
	}
	b := make([]byte, serverFinishedSize)
	copy(b, serverFinishedMagic[:])
	b[4] = v
	copy(b[8:], m.Confirm[:])
	return b, nil
}

// UnmarshalBinary decodes and validates b.
func (m *ServerFinished) UnmarshalBinary(b []byte) error {
	v, err := msgPrefix(b, serverFinishedMagic, serverFinishedSize, "ServerFinished")
	if err != nil {
		return err
	}
	if len(b) != serverFinishedSize || b[5]|b[6]|b[7] != 0 {
		return fmt.Errorf("%w: ServerFinished length or reserved bytes", ErrMalformed)
	}
	*m = ServerFinished{Version: v}
	copy(m.Confirm[:], b[8:])
	return nil
}

// msgPrefix checks the length, magic and version of a handshake message
// and returns the version.
func msgPrefix(b []byte, magic [4]byte, minLen int, name string) (uint8, error) {
	if len(b) < minLen {
		return 0, fmt.Errorf("%w: %s is %d bytes, want at least %d", ErrMalformed, name, len(b), minLen)
	}
	if [4]byte(b[:4]) != magic {
		return 0, fmt.Errorf("%w: not a %s", ErrMalformed, name)
	}
	if b[4] != HandshakeV1 && b[4] != HandshakeVersion {
		return 0, fmt.Errorf("%w: %s version %d", ErrUnsupported, name, b[4])
	}
	return b[4], nil
}

func modeAndSize(m, k byte) (Mode, KeySize, error) {
	if !Mode(m).Valid() || !KeySize(k).Valid() {
		return 0, 0, fmt.Errorf("%w: mode %d / key size %d", ErrUnsupported, m, k)
	}
	return Mode(m), KeySize(k), nil
}
