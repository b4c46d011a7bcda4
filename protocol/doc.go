// Package protocol defines marmot's wire formats: the raw mode, the binary
// marmot.v1 envelope and the JSON marmot.json.v1 envelope.
//
// It is pure: no sockets, no actors, so every decoder can be fuzzed alone.
package protocol
