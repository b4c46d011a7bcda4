package test

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/marmotws/marmot"
	"github.com/marmotws/marmot/chaos"
)

// Issue #11's outbox test: a client sends 1,000 commands across 3 forced
// disconnects (every connection of a fault-injecting proxy reset with an
// RST), and the server's handler sees each exactly once, in order. Each
// round sends part of its commands on a live connection, resets it, and
// sends the rest at once: they go out on the dying connection or wait in
// the outbox while the client reconnects; what the server had not
// acknowledged is sent again on the resumed session, and what it had
// already handled is dropped as a duplicate.
func TestOutboxExactlyOnceThroughResets(t *testing.T) {
	const total, rounds = 1000, 3
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()

	var mu sync.Mutex
	var seen []int
	var bad []string
	progress := make(chan int, total*2)
	s := startServer(t, marmot.ServerConfig{
		KeepAlive: -1, WriteTimeout: time.Minute,
		ServerEvents: marmot.ServerEvents{
			OnHandleCommand: func(m *marmot.Message) {
				if m.IsRequest() { // the final round trip
					_ = m.Reply(nil)
					return
				}
				n, err := strconv.Atoi(string(m.Payload))
				mu.Lock()
				if err != nil || m.Name != "n" {
					bad = append(bad, m.Name+" "+string(m.Payload))
				}
				seen = append(seen, n)
				k := len(seen)
				mu.Unlock()
				progress <- k
			},
		},
	})
	p, err := chaos.NewProxy("127.0.0.1:0", s.Addr().String(), chaos.Options{Logger: logger()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Close() })
	url := strings.Replace(s.URL(), s.Addr().String(), p.Addr().String(), 1)

	connects := make(chan struct{}, 16)
	var drops atomic.Int32
	c, err := marmot.NewClient(marmot.ClientConfig{
		URL: url, Subprotocol: "marmot.v1", Logger: logger(),
		AutoReconnect: true, ReconnectStrategy: marmot.ReconnectFixed, ReconnectInterval: 50 * time.Millisecond,
		KeepAlive: -1, WriteTimeout: time.Minute,
		ClientEvents: marmot.ClientEvents{
			OnConnect:    func() { connects <- struct{}{} },
			OnDisconnect: func(*marmot.CloseError) { drops.Add(1) },
			OnError: func(err error) {
				if errors.Is(err, marmot.ErrSessionLost) || errors.Is(err, marmot.ErrUndelivered) {
					t.Errorf("client: %v", err)
				}
			},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(context.Background())
	if err := c.Connect(ctx); err != nil {
		t.Fatal(err)
	}
	waitFor(t, ctx, connects, "the first connection")

	// awaitHandled waits until the server has handled n commands.
	handled := 0
	awaitHandled := func(n int) {
		t.Helper()
		for handled < n {
			select {
			case handled = <-progress:
			case <-ctx.Done():
				t.Fatalf("the server handled %d of %d commands", handled, n)
			}
		}
	}
	send := func(from, to int) {
		t.Helper()
		for i := from; i < to; i++ {
			if err := c.SendCommand("n", []byte(strconv.Itoa(i))); err != nil {
				t.Fatalf("send %d: %v", i, err)
			}
		}
	}
	per := total / (rounds + 1)
	for r := range rounds {
		base := r * per
		send(base, base+per/2)
		awaitHandled(base + per/4) // some handled, some maybe in flight
		if n := p.ResetAll(); n == 0 {
			t.Fatalf("round %d: no connection to reset", r)
		}
		send(base+per/2, base+per) // on the dying connection, or queued
		waitFor(t, ctx, connects, "reconnect "+strconv.Itoa(r+1))
	}
	send(rounds*per, total)
	awaitHandled(total)
	// A request after the last command: handled after every command
	// before it, so a duplicate would be in seen by its reply.
	rctx, rcancel := context.WithTimeout(ctx, guard)
	defer rcancel()
	if _, err := c.Request(rctx, "sync", nil); err != nil {
		t.Fatalf("final request: %v", err)
	}

	mu.Lock()
	defer mu.Unlock()
	if len(bad) > 0 {
		t.Fatalf("unexpected messages: %q", bad)
	}
	if len(seen) != total {
		t.Fatalf("the handler saw %d commands, want %d (duplicates?)", len(seen), total)
	}
	for i, n := range seen {
		if n != i {
			t.Fatalf("command %d seen at position %d (out of order, lost or duplicated)", n, i)
		}
	}
	if d := drops.Load(); d < rounds {
		t.Fatalf("%d disconnects, want at least %d", d, rounds)
	}
	st := s.Stats()
	if st.Sessions != 1 {
		t.Fatalf("%d sessions on the server, want 1 (resumed every time)", st.Sessions)
	}
	// Messages received beyond the commands and the request: re-sent ones
	// the server dropped as duplicates.
	t.Logf("%d disconnects; the server received %d messages for %d commands", drops.Load(), st.TotalMessagesReceived, total)
}

func waitFor[T any](t *testing.T, ctx context.Context, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-ctx.Done():
		t.Fatalf("timed out waiting for %s", what)
	}
	var zero T
	return zero
}
