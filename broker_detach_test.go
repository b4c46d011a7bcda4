package marmot_test

import (
	"testing"
	"time"

	"github.com/marmotws/marmot"
	"github.com/marmotws/marmot/internal/rawconn"
	"github.com/marmotws/marmot/protocol"
)

// drop takes s off room's subscribers, as a cluster's grain that moved
// or a node that rejoined: s gets nothing more of the room, and its room
// is told (DetachRoom).
func (b *memBroker) drop(s *marmot.Server, room string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	delete(b.subs[room], s)
	s.DetachRoom(room)
}

// resubscribe subscribes s to room again, without history (nothing
// missed is sent): its room is told the broker's position (AttachRoom),
// after every delivery before it.
func (b *memBroker) resubscribe(s *marmot.Server, room string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.subs[room][s] = true
	s.AttachRoom(room, marmot.RoomPosition{Epoch: "e1", Offset: b.offsets[room]})
}

// TestRoomBrokerJoinWaitsForResubscription: a server whose room the
// broker stopped delivering to (the grain lost its subscription, as after
// a rejoin) does not answer a client's join with its old position: the
// join waits until the broker subscribes the room again, and is answered
// with the broker's position, so the next message follows it with no gap
// (answered at once it was told offset 0, and the next message was #4).
func TestRoomBrokerJoinWaitsForResubscription(t *testing.T) {
	b := newMemBroker()
	var s1, s2 *marmot.Server
	s1 = startServer(t, marmot.ServerConfig{RoomBroker: b.For(&s1)})
	s2 = startServer(t, marmot.ServerConfig{RoomBroker: b.For(&s2), ServerEvents: marmot.ServerEvents{
		OnHandleCommand: func(m *marmot.Message) { _ = m.Reply(nil) },
	}})
	ctx := ctxTimeout(t)
	// s2 has the room (a member of its own).
	other, gotOther := roomClient(t, s2, "marmot.v1", nil)
	if err := other.Join(ctx, "r"); err != nil {
		t.Fatal(err)
	}
	b.drop(s2, "r")
	const missed = 3
	for range missed {
		if _, err := s1.Publish("r", []byte("while dropped")); err != nil {
			t.Fatal(err)
		}
	}

	c := rawconn.Dial(t, s2.URL())
	join := c.Request(t, protocol.RequestJoin, "r")
	// The join has reached the room once a request after it was answered
	// (its connection reads in order) and a call to the room came back;
	// an answer to it would be on the connection before the answer to a
	// request made after that.
	ping := c.Request(t, "ping", "")
	if e := recv(t, c.In, "ping's reply"); e.ID != ping {
		t.Fatalf("got %v #%d %q before the ping's reply: the join was answered while the room was dropped", e.Kind, e.ID, e.Payload)
	}
	_ = s2.Members("r")
	ping = c.Request(t, "ping", "")
	if e := recv(t, c.In, "ping's reply"); e.ID != ping {
		t.Fatalf("got %v #%d %q before the second ping's reply: the join was answered while the room was dropped", e.Kind, e.ID, e.Payload)
	}

	b.resubscribe(s2, "r")
	res := c.JoinResult(t, join, waitTimeout)
	if res.Epoch != "e1" || res.Offset != missed {
		t.Fatalf("join answered at %s/%d, want e1/%d (the broker's position)", res.Epoch, res.Offset, missed)
	}
	if _, err := s1.Publish("r", []byte("next")); err != nil {
		t.Fatal(err)
	}
	if e := recv(t, c.In, "the next message"); e.Offset != res.Offset+1 || string(e.Payload) != "next" {
		t.Fatalf("next message #%d %q, want #%d next", e.Offset, e.Payload, res.Offset+1)
	}
	// The member from before missed what was published meanwhile (no
	// history here): it sees the gap, not a wrong order.
	if m := recv(t, gotOther, "the member's next message"); m.Offset != missed+1 {
		t.Fatalf("member from before got #%d, want #%d", m.Offset, missed+1)
	}
}

// TestRoomBrokerDetachedJoinBounded: a join that waits for a broker that
// never subscribes the room again is answered after actors.CatchUpWait at
// the latest (with the room's position, as before), and joins after that
// are answered at once. The wait is bounded by the room's one park timer.
func TestRoomBrokerDetachedJoinBounded(t *testing.T) {
	if testing.Short() {
		t.Skip("waits actors.CatchUpWait")
	}
	b := newMemBroker()
	var s *marmot.Server
	s = startServer(t, marmot.ServerConfig{RoomBroker: b.For(&s)})
	ctx := ctxTimeout(t)
	other, _ := roomClient(t, s, "marmot.v1", nil)
	if err := other.Join(ctx, "r"); err != nil {
		t.Fatal(err)
	}
	c := rawconn.Dial(t, s.URL())
	start := time.Now()
	b.drop(s, "r")
	join := c.Request(t, protocol.RequestJoin, "r")
	var e protocol.Envelope
	select {
	case e = <-c.In:
	case <-time.After(marmot.CatchUpWait + waitTimeout):
		t.Fatalf("join not answered within %v", marmot.CatchUpWait+waitTimeout)
	}
	waited := time.Since(start)
	if e.Kind != protocol.KindReply || e.ID != join {
		t.Fatalf("got %v #%d %q, want the join's reply", e.Kind, e.ID, e.Payload)
	}
	if waited < marmot.CatchUpWait {
		t.Fatalf("join answered after %v, before CatchUpWait (%v): it did not wait for the broker", waited, marmot.CatchUpWait)
	}
	start = time.Now()
	join = c.Request(t, protocol.RequestJoin, "r2") // another room: not detached
	if e := recv(t, c.In, "r2's join"); e.ID != join {
		t.Fatalf("got #%d, want r2's join", e.ID)
	}
	join = c.Request(t, protocol.RequestJoin, "r") // the detachment is over
	if e := recv(t, c.In, "the second join"); e.ID != join || e.Kind != protocol.KindReply {
		t.Fatalf("got %v #%d, want the second join's reply", e.Kind, e.ID)
	}
	t.Logf("first join waited %v; the next answered in %v", waited.Round(time.Millisecond), time.Since(start).Round(time.Millisecond))
}
