package crypto

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"hash"
	"math"
)

// Secure frame layout (all integers little-endian, like the seed header):
//
//	0   16  header: Magic, mode, key size, version=1 / flags=0
//	16   8  sequence number (uint64), per direction, starting at 0
//	24   4  ciphertext length L (uint32)
//	28   L  ciphertext
//	28+L T  tag: GCM 16 bytes; ECB/CBC/CFB/OFB/CTR 32 bytes of HMAC-SHA256;
//	        CFC/OFC/CTC 32-byte mORMot CRC MAC followed by 32 bytes of HMAC
//
// The first 28 bytes are the GCM additional data, and are inside the HMAC
// (which covers every byte before it), so no header field can be changed.
// The IV is not sent: it is derived from the sequence number (see
// docs/ENCRYPTION.md). ECB and CBC plaintext is PKCS#7-padded; the other
// modes are not padded.
const (
	securePrefixSize = HeaderSize + 8 + 4
	hmacSize         = sha256.Size
	gcmTagSize       = 16
	maxCiphertext    = math.MaxUint32 - 64
)

// Session holds the keys and sequence numbers of one secure connection, for
// both directions. Build it with a ServerHandshake or ClientHandshake.
//
// Concurrency: Seal touches only the sending direction and Open only the
// receiving one, so one goroutine may Seal while another Opens. Seal must
// not be called concurrently with itself, nor Open with itself (sequence
// numbers must go out in the order frames are written to the connection).
//
// Any Open error means the connection is under attack or broken: close it.
// A Session never prints its keys.
type Session struct {
	mode   Mode
	size   KeySize
	server bool
	send   *direction
	recv   *direction
}

type ivSetter interface{ SetIV([]byte) }

// direction is the per-direction key material and state.
type direction struct {
	mode    Mode
	block   cipher.Block     // data key
	gcm     cipher.AEAD      // GCM only
	ivBlock cipher.Block     // AES-128 IV derivation key (not GCM, not ECB)
	cbc     cipher.BlockMode // cached CBC encrypter/decrypter, if it can SetIV
	mac     hash.Hash        // HMAC-SHA256 (not GCM)
	tagLen  int
	seq     uint64 // next sequence number to send / expect
	hdr     [HeaderSize]byte
	gcmIV   [12]byte
	nonce   [12]byte
	sum     [hmacSize]byte
	ivBuf   [BlockSize]byte
	sc      scratch
}

func newDirection(prk []byte, label string, th []byte, m Mode, k KeySize, encrypt bool) (*direction, error) {
	info := label + string([]byte{byte(m), byte(k)}) + string(th)
	okm, err := hkdf.Expand(sha256.New, prk, info, k.Bytes()+hmacSize+16)
	if err != nil {
		return nil, err
	}
	defer clear(okm)
	encKey, macKey, ivKey := okm[:k.Bytes()], okm[k.Bytes():k.Bytes()+hmacSize], okm[k.Bytes()+hmacSize:]
	d := &direction{mode: m}
	putHeader(d.hdr[:], m, k, SecureVersion)
	if d.block, err = aes.NewCipher(encKey); err != nil {
		return nil, err
	}
	if m == ModeGCM {
		if d.gcm, err = cipher.NewGCM(d.block); err != nil {
			return nil, err
		}
		copy(d.gcmIV[:], ivKey)
		d.tagLen = gcmTagSize
		return d, nil
	}
	d.mac = hmac.New(sha256.New, macKey)
	d.tagLen = hmacSize
	if m.crc() {
		d.tagLen += CRCTagSize
	}
	if m != ModeECB {
		if d.ivBlock, err = aes.NewCipher(ivKey); err != nil {
			return nil, err
		}
	}
	if m == ModeCBC {
		var zero [BlockSize]byte
		var bm cipher.BlockMode
		if encrypt {
			bm = cipher.NewCBCEncrypter(d.block, zero[:])
		} else {
			bm = cipher.NewCBCDecrypter(d.block, zero[:])
		}
		if _, ok := bm.(ivSetter); ok {
			d.cbc = bm
		}
	}
	return d, nil
}

// iv derives the per-frame IV into d.ivBuf: AES-128_ivKey(seq as 8 LE
// bytes ‖ 8 zero bytes). Distinct sequence numbers give distinct,
// unpredictable IVs. ECB gets a zero (unused) IV.
func (d *direction) iv(seq uint64) *[BlockSize]byte {
	d.ivBuf = [BlockSize]byte{}
	if d.ivBlock != nil {
		binary.LittleEndian.PutUint64(d.ivBuf[:8], seq)
		d.ivBlock.Encrypt(d.ivBuf[:], d.ivBuf[:])
	}
	return &d.ivBuf
}

// gcmNonce is the TLS 1.3 construction: static IV XOR big-endian sequence.
func (d *direction) gcmNonce(seq uint64) []byte {
	d.nonce = d.gcmIV
	binary.BigEndian.PutUint64(d.nonce[4:], binary.BigEndian.Uint64(d.gcmIV[4:])^seq)
	return d.nonce[:]
}

func (d *direction) crypt(enc bool, out []byte, iv *[BlockSize]byte, src []byte) {
	if d.cbc != nil {
		d.cbc.(ivSetter).SetIV(iv[:])
		d.cbc.CryptBlocks(out, src)
		return
	}
	cryptInto(d.block, d.mode, enc, out, iv, src, &d.sc)
}

// crcState seeds the mORMot MAC as MacSetNonce(IV ‖ 0¹²⁸, header ‖ seq ‖ L).
func crcState(iv *[BlockSize]byte, aad []byte) MACState {
	var nonce [32]byte
	copy(nonce[:], iv[:])
	return NewMACState(&nonce, aad)
}

// Mode returns the negotiated mode.
func (s *Session) Mode() Mode { return s.mode }

// KeySize returns the negotiated key size.
func (s *Session) KeySize() KeySize { return s.size }

// IsServer reports whether this is the server end.
func (s *Session) IsServer() bool { return s.server }

// SealedSize returns the frame size Seal produces for n plaintext bytes.
func (s *Session) SealedSize(n int) int {
	if s.mode.padded() {
		n = pkcs7PadLen(n)
	}
	return securePrefixSize + n + s.send.tagLen
}

// Seal appends one encrypted, authenticated frame carrying plaintext to dst
// and returns the result. dst and plaintext must not overlap. Each call
// consumes one sequence number.
func (s *Session) Seal(dst, plaintext []byte) ([]byte, error) {
	d := s.send
	if d.seq == math.MaxUint64 {
		return dst, ErrSequenceExhausted
	}
	n := len(plaintext)
	ctLen := n
	if d.mode.padded() {
		ctLen = pkcs7PadLen(n)
	}
	if uint64(ctLen) > maxCiphertext {
		return dst, fmt.Errorf("%w: %d-byte message too large for one frame", ErrUnsupported, n)
	}
	seq := d.seq
	ret, out := sliceForAppend(dst, securePrefixSize+ctLen+d.tagLen)
	copy(out, d.hdr[:])
	binary.LittleEndian.PutUint64(out[16:], seq)
	putU32(out[24:], uint32(ctLen))
	aad := out[:securePrefixSize]
	if d.mode == ModeGCM {
		d.gcm.Seal(out[securePrefixSize:securePrefixSize], d.gcmNonce(seq), plaintext, aad)
	} else {
		body := out[securePrefixSize : securePrefixSize+ctLen]
		iv := d.iv(seq)
		switch {
		case d.mode.padded():
			appendPKCS7(body, plaintext)
			d.crypt(true, body, iv, body)
		case d.mode.crc():
			st := crcState(iv, aad)
			crcSealInto(d.block, d.mode, out[securePrefixSize:securePrefixSize+ctLen+CRCTagSize], iv, &st, plaintext, &d.sc)
		default:
			d.crypt(true, body, iv, plaintext)
		}
		macEnd := len(out) - hmacSize
		d.mac.Reset()
		d.mac.Write(out[:macEnd])
		d.mac.Sum(out[macEnd:macEnd])
	}
	d.seq++
	return ret, nil
}

// Open authenticates one frame, checks its sequence number, and appends the
// plaintext to dst. On error nothing is appended and the receive state is
// unchanged. Errors (test with errors.Is):
//
//   - ErrNotEncrypted: no magic; ErrTruncated: shorter than its header or
//     its declared length; ErrMalformed: trailing bytes or bad alignment;
//   - ErrUnsupported: compat frame, unknown version or flags;
//   - ErrModeMismatch (*ModeMismatchError): another mode or key size than
//     the negotiated one, e.g. a header rewritten to downgrade;
//   - ErrAuthFailed: wrong key or any modified byte;
//   - ErrReplay / ErrOutOfOrder: an authentic frame at the wrong position.
//
// dst and frame must not overlap.
func (s *Session) Open(dst, frame []byte) ([]byte, error) {
	d := s.recv
	h, err := ParseHeader(frame)
	if err != nil {
		return dst, err
	}
	switch {
	case h.Version == 0:
		return dst, fmt.Errorf("%w: compat-profile frame (version 0) on a secure session", ErrUnsupported)
	case h.Version != SecureVersion:
		return dst, fmt.Errorf("%w: frame version %d", ErrUnsupported, h.Version)
	case h.Flags != 0:
		return dst, fmt.Errorf("%w: frame flags %#x", ErrUnsupported, h.Flags)
	case h.Mode != s.mode || h.KeySize != s.size:
		return dst, mismatch(s.mode, s.size, h.Mode, h.KeySize)
	}
	if len(frame) < securePrefixSize {
		return dst, fmt.Errorf("%w: %d-byte frame shorter than the %d-byte secure prefix", ErrTruncated, len(frame), securePrefixSize)
	}
	seq := binary.LittleEndian.Uint64(frame[16:])
	total := uint64(securePrefixSize) + uint64(getU32(frame[24:])) + uint64(d.tagLen)
	switch {
	case uint64(len(frame)) < total:
		return dst, fmt.Errorf("%w: %d of %d bytes", ErrTruncated, len(frame), total)
	case uint64(len(frame)) > total:
		return dst, fmt.Errorf("%w: %d trailing bytes", ErrMalformed, uint64(len(frame))-total)
	}
	ctLen := len(frame) - securePrefixSize - d.tagLen // fits: bounded by len(frame)
	switch {
	case d.mode.padded() && (ctLen == 0 || ctLen%BlockSize != 0):
		return dst, fmt.Errorf("%w: %s ciphertext is not whole blocks", ErrMalformed, d.mode)
	}
	aad := frame[:securePrefixSize]
	if d.mode == ModeGCM {
		ret, err := d.gcm.Open(dst, d.gcmNonce(seq), frame[securePrefixSize:], aad)
		if err != nil {
			return dst, ErrAuthFailed
		}
		if err := d.checkSeq(seq); err != nil {
			clear(ret[len(dst):])
			return dst, err
		}
		d.seq++
		return ret, nil
	}
	macEnd := len(frame) - hmacSize
	d.mac.Reset()
	d.mac.Write(frame[:macEnd])
	if !hmac.Equal(d.mac.Sum(d.sum[:0]), frame[macEnd:]) {
		return dst, ErrAuthFailed
	}
	if err := d.checkSeq(seq); err != nil {
		return dst, err
	}
	ct := frame[securePrefixSize : securePrefixSize+ctLen]
	iv := d.iv(seq)
	ret, out := sliceForAppend(dst, ctLen)
	switch {
	case d.mode.crc():
		st := crcState(iv, aad)
		if !crcOpenInto(d.block, d.mode, out, iv, &st, ct, frame[securePrefixSize+ctLen:macEnd], &d.sc) {
			clear(out)
			return dst, ErrAuthFailed
		}
	case d.mode.padded():
		d.crypt(false, out, iv, ct)
		n, ok := pkcs7Unpad(out)
		if !ok {
			clear(out)
			return dst, ErrBadPadding
		}
		clear(out[n:])
		ret = ret[:len(dst)+n]
	default:
		d.crypt(false, out, iv, ct)
	}
	d.seq++
	return ret, nil
}

func (d *direction) checkSeq(seq uint64) error {
	switch {
	case seq < d.seq:
		return fmt.Errorf("%w: got %d, expected %d", ErrReplay, seq, d.seq)
	case seq > d.seq:
		return fmt.Errorf("%w: got %d, expected %d", ErrOutOfOrder, seq, d.seq)
	}
	return nil
}

// String returns a readable name for logs and errors.
func (s *Session) String() string {
	side := "client"
	if s.server {
		side = "server"
	}
	return "crypto.Session{" + side + ", AES-" + s.size.String() + "-" + s.mode.String() + ", keys:REDACTED}"
}

// GoString implements fmt.GoStringer without revealing keys.
func (s *Session) GoString() string { return s.String() }

// Format implements fmt.Formatter so that no verb prints key material.
func (s *Session) Format(f fmt.State, _ rune) { _, _ = f.Write([]byte(s.String())) }
