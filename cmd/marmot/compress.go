package main

import (
	"errors"
	"flag"

	"github.com/marmotws/marmot"
)

// compressFlags are serve's and connect's permessage-deflate flags.
type compressFlags struct {
	c *marmot.Compression
}

func addCompressFlags(fs *flag.FlagSet, c *marmot.Compression) *compressFlags {
	fs.BoolVar(&c.Enabled, "compress", false, "permessage-deflate (RFC 7692): accept it (serve) or offer it (connect); used when both ends enable it, never with encryption")
	fs.IntVar(&c.Threshold, "compress-threshold", marmot.DefaultCompressionThreshold, "with --compress, messages shorter than this many bytes go out uncompressed (negative: compress all)")
	fs.IntVar(&c.Level, "compress-level", 1, "with --compress, the flate level: 1 (fastest) to 9 (smallest)")
	return &compressFlags{c: c}
}

// check validates the flags; maxMessage is --max-message-size, which also
// bounds how far a compressed message may inflate.
func (f *compressFlags) check(maxMessage int64) error {
	if f.c.Level < 1 || f.c.Level > 9 {
		return errors.New("invalid value for flag -compress-level: want 1 to 9")
	}
	if f.c.Threshold == 0 {
		f.c.Threshold = -1 // 0 would mean the default; whoever types it means "all"
	}
	if f.c.Enabled && maxMessage < 0 {
		return errors.New("flag -compress needs a bounded -max-message-size: it also bounds how far a compressed message may inflate")
	}
	return nil
}
