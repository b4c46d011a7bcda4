package cluster

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"testing"
	"time"

	"github.com/marmotws/marmot"
)

// TestHealthServerQuiet: the automanaged health server writes nothing to
// stdout (protoactor's own prints "⇨ http server started on ..."), and
// answers /_health: 503 while its system has no cluster member.
func TestHealthServerQuiet(t *testing.T) {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	stdout := os.Stdout
	os.Stdout = w // echo takes its output from os.Stdout when it is made
	restored := false
	restore := func() {
		if !restored {
			os.Stdout, restored = stdout, true
		}
	}
	defer restore()

	sys := marmot.NewActorSystem(slog.New(slog.DiscardHandler))
	defer sys.Shutdown()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		restore()
		t.Fatal(err)
	}
	e := newHealthServer(sys, slog.New(slog.DiscardHandler), ln.Addr().(*net.TCPAddr).Port)
	e.Listener = ln
	served := make(chan error, 1)
	go func() { served <- e.Start("") }()

	ctx, cancel := context.WithTimeout(context.Background(), waitTimeoutUnit)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+ln.Addr().String()+"/_health", nil)
	res, err := http.DefaultClient.Do(req)
	status := 0
	if err == nil {
		status = res.StatusCode
		_ = res.Body.Close()
	}
	_ = e.Close()
	serveErr := <-served
	restore()
	_ = w.Close()
	printed, _ := io.ReadAll(r)

	if err != nil {
		t.Fatalf("GET /_health: %v", err)
	}
	if status != http.StatusServiceUnavailable {
		t.Fatalf("GET /_health without a member: %d, want 503", status)
	}
	if serveErr != nil && !errors.Is(serveErr, http.ErrServerClosed) {
		t.Fatalf("serve: %v", serveErr)
	}
	if len(printed) != 0 {
		t.Fatalf("the health server printed %q to stdout", printed)
	}
}

// waitTimeoutUnit bounds the unit tests' waits on an event.
const waitTimeoutUnit = 30 * time.Second
