package protocol

import (
	"fmt"
	"unicode/utf8"
)

// AuthRequestName is the reserved request a client sends as its first
// message to authenticate with a token, for clients that cannot put the
// token in the upgrade request (browsers cannot set headers, and a query
// parameter ends up in logs). The payload is the token, as UTF-8 text.
// The server answers it before it handles anything else: an empty reply,
// or an error 401 followed by close 4503 (docs/PROTOCOL.md section 7).
const AuthRequestName = "marmot.auth"

// MaxTokenSize bounds the token of an auth request.
const MaxTokenSize = 8 << 10

// AuthToken returns the token a client's first message carries: in an
// envelope protocol a request named AuthRequestName whose payload is the
// token; in raw mode (raw true) the message itself. The token must be
// non-empty printable ASCII-range UTF-8 of at most MaxTokenSize bytes
// (JWTs are base64url and dots). Errors wrap ErrInvalidEnvelope.
func AuthToken(kind Kind, name string, payload []byte, raw bool) (string, error) {
	if !raw && (kind != KindRequest || name != AuthRequestName) {
		return "", fmt.Errorf("%w: expected a %s request first, got %s %q", ErrInvalidEnvelope, AuthRequestName, kind, name)
	}
	if len(payload) == 0 {
		return "", fmt.Errorf("%w: empty token", ErrInvalidEnvelope)
	}
	if len(payload) > MaxTokenSize {
		return "", fmt.Errorf("%w: token of %d bytes (limit %d)", ErrInvalidEnvelope, len(payload), MaxTokenSize)
	}
	if !utf8.Valid(payload) {
		return "", fmt.Errorf("%w: token is not UTF-8", ErrInvalidEnvelope)
	}
	for _, b := range payload {
		if b < 0x21 || b == 0x7f {
			return "", fmt.Errorf("%w: token contains a space or control character", ErrInvalidEnvelope)
		}
	}
	return string(payload), nil
}
