package protocol

import (
	"bytes"
	"fmt"
	"unicode/utf16"
	"unicode/utf8"
)

// The strict JSON scanner under the marmot.json.v1 decoder (json.go): it
// validates tokens without building values, and decodes the strings the
// decoder keeps.

// stringContent returns the decoded content of a JSON string token that
// scanString accepted (quotes included). Without escapes it aliases the
// token.
func stringContent(tok []byte, escaped bool) []byte {
	tok = tok[1 : len(tok)-1]
	if !escaped {
		return tok
	}
	return unescapeJSON(tok)
}

// unescapeJSON decodes the content of a string that scanString accepted. An
// escape is never shorter than what it decodes to, so len(src) bounds the
// allocation.
func unescapeJSON(src []byte) []byte {
	dst := make([]byte, 0, len(src))
	for i := 0; i < len(src); {
		c := src[i]
		if c != '\\' {
			dst = append(dst, c)
			i++
			continue
		}
		switch src[i+1] {
		case 'b':
			dst = append(dst, '\b')
		case 'f':
			dst = append(dst, '\f')
		case 'n':
			dst = append(dst, '\n')
		case 'r':
			dst = append(dst, '\r')
		case 't':
			dst = append(dst, '\t')
		case 'u':
			r, _ := hex4(src[i+2:])
			i += 6
			if utf16.IsSurrogate(r) {
				r2, _ := hex4(src[i+2:])
				r = utf16.DecodeRune(r, r2)
				i += 6
			}
			dst = utf8.AppendRune(dst, r)
			continue
		default: // '"', '\\', '/'
			dst = append(dst, src[i+1])
		}
		i += 2
	}
	return dst
}

// hex4 decodes the four hex digits at the start of b.
func hex4(b []byte) (rune, bool) {
	if len(b) < 4 {
		return 0, false
	}
	var r rune
	for _, c := range b[:4] {
		switch {
		case '0' <= c && c <= '9':
			c -= '0'
		case 'a' <= c && c <= 'f':
			c = c - 'a' + 10
		case 'A' <= c && c <= 'F':
			c = c - 'A' + 10
		default:
			return 0, false
		}
		r = r<<4 | rune(c)
	}
	return r, true
}

// jsonScanner is a minimal strict RFC 8259 scanner. It validates without
// building values, so the decoder allocates only for what it keeps.
type jsonScanner struct {
	b []byte
	i int
}

func (s *jsonScanner) peek() byte {
	if s.i < len(s.b) {
		return s.b[s.i]
	}
	return 0
}

func (s *jsonScanner) consume(c byte) bool {
	if s.i < len(s.b) && s.b[s.i] == c {
		s.i++
		return true
	}
	return false
}

func (s *jsonScanner) skipWS() {
	for s.i < len(s.b) {
		switch s.b[s.i] {
		case ' ', '\t', '\n', '\r':
			s.i++
		default:
			return
		}
	}
}

func (s *jsonScanner) syntaxError(want string) error {
	if s.i >= len(s.b) {
		return fmt.Errorf("%w: truncated JSON, want %s", ErrMalformed, want)
	}
	return fmt.Errorf("%w: invalid JSON at offset %d, want %s", ErrMalformed, s.i, want)
}

// scanString advances over the string token at s.i (which is '"') and
// reports whether it contains escapes. It enforces what encoding/json lets
// slide: invalid UTF-8 and unpaired surrogate escapes are errors, not
// U+FFFD, so that every accepted string round-trips exactly.
func (s *jsonScanner) scanString() (escaped bool, err error) {
	b := s.b
	i := s.i + 1
	for i < len(b) {
		// Skip eight bytes at a time while all are plain ASCII.
		for i+8 <= len(b) {
			if x := load64(b, i); swarSpecial(x) || x&swarHigh != 0 {
				break
			}
			i += 8
		}
		if i == len(b) {
			break
		}
		if jsonASCII[b[i]] {
			i++
			continue
		}
		c := b[i]
		switch {
		case c == '"':
			s.i = i + 1
			return escaped, nil
		case c == '\\':
			escaped = true
			if i+1 >= len(b) {
				return false, fmt.Errorf("%w: truncated JSON string", ErrMalformed)
			}
			switch b[i+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				i += 2
			case 'u':
				r, ok := hex4(b[i+2:])
				if !ok {
					return false, fmt.Errorf("%w: bad \\u escape at offset %d", ErrMalformed, i)
				}
				if utf16.IsSurrogate(r) {
					if r >= 0xDC00 {
						return false, fmt.Errorf("%w: unpaired surrogate escape at offset %d", ErrMalformed, i)
					}
					j := i + 6
					if j+1 >= len(b) || b[j] != '\\' || b[j+1] != 'u' {
						return false, fmt.Errorf("%w: unpaired surrogate escape at offset %d", ErrMalformed, i)
					}
					r2, ok := hex4(b[j+2:])
					if !ok || r2 < 0xDC00 || r2 > 0xDFFF {
						return false, fmt.Errorf("%w: unpaired surrogate escape at offset %d", ErrMalformed, i)
					}
					i += 6
				}
				i += 6
			default:
				return false, fmt.Errorf("%w: bad escape at offset %d", ErrMalformed, i)
			}
		case c < 0x20:
			return false, fmt.Errorf("%w: control character in JSON string at offset %d", ErrMalformed, i)
		default:
			r, size := utf8.DecodeRune(b[i:])
			if r == utf8.RuneError && size == 1 {
				return false, fmt.Errorf("%w: invalid UTF-8 in JSON string at offset %d", ErrMalformed, i)
			}
			i += size
		}
	}
	return false, fmt.Errorf("%w: unterminated JSON string", ErrMalformed)
}

// skipValue advances over one JSON value at s.i, validating its syntax.
// depth is the nesting level of the value.
func (s *jsonScanner) skipValue(depth int) error {
	switch c := s.peek(); {
	case c == '"':
		_, err := s.scanString()
		return err
	case c == '{' || c == '[':
		if depth > maxJSONDepth {
			return fmt.Errorf("%w: JSON nested deeper than %d", ErrMalformed, maxJSONDepth)
		}
		closer := byte('}')
		if c == '[' {
			closer = ']'
		}
		s.i++
		s.skipWS()
		if s.consume(closer) {
			return nil
		}
		for {
			if c == '{' {
				if s.peek() != '"' {
					return s.syntaxError("member name")
				}
				if _, err := s.scanString(); err != nil {
					return err
				}
				s.skipWS()
				if !s.consume(':') {
					return s.syntaxError("':'")
				}
				s.skipWS()
			}
			if err := s.skipValue(depth + 1); err != nil {
				return err
			}
			s.skipWS()
			if s.consume(closer) {
				return nil
			}
			if !s.consume(',') {
				return s.syntaxError("',' or '" + string(closer) + "'")
			}
			s.skipWS()
		}
	case c == 't':
		return s.literal("true")
	case c == 'f':
		return s.literal("false")
	case c == 'n':
		return s.literal("null")
	case c == '-' || ('0' <= c && c <= '9'):
		return s.number()
	}
	return s.syntaxError("a value")
}

func (s *jsonScanner) literal(lit string) error {
	if !bytes.HasPrefix(s.b[s.i:], []byte(lit)) {
		return s.syntaxError(lit)
	}
	s.i += len(lit)
	return nil
}

// number advances over a number token following the RFC 8259 grammar:
// -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?
func (s *jsonScanner) number() error {
	s.consume('-')
	switch c := s.peek(); {
	case c == '0':
		s.i++
	case '1' <= c && c <= '9':
		s.digits()
	default:
		return s.syntaxError("a digit")
	}
	if s.consume('.') {
		if s.digits() == 0 {
			return s.syntaxError("a digit")
		}
	}
	if s.consume('e') || s.consume('E') {
		if !s.consume('+') {
			s.consume('-')
		}
		if s.digits() == 0 {
			return s.syntaxError("a digit")
		}
	}
	return nil
}

func (s *jsonScanner) digits() int {
	start := s.i
	for s.i < len(s.b) && '0' <= s.b[s.i] && s.b[s.i] <= '9' {
		s.i++
	}
	return s.i - start
}
