// Package crypto seals and opens marmot's encrypted frames: AES in the nine
// modes of the seed components, at three key sizes, in an authenticated
// "secure" profile and a byte-exact "compat" profile for Delphi peers.
//
// It is pure: no sockets, no actors, so every decoder can be fuzzed alone.
package crypto
