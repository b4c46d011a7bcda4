package marmot

import (
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"github.com/marmotws/marmot/actors"
	"github.com/marmotws/marmot/crypto"
)

// Encryption close codes and errors; see docs/ENCRYPTION.md.
const (
	CloseDecryptFailed   = actors.CloseDecryptFailed
	CloseHandshakeFailed = actors.CloseHandshakeFailed
)

// Encryption errors. Handshake and decryption errors also wrap the precise
// crypto error (crypto.ErrWrongKey, crypto.ErrReplay, crypto.ErrAuthFailed,
// crypto.ErrModeMismatch, ...).
var (
	ErrEncryptionRequired = actors.ErrEncryptionRequired
	// ErrEncryptionMismatch: the server refused the upgrade because one
	// side encrypts and the other does not, or they use different
	// profiles. A client refused so also matches ErrEncryptionRequired
	// when the server encrypts and it does not. It is never retried.
	ErrEncryptionMismatch = actors.ErrEncryptionMismatch
	ErrHandshakeFailed    = actors.ErrHandshakeFailed
	ErrDecryptFailed      = actors.ErrDecryptFailed
)

// HeaderEncryption is the upgrade request header by which an encrypting
// marmot client names its profile ("secure" or "compat"), so that a server
// can refuse a mismatch with HTTP 400 before the upgrade; see
// docs/PROTOCOL.md section 5. A peer written by hand that encrypts in the
// secure profile must send it.
const HeaderEncryption = actors.HeaderEncryption

// QueryEncryption is the query parameter that says what HeaderEncryption
// says, for browsers, which cannot set headers on a WebSocket upgrade.
const QueryEncryption = actors.QueryEncryption

// HeaderHandshake is the upgrade request header by which a secure-profile
// client announces the handshake version it speaks ("2": with forward
// secrecy); QueryHandshake says the same for browsers. A server refuses a
// client that does not announce it with close 4501 "downgrade refused"
// unless EncryptionAllowLegacyHandshake is set. See docs/PROTOCOL.md
// section 5.
const (
	HeaderHandshake = actors.HeaderHandshake
	QueryHandshake  = actors.QueryHandshake
)

// SubprotocolCompat is the Delphi components' subprotocol, used by the
// compat encryption profile.
const SubprotocolCompat = actors.SubprotocolCompat

// EncryptionConfig is the seed's AES encryption, embedded in ServerConfig
// and ClientConfig. Both ends need the same key; the mode and key size must
// match too unless an allow-list lets one side accept the other's.
//
// The secure profile (default) authenticates every frame and its header,
// stretches the key with a random salt, derives per-connection keys in a
// handshake and rejects replayed, reordered or truncated frames. The compat
// profile is byte-exact with the Delphi components and has none of that;
// use it only to talk to them.
type EncryptionConfig struct {
	// EncryptionEnabled turns encryption on. Every connection must then be
	// encrypted with the same profile: a server refuses any other client
	// with HTTP 400 before the upgrade ("server requires encryption"), and
	// an encrypting client is refused the same way by a server that does
	// not encrypt ("server does not encrypt"); the client reports
	// ErrEncryptionMismatch and does not retry.
	EncryptionEnabled bool
	// EncryptionKey is the shared passphrase. Required when enabled. It is
	// never logged.
	EncryptionKey string
	// EncryptionMode is ecb, cbc, cfb, ofb, ctr, gcm, cfc, ofc or ctc.
	// Default "cbc", the seed's default; "gcm" is the fastest. ECB leaks
	// plaintext patterns and logs a warning.
	EncryptionMode string
	// EncryptionKeySize is 128, 192 or 256. Default 256.
	EncryptionKeySize int
	// EncryptionProfile is "secure" (default) or "compat".
	EncryptionProfile string
	// EncryptionAcceptModes and EncryptionAcceptKeySizes let the peer use
	// another mode or key size (the seed's automatic coordination, made
	// explicit); the answer goes out in the peer's mode. Empty: the peer
	// must match exactly, and a mismatch is an error naming both settings.
	EncryptionAcceptModes    []string
	EncryptionAcceptKeySizes []int
	// EncryptionSalt (server, secure profile) is the KDF salt announced to
	// clients; give every node of a cluster the same one. Default: random
	// per server process.
	EncryptionSalt []byte
	// EncryptionKDF (server, secure profile) sets how the passphrase is
	// stretched. Default PBKDF2-SHA256 with 600,000 iterations, once per
	// server process and once per salt on a client.
	EncryptionKDF crypto.KDFParams
	// EncryptionCompatSalt (compat profile) picks the seed's key
	// derivation: "current" (default, "_mormot2_ws_salt", 1024 rounds) or
	// "july2025" ("_hardcoded_salt_2024", 1000 rounds).
	EncryptionCompatSalt string
	// EncryptionAllowLegacyHandshake (secure profile) also speaks the
	// handshake of marmot releases before forward secrecy (version 1: the
	// session keys come from the passphrase alone, so a passphrase that
	// leaks later decrypts recorded traffic). On a server it admits clients
	// that do not announce version 2; on a client it accepts servers that
	// speak only version 1. Default false: such peers are refused with close
	// 4501 "downgrade refused" (crypto.ErrDowngrade). Two current peers
	// always use version 2, and one whose announcement was removed in
	// transit refuses the legacy handshake even with this set.
	EncryptionAllowLegacyHandshake bool
	// EncryptionHandshakeTimeout bounds the secure handshake. Default 10s.
	EncryptionHandshakeTimeout time.Duration
}

// resolved holds what both sides need from the strings.
type resolvedEncryption struct {
	mode     crypto.Mode
	keySize  crypto.KeySize
	profile  crypto.Profile
	modes    crypto.ModeSet
	sizes    crypto.KeySizeSet
	allowECB bool
}

func (e *EncryptionConfig) resolve(log *slog.Logger) (*resolvedEncryption, error) {
	if e.EncryptionKey == "" {
		return nil, errors.New("marmot: EncryptionEnabled needs an EncryptionKey")
	}
	r := &resolvedEncryption{mode: crypto.ModeCBC, keySize: crypto.KeySize256}
	var err error
	if e.EncryptionMode != "" {
		if r.mode, err = crypto.ParseMode(e.EncryptionMode); err != nil {
			return nil, fmt.Errorf("marmot: EncryptionMode: %w", err)
		}
	}
	if e.EncryptionKeySize != 0 {
		if r.keySize, err = crypto.ParseKeySize(strconv.Itoa(e.EncryptionKeySize)); err != nil {
			return nil, fmt.Errorf("marmot: EncryptionKeySize: %w", err)
		}
	}
	if e.EncryptionProfile != "" {
		if r.profile, err = crypto.ParseProfile(e.EncryptionProfile); err != nil {
			return nil, fmt.Errorf("marmot: EncryptionProfile: %w", err)
		}
	}
	for _, s := range e.EncryptionAcceptModes {
		m, err := crypto.ParseMode(strings.TrimSpace(s))
		if err != nil {
			return nil, fmt.Errorf("marmot: EncryptionAcceptModes: %w", err)
		}
		r.modes |= crypto.ModeSetOf(m)
	}
	for _, n := range e.EncryptionAcceptKeySizes {
		k, err := crypto.ParseKeySize(strconv.Itoa(n))
		if err != nil {
			return nil, fmt.Errorf("marmot: EncryptionAcceptKeySizes: %w", err)
		}
		r.sizes |= crypto.KeySizeSetOf(k)
	}
	// Choosing ECB by name is the opt-in; it is still worth a warning.
	if r.mode == crypto.ModeECB || r.modes.Has(crypto.ModeECB) {
		r.allowECB = true
		log.Warn("marmot: AES-ECB enabled: it leaks patterns of the plaintext; prefer gcm")
	}
	if r.profile == crypto.ProfileCompat {
		log.Warn("marmot: compat encryption profile: no authentication, no replay protection, salt derived from the key; use it only for Delphi peers")
	}
	return r, nil
}

func (r *resolvedEncryption) compat(e *EncryptionConfig) (*crypto.CompatCodec, error) {
	variant := crypto.SaltCurrent
	switch e.EncryptionCompatSalt {
	case "", "current":
	case "july2025":
		variant = crypto.SaltJuly2025
	default:
		return nil, fmt.Errorf("marmot: EncryptionCompatSalt %q: want current or july2025", e.EncryptionCompatSalt)
	}
	return crypto.NewCompatCodec(e.EncryptionKey, crypto.CompatConfig{
		Mode: r.mode, KeySize: r.keySize, Salt: variant,
		AcceptModes: r.modes, AcceptKeySizes: r.sizes, AllowECB: r.allowECB,
	})
}

// serverEncryption builds the hub's encryption; the slow KDF runs here,
// once per server.
func (e *EncryptionConfig) serverEncryption(log *slog.Logger) (*actors.Encryption, error) {
	return e.build(log, func(r *resolvedEncryption, out *actors.Encryption) error {
		salt := e.EncryptionSalt
		if salt == nil {
			var err error
			if salt, err = crypto.NewSalt(); err != nil {
				return err
			}
		}
		key, err := crypto.DeriveMasterKey([]byte(e.EncryptionKey), salt, e.EncryptionKDF)
		if err != nil {
			return fmt.Errorf("marmot: deriving the encryption key: %w", err)
		}
		out.Server = &crypto.ServerConfig{Key: key, Mode: r.mode, KeySize: r.keySize,
			AcceptModes: r.modes, AcceptKeySizes: r.sizes, AllowECB: r.allowECB,
			AllowLegacyHandshake: e.EncryptionAllowLegacyHandshake}
		return nil
	})
}

// clientEncryption builds the client's encryption; the key is stretched
// lazily, once per salt a server announces.
func (e *EncryptionConfig) clientEncryption(log *slog.Logger) (*actors.Encryption, error) {
	return e.build(log, func(r *resolvedEncryption, out *actors.Encryption) error {
		ring, err := crypto.NewKeyring([]byte(e.EncryptionKey))
		if err != nil {
			return err
		}
		out.Client = &crypto.ClientConfig{Keyring: ring, Mode: r.mode, KeySize: r.keySize,
			AcceptModes: r.modes, AcceptKeySizes: r.sizes, AllowECB: r.allowECB,
			AllowLegacyHandshake: e.EncryptionAllowLegacyHandshake}
		return nil
	})
}

// build resolves the settings and fills the compat codec, or lets secure
// fill in its side of the secure profile. Disabled encryption is nil.
func (e *EncryptionConfig) build(log *slog.Logger, secure func(*resolvedEncryption, *actors.Encryption) error) (*actors.Encryption, error) {
	if !e.EncryptionEnabled {
		return nil, nil
	}
	r, err := e.resolve(log)
	if err != nil {
		return nil, err
	}
	out := &actors.Encryption{Profile: r.profile, HandshakeTimeout: e.EncryptionHandshakeTimeout}
	if r.profile == crypto.ProfileCompat {
		out.Compat, err = r.compat(e)
	} else {
		err = secure(r, out)
	}
	if err != nil {
		return nil, err
	}
	return out, nil
}
