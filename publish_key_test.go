package marmot_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/marmotws/marmot"
)

// TestPublishKeys: publishes made for a message (Server.PublishFor), a
// client's marmot.publish with a session, and Server.PublishKeyed carry
// their keys to the RoomBroker; a broker that drops a repeated key and
// confirms it (Server.ConfirmRoom) has its member get the message once
// and its publisher answered; a publish the broker fails is answered with
// ErrPublishFailed, to the server's caller and to a client.
func TestPublishKeys(t *testing.T) {
	b := newMemBroker()
	b.confirm, b.confirmWait = true, time.Minute // never timed out here
	var s1, s2 *marmot.Server
	type handled struct {
		keys [3]string
		errs [2]error
	}
	done := make(chan handled, 4)
	s1 = startServer(t, marmot.ServerConfig{NodeID: 1, RoomBroker: b.For(&s1), ServerEvents: marmot.ServerEvents{
		OnHandleCommand: func(m *marmot.Message) {
			if m.Name != "pub" {
				return
			}
			var h handled
			_, h.errs[0] = s1.PublishFor(m, "r", m.Payload)
			_, h.errs[1] = s1.PublishFor(m, "r", append(m.Payload, '2'))
			h.keys = [3]string{m.PublishKey(0), m.PublishKey(1), m.PublishKey(0)}
			done <- h
			_ = m.Reply(nil)
		},
	}})
	s2 = startServer(t, marmot.ServerConfig{NodeID: 2, RoomBroker: b.For(&s2)})
	member, got := roomClient(t, s2, "marmot.v1", nil)
	ctx := ctxTimeout(t)
	if err := member.Join(ctx, "r"); err != nil {
		t.Fatal(err)
	}
	next := func(want string) {
		t.Helper()
		if m := recv(t, got, want); string(m.Payload) != want {
			t.Fatalf("the member got %q, want %q", m.Payload, want)
		}
	}

	// A client with a session (outbox): its request's publishes are keyed,
	// one key each, the same key for the same index.
	errs := make(chan error, 4)
	pub := newClient(t, marmot.ClientConfig{URL: s1.URL(), Subprotocol: "marmot.v1", AutoReconnect: true, OutboxBytes: 1 << 20,
		ClientEvents: marmot.ClientEvents{OnError: func(err error) { errs <- err }}})
	if err := pub.Connect(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := pub.Request(ctx, "pub", []byte("x")); err != nil {
		t.Fatal(err)
	}
	h := recv(t, done, "the handler")
	if h.errs[0] != nil || h.errs[1] != nil {
		t.Fatalf("PublishFor: %v", h.errs)
	}
	if h.keys[0] == "" || !strings.HasPrefix(h.keys[0], "s") || h.keys[1] == h.keys[0] || h.keys[2] != h.keys[0] {
		t.Fatalf("publish keys %q: want two distinct, stable, marmot's (s...)", h.keys)
	}
	b.mu.Lock()
	sent := append([]string(nil), b.published...)
	b.mu.Unlock()
	if len(sent) != 2 || sent[0] != h.keys[0] || sent[1] != h.keys[1] {
		t.Fatalf("the broker got the keys %q, want %q", sent, h.keys[:2])
	}
	next("x")
	next("x2")

	// The same key again: confirmed, delivered once.
	for range 2 {
		if _, err := s1.PublishKeyed(ctx, "r", "order-17", []byte("once")); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s1.PublishKeyed(ctx, "r", strings.Repeat("k", marmot.MaxPublishKeyLen+1), []byte("long")); !errors.Is(err, marmot.ErrInvalidPublishKey) {
		t.Fatalf("a key too long: %v", err)
	}
	// A client's own Publish with a session is keyed by marmot.
	if err := pub.Publish("r", []byte("from-client")); err != nil {
		t.Fatal(err)
	}
	next("once")
	next("from-client") // not "once" twice

	// A client without a session: no key (its messages are handled once).
	plain, _ := roomClient(t, s1, "marmot.v1", nil)
	if _, err := plain.Request(ctx, "pub", []byte("y")); err != nil {
		t.Fatal(err)
	}
	if h := recv(t, done, "the handler"); h.keys[0] != "" || h.errs[0] != nil {
		t.Fatalf("a message without a session: key %q, %v", h.keys[0], h.errs[0])
	}
	next("y")
	next("y2")

	b.mu.Lock()
	keys := append([]string(nil), b.published...)
	b.mu.Unlock()
	if len(keys) != 7 || keys[2] != "order-17" || keys[3] != "order-17" ||
		!strings.HasPrefix(keys[4], "s") || keys[4] == keys[0] || keys[5] != "" || keys[6] != "" {
		t.Fatalf("the broker saw the keys %q", keys)
	}

	// A publish the broker fails: ErrPublishFailed, to Publish's caller
	// and to a client's Publish (through OnError, as a *RoomError).
	if _, err := s1.Publish("r", []byte("fail")); !errors.Is(err, marmot.ErrPublishFailed) {
		t.Fatalf("a failed publish: %v, want ErrPublishFailed", err)
	}
	if err := pub.Publish("r", []byte("fail")); err != nil {
		t.Fatal(err)
	}
	err := recv(t, errs, "the client's failed publish")
	var re *marmot.RoomError
	var remote *marmot.RemoteError
	if !errors.As(err, &re) || !errors.As(err, &remote) || !strings.Contains(remote.Message, marmot.ErrPublishFailed.Error()) {
		t.Fatalf("the client's failed publish: %v", err)
	}
	// The room goes on.
	if _, err := s1.Publish("r", []byte("after")); err != nil {
		t.Fatal(err)
	}
	next("after")
}

// TestPublishHeldAckNoDeadlock: a client's Publish waits for its broker's
// confirmation (and holds its session's acknowledgement), and the next
// message of the same session is a request whose handler publishes to the
// same room and waits (holding the session while it is handled). When the
// confirmations come, the room answers the first publish without waiting
// for the session, then the handler's: both are answered, in order, and
// the client's session acknowledges everything.
func TestPublishHeldAckNoDeadlock(t *testing.T) {
	b := newMemBroker()
	b.confirm, b.confirmWait = true, time.Minute
	var s1 *marmot.Server
	done := make(chan error, 1)
	s1 = startServer(t, marmot.ServerConfig{NodeID: 1, RoomBroker: b.For(&s1), ServerEvents: marmot.ServerEvents{
		OnHandleCommand: func(m *marmot.Message) {
			if m.Name == "pub" {
				_, err := s1.PublishFor(m, "r", m.Payload)
				done <- err
				_ = m.Reply(nil)
			}
		},
	}})
	errs := make(chan error, 4)
	pub := newClient(t, marmot.ClientConfig{URL: s1.URL(), Subprotocol: "marmot.v1", AutoReconnect: true, OutboxBytes: 1 << 20,
		ClientEvents: marmot.ClientEvents{OnError: func(err error) { errs <- err }}})
	ctx := ctxTimeout(t)
	if err := pub.Connect(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := s1.Publish("r", []byte("start")); err != nil { // the room lives
		t.Fatal(err)
	}
	b.hold(s1)
	if err := pub.Publish("r", []byte("p1")); err != nil {
		t.Fatal(err)
	}
	answered := make(chan error, 1)
	go func() {
		_, err := pub.Request(ctx, "pub", []byte("p2"))
		answered <- err
	}()
	// Both publishes reached the broker before the release.
	for {
		b.mu.Lock()
		n := len(b.published)
		b.mu.Unlock()
		if n == 3 {
			break
		}
		select {
		case err := <-errs:
			t.Fatal(err)
		case <-time.After(time.Millisecond): // polling the broker's record, bounded below
		case <-ctx.Done():
			t.Fatalf("the publishes did not reach the broker (%d)", n)
		}
	}
	b.release(s1)
	if err := recv(t, done, "the handler's publish"); err != nil {
		t.Fatalf("the handler's publish: %v", err)
	}
	if err := recv(t, answered, "the request"); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-errs:
		t.Fatalf("the client: %v", err)
	default:
	}
}
