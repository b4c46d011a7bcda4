package crypto

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha256"
	"fmt"
	"strconv"
)

// SaltVariant selects the seed's key-derivation rule (compat profile).
type SaltVariant uint8

const (
	// SaltCurrent is the seed HEAD rule: PBKDF2-HMAC-SHA256(passphrase,
	// salt = passphrase + "_mormot2_ws_salt", 1024 iterations, 32 bytes).
	SaltCurrent SaltVariant = iota
	// SaltJuly2025 is the July-2025 (README v2.0.5) rule:
	// salt = passphrase + "_hardcoded_salt_2024", 1000 iterations.
	SaltJuly2025
)

// String returns a readable name for logs and errors.
func (v SaltVariant) String() string {
	switch v {
	case SaltCurrent:
		return "current"
	case SaltJuly2025:
		return "july2025"
	}
	return "SaltVariant(" + strconv.Itoa(int(v)) + ")"
}

// CompatConfig configures a CompatCodec.
type CompatConfig struct {
	Mode    Mode    // mode used by Seal (the seed's default is CBC)
	KeySize KeySize // key size used by Seal (the seed's default is 256)
	Salt    SaltVariant
	// AcceptModes / AcceptKeySizes: Open also decrypts frames whose header
	// announces one of these (the seed HEAD's "automatic coordination"
	// accepts everything: AllModes, AllKeySizes). Otherwise a header that
	// differs from Mode/KeySize is a *ModeMismatchError.
	AcceptModes    ModeSet
	AcceptKeySizes KeySizeSet
	// AllowECB must be set to seal or accept ECB.
	AllowECB bool
}

// CompatCodec seals and opens frames byte-exact with the Delphi seed
// components (see docs/ENCRYPTION.md for the format and its weaknesses: no
// authentication, no replay protection, password-derived salt). It is safe
// for concurrent use and never prints its key.
type CompatCodec struct {
	cfg    CompatConfig
	blocks [numKeySizes]cipher.Block // key32[:16], key32[:24], key32[:32]
}

// CompatKey derives the seed's 32-byte key from passphrase. AES-128 and
// AES-192 use its first 16 and 24 bytes.
func CompatKey(passphrase string, v SaltVariant) ([]byte, error) {
	if passphrase == "" {
		return nil, fmt.Errorf("%w: empty passphrase (the seed silently disables encryption)", ErrInvalidKey)
	}
	var suffix string
	var iter int
	switch v {
	case SaltCurrent:
		suffix, iter = "_mormot2_ws_salt", 1024
	case SaltJuly2025:
		suffix, iter = "_hardcoded_salt_2024", 1000
	default:
		return nil, fmt.Errorf("%w: %s", ErrUnsupported, v)
	}
	return pbkdf2.Key(sha256.New, passphrase, []byte(passphrase+suffix), iter, 32)
}

// NewCompatCodec derives the key from passphrase (a cheap 1024-iteration
// PBKDF2, as the seed does) and returns a codec.
func NewCompatCodec(passphrase string, cfg CompatConfig) (*CompatCodec, error) {
	if err := checkModes(cfg.Mode, cfg.KeySize, cfg.AcceptModes, cfg.AcceptKeySizes, cfg.AllowECB); err != nil {
		return nil, err
	}
	key, err := CompatKey(passphrase, cfg.Salt)
	if err != nil {
		return nil, err
	}
	defer clear(key)
	c := &CompatCodec{cfg: cfg}
	for k := KeySize128; k < numKeySizes; k++ {
		if c.blocks[k], err = aes.NewCipher(key[:k.Bytes()]); err != nil {
			return nil, err
		}
	}
	return c, nil
}

// Mode returns the mode Seal uses.
func (c *CompatCodec) Mode() Mode { return c.cfg.Mode }

// KeySize returns the key size Seal uses.
func (c *CompatCodec) KeySize() KeySize { return c.cfg.KeySize }

// SealedSize returns the frame size for n plaintext bytes: 16 + 16 + padded.
func (c *CompatCodec) SealedSize(n int) int { return 2*HeaderSize + pkcs7PadLen(n) }

// Seal appends header ‖ random IV ‖ Encrypt(plaintext ‖ PKCS#7) to dst.
func (c *CompatCodec) Seal(dst, plaintext []byte) ([]byte, error) {
	var iv [BlockSize]byte
	if _, err := rand.Read(iv[:]); err != nil {
		return dst, err
	}
	return c.SealWithIV(dst, plaintext, iv)
}

// SealWithIV is Seal with a caller-chosen IV. Use it only for test vectors:
// reusing an IV breaks confidentiality in every mode but ECB (which has none
// to break).
func (c *CompatCodec) SealWithIV(dst, plaintext []byte, iv [BlockSize]byte) ([]byte, error) {
	return c.sealWith(dst, plaintext, iv, c.cfg.Mode, c.cfg.KeySize)
}

// SealAs is Seal in another mode/key size, e.g. to answer a peer in the mode
// Open reported. The mode must be ours or in the allow-list.
func (c *CompatCodec) SealAs(dst, plaintext []byte, m Mode, k KeySize) ([]byte, error) {
	if err := c.accept(m, k); err != nil {
		return dst, err
	}
	var iv [BlockSize]byte
	if _, err := rand.Read(iv[:]); err != nil {
		return dst, err
	}
	return c.sealWith(dst, plaintext, iv, m, k)
}

func (c *CompatCodec) sealWith(dst, plaintext []byte, iv [BlockSize]byte, m Mode, k KeySize) ([]byte, error) {
	padded := pkcs7PadLen(len(plaintext))
	if m == ModeGCM && uint64(padded) > maxGCMCTRBlocks*BlockSize {
		return dst, fmt.Errorf("%w: GCM message too long", ErrUnsupported)
	}
	ret, out := sliceForAppend(dst, 2*HeaderSize+padded)
	putHeader(out, m, k, 0)
	copy(out[HeaderSize:], iv[:])
	body := out[2*HeaderSize:]
	appendPKCS7(body, plaintext)
	cryptInto(c.blocks[k], m, true, body, &iv, body, nil)
	return ret, nil
}

func (c *CompatCodec) accept(m Mode, k KeySize) error {
	okM := m == c.cfg.Mode || c.cfg.AcceptModes.Has(m)
	okK := k == c.cfg.KeySize || c.cfg.AcceptKeySizes.Has(k)
	if !okM || !okK || (m == ModeECB && !c.cfg.AllowECB) {
		return mismatch(c.cfg.Mode, c.cfg.KeySize, m, k)
	}
	return nil
}

// Open decrypts a seed-format frame and appends the plaintext to dst. It
// reports the mode and key size the frame used (ours, or one from the
// allow-list) so the caller can answer in it. Errors: ErrNotEncrypted,
// ErrTruncated, ErrMalformed, ErrUnsupported (unknown mode/size, or a
// secure-profile frame), *ModeMismatchError, ErrBadPadding (also the usual
// result of a wrong passphrase). Without authentication a wrong key or a
// modified frame can still, with probability about 1/256, yield garbage
// with valid padding; only the secure profile detects that.
func (c *CompatCodec) Open(dst, frame []byte) ([]byte, Mode, KeySize, error) {
	h, err := ParseHeader(frame)
	if err != nil {
		return dst, 0, 0, err
	}
	if h.Version != 0 || h.Flags != 0 {
		return dst, 0, 0, fmt.Errorf("%w: version %d frame (secure profile?) given to the compat codec", ErrUnsupported, h.Version)
	}
	if err := c.accept(h.Mode, h.KeySize); err != nil {
		return dst, 0, 0, err
	}
	body := frame[HeaderSize:]
	if len(body) < 2*BlockSize {
		return dst, 0, 0, fmt.Errorf("%w: %d-byte frame, need IV and at least one block", ErrTruncated, len(frame))
	}
	if len(body)%BlockSize != 0 {
		return dst, 0, 0, fmt.Errorf("%w: ciphertext is not whole blocks", ErrMalformed)
	}
	iv, ct := (*[BlockSize]byte)(body[:BlockSize]), body[BlockSize:]
	if h.Mode == ModeGCM && uint64(len(ct)) > maxGCMCTRBlocks*BlockSize {
		return dst, 0, 0, fmt.Errorf("%w: GCM message too long", ErrUnsupported)
	}
	ret, out := sliceForAppend(dst, len(ct))
	cryptInto(c.blocks[h.KeySize], h.Mode, false, out, iv, ct, nil)
	n, ok := pkcs7Unpad(out)
	if !ok {
		clear(out)
		return dst, 0, 0, ErrBadPadding
	}
	clear(out[n:])
	return ret[:len(dst)+n], h.Mode, h.KeySize, nil
}

// String returns a readable name for logs and errors.
func (c *CompatCodec) String() string {
	return "crypto.CompatCodec{AES-" + c.cfg.KeySize.String() + "-" + c.cfg.Mode.String() + ", salt:" + c.cfg.Salt.String() + ", key:REDACTED}"
}

// GoString implements fmt.GoStringer without revealing the key.
func (c *CompatCodec) GoString() string { return c.String() }

// Format implements fmt.Formatter so that no verb prints key material.
func (c *CompatCodec) Format(f fmt.State, _ rune) { _, _ = f.Write([]byte(c.String())) }
