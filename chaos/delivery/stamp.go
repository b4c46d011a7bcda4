// Package delivery checks what clients received against what was sent, as
// Jepsen checks histories: a Recorder logs every message sent (with its
// sender's sequence number) and every message received (with its room,
// epoch and offset), and Check reports the messages lost, duplicated,
// reordered and corrupted, per receiver and room. Memory stays bounded by
// the messages sent, not by the deliveries: a receiver's state is a
// high-water mark per sender and the few sequence numbers seen above it.
//
// Messages carry their identity in the payload (Stamp): the sender's name,
// its sequence number and a checksum. A sender that numbers its messages
// itself (say, a client outbox's sequence numbers) passes its numbers to
// Stream.Sent; otherwise Stream.Next numbers them.
package delivery

import (
	"bytes"
	"errors"
	"fmt"
	"hash/crc32"
	"strconv"
)

// ErrStamp reports a payload whose stamp is missing or malformed, or whose
// checksum does not match its contents: corrupted on the way.
var ErrStamp = errors.New("delivery: bad stamp")

// stampMagic starts every stamped payload.
const stampMagic = "d1|"

// Stamp returns body prefixed with sender, seq and a checksum over all
// three, in text ("d1|LEN:sender|seq|crc|body", LEN the sender's length
// in bytes), so that it travels in text and binary frames alike.
func Stamp(sender string, seq uint64, body []byte) []byte {
	out := make([]byte, 0, len(stampMagic)+len(sender)+len(body)+40)
	out = append(out, stampMagic...)
	out = strconv.AppendInt(out, int64(len(sender)), 10)
	out = append(out, ':')
	out = append(out, sender...)
	out = append(out, '|')
	out = strconv.AppendUint(out, seq, 10)
	out = append(out, '|')
	out = strconv.AppendUint(out, uint64(sum(sender, seq, body)), 16)
	out = append(out, '|')
	return append(out, body...)
}

// Unstamp returns what Stamp put in payload; body aliases payload. A
// payload that is not stamped, or whose checksum fails, is an error
// wrapping ErrStamp.
func Unstamp(payload []byte) (sender string, seq uint64, body []byte, err error) {
	rest, ok := bytes.CutPrefix(payload, []byte(stampMagic))
	if !ok {
		return "", 0, nil, fmt.Errorf("%w: no stamp", ErrStamp)
	}
	lenField, rest, ok := bytes.Cut(rest, []byte{':'})
	if !ok || len(lenField) > 9 {
		return "", 0, nil, fmt.Errorf("%w: no sender", ErrStamp)
	}
	n, err := strconv.Atoi(string(lenField))
	if err != nil || n < 0 || n >= len(rest) || rest[n] != '|' {
		return "", 0, nil, fmt.Errorf("%w: bad sender", ErrStamp)
	}
	sender, rest = string(rest[:n]), rest[n+1:]
	var fields [2][]byte
	for i := range fields {
		f, r, ok := bytes.Cut(rest, []byte{'|'})
		if !ok {
			return "", 0, nil, fmt.Errorf("%w: truncated", ErrStamp)
		}
		fields[i], rest = f, r
	}
	seq, err1 := strconv.ParseUint(string(fields[0]), 10, 64)
	crc, err2 := strconv.ParseUint(string(fields[1]), 16, 32)
	if err1 != nil || err2 != nil {
		return "", 0, nil, fmt.Errorf("%w: bad number", ErrStamp)
	}
	if uint32(crc) != sum(sender, seq, rest) {
		return "", 0, nil, fmt.Errorf("%w: checksum mismatch (%s #%d)", ErrStamp, sender, seq)
	}
	return sender, seq, rest, nil
}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

func sum(sender string, seq uint64, body []byte) uint32 {
	var n [8]byte
	for i := range n {
		n[i] = byte(seq >> (8 * i))
	}
	c := crc32.Update(0, castagnoli, []byte(sender))
	c = crc32.Update(c, castagnoli, n[:])
	return crc32.Update(c, castagnoli, body)
}
