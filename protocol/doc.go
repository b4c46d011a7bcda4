// Package protocol defines marmot's wire formats: the raw mode, the binary
// marmot.v1 envelope and the JSON marmot.json.v1 envelope.
//
// It is pure: no sockets, no actors, so every decoder can be fuzzed alone.
//
// The subprotocol negotiated in the WebSocket handshake picks the format.
// Without one the connection is in raw mode: every WebSocket data message is
// one application message and there is no envelope, so this package has no
// codec for it (Lookup("") reports false). With marmot.v1 or marmot.json.v1
// every message is one Envelope, encoded by the Codec that Lookup returns.
//
// Decoders treat their input as hostile. They never panic, bound every
// length or count by the bytes actually remaining before allocating, reject
// rather than skip anything they do not understand, and apply the same rules
// as Envelope.Validate, so a handler only ever sees envelopes that a
// conforming peer could have sent. docs/PROTOCOL.md specifies both formats
// precisely enough to implement a peer in another language.
package protocol
