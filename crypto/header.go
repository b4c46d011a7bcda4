package crypto

import (
	"fmt"
)

// Frame header constants shared by both profiles.
const (
	// HeaderSize is the size of the coordinating header that starts every
	// encrypted frame in both profiles.
	HeaderSize = 16
	// Magic is the little-endian uint32 at offset 0; its bytes read "MROM".
	Magic uint32 = 0x4D4F524D
	// SecureVersion is the version byte (offset 12) of secure-profile frames.
	// Compat frames carry 0 there (the seed's reserved word).
	SecureVersion = 1
)

var magicBytes = [4]byte{0x4D, 0x52, 0x4F, 0x4D}

// Header is the decoded 16-byte coordinating header:
//
//	offset 0  uint32 LE  Magic ("MROM")
//	offset 4  uint32 LE  mode (seed numbering 0..8)
//	offset 8  uint32 LE  key size (seed numbering 0..2)
//	offset 12 uint8      version: 0 = compat (seed), 1 = secure v1
//	offset 13 uint8      flags (must be 0)
//	offset 14 uint16     reserved (must be 0)
type Header struct {
	Mode    Mode
	KeySize KeySize
	Version uint8
	Flags   uint8
}

// Profile returns ProfileCompat for version 0 and ProfileSecure otherwise.
func (h Header) Profile() Profile {
	if h.Version == 0 {
		return ProfileCompat
	}
	return ProfileSecure
}

// IsEncrypted reports whether b starts with the magic. It is the cheap test
// a receiver uses to tell encrypted frames from plaintext ones.
func IsEncrypted(b []byte) bool {
	return len(b) >= 4 && [4]byte(b[:4]) == magicBytes
}

// ParseHeader decodes the header of an encrypted frame of either profile.
// Errors: ErrNotEncrypted (no magic), ErrTruncated (magic but fewer than 16
// bytes), ErrUnsupported (unknown mode, key size or reserved bits).
func ParseHeader(frame []byte) (Header, error) {
	n := min(len(frame), 4)
	if len(frame) == 0 || [4]byte(append(frame[:n:n], magicBytes[n:]...)) != magicBytes {
		return Header{}, ErrNotEncrypted
	}
	if len(frame) < HeaderSize {
		return Header{}, fmt.Errorf("%w: %d-byte frame shorter than the %d-byte header", ErrTruncated, len(frame), HeaderSize)
	}
	m, k := getU32(frame[4:]), getU32(frame[8:])
	if m >= uint32(numModes) {
		return Header{}, fmt.Errorf("%w: mode number %d in header", ErrUnsupported, m)
	}
	if k >= uint32(numKeySizes) {
		return Header{}, fmt.Errorf("%w: key size number %d in header", ErrUnsupported, k)
	}
	if frame[14] != 0 || frame[15] != 0 {
		return Header{}, fmt.Errorf("%w: reserved header bytes set", ErrUnsupported)
	}
	return Header{Mode: Mode(m), KeySize: KeySize(k), Version: frame[12], Flags: frame[13]}, nil
}

func putHeader(b []byte, m Mode, k KeySize, version uint8) {
	copy(b[:4], magicBytes[:])
	putU32(b[4:], uint32(m))
	putU32(b[8:], uint32(k))
	putU32(b[12:], uint32(version))
}
