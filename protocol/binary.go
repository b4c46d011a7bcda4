package protocol

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math"
	"math/bits"
	"slices"
	"unicode/utf8"
)

// Flag bits of the marmot.v1 header (byte 2). A flag is set exactly when
// the field is non-zero/non-empty, which makes the encoding canonical: every
// envelope has one encoding and decoders reject all others.
const (
	flagID     = 1 << 0
	flagName   = 1 << 1
	flagMeta   = 1 << 2
	flagCode   = 1 << 3
	flagRoom   = 1 << 4
	flagOffset = 1 << 5
	flagEpoch  = 1 << 6
	// flagExt says an extension block follows the epoch: a varint of
	// extension bits (extSeq, extAck), then each field whose bit is set.
	// A decoder that predates a flag (or an extension bit) rejects the
	// frame as malformed, so a new field can never be silently dropped.
	flagExt = 1 << 7

	// The extension bits. The others are reserved: a decoder rejects them.
	extSeq      = 1 << 0
	extAck      = 1 << 1
	extReserved = ^uint64(extSeq | extAck)

	binaryHeaderLen = 3
	// minMetaEntryLen is the smallest encoding of one meta entry: key
	// length, one key byte, value length. Used to refuse a meta count the
	// remaining input cannot possibly hold before allocating the map.
	minMetaEntryLen = 3
)

type binaryCodec struct{}

func (binaryCodec) Subprotocol() string { return SubprotocolBinary }

func (binaryCodec) MessageType() int { return binaryMessage }

func (binaryCodec) Append(dst []byte, e *Envelope) ([]byte, error) {
	var metaBuf [smallMeta]metaKV
	meta, err := e.validate(metaBuf[:0], true)
	if err != nil {
		return dst, err
	}
	var flags byte
	n := binaryHeaderLen + len(e.Payload)
	if e.ID != 0 {
		flags |= flagID
		n += uvarintLen(e.ID)
	}
	if e.Name != "" {
		flags |= flagName
		n += uvarintLen(uint64(len(e.Name))) + len(e.Name)
	}
	if e.Code != 0 {
		flags |= flagCode
		n += uvarintLen(uint64(e.Code))
	}
	if len(meta) > 0 {
		flags |= flagMeta
		n += uvarintLen(uint64(len(meta)))
		for _, kv := range meta {
			n += uvarintLen(uint64(len(kv.k))) + len(kv.k) + uvarintLen(uint64(len(kv.v))) + len(kv.v)
		}
	}
	if e.Room != "" {
		flags |= flagRoom
		n += uvarintLen(uint64(len(e.Room))) + len(e.Room)
	}
	if e.Offset != 0 {
		flags |= flagOffset
		n += uvarintLen(e.Offset)
	}
	if e.Epoch != "" {
		flags |= flagEpoch
		n += uvarintLen(uint64(len(e.Epoch))) + len(e.Epoch)
	}
	var ext uint64
	if e.Seq != 0 {
		ext |= extSeq
		n += uvarintLen(e.Seq)
	}
	if e.Ack != 0 {
		ext |= extAck
		n += uvarintLen(e.Ack)
	}
	if ext != 0 {
		flags |= flagExt
		n += uvarintLen(ext)
	}

	dst = slices.Grow(dst, n)
	dst = append(dst, Version, byte(e.Kind), flags)
	if flags&flagID != 0 {
		dst = binary.AppendUvarint(dst, e.ID)
	}
	if flags&flagName != 0 {
		dst = binary.AppendUvarint(dst, uint64(len(e.Name)))
		dst = append(dst, e.Name...)
	}
	if flags&flagCode != 0 {
		dst = binary.AppendUvarint(dst, uint64(e.Code))
	}
	if flags&flagMeta != 0 {
		dst = binary.AppendUvarint(dst, uint64(len(meta)))
		for _, kv := range meta {
			dst = binary.AppendUvarint(dst, uint64(len(kv.k)))
			dst = append(dst, kv.k...)
			dst = binary.AppendUvarint(dst, uint64(len(kv.v)))
			dst = append(dst, kv.v...)
		}
	}
	if flags&flagRoom != 0 {
		dst = binary.AppendUvarint(dst, uint64(len(e.Room)))
		dst = append(dst, e.Room...)
	}
	if flags&flagOffset != 0 {
		dst = binary.AppendUvarint(dst, e.Offset)
	}
	if flags&flagEpoch != 0 {
		dst = binary.AppendUvarint(dst, uint64(len(e.Epoch)))
		dst = append(dst, e.Epoch...)
	}
	if ext != 0 {
		dst = binary.AppendUvarint(dst, ext)
		if ext&extSeq != 0 {
			dst = binary.AppendUvarint(dst, e.Seq)
		}
		if ext&extAck != 0 {
			dst = binary.AppendUvarint(dst, e.Ack)
		}
	}
	return append(dst, e.Payload...), nil
}

func (binaryCodec) Decode(msg []byte, e *Envelope) error {
	// Keep the previous name: when a connection sends the same command
	// name over and over, reusing the string avoids an allocation per frame.
	prevName, prevRoom := e.Name, e.Room
	*e = Envelope{}

	if len(msg) == 0 {
		return fmt.Errorf("%w: empty frame", ErrMalformed)
	}
	if msg[0] != Version {
		return fmt.Errorf("%w: version byte %d, want %d", ErrUnsupportedVersion, msg[0], Version)
	}
	if len(msg) < binaryHeaderLen {
		return fmt.Errorf("%w: truncated header (%d bytes)", ErrMalformed, len(msg))
	}
	kind := Kind(msg[1])
	if !kind.valid() {
		return fmt.Errorf("%w: %d", ErrUnknownKind, msg[1])
	}
	flags := msg[2]
	e.Kind = kind
	p := msg[binaryHeaderLen:]

	if flags&flagID != 0 {
		v, n, err := readUvarint(p, "ID")
		if err != nil {
			return err
		}
		if v == 0 {
			return fmt.Errorf("%w: ID flag set but ID is 0", ErrMalformed)
		}
		e.ID = v
		p = p[n:]
	}
	if flags&flagName != 0 {
		l, n, err := readUvarint(p, "name length")
		if err != nil {
			return err
		}
		if l == 0 {
			return fmt.Errorf("%w: name flag set but name is empty", ErrMalformed)
		}
		if err := checkNameLen(l); err != nil {
			return err
		}
		p = p[n:]
		if l > uint64(len(p)) {
			return fmt.Errorf("%w: truncated name", ErrMalformed)
		}
		name := p[:l]
		if !utf8.Valid(name) {
			return fmt.Errorf("%w: name is not valid UTF-8", ErrMalformed)
		}
		if string(name) == prevName {
			e.Name = prevName
		} else {
			e.Name = string(name)
		}
		p = p[l:]
	}
	if flags&flagCode != 0 {
		v, n, err := readUvarint(p, "code")
		if err != nil {
			return err
		}
		if v == 0 {
			return fmt.Errorf("%w: code flag set but code is 0", ErrMalformed)
		}
		if v > math.MaxUint32 {
			return fmt.Errorf("%w: code %d does not fit in 32 bits", ErrMalformed, v)
		}
		e.Code = uint32(v)
		p = p[n:]
	}
	if flags&flagMeta != 0 {
		m, rest, err := decodeBinaryMeta(p)
		if err != nil {
			return err
		}
		e.Meta = m
		p = rest
	}
	if flags&flagRoom != 0 {
		l, n, err := readUvarint(p, "room length")
		if err != nil {
			return err
		}
		if l == 0 {
			return fmt.Errorf("%w: room flag set but room is empty", ErrMalformed)
		}
		if err := checkRoomLen(l); err != nil {
			return err
		}
		p = p[n:]
		if l > uint64(len(p)) {
			return fmt.Errorf("%w: truncated room", ErrMalformed)
		}
		room := p[:l]
		if !utf8.Valid(room) {
			return fmt.Errorf("%w: room is not valid UTF-8", ErrMalformed)
		}
		// A member receives many messages of the same room in a row.
		if string(room) == prevRoom {
			e.Room = prevRoom
		} else {
			e.Room = string(room)
		}
		p = p[l:]
	}
	if flags&flagOffset != 0 {
		v, n, err := readUvarint(p, "offset")
		if err != nil {
			return err
		}
		if v == 0 {
			return fmt.Errorf("%w: offset flag set but offset is 0", ErrMalformed)
		}
		e.Offset = v
		p = p[n:]
	}
	if flags&flagEpoch != 0 {
		l, n, err := readUvarint(p, "epoch length")
		if err != nil {
			return err
		}
		if l == 0 {
			return fmt.Errorf("%w: epoch flag set but epoch is empty", ErrMalformed)
		}
		if err := checkEpochLen(l); err != nil {
			return err
		}
		p = p[n:]
		if uint64(len(p)) < l {
			return fmt.Errorf("%w: truncated epoch", ErrMalformed)
		}
		epoch := p[:l]
		if !utf8.Valid(epoch) {
			return fmt.Errorf("%w: epoch is not valid UTF-8", ErrMalformed)
		}
		e.Epoch = string(epoch)
		p = p[l:]
	}
	if flags&flagExt != 0 {
		rest, err := decodeBinaryExt(p, e)
		if err != nil {
			return err
		}
		p = rest
	}
	if len(p) > 0 {
		// Cap the slice so that appending to Payload can never scribble
		// over whatever follows the frame in the caller's buffer.
		e.Payload = p[:len(p):len(p)]
	}
	return e.validateKind()
}

// decodeBinaryExt parses the extension block at the start of p into e and
// returns the rest of p. Like the flags, each extension bit is set exactly
// when its field is non-zero, and unknown bits are refused.
func decodeBinaryExt(p []byte, e *Envelope) ([]byte, error) {
	ext, n, err := readUvarint(p, "extension bits")
	if err != nil {
		return nil, err
	}
	if ext == 0 {
		return nil, fmt.Errorf("%w: extension flag set but no extension", ErrMalformed)
	}
	if ext&extReserved != 0 {
		return nil, fmt.Errorf("%w: reserved extension bits set (0x%x)", ErrMalformed, ext)
	}
	p = p[n:]
	if ext&extSeq != 0 {
		if e.Seq, p, err = readCounter(p, "seq"); err != nil {
			return nil, err
		}
	}
	if ext&extAck != 0 {
		if e.Ack, p, err = readCounter(p, "ack"); err != nil {
			return nil, err
		}
	}
	return p, nil
}

// readCounter reads an extension's non-zero uvarint (Seq, Ack) at the
// start of p and returns it with the rest of p.
func readCounter(p []byte, what string) (uint64, []byte, error) {
	v, n, err := readUvarint(p, what)
	if err != nil {
		return 0, nil, err
	}
	if v == 0 {
		return 0, nil, fmt.Errorf("%w: %s bit set but %s is 0", ErrMalformed, what, what)
	}
	return v, p[n:], nil
}

// decodeBinaryMeta parses the meta section at the start of p and returns the
// rest of p. It validates the whole section before allocating, then copies
// it into a single string that all keys and values slice, so that a frame
// with trace context costs the map plus one string, not an allocation per
// key and value.
func decodeBinaryMeta(p []byte) (map[string]string, []byte, error) {
	count, n, err := readUvarint(p, "meta count")
	if err != nil {
		return nil, nil, err
	}
	if count == 0 {
		return nil, nil, fmt.Errorf("%w: meta flag set but meta is empty", ErrMalformed)
	}
	if err := checkMetaCount(count); err != nil {
		return nil, nil, err
	}
	p = p[n:]
	if count*minMetaEntryLen > uint64(len(p)) {
		return nil, nil, fmt.Errorf("%w: truncated meta (%d entries claimed, %d bytes left)", ErrMalformed, count, len(p))
	}
	// Offsets into p of each key and value; the limits keep them small.
	var spans [MaxMetaEntries]struct{ ks, ke, vs, ve int }
	off := 0
	for i := range int(count) {
		kl, n, err := readUvarint(p[off:], "meta key length")
		if err != nil {
			return nil, nil, err
		}
		if err := checkMetaKeyLen(kl); err != nil {
			return nil, nil, err
		}
		off += n
		if kl > uint64(len(p)-off) {
			return nil, nil, fmt.Errorf("%w: truncated meta key", ErrMalformed)
		}
		sp := &spans[i]
		sp.ks, sp.ke = off, off+int(kl)
		off = sp.ke
		key := p[sp.ks:sp.ke]
		if !utf8.Valid(key) {
			return nil, nil, fmt.Errorf("%w: meta key is not valid UTF-8", ErrMalformed)
		}
		// Strictly increasing order rules out duplicates and keeps the
		// encoding canonical.
		if i > 0 && bytes.Compare(p[spans[i-1].ks:spans[i-1].ke], key) >= 0 {
			return nil, nil, fmt.Errorf("%w: meta key %q out of order or duplicated", ErrMalformed, key)
		}

		vl, n, err := readUvarint(p[off:], "meta value length")
		if err != nil {
			return nil, nil, err
		}
		if err := checkMetaValueLen(vl); err != nil {
			return nil, nil, err
		}
		off += n
		if vl > uint64(len(p)-off) {
			return nil, nil, fmt.Errorf("%w: truncated meta value", ErrMalformed)
		}
		sp.vs, sp.ve = off, off+int(vl)
		off = sp.ve
		if !utf8.Valid(p[sp.vs:sp.ve]) {
			return nil, nil, fmt.Errorf("%w: meta value for %q is not valid UTF-8", ErrMalformed, key)
		}
	}
	section := string(p[:off])
	m := make(map[string]string, count)
	for _, sp := range spans[:count] {
		m[section[sp.ks:sp.ke]] = section[sp.vs:sp.ve]
	}
	return m, p[off:], nil
}

// readUvarint reads one canonical (minimally encoded) unsigned LEB128
// varint. Non-minimal encodings are refused so that each value has exactly
// one encoding.
func readUvarint(p []byte, what string) (uint64, int, error) {
	v, n := binary.Uvarint(p)
	switch {
	case n == 0:
		return 0, 0, fmt.Errorf("%w: truncated %s", ErrMalformed, what)
	case n < 0:
		return 0, 0, fmt.Errorf("%w: %s varint overflows 64 bits", ErrMalformed, what)
	case n > 1 && p[n-1] == 0:
		return 0, 0, fmt.Errorf("%w: %s varint is not minimally encoded", ErrMalformed, what)
	}
	return v, n, nil
}

// uvarintLen is the length of binary.AppendUvarint(nil, x).
func uvarintLen(x uint64) int {
	return (bits.Len64(x|1) + 6) / 7
}
