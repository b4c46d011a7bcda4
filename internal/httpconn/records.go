package httpconn

import (
	"encoding/binary"
	"errors"
	"fmt"
	"strconv"
	"unicode/utf8"
)

// Record types (docs/HTTP.md section 2), numbered as WebSocket opcodes.
const (
	recText   = 1
	recBinary = 2
	recClose  = 8
)

// recHeader is a record's header: a type byte and a 4-byte length.
const recHeader = 5

// Errors of the record decoder.
var (
	// ErrMalformed: a body that is not a sequence of records.
	ErrMalformed = errors.New("httpconn: malformed records")
	// ErrTooLarge: a record over the message size limit.
	ErrTooLarge = errors.New("httpconn: record over the message size limit")
)

// appendRecord appends one record to dst.
func appendRecord(dst []byte, typ byte, data []byte) []byte {
	dst = append(dst, typ, 0, 0, 0, 0)
	binary.BigEndian.PutUint32(dst[len(dst)-4:], uint32(len(data)))
	return append(dst, data...)
}

// decodeRecords calls fn for each record of body, in order; data aliases
// body. A record longer than limit (> 0) is ErrTooLarge; a body cut inside
// a record or a record of an unknown type is ErrMalformed. Nothing is
// delivered past the first error, nor past fn's error.
func decodeRecords(body []byte, limit int64, fn func(typ byte, data []byte) error) error {
	for len(body) > 0 {
		if len(body) < recHeader {
			return fmt.Errorf("%w: %d bytes left, a record header is %d", ErrMalformed, len(body), recHeader)
		}
		typ := body[0]
		n := uint64(binary.BigEndian.Uint32(body[1:recHeader]))
		switch typ {
		case recText, recBinary, recClose:
		default:
			return fmt.Errorf("%w: record type %d", ErrMalformed, typ)
		}
		if limit > 0 && n > uint64(limit) && typ != recClose {
			return fmt.Errorf("%w: %d bytes, limit %d", ErrTooLarge, n, limit)
		}
		if n > uint64(len(body)-recHeader) {
			return fmt.Errorf("%w: record of %d bytes, %d left", ErrMalformed, n, len(body)-recHeader)
		}
		var rec record
		rec, body = nextRecord(body)
		if err := fn(rec.typ, rec.data); err != nil {
			return err
		}
	}
	return nil
}

// nextRecord splits the first record off body, which decodeRecords has
// checked (a send's records are checked whole before any is delivered).
func nextRecord(body []byte) (rec record, rest []byte) {
	n := int(binary.BigEndian.Uint32(body[1:recHeader]))
	return record{body[0], body[recHeader : recHeader+n : recHeader+n]}, body[recHeader+n:]
}

// closeNoStatus is the code a close record without a body stands for
// (RFC 6455 1005).
const closeNoStatus = 1005

// maxCloseText is the longest close reason (a control frame's 125 bytes
// less the code).
const maxCloseText = 123

// closePayload is a close record's payload: the code and the reason, cut
// to maxCloseText bytes where a code point starts.
func closePayload(code int, text string) []byte {
	if code == 0 || code == closeNoStatus {
		return nil
	}
	if len(text) > maxCloseText {
		n := maxCloseText
		for n > 0 && !utf8.RuneStart(text[n]) {
			n--
		}
		text = text[:n]
	}
	b := binary.BigEndian.AppendUint16(make([]byte, 0, 2+len(text)), uint16(code))
	return append(b, text...)
}

// parseClose reads a close record's payload.
func parseClose(data []byte) (code int, text string, err error) {
	switch {
	case len(data) == 0:
		return closeNoStatus, "", nil
	case len(data) == 1:
		return 0, "", fmt.Errorf("%w: a 1-byte close record", ErrMalformed)
	case len(data)-2 > maxCloseText:
		return 0, "", fmt.Errorf("%w: close reason of %d bytes", ErrMalformed, len(data)-2)
	case !utf8.Valid(data[2:]):
		return 0, "", fmt.Errorf("%w: close reason is not UTF-8", ErrMalformed)
	}
	code = int(binary.BigEndian.Uint16(data))
	if code < 1000 || code >= 5000 {
		return 0, "", fmt.Errorf("%w: close code %d", ErrMalformed, code)
	}
	return code, string(data[2:]), nil
}

// parseSeq reads a seq or ack query value: a decimal number below 2^53 (a
// JavaScript number is exact up to there).
func parseSeq(s string) (uint64, error) {
	if s == "" || len(s) > 16 {
		return 0, fmt.Errorf("%w: sequence number %q", ErrMalformed, s)
	}
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil || n >= 1<<53 {
		return 0, fmt.Errorf("%w: sequence number %q", ErrMalformed, s)
	}
	return n, nil
}
