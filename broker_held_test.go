package marmot_test

import (
	"sync"
	"testing"
	"time"

	"github.com/marmotws/marmot"
)

// laterBroker is a memBroker (without its own tickets) that confirms a
// server's publishes after their delivery, with Server.ConfirmRoom (as a
// cluster's broker does once another node holds a publish its own grain
// numbered).
type laterBroker struct {
	marmot.RoomBroker
	s      **marmot.Server
	mu     sync.Mutex
	ticket uint64
}

func (l *laterBroker) Publish(room string, m *marmot.RoomMessage) (uint64, error) {
	if _, err := l.RoomBroker.Publish(room, m); err != nil {
		return 0, err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.ticket++
	return l.ticket, nil
}

func (l *laterBroker) ConfirmTimeout() time.Duration { return time.Minute }

// confirm confirms every publish so far.
func (l *laterBroker) confirm(room string) {
	l.mu.Lock()
	t := l.ticket
	l.mu.Unlock()
	(*l.s).ConfirmRoom(room, t, nil)
}

// TestBrokerConfirmLater: a confirmation after the delivery
// (Server.ConfirmRoom) answers the publishes up to its ticket, and is
// neither sent to the members nor moves the room's position (the next
// message has the next offset).
func TestBrokerConfirmLater(t *testing.T) {
	var s *marmot.Server
	l := &laterBroker{RoomBroker: newMemBroker().For(&s), s: &s}
	s = startServer(t, marmot.ServerConfig{NodeID: 1, RoomBroker: l})
	c, got := roomClient(t, s, "marmot.v1", nil)
	if err := c.Join(ctxTimeout(t), "r"); err != nil {
		t.Fatal(err)
	}
	for i, text := range []string{"a", "b"} {
		done := make(chan error, 1)
		go func() {
			_, err := s.Publish("r", []byte(text))
			done <- err
		}()
		m := recv(t, got, text)
		if string(m.Payload) != text || m.Offset != uint64(i+1) {
			t.Fatalf("got %q at #%d, want %q at #%d", m.Payload, m.Offset, text, i+1)
		}
		select {
		case err := <-done:
			t.Fatalf("Publish returned %v before its confirmation", err)
		default:
		}
		l.confirm("r") // not a message: the next one checked is "b" at #2
		if err := recv(t, done, "Publish's return"); err != nil {
			t.Fatal(err)
		}
	}
}
