package main

import (
	"strings"
	"testing"

	"github.com/marmotws/marmot/internal/wsconn"
)

// serve --compress and connect --compress negotiate permessage-deflate: a
// long line is echoed, compressed on its way back; a short one is not.
func TestCompressedEcho(t *testing.T) {
	srv, url := serve(t, "--compress", "--compress-threshold", "200")
	p := start(t, "connect", "--compress", url)
	if line := p.stderr.expect(t, "* connected to "); !strings.HasSuffix(line, " (raw, compressed)") {
		t.Errorf("connected line %q, want (raw, compressed)", line)
	}
	srv.stderr.expect(t, "compressed=true")
	long := strings.Repeat("marmot ", 40)
	before := wsconn.Deflations()
	p.send(t, "short")
	p.stdout.expect(t, "< short")
	if got := wsconn.Deflations() - before; got != 0 {
		t.Fatalf("a 5-byte echo was deflated %d times, want 0 (under --compress-threshold)", got)
	}
	p.send(t, long)
	p.stdout.expect(t, "< "+long)
	if got := wsconn.Deflations() - before; got != 1 {
		t.Fatalf("a %d-byte echo was deflated %d times, want 1", len(long), got)
	}
	p.quit(t)
	srv.stop(t)
}
