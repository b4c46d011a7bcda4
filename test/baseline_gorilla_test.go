package test

import (
	"testing"

	"github.com/marmotws/marmot/test/internal/gorillahub"
)

// startGorilla starts the baseline for bench_test.go: a WebSocket server
// written the way gorilla/websocket's own chat example teaches, without
// marmot (see gorillahub). It echoes (same frame type) or drops what it
// reads, and broadcasts on request.
func startGorilla(tb testing.TB, echo bool) *gorillahub.Server {
	tb.Helper()
	mode := gorillahub.Silent
	if echo {
		mode = gorillahub.Echo
	}
	g, err := gorillahub.Start("127.0.0.1:0", mode, tb.Errorf)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(g.Close)
	return g
}
