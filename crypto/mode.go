package crypto

import (
	"fmt"
	"math/bits"
	"strconv"
	"strings"
)

// Mode is an AES mode of operation. The numeric values are the seed
// components' TAESMode ordinals and travel on the wire in both profiles, which
// is why the zero value is ECB: configurations must opt in to ECB explicitly
// (AllowECB), so a zero-value config is rejected rather than silently weak.
type Mode uint8

// The nine modes, numbered as in the seed (amECB=0 … amCTC=8).
const (
	ModeECB Mode = iota // electronic code book: leaks plaintext patterns
	ModeCBC             // cipher block chaining (NIST SP 800-38A)
	ModeCFB             // 128-bit cipher feedback (NIST SP 800-38A)
	ModeOFB             // output feedback (NIST SP 800-38A)
	ModeCTR             // counter, 128-bit big-endian counter (NIST SP 800-38A)
	ModeGCM             // Galois/counter mode (NIST SP 800-38D), 96-bit nonce
	ModeCFC             // mORMot: CFB + 256-bit crc32c MAC
	ModeOFC             // mORMot: OFB + 256-bit crc32c MAC
	ModeCTC             // mORMot: CTR + 256-bit crc32c MAC
	numModes
)

var modeNames = [numModes]string{"ECB", "CBC", "CFB", "OFB", "CTR", "GCM", "CFC", "OFC", "CTC"}

// Valid reports whether m is one of the nine modes.
func (m Mode) Valid() bool { return m < numModes }

// String returns the upper-case mode name ("GCM"), or "Mode(n)" if invalid.
func (m Mode) String() string {
	if m.Valid() {
		return modeNames[m]
	}
	return "Mode(" + strconv.Itoa(int(m)) + ")"
}

// ParseMode parses a mode name, case-insensitively ("gcm", "CBC").
func ParseMode(s string) (Mode, error) {
	for i, n := range modeNames {
		if strings.EqualFold(s, n) {
			return Mode(i), nil
		}
	}
	return 0, fmt.Errorf("%w: unknown AES mode %q", ErrUnsupported, s)
}

// block reports whether m needs PKCS#7 padding in the secure profile.
func (m Mode) padded() bool { return m == ModeECB || m == ModeCBC }

// crc reports whether m is one of mORMot's CRC-MAC AEAD modes.
func (m Mode) crc() bool { return m == ModeCFC || m == ModeOFC || m == ModeCTC }

// KeySize is an AES key size. The numeric values are the seed's TAESKeySize
// ordinals (aks128=0, aks192=1, aks256=2) and travel on the wire.
type KeySize uint8

// The three AES key sizes, numbered as in the seed.
const (
	KeySize128 KeySize = iota
	KeySize192
	KeySize256
	numKeySizes
)

// Valid reports whether k is one of the three key sizes.
func (k KeySize) Valid() bool { return k < numKeySizes }

// Bits returns 128, 192 or 256 (0 if invalid).
func (k KeySize) Bits() int {
	if !k.Valid() {
		return 0
	}
	return 128 + 64*int(k)
}

// Bytes returns 16, 24 or 32 (0 if invalid).
func (k KeySize) Bytes() int { return k.Bits() / 8 }

// String returns "128", "192", "256", or "KeySize(n)" if invalid.
func (k KeySize) String() string {
	if k.Valid() {
		return strconv.Itoa(k.Bits())
	}
	return "KeySize(" + strconv.Itoa(int(k)) + ")"
}

// ParseKeySize parses "128", "192" or "256" (an "aes" or "aes-" prefix and a
// "bits" suffix are tolerated, case-insensitively).
func ParseKeySize(s string) (KeySize, error) {
	t := strings.ToLower(strings.TrimSpace(s))
	t = strings.TrimPrefix(strings.TrimPrefix(t, "aes"), "-")
	t = strings.TrimSuffix(t, "bits")
	switch t {
	case "128":
		return KeySize128, nil
	case "192":
		return KeySize192, nil
	case "256":
		return KeySize256, nil
	}
	return 0, fmt.Errorf("%w: unknown AES key size %q", ErrUnsupported, s)
}

func keySizeForLen(n int) (KeySize, bool) {
	switch n {
	case 16:
		return KeySize128, true
	case 24:
		return KeySize192, true
	case 32:
		return KeySize256, true
	}
	return 0, false
}

// Profile selects the frame format.
type Profile uint8

const (
	// ProfileSecure (the zero value) authenticates every frame, header
	// included, with per-connection keys and replay protection.
	ProfileSecure Profile = iota
	// ProfileCompat is byte-exact with the Delphi seed components
	// (subprotocol "synopsejson") and inherits all their weaknesses.
	ProfileCompat
)

// String returns "secure" or "compat".
func (p Profile) String() string {
	switch p {
	case ProfileSecure:
		return "secure"
	case ProfileCompat:
		return "compat"
	}
	return "Profile(" + strconv.Itoa(int(p)) + ")"
}

// ParseProfile parses "secure" or "compat" (case-insensitive; "" is secure).
func ParseProfile(s string) (Profile, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "", "secure":
		return ProfileSecure, nil
	case "compat", "compatible", "synopsejson":
		return ProfileCompat, nil
	}
	return 0, fmt.Errorf("%w: unknown profile %q", ErrUnsupported, s)
}

// ModeSet is a set of modes (bit i = Mode(i)), used for allow-lists.
type ModeSet uint16

// AllModes contains the nine modes.
const AllModes ModeSet = 1<<numModes - 1

// ModeSetOf returns the set holding modes (invalid modes are ignored).
func ModeSetOf(modes ...Mode) ModeSet {
	var s ModeSet
	for _, m := range modes {
		if m.Valid() {
			s |= 1 << m
		}
	}
	return s
}

// Has reports whether m is in s.
func (s ModeSet) Has(m Mode) bool { return m.Valid() && s&(1<<m) != 0 }

// Modes lists the members of s in wire order.
func (s ModeSet) Modes() []Mode {
	out := make([]Mode, 0, bits.OnesCount16(uint16(s&AllModes)))
	for m := Mode(0); m < numModes; m++ {
		if s.Has(m) {
			out = append(out, m)
		}
	}
	return out
}

// String lists the members, e.g. "{CBC,GCM}".
func (s ModeSet) String() string {
	var b strings.Builder
	b.WriteByte('{')
	for i, m := range s.Modes() {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(m.String())
	}
	b.WriteByte('}')
	return b.String()
}

// KeySizeSet is a set of key sizes (bit i = KeySize(i)).
type KeySizeSet uint8

// AllKeySizes contains the three key sizes.
const AllKeySizes KeySizeSet = 1<<numKeySizes - 1

// KeySizeSetOf returns the set holding sizes (invalid sizes are ignored).
func KeySizeSetOf(sizes ...KeySize) KeySizeSet {
	var s KeySizeSet
	for _, k := range sizes {
		if k.Valid() {
			s |= 1 << k
		}
	}
	return s
}

// Has reports whether k is in s.
func (s KeySizeSet) Has(k KeySize) bool { return k.Valid() && s&(1<<k) != 0 }

// String lists the members, e.g. "{128,256}".
func (s KeySizeSet) String() string {
	var b strings.Builder
	b.WriteByte('{')
	first := true
	for k := KeySize(0); k < numKeySizes; k++ {
		if s.Has(k) {
			if !first {
				b.WriteByte(',')
			}
			first = false
			b.WriteString(k.String())
		}
	}
	b.WriteByte('}')
	return b.String()
}

// negotiate picks the mode (or key size) both sides can use: ours if equal
// or the peer accepts it, else the peer's if we accept it.
func negotiate[T ~uint8](ours, peers T, peerAccepts, weAccept bool) (T, bool) {
	switch {
	case ours == peers:
		return ours, true
	case peerAccepts:
		return ours, true
	case weAccept:
		return peers, true
	}
	return ours, false
}
