package actors

import "github.com/marmotws/marmot/internal/wsconn"

// Compression configures permessage-deflate (RFC 7692) on a hub or a
// client: negotiated only when both sides enable it, always without
// context takeover (each message is compressed on its own, which is what
// lets a broadcast or a room message be compressed once for all its
// recipients). Messages under Threshold bytes, and those compression does
// not shrink, go out as they are. A compressed message is inflated no
// further than MaxMessageSize (1009 Message Too Big past it): set one when
// compression is on, or a small message may inflate without bound.
//
// With Encryption set, compression stays off: ciphertext does not compress.
// See docs/PERFORMANCE.md for what it costs and saves.
type Compression struct {
	// Enabled accepts (hub) or offers (client) permessage-deflate.
	Enabled bool
	// Threshold is the smallest message compressed (0:
	// DefaultCompressionThreshold; < 0: every message).
	Threshold int
	// Level is the flate level, 1 (fastest; the default when 0) to 9
	// (smallest).
	Level int
}

// DefaultCompressionThreshold is Compression.Threshold's default: deflate's
// fast levels store shorter messages as they are anyway.
const DefaultCompressionThreshold = wsconn.DefaultCompressionThreshold

// transport is c for the WebSocket transport; off with encryption.
func (c Compression) transport(enc *Encryption) wsconn.Compression {
	if enc != nil {
		return wsconn.Compression{}
	}
	return wsconn.Compression{Enabled: c.Enabled, Threshold: c.Threshold, Level: c.Level}
}
