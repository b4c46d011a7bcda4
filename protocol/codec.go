package protocol

// Subprotocol names, as sent in the Sec-WebSocket-Protocol header. The
// version is part of the name so that a future incompatible format can be
// negotiated side by side with this one.
const (
	// SubprotocolBinary selects the marmot.v1 binary envelope, carried in
	// binary WebSocket messages.
	SubprotocolBinary = "marmot.v1"
	// SubprotocolJSON selects the marmot.json.v1 JSON envelope, carried in
	// text WebSocket messages, for peers (browsers, scripts, humans with
	// websocat) that would rather not hand-roll varints.
	SubprotocolJSON = "marmot.json.v1"
)

// WebSocket message types, numerically equal to gorilla/websocket's
// TextMessage and BinaryMessage (and to the RFC 6455 opcodes), so callers can
// pass Codec.MessageType straight to gorilla while this package stays free of
// transport imports.
const (
	textMessage   = 1
	binaryMessage = 2
)

// Codec turns envelopes into WebSocket message payloads and back. One codec
// exists per envelope subprotocol; implementations are stateless and safe for
// concurrent use.
type Codec interface {
	// Subprotocol returns the Sec-WebSocket-Protocol value that selects
	// this codec.
	Subprotocol() string
	// MessageType returns the WebSocket message type to send encodings in:
	// 1 (text) for JSON, 2 (binary) for the binary codec.
	MessageType() int
	// Append validates e, appends its encoding to dst and returns the
	// extended slice, so that writers can reuse one buffer per connection.
	// On error dst is returned unchanged.
	Append(dst []byte, e *Envelope) ([]byte, error)
	// Decode parses one complete WebSocket message payload into e,
	// overwriting every field, and validates it. e may be reused across
	// calls; e.Payload may alias msg (see Envelope.Payload). On error the
	// contents of e are unspecified.
	Decode(msg []byte, e *Envelope) error
}

// Binary is the marmot.v1 codec and the server's preferred subprotocol: it
// is compact, and it encodes into a reused buffer and decodes envelopes
// without Meta with no allocation at all.
var Binary Codec = binaryCodec{}

// JSON is the marmot.json.v1 codec, for peers that prefer readable text
// frames over speed.
var JSON Codec = jsonCodec{}

// Lookup returns the codec for a negotiated subprotocol. It reports false
// for "" (no subprotocol: raw mode, which has no envelope) and for names this
// package does not implement.
func Lookup(subprotocol string) (Codec, bool) {
	switch subprotocol {
	case SubprotocolBinary:
		return Binary, true
	case SubprotocolJSON:
		return JSON, true
	}
	return nil, false
}

// Subprotocols returns the supported subprotocols in server preference order
// (binary first, being cheaper). It returns a new slice on each call so that
// callers may keep or modify it.
func Subprotocols() []string {
	return []string{SubprotocolBinary, SubprotocolJSON}
}
