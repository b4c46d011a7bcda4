package main

import (
	"context"
	"log/slog"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// TestMain checks that stopping the server and closing the clients leaves
// no goroutine behind.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// guard bounds every wait; it only fires when the test is already failing,
// so it is generous for a busy 2-core machine.
const guard = 30 * time.Second

func testLogger() *slog.Logger {
	if os.Getenv("MARMOT_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

// logWriter shows the demo's output with the test's log (go test -v).
type logWriter struct{ t *testing.T }

func (w logWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSuffix(string(p), "\n"))
	return len(p), nil
}

// The demo over loopback: everyone hears every line once, in order; who
// lists everyone; a crashed member comes back with its nick.
func TestDemo(t *testing.T) {
	log := testLogger()
	c, err := startChat(context.Background(), "127.0.0.1:0", log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), guard)
		defer cancel()
		if err := c.stop(ctx); err != nil {
			t.Errorf("stop: %v", err)
		}
	})

	ctx, cancel := context.WithTimeout(context.Background(), guard)
	defer cancel()
	res, err := runDemo(ctx, c.srv.URL(), logWriter{t}, log)
	if err != nil {
		t.Fatalf("demo: %v; received %q", err, res.Received)
	}

	if res.Who != "ada, bob, cy" {
		t.Errorf("who = %q, want %q", res.Who, "ada, bob, cy")
	}
	said := []string{
		"said: ada: hello, everyone",
		"said: bob: hi ada",
		"said: cy: hey both",
		// Said by bob's fresh member after the crash: its nick came back.
		"said: bob: back again",
	}
	// The transcripts are complete (the clients have closed), so equality
	// means every line exactly once, in order, and nothing else.
	for nick, want := range map[string][]string{
		"ada": said,
		"bob": slices.Insert(slices.Clone(said), 3, "notice: restarted (1): welcome back, bob"),
		"cy":  said,
	} {
		if got := res.Received[nick]; !slices.Equal(got, want) {
			t.Errorf("%s received\n%q\nwant\n%q", nick, got, want)
		}
	}
	if st := c.srv.Stats(); st.ActorRestarts != 1 {
		t.Errorf("ActorRestarts = %d, want 1 (the crash)", st.ActorRestarts)
	}
}
