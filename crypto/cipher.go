package crypto

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/subtle"
	"encoding/binary"
	"fmt"
)

// BlockSize is the AES block size and the IV size of every mode.
const BlockSize = aes.BlockSize

// maxGCMCTRBlocks bounds a GCM keystream computed with a 128-bit counter so
// that it never carries out of GCM's 32-bit counter field (inc32).
const maxGCMCTRBlocks = 1<<32 - 2

// Cipher is one of the nine modes keyed with one AES key: the equivalent of
// mORMot's TAesAbstract.Encrypt/Decrypt with the IV set by the caller. It adds
// no padding and no tag:
//
//   - ECB and CBC need whole blocks; ECB ignores the IV.
//   - CFB, OFB, CTR (and CFC, OFC, CTC, whose ciphertext is identical) accept
//     any length; CTR uses a 128-bit big-endian counter.
//   - GCM produces the GCM ciphertext for nonce iv[:12] without the tag
//     (this is what the seed sends); use crypto/cipher.NewGCM for the tag.
//
// A Cipher is safe for concurrent use. It is the building block of both
// profiles and of the known-answer tests; it is not an authenticated
// construction by itself.
type Cipher struct {
	mode  Mode
	size  KeySize
	block cipher.Block
}

// NewCipher returns a Cipher for mode under key (16, 24 or 32 bytes).
func NewCipher(mode Mode, key []byte) (*Cipher, error) {
	if !mode.Valid() {
		return nil, fmt.Errorf("%w: %s", ErrUnsupported, mode)
	}
	ks, ok := keySizeForLen(len(key))
	if !ok {
		return nil, fmt.Errorf("%w: AES key must be 16, 24 or 32 bytes, got %d", ErrInvalidKey, len(key))
	}
	b, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalidKey, err)
	}
	return &Cipher{mode: mode, size: ks, block: b}, nil
}

// Mode returns the cipher's mode.
func (c *Cipher) Mode() Mode { return c.mode }

// KeySize returns the cipher's key size.
func (c *Cipher) KeySize() KeySize { return c.size }

// String returns a readable name for logs and errors.
func (c *Cipher) String() string {
	return "crypto.Cipher{AES-" + c.size.String() + "-" + c.mode.String() + ", key:REDACTED}"
}

// GoString implements fmt.GoStringer without revealing the key.
func (c *Cipher) GoString() string { return c.String() }

// Format implements fmt.Formatter so that no verb prints key material.
func (c *Cipher) Format(f fmt.State, _ rune) { _, _ = f.Write([]byte(c.String())) }

// Encrypt appends the encryption of src to dst and returns the result.
func (c *Cipher) Encrypt(dst, iv, src []byte) ([]byte, error) {
	return rawCrypt(c.block, c.mode, true, dst, iv, src)
}

// Decrypt appends the decryption of src to dst and returns the result.
func (c *Cipher) Decrypt(dst, iv, src []byte) ([]byte, error) {
	return rawCrypt(c.block, c.mode, false, dst, iv, src)
}

func rawCrypt(b cipher.Block, mode Mode, enc bool, dst, iv, src []byte) ([]byte, error) {
	if mode != ModeECB && len(iv) != BlockSize {
		return dst, fmt.Errorf("%w: IV must be %d bytes, got %d", ErrMalformed, BlockSize, len(iv))
	}
	if mode.padded() && len(src)%BlockSize != 0 {
		return dst, fmt.Errorf("%w: %s input must be whole %d-byte blocks", ErrMalformed, mode, BlockSize)
	}
	if mode == ModeGCM && uint64(len(src)) > maxGCMCTRBlocks*BlockSize {
		return dst, fmt.Errorf("%w: GCM message too long", ErrUnsupported)
	}
	ret, out := sliceForAppend(dst, len(src))
	cryptInto(b, mode, enc, out, (*[BlockSize]byte)(iv), src, nil)
	return ret, nil
}

// scratch holds the CFB/OFB registers; keeping it in a long-lived struct
// avoids two heap allocations per message (arrays passed to cipher.Block
// methods escape).
type scratch struct{ reg, ks [BlockSize]byte }

// cryptInto runs mode over src into out (len(out) == len(src); they may
// alias exactly). iv may be nil for ECB; sc may be nil. Lengths are the
// caller's job.
func cryptInto(b cipher.Block, mode Mode, enc bool, out []byte, iv *[BlockSize]byte, src []byte, sc *scratch) {
	if sc == nil && (mode == ModeCFB || mode == ModeCFC || mode == ModeOFB || mode == ModeOFC) {
		sc = new(scratch)
	}
	switch mode {
	case ModeECB:
		for i := 0; i < len(src); i += BlockSize {
			if enc {
				b.Encrypt(out[i:i+BlockSize], src[i:i+BlockSize])
			} else {
				b.Decrypt(out[i:i+BlockSize], src[i:i+BlockSize])
			}
		}
	case ModeCBC:
		if len(src) == 0 {
			return
		}
		if enc {
			cipher.NewCBCEncrypter(b, iv[:]).CryptBlocks(out, src)
		} else {
			cipher.NewCBCDecrypter(b, iv[:]).CryptBlocks(out, src)
		}
	case ModeCFB, ModeCFC:
		cfb(b, enc, out, iv, src, sc)
	case ModeOFB, ModeOFC:
		ofb(b, out, iv, src, sc)
	case ModeCTR, ModeCTC:
		if len(src) > 0 {
			cipher.NewCTR(b, iv[:]).XORKeyStream(out, src)
		}
	case ModeGCM:
		if len(src) > 0 {
			var ctr [BlockSize]byte
			copy(ctr[:12], iv[:12])
			ctr[15] = 2 // J0 = nonce‖1; the first data block uses inc32(J0)
			cipher.NewCTR(b, ctr[:]).XORKeyStream(out, src)
		}
	default:
		panic("crypto: invalid mode")
	}
}

// cfb is CFB-128 (SP 800-38A): C_i = P_i ⊕ E(C_{i-1}), C_0 = IV; a final
// partial block uses the leading keystream bytes. out and src may alias.
func cfb(b cipher.Block, enc bool, out []byte, iv *[BlockSize]byte, src []byte, sc *scratch) {
	reg, ks := &sc.reg, &sc.ks
	*reg = *iv
	for len(src) > 0 {
		b.Encrypt(ks[:], reg[:])
		n := min(len(src), BlockSize)
		if enc {
			subtle.XORBytes(out[:n], src[:n], ks[:n])
			copy(reg[:], out[:n])
		} else {
			copy(reg[:], src[:n]) // save ciphertext before out overwrites it
			subtle.XORBytes(out[:n], src[:n], ks[:n])
		}
		out, src = out[n:], src[n:]
	}
}

// ofb is OFB (SP 800-38A): O_i = E(O_{i-1}), O_0 = IV, C_i = P_i ⊕ O_i.
func ofb(b cipher.Block, out []byte, iv *[BlockSize]byte, src []byte, sc *scratch) {
	reg := &sc.reg
	*reg = *iv
	for len(src) > 0 {
		b.Encrypt(reg[:], reg[:])
		n := subtle.XORBytes(out, src, reg[:])
		out, src = out[n:], src[n:]
	}
}

// sliceForAppend extends in by n bytes, returning the whole slice and the
// new tail (as in crypto/cipher).
func sliceForAppend(in []byte, n int) (head, tail []byte) {
	if total := len(in) + n; cap(in) >= total {
		head = in[:total]
	} else {
		head = make([]byte, total, total+total/8)
		copy(head, in)
	}
	tail = head[len(in):]
	return
}

// pkcs7PadLen returns the padded length of n bytes (1..16 bytes of padding).
func pkcs7PadLen(n int) int { return n - n%BlockSize + BlockSize }

// appendPKCS7 writes src followed by its PKCS#7 padding into out, which must
// be pkcs7PadLen(len(src)) bytes.
func appendPKCS7(out, src []byte) {
	copy(out, src)
	pad := len(out) - len(src)
	for i := len(src); i < len(out); i++ {
		out[i] = byte(pad)
	}
}

// pkcs7Unpad returns the length without padding, checking every pad byte in
// constant time (the mORMot/seed rule: pad byte 1..16, all equal).
func pkcs7Unpad(b []byte) (int, bool) {
	n := len(b)
	if n == 0 || n%BlockSize != 0 {
		return 0, false
	}
	last := b[n-1]
	good := subtle.ConstantTimeLessOrEq(1, int(last)) & subtle.ConstantTimeLessOrEq(int(last), BlockSize)
	for i := 1; i <= BlockSize; i++ {
		inPad := subtle.ConstantTimeLessOrEq(i, int(last))
		eq := subtle.ConstantTimeByteEq(b[n-i], last)
		good &= eq | (inPad ^ 1)
	}
	if good != 1 {
		return 0, false
	}
	return n - int(last), true
}

func putU32(b []byte, v uint32) { binary.LittleEndian.PutUint32(b, v) }
func getU32(b []byte) uint32    { return binary.LittleEndian.Uint32(b) }
