package crypto

import (
	"errors"
	"fmt"
)

// Errors returned by this package. Test them with errors.Is. No error ever
// contains key material or plaintext.
var (
	// ErrNotEncrypted: the bytes do not start with the "MROM" magic.
	ErrNotEncrypted = errors.New("crypto: not an encrypted frame")
	// ErrTruncated: the frame is shorter than its header or declared length.
	ErrTruncated = errors.New("crypto: truncated frame")
	// ErrMalformed: a structurally invalid frame or handshake message
	// (trailing bytes, bad block alignment, reserved bits set, bad lengths).
	ErrMalformed = errors.New("crypto: malformed frame")
	// ErrAuthFailed: a tag or MAC did not verify (wrong key or tampering).
	ErrAuthFailed = errors.New("crypto: message authentication failed")
	// ErrWrongKey: handshake key confirmation failed. It wraps ErrAuthFailed.
	ErrWrongKey = fmt.Errorf("%w: key confirmation failed (wrong passphrase or tampered handshake)", ErrAuthFailed)
	// ErrReplay: an authentic frame whose sequence number was already seen.
	ErrReplay = errors.New("crypto: replayed frame (sequence number already received)")
	// ErrOutOfOrder: an authentic frame whose sequence number skips ahead
	// (a frame was dropped or frames were reordered).
	ErrOutOfOrder = errors.New("crypto: out-of-order frame (sequence gap)")
	// ErrModeMismatch: the peer uses a mode or key size we do not accept.
	// The concrete error is a *ModeMismatchError.
	ErrModeMismatch = errors.New("crypto: AES mode or key size mismatch")
	// ErrBadPadding: invalid PKCS#7 padding (compat profile: this is also
	// what a wrong passphrase usually produces).
	ErrBadPadding = errors.New("crypto: invalid PKCS#7 padding")
	// ErrUnsupported: unknown version, mode, key size, KDF or option.
	ErrUnsupported = errors.New("crypto: unsupported parameter")
	// ErrInvalidKey: empty passphrase, bad key length or bad salt.
	ErrInvalidKey = errors.New("crypto: invalid key")
	// ErrDowngrade: the peer offered or chose handshake version 1, which
	// has no forward secrecy, and this side does not allow it
	// (AllowLegacyHandshake), or a version-2 server was made to send it.
	ErrDowngrade = errors.New("crypto: handshake without forward secrecy refused (downgrade)")
	// ErrSequenceExhausted: 2^64-1 frames were sealed under one session key.
	ErrSequenceExhausted = errors.New("crypto: sequence number exhausted; start a new session")
)

// ModeMismatchError names both sides' settings. errors.Is(err,
// ErrModeMismatch) is true for it.
type ModeMismatchError struct {
	LocalMode    Mode
	LocalKeySize KeySize
	PeerMode     Mode
	PeerKeySize  KeySize
}

// Error implements the error interface.
func (e *ModeMismatchError) Error() string {
	return fmt.Sprintf("crypto: AES mode or key size mismatch: local AES-%s-%s, peer AES-%s-%s (not in the allow-list)",
		e.LocalKeySize, e.LocalMode, e.PeerKeySize, e.PeerMode)
}

// Unwrap returns ErrModeMismatch.
func (e *ModeMismatchError) Unwrap() error { return ErrModeMismatch }

func mismatch(lm Mode, lk KeySize, pm Mode, pk KeySize) error {
	return &ModeMismatchError{LocalMode: lm, LocalKeySize: lk, PeerMode: pm, PeerKeySize: pk}
}
