package protocol

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"math"
	"slices"
	"strconv"
	"unicode/utf8"
)

// MaxJSONSafeInteger is the largest ID the JSON codec carries: 2^53-1, the
// largest integer an IEEE 754 double (a JavaScript number) represents
// exactly. Larger IDs would be silently rounded by browser peers and replies
// would stop matching their requests, so both directions refuse them.
const MaxJSONSafeInteger = 1<<53 - 1

// maxJSONDepth bounds nesting while skipping values, so a frame of ten
// thousand '[' costs an error, not a deep recursion. marmot.json.v1 itself
// never nests deeper than the meta object.
const maxJSONDepth = 32

type jsonCodec struct{}

func (jsonCodec) Subprotocol() string { return SubprotocolJSON }

func (jsonCodec) MessageType() int { return textMessage }

// The members of a marmot.json.v1 object, indexed for the decoder's
// fixed-size table.
const (
	jV = iota
	jKind
	jID
	jName
	jCode
	jMeta
	jRoom
	jOffset
	jEpoch
	jSeq
	jAck
	jPayload
	jPayloadB64
	jNumFields
)

var jsonFieldNames = [jNumFields]string{
	jV:          "v",
	jKind:       "kind",
	jID:         "id",
	jName:       "name",
	jCode:       "code",
	jMeta:       "meta",
	jRoom:       "room",
	jOffset:     "offset",
	jEpoch:      "epoch",
	jSeq:        "seq",
	jAck:        "ack",
	jPayload:    "payload",
	jPayloadB64: "payload_b64",
}

var base64Strict = base64.StdEncoding.Strict()

func (jsonCodec) Append(dst []byte, e *Envelope) ([]byte, error) {
	var metaBuf [smallMeta]metaKV
	meta, err := e.validate(metaBuf[:0], true)
	if err != nil {
		return dst, err
	}
	if e.ID > MaxJSONSafeInteger {
		return dst, fmt.Errorf("%w: ID %d exceeds 2^53-1, the JSON codec's limit", ErrInvalidEnvelope, e.ID)
	}
	if e.Offset > MaxJSONSafeInteger {
		return dst, fmt.Errorf("%w: offset %d exceeds 2^53-1, the JSON codec's limit", ErrInvalidEnvelope, e.Offset)
	}
	if e.Seq > MaxJSONSafeInteger || e.Ack > MaxJSONSafeInteger {
		return dst, fmt.Errorf("%w: seq or ack exceeds 2^53-1, the JSON codec's limit", ErrInvalidEnvelope)
	}
	// Grow once for the usual case of few escapes, rather than repeatedly
	// while appending a large payload to a fresh buffer.
	n := len(`{"v":1,"kind":"command","id":9007199254740991,"code":4294967295,"meta":{},"room":"","offset":9007199254740991,"epoch":"","seq":9007199254740991,"ack":9007199254740991,"payload_b64":""}`) +
		len(e.Name) + 2 + len(e.Room) + 2 + len(e.Epoch) + 2
	for _, kv := range meta {
		n += len(kv.k) + len(kv.v) + 6
	}
	n += base64.StdEncoding.EncodedLen(len(e.Payload))
	dst = slices.Grow(dst, n)
	dst = append(dst, `{"v":1,"kind":"`...)
	dst = append(dst, kindNames[e.Kind]...)
	dst = append(dst, '"')
	if e.ID != 0 {
		dst = append(dst, `,"id":`...)
		dst = strconv.AppendUint(dst, e.ID, 10)
	}
	if e.Name != "" {
		dst = append(dst, `,"name":`...)
		dst = appendJSONString(dst, e.Name)
	}
	if e.Code != 0 {
		dst = append(dst, `,"code":`...)
		dst = strconv.AppendUint(dst, uint64(e.Code), 10)
	}
	if len(meta) > 0 {
		dst = append(dst, `,"meta":{`...)
		for i, kv := range meta {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = appendJSONString(dst, kv.k)
			dst = append(dst, ':')
			dst = appendJSONString(dst, kv.v)
		}
		dst = append(dst, '}')
	}
	if e.Room != "" {
		dst = append(dst, `,"room":`...)
		dst = appendJSONString(dst, e.Room)
	}
	if e.Offset != 0 {
		dst = append(dst, `,"offset":`...)
		dst = strconv.AppendUint(dst, e.Offset, 10)
	}
	if e.Epoch != "" {
		dst = append(dst, `,"epoch":`...)
		dst = appendJSONString(dst, e.Epoch)
	}
	if e.Seq != 0 {
		dst = append(dst, `,"seq":`...)
		dst = strconv.AppendUint(dst, e.Seq, 10)
	}
	if e.Ack != 0 {
		dst = append(dst, `,"ack":`...)
		dst = strconv.AppendUint(dst, e.Ack, 10)
	}
	if len(e.Payload) > 0 {
		if utf8.Valid(e.Payload) {
			dst = append(dst, `,"payload":`...)
			dst = appendJSONString(dst, e.Payload)
		} else {
			dst = append(dst, `,"payload_b64":"`...)
			dst = base64.StdEncoding.AppendEncode(dst, e.Payload)
			dst = append(dst, '"')
		}
	}
	return append(dst, '}'), nil
}

const hexDigits = "0123456789abcdef"

// jsonASCII[c] is true for the ASCII bytes that stand for themselves inside
// a JSON string (all printable ASCII but '"' and '\\'). Table lookups keep
// the per-byte loops of the encoder and the scanner short; they dominate the
// cost of text payloads.
var jsonASCII = func() (t [256]bool) {
	for c := 0x20; c < utf8.RuneSelf; c++ {
		t[c] = c != '"' && c != '\\'
	}
	return t
}()

// appendJSONString appends s as a JSON string. s must be valid UTF-8 (the
// callers validate). Only what RFC 8259 requires is escaped: '"', '\\' and
// control characters; everything else, including non-ASCII, is copied.
func appendJSONString[S ~string | ~[]byte](dst []byte, s S) []byte {
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); i++ {
		// Skip eight bytes at a time while none needs escaping.
		for i+8 <= len(s) && !swarSpecial(load64(s, i)) {
			i += 8
		}
		if i == len(s) {
			break
		}
		c := s[i]
		if jsonASCII[c] || c >= utf8.RuneSelf {
			continue
		}
		dst = append(dst, s[start:i]...)
		switch c {
		case '"', '\\':
			dst = append(dst, '\\', c)
		case '\n':
			dst = append(dst, '\\', 'n')
		case '\r':
			dst = append(dst, '\\', 'r')
		case '\t':
			dst = append(dst, '\\', 't')
		case '\b':
			dst = append(dst, '\\', 'b')
		case '\f':
			dst = append(dst, '\\', 'f')
		default:
			dst = append(dst, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xF])
		}
		start = i + 1
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}

// SWAR ("SIMD within a register") constants for scanning eight bytes at a
// time; see Hacker's Delight or the bit-twiddling hacks "hasless" and
// "haszero". As booleans these tests are exact: a borrow can only start at a
// byte that matches.
const (
	swarLow  = 0x0101010101010101
	swarHigh = 0x8080808080808080
)

// swarSpecial reports whether any byte of x is a control character, '"' or
// '\\'. Bytes >= 0x80 never match.
func swarSpecial(x uint64) bool {
	ctl := (x - 0x20*swarLow) &^ x
	q := x ^ '"'*swarLow
	q = (q - swarLow) &^ q
	bs := x ^ '\\'*swarLow
	bs = (bs - swarLow) &^ bs
	return (ctl|q|bs)&swarHigh != 0
}

// load64 reads eight bytes of s starting at i, little-endian (the order does
// not matter to the SWAR tests, only that every byte is included).
func load64[S ~string | ~[]byte](s S, i int) uint64 {
	s = s[i : i+8]
	return uint64(s[0]) | uint64(s[1])<<8 | uint64(s[2])<<16 | uint64(s[3])<<24 |
		uint64(s[4])<<32 | uint64(s[5])<<40 | uint64(s[6])<<48 | uint64(s[7])<<56
}

// jsonSpan locates one member value inside the message.
type jsonSpan struct {
	start, end int  // value bytes, including the quotes of a string
	escaped    bool // a string value contains backslash escapes
	set        bool
}

func (s jsonSpan) isString(msg []byte) bool { return msg[s.start] == '"' }

func (jsonCodec) Decode(msg []byte, e *Envelope) error {
	prevName, prevRoom := e.Name, e.Room
	*e = Envelope{}

	// Pass 1: check the syntax of the whole message and locate the members.
	// Problems that a newer version could legitimately cause (unknown or
	// repeated members) are held back until "v" has been checked, so that a
	// v2 frame yields ErrUnsupportedVersion rather than ErrMalformed.
	var fields [jNumFields]jsonSpan
	var deferred error
	s := jsonScanner{b: msg}
	s.skipWS()
	if !s.consume('{') {
		return fmt.Errorf("%w: message is not a JSON object", ErrMalformed)
	}
	s.skipWS()
	if !s.consume('}') {
		for {
			if s.peek() != '"' {
				return s.syntaxError("member name")
			}
			ks := s.i
			kesc, err := s.scanString()
			if err != nil {
				return err
			}
			key := stringContent(msg[ks:s.i], kesc)
			s.skipWS()
			if !s.consume(':') {
				return s.syntaxError("':'")
			}
			s.skipWS()
			vs := s.i
			var vesc bool
			if s.peek() == '"' {
				vesc, err = s.scanString()
			} else {
				err = s.skipValue(1)
			}
			if err != nil {
				return err
			}
			f := jsonFieldIndex(key)
			switch {
			case f < 0:
				if deferred == nil {
					deferred = fmt.Errorf("%w: unknown member %q", ErrMalformed, truncateForError(string(key)))
				}
			case fields[f].set:
				if deferred == nil {
					deferred = fmt.Errorf("%w: duplicate member %q", ErrMalformed, jsonFieldNames[f])
				}
			default:
				fields[f] = jsonSpan{start: vs, end: s.i, escaped: vesc, set: true}
			}
			s.skipWS()
			if s.consume(',') {
				s.skipWS()
				continue
			}
			if s.consume('}') {
				break
			}
			return s.syntaxError("',' or '}'")
		}
	}
	s.skipWS()
	if s.i != len(msg) {
		return fmt.Errorf("%w: data after the JSON object at offset %d", ErrMalformed, s.i)
	}

	// Pass 2: interpret the members, version first.
	f := fields[jV]
	if !f.set {
		return fmt.Errorf("%w: missing \"v\"", ErrMalformed)
	}
	v, err := jsonUint(msg, f, "v")
	if err != nil {
		return err
	}
	if v != Version {
		return fmt.Errorf("%w: \"v\" is %s, want %d", ErrUnsupportedVersion, truncateForError(string(msg[f.start:f.end])), Version)
	}
	if deferred != nil {
		return deferred
	}

	f = fields[jKind]
	if !f.set {
		return fmt.Errorf("%w: missing \"kind\"", ErrMalformed)
	}
	if !f.isString(msg) {
		return fmt.Errorf("%w: \"kind\" is not a string", ErrMalformed)
	}
	kb := stringContent(msg[f.start:f.end], f.escaped)
	kind, ok := parseKind(kb)
	if !ok {
		return fmt.Errorf("%w: %q", ErrUnknownKind, truncateForError(string(kb)))
	}
	e.Kind = kind

	if f = fields[jID]; f.set {
		id, err := jsonUint(msg, f, "id")
		if err != nil {
			return err
		}
		if id > MaxJSONSafeInteger {
			return fmt.Errorf("%w: \"id\" exceeds 2^53-1", ErrMalformed)
		}
		e.ID = id
	}
	if f = fields[jName]; f.set {
		if !f.isString(msg) {
			return fmt.Errorf("%w: \"name\" is not a string", ErrMalformed)
		}
		name := stringContent(msg[f.start:f.end], f.escaped)
		if err := checkNameLen(uint64(len(name))); err != nil {
			return err
		}
		if string(name) == prevName {
			e.Name = prevName
		} else {
			e.Name = string(name)
		}
	}
	if f = fields[jCode]; f.set {
		code, err := jsonUint(msg, f, "code")
		if err != nil {
			return err
		}
		if code > math.MaxUint32 {
			return fmt.Errorf("%w: \"code\" does not fit in 32 bits", ErrMalformed)
		}
		e.Code = uint32(code)
	}
	if f = fields[jMeta]; f.set {
		m, err := decodeJSONMeta(msg[f.start:f.end])
		if err != nil {
			return err
		}
		e.Meta = m
	}
	if f = fields[jRoom]; f.set {
		if !f.isString(msg) {
			return fmt.Errorf("%w: \"room\" is not a string", ErrMalformed)
		}
		room := stringContent(msg[f.start:f.end], f.escaped)
		if err := checkRoomLen(uint64(len(room))); err != nil {
			return err
		}
		if string(room) == prevRoom {
			e.Room = prevRoom
		} else {
			e.Room = string(room)
		}
	}
	if f = fields[jOffset]; f.set {
		off, err := jsonUint(msg, f, "offset")
		if err != nil {
			return err
		}
		if off > MaxJSONSafeInteger {
			return fmt.Errorf("%w: \"offset\" exceeds 2^53-1", ErrMalformed)
		}
		e.Offset = off
	}
	if f = fields[jEpoch]; f.set {
		if !f.isString(msg) {
			return fmt.Errorf("%w: \"epoch\" is not a string", ErrMalformed)
		}
		epoch := stringContent(msg[f.start:f.end], f.escaped)
		if err := checkEpochLen(uint64(len(epoch))); err != nil {
			return err
		}
		e.Epoch = string(epoch)
	}
	if f = fields[jSeq]; f.set {
		if e.Seq, err = jsonCounter(msg, f, "seq"); err != nil {
			return err
		}
	}
	if f = fields[jAck]; f.set {
		if e.Ack, err = jsonCounter(msg, f, "ack"); err != nil {
			return err
		}
	}
	fp, fb := fields[jPayload], fields[jPayloadB64]
	switch {
	case fp.set && fb.set:
		return fmt.Errorf("%w: both \"payload\" and \"payload_b64\"", ErrMalformed)
	case fp.set:
		if !fp.isString(msg) {
			return fmt.Errorf("%w: \"payload\" is not a string", ErrMalformed)
		}
		p := stringContent(msg[fp.start:fp.end], fp.escaped)
		if len(p) > 0 {
			e.Payload = p[:len(p):len(p)]
		}
	case fb.set:
		if !fb.isString(msg) {
			return fmt.Errorf("%w: \"payload_b64\" is not a string", ErrMalformed)
		}
		enc := stringContent(msg[fb.start:fb.end], fb.escaped)
		// encoding/base64 silently skips CR and LF; the format does not
		// allow them, so that each payload has one encoding.
		if bytes.ContainsAny(enc, "\r\n") {
			return fmt.Errorf("%w: \"payload_b64\" contains a line break", ErrMalformed)
		}
		if len(enc) > 0 {
			p := make([]byte, base64Strict.DecodedLen(len(enc)))
			n, err := base64Strict.Decode(p, enc)
			if err != nil {
				return fmt.Errorf("%w: \"payload_b64\": %v", ErrMalformed, err)
			}
			if n > 0 {
				e.Payload = p[:n:n]
			}
		}
	}
	return e.validateKind()
}

func jsonFieldIndex(key []byte) int {
	for i, name := range jsonFieldNames {
		if string(key) == name {
			return i
		}
	}
	return -1
}

// jsonUint interprets a syntactically valid JSON value as a non-negative
// integer without fraction or exponent. Anything else is a type error:
// accepting 7.0 or 7e0 would invite peers to send IDs through floating point.
// Values above 2^64-1 saturate: every caller enforces a smaller range, and a
// huge "v" is still just "not version 1".
func jsonUint(msg []byte, f jsonSpan, what string) (uint64, error) {
	b := msg[f.start:f.end]
	switch c := b[0]; {
	case c == '-':
		return 0, fmt.Errorf("%w: %q is negative", ErrMalformed, what)
	case c < '0' || c > '9':
		return 0, fmt.Errorf("%w: %q is not a number", ErrMalformed, what)
	}
	var v uint64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, fmt.Errorf("%w: %q is not an integer", ErrMalformed, what)
		}
		d := uint64(c - '0')
		if v > (math.MaxUint64-d)/10 {
			v = math.MaxUint64
		} else {
			v = v*10 + d
		}
	}
	return v, nil
}

// jsonCounter interprets a "seq" or "ack" member: a positive integer
// within 2^53-1 (0 is absence, spelled by leaving the member out, so that
// each envelope has one encoding).
func jsonCounter(msg []byte, f jsonSpan, what string) (uint64, error) {
	v, err := jsonUint(msg, f, what)
	if err != nil {
		return 0, err
	}
	if v == 0 {
		return 0, fmt.Errorf("%w: %q is 0 (leave it out instead)", ErrMalformed, what)
	}
	if v > MaxJSONSafeInteger {
		return 0, fmt.Errorf("%w: %q exceeds 2^53-1", ErrMalformed, what)
	}
	return v, nil
}

// decodeJSONMeta interprets a syntactically valid JSON value as the meta
// object. Keys and values without escapes are substrings of one copy of the
// object's text, which saves an allocation per string.
func decodeJSONMeta(b []byte) (map[string]string, error) {
	if b[0] != '{' {
		return nil, fmt.Errorf("%w: \"meta\" is not an object", ErrMalformed)
	}
	var m map[string]string
	var text string // string(b), made on first use
	str := func(start, end int, escaped bool, content []byte) string {
		if escaped {
			return string(content)
		}
		if text == "" {
			text = string(b)
		}
		return text[start+1 : end-1]
	}
	s := jsonScanner{b: b, i: 1}
	s.skipWS()
	if s.consume('}') {
		return nil, nil
	}
	for {
		// The syntax was checked in pass 1, so the scans below cannot fail.
		ks := s.i
		kesc, _ := s.scanString()
		ke := s.i
		key := stringContent(b[ks:ke], kesc)
		s.skipWS()
		s.consume(':')
		s.skipWS()
		if s.peek() != '"' {
			return nil, fmt.Errorf("%w: meta value for %q is not a string", ErrMalformed, truncateForError(string(key)))
		}
		vs := s.i
		vesc, _ := s.scanString()
		ve := s.i
		val := stringContent(b[vs:ve], vesc)

		if len(m) == MaxMetaEntries {
			return nil, fmt.Errorf("%w: more than %d meta entries", ErrInvalidEnvelope, MaxMetaEntries)
		}
		if err := checkMetaKeyLen(uint64(len(key))); err != nil {
			return nil, err
		}
		if err := checkMetaValueLen(uint64(len(val))); err != nil {
			return nil, err
		}
		if _, dup := m[string(key)]; dup {
			return nil, fmt.Errorf("%w: duplicate meta key %q", ErrMalformed, key)
		}
		if m == nil {
			m = make(map[string]string)
		}
		m[str(ks, ke, kesc, key)] = str(vs, ve, vesc, val)

		s.skipWS()
		if s.consume('}') {
			return m, nil
		}
		s.consume(',')
		s.skipWS()
	}
}
