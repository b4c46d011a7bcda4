package test

import (
	"context"
	"log/slog"
	"os"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/marmotws/marmot"
)

// TestMain fails the run if any goroutine outlives the tests or benchmarks:
// servers, clients and peers must all shut down completely.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// guard bounds every wait on an event; it only fires when a test is already
// failing, so it can be generous for a busy CI machine running -race.
const guard = 30 * time.Second

// logger discards logs unless MARMOT_TEST_LOG is set.
func logger() *slog.Logger {
	if os.Getenv("MARMOT_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

// startServer starts a marmot server on a free 127.0.0.1 port and stops it
// when the test ends.
func startServer(tb testing.TB, cfg marmot.ServerConfig) *marmot.Server {
	tb.Helper()
	cfg.Addr = "127.0.0.1:0"
	if cfg.Logger == nil {
		cfg.Logger = logger()
		cfg.LogLevel = slog.LevelDebug
	}
	s, err := marmot.NewServer(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	if err := s.Start(context.Background()); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := s.Stop(ctx); err != nil {
			tb.Errorf("stop: %v", err)
		}
	})
	return s
}

// echo is the handler of every echo server here: the payload goes back in
// the form it came in.
func echo(m *marmot.Message) { _ = m.Reply(m.Payload) }

// recv waits for one value from ch.
func recv[T any](tb testing.TB, ch <-chan T, what string) T {
	tb.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(guard):
		tb.Fatalf("timed out waiting for %s", what)
	}
	var zero T
	return zero
}

// timeout returns a context that ends with the test or after guard.
func timeout(tb testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), guard)
	tb.Cleanup(cancel)
	return ctx
}
