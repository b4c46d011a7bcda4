package wsconn

import (
	"bytes"
	"compress/flate"
	"io"
	"strings"
	"testing"
)

// BenchmarkDeflate is the writer's cost for a 1 KiB JSON message: what a
// compressed echo pays per reply, and a broadcast once.
func BenchmarkDeflate(b *testing.B) {
	bp := batchBuffers.get()
	b.SetBytes(int64(len(compressible)))
	b.ReportAllocs()
	for b.Loop() {
		*bp, _ = deflate((*bp)[:0], compressible, 1)
	}
}

// BenchmarkInflate is the reader's cost for the same message, the way
// gorilla inflates it (a pooled compress/flate reader, reset per message,
// over the payload and RFC 7692's tail).
func BenchmarkInflate(b *testing.B) {
	payload, _ := deflate(nil, compressible, 1)
	fr := flate.NewReader(nil)
	out := make([]byte, 0, 2048)
	b.SetBytes(int64(len(compressible)))
	b.ReportAllocs()
	for b.Loop() {
		_ = fr.(flate.Resetter).Reset(io.MultiReader(bytes.NewReader(payload), strings.NewReader("\x00\x00\xff\xff\x01\x00\x00\xff\xff")), nil)
		buf := bytes.NewBuffer(out[:0])
		if _, err := buf.ReadFrom(fr); err != nil {
			b.Fatal(err)
		}
	}
}
