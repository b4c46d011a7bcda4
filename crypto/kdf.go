package crypto

import (
	"bytes"
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha256"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"

	"golang.org/x/crypto/argon2"
)

// KDFAlgorithm selects the passphrase-stretching function.
type KDFAlgorithm uint8

const (
	// KDFPBKDF2SHA256 is PBKDF2-HMAC-SHA256 (RFC 8018), the zero value.
	KDFPBKDF2SHA256 KDFAlgorithm = iota
	// KDFArgon2id is Argon2id (RFC 9106).
	KDFArgon2id
)

// String returns a readable name for logs and errors.
func (a KDFAlgorithm) String() string {
	switch a {
	case KDFPBKDF2SHA256:
		return "pbkdf2-sha256"
	case KDFArgon2id:
		return "argon2id"
	}
	return "KDFAlgorithm(" + strconv.Itoa(int(a)) + ")"
}

// KDF defaults. PBKDF2-HMAC-SHA256 at 600 000 iterations is the OWASP
// (2023) recommendation; Argon2id 19 MiB, 2 passes, 1 lane is the OWASP
// minimum configuration. Both cost ~0.1–0.3 s on a current core, paid once
// per server process and once per (client, salt): never per connection.
const (
	DefaultPBKDF2Iterations = 600_000
	DefaultArgon2Passes     = 2
	DefaultArgon2MemoryKiB  = 19 * 1024
	DefaultArgon2Threads    = 1

	// MinSaltSize and MaxSaltSize bound the announced salt.
	MinSaltSize = 16
	MaxSaltSize = 64
	// SaltSize is the size NewSalt returns.
	SaltSize = 32
)

// KDFParams describes how a passphrase is stretched. Zero fields take the
// defaults above. They are announced in the ServerHello.
type KDFParams struct {
	Algorithm  KDFAlgorithm
	Iterations uint32 // PBKDF2 iterations, or Argon2 passes (time)
	MemoryKiB  uint32 // Argon2 only
	Threads    uint8  // Argon2 only
}

func (p KDFParams) withDefaults() KDFParams {
	switch p.Algorithm {
	case KDFPBKDF2SHA256:
		if p.Iterations == 0 {
			p.Iterations = DefaultPBKDF2Iterations
		}
		p.MemoryKiB, p.Threads = 0, 0
	case KDFArgon2id:
		if p.Iterations == 0 {
			p.Iterations = DefaultArgon2Passes
		}
		if p.MemoryKiB == 0 {
			p.MemoryKiB = DefaultArgon2MemoryKiB
		}
		if p.Threads == 0 {
			p.Threads = DefaultArgon2Threads
		}
	}
	return p
}

func (p KDFParams) validate() error {
	switch p.Algorithm {
	case KDFPBKDF2SHA256:
		if p.Iterations == 0 || p.MemoryKiB != 0 || p.Threads != 0 {
			return fmt.Errorf("%w: invalid PBKDF2 parameters", ErrUnsupported)
		}
	case KDFArgon2id:
		if p.Iterations == 0 || p.Threads == 0 || p.MemoryKiB < 8*uint32(p.Threads) {
			return fmt.Errorf("%w: invalid Argon2id parameters", ErrUnsupported)
		}
	default:
		return fmt.Errorf("%w: %s", ErrUnsupported, p.Algorithm)
	}
	return nil
}

// KDFLimits bound the KDF parameters a client accepts from a server, so a
// hostile or man-in-the-middle server can neither make the client burn
// unbounded CPU/memory nor obtain a key-confirmation tag under a cheap KDF
// (which would make an offline dictionary attack cheap). Zero fields take
// the Default* values.
type KDFLimits struct {
	MinPBKDF2Iterations uint32 // default 100 000
	MaxPBKDF2Iterations uint32 // default 10 000 000
	MinArgon2MemoryKiB  uint32 // default 19 MiB
	MaxArgon2MemoryKiB  uint32 // default 1 GiB
	MaxArgon2Passes     uint32 // default 16
}

// Default client-side KDF limits.
const (
	DefaultMinPBKDF2Iterations = 100_000
	DefaultMaxPBKDF2Iterations = 10_000_000
	DefaultMinArgon2MemoryKiB  = 19 * 1024
	DefaultMaxArgon2MemoryKiB  = 1 << 20
	DefaultMaxArgon2Passes     = 16
)

func (l KDFLimits) check(p KDFParams) error {
	def := func(v, d uint32) uint32 {
		if v == 0 {
			return d
		}
		return v
	}
	if err := p.validate(); err != nil {
		return err
	}
	switch p.Algorithm {
	case KDFPBKDF2SHA256:
		lo := def(l.MinPBKDF2Iterations, DefaultMinPBKDF2Iterations)
		hi := def(l.MaxPBKDF2Iterations, DefaultMaxPBKDF2Iterations)
		if p.Iterations < lo || p.Iterations > hi {
			return fmt.Errorf("%w: server asks for %d PBKDF2 iterations, outside [%d, %d]", ErrUnsupported, p.Iterations, lo, hi)
		}
	case KDFArgon2id:
		lo := def(l.MinArgon2MemoryKiB, DefaultMinArgon2MemoryKiB)
		hi := def(l.MaxArgon2MemoryKiB, DefaultMaxArgon2MemoryKiB)
		if p.MemoryKiB < lo || p.MemoryKiB > hi || p.Iterations > def(l.MaxArgon2Passes, DefaultMaxArgon2Passes) {
			return fmt.Errorf("%w: server Argon2id parameters outside the client's limits", ErrUnsupported)
		}
	}
	return nil
}

// kdfCalls counts passphrase stretchings (tests assert it is not per session).
var kdfCalls atomic.Uint64

// NewSalt returns SaltSize random bytes from crypto/rand.
func NewSalt() ([]byte, error) {
	s := make([]byte, SaltSize)
	if _, err := rand.Read(s); err != nil {
		return nil, err
	}
	return s, nil
}

// MasterKey is a stretched passphrase together with the salt and KDF
// parameters that produced it (both public, announced in the ServerHello).
// It never prints its key: String, GoString and Format redact it.
type MasterKey struct {
	key    *[32]byte
	salt   []byte
	params KDFParams
}

// DeriveMasterKey stretches passphrase with salt (MinSaltSize..MaxSaltSize
// bytes, normally from NewSalt, shared by all nodes of a cluster) under
// params. It is deliberately slow: call it once per process (server) or per
// salt (client, see Keyring), never per connection.
func DeriveMasterKey(passphrase, salt []byte, params KDFParams) (*MasterKey, error) {
	if len(passphrase) == 0 {
		return nil, fmt.Errorf("%w: empty passphrase", ErrInvalidKey)
	}
	if len(salt) < MinSaltSize || len(salt) > MaxSaltSize {
		return nil, fmt.Errorf("%w: salt must be %d..%d bytes, got %d", ErrInvalidKey, MinSaltSize, MaxSaltSize, len(salt))
	}
	params = params.withDefaults()
	if err := params.validate(); err != nil {
		return nil, err
	}
	kdfCalls.Add(1)
	mk := &MasterKey{key: new([32]byte), salt: bytes.Clone(salt), params: params}
	switch params.Algorithm {
	case KDFPBKDF2SHA256:
		k, err := pbkdf2.Key(sha256.New, string(passphrase), salt, int(params.Iterations), 32)
		if err != nil {
			return nil, fmt.Errorf("%w: %v", ErrInvalidKey, err)
		}
		copy(mk.key[:], k)
		clear(k)
	case KDFArgon2id:
		k := argon2.IDKey(passphrase, salt, params.Iterations, params.MemoryKiB, params.Threads, 32)
		copy(mk.key[:], k)
		clear(k)
	}
	return mk, nil
}

// Salt returns a copy of the salt.
func (k *MasterKey) Salt() []byte { return bytes.Clone(k.salt) }

// Params returns the KDF parameters (with defaults filled in).
func (k *MasterKey) Params() KDFParams { return k.params }

// String returns a readable name for logs and errors.
func (k MasterKey) String() string { return "crypto.MasterKey{REDACTED}" }

// GoString implements fmt.GoStringer without revealing key material.
func (k MasterKey) GoString() string { return k.String() }

// Format implements fmt.Formatter so that no verb prints the key.
func (k MasterKey) Format(f fmt.State, _ rune) { _, _ = f.Write([]byte(k.String())) }

// Keyring is a client's passphrase plus a small cache of master keys, one
// per (salt, KDF parameters) seen, so that reconnecting to the same server
// or cluster stretches the passphrase once. It is safe for concurrent use.
// It never prints the passphrase.
type Keyring struct {
	s *keyringState
}

type keyringState struct {
	mu          sync.Mutex
	passphrase  []byte
	entries     []*MasterKey // most recent last, at most keyringSize
	derivations atomic.Uint64
}

const keyringSize = 8

// NewKeyring copies passphrase into a new Keyring.
func NewKeyring(passphrase []byte) (*Keyring, error) {
	if len(passphrase) == 0 {
		return nil, fmt.Errorf("%w: empty passphrase", ErrInvalidKey)
	}
	return &Keyring{s: &keyringState{passphrase: bytes.Clone(passphrase)}}, nil
}

// MasterKey returns the cached master key for (salt, params), deriving it
// (slowly) on first use. Concurrent callers for a new salt derive it once.
func (r *Keyring) MasterKey(salt []byte, params KDFParams) (*MasterKey, error) {
	s := r.s
	params = params.withDefaults()
	s.mu.Lock()
	defer s.mu.Unlock() // serialises derivations: fine for a client
	for i, e := range s.entries {
		if e.params == params && bytes.Equal(e.salt, salt) {
			copy(s.entries[i:], s.entries[i+1:]) // move to the back (LRU)
			s.entries[len(s.entries)-1] = e
			return e, nil
		}
	}
	mk, err := DeriveMasterKey(s.passphrase, salt, params)
	if err != nil {
		return nil, err
	}
	s.derivations.Add(1)
	if len(s.entries) == keyringSize {
		s.entries = append(s.entries[:0], s.entries[1:]...)
	}
	s.entries = append(s.entries, mk)
	return mk, nil
}

// Derivations returns how many times this keyring stretched its passphrase.
func (r *Keyring) Derivations() uint64 { return r.s.derivations.Load() }

// String returns a readable name for logs and errors.
func (r *Keyring) String() string { return "crypto.Keyring{REDACTED}" }

// GoString implements fmt.GoStringer without revealing key material.
func (r *Keyring) GoString() string { return r.String() }

// Format implements fmt.Formatter so that no verb prints the passphrase.
func (r *Keyring) Format(f fmt.State, _ rune) { _, _ = f.Write([]byte(r.String())) }
