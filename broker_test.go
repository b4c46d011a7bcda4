package marmot_test

import (
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/marmotws/marmot"
)

// memBroker is a RoomBroker for servers in one process: one lock is the
// order of every room, and each subscribed server is handed every message.
type memBroker struct {
	mu      sync.Mutex
	subs    map[string]map[*marmot.Server]bool
	offsets map[string]uint64
}

func newMemBroker() *memBroker {
	return &memBroker{subs: map[string]map[*marmot.Server]bool{}, offsets: map[string]uint64{}}
}

// For returns the broker as one server sees it.
func (b *memBroker) For(s **marmot.Server) marmot.RoomBroker { return &memBrokerView{b: b, s: s} }

type memBrokerView struct {
	b *memBroker
	s **marmot.Server
}

func (v *memBrokerView) Subscribe(room string) (marmot.RoomPosition, error) {
	v.b.mu.Lock()
	defer v.b.mu.Unlock()
	if v.b.subs[room] == nil {
		v.b.subs[room] = map[*marmot.Server]bool{}
	}
	v.b.subs[room][*v.s] = true
	return marmot.RoomPosition{Epoch: "e1", Offset: v.b.offsets[room]}, nil
}

func (v *memBrokerView) Unsubscribe(room string) {
	v.b.mu.Lock()
	defer v.b.mu.Unlock()
	delete(v.b.subs[room], *v.s)
}

func (v *memBrokerView) Publish(room string, m *marmot.RoomMessage) error {
	v.b.mu.Lock()
	defer v.b.mu.Unlock()
	if string(m.Data) == "refuse" {
		return errors.New("refused by the broker")
	}
	v.b.offsets[room]++
	for s := range v.b.subs[room] {
		c := *m
		c.Epoch, c.Offset = "e1", v.b.offsets[room]
		s.DeliverRoom(room, &c)
	}
	return nil
}

// TestRoomBroker joins two servers' rooms through a broker: clients of
// both, publishing at once, receive every message once, with the broker's
// offsets, in one order; ClientIDs carry their server's NodeID.
func TestRoomBroker(t *testing.T) {
	b := newMemBroker()
	var s1, s2 *marmot.Server
	ids := make(chan marmot.ClientID, 4)
	cfg := func(node uint32, s **marmot.Server) marmot.ServerConfig {
		return marmot.ServerConfig{NodeID: node, RoomBroker: b.For(s), ServerEvents: marmot.ServerEvents{
			OnClientConnected: func(info marmot.ClientInfo) { ids <- info.ID },
		}}
	}
	s1 = startServer(t, cfg(1, &s1))
	s2 = startServer(t, cfg(2, &s2))

	a, gotA := roomClient(t, s1, "marmot.v1", nil)
	if id := recv(t, ids, "client a"); id != 1_000_000_000_001 || id.Node() != 1 {
		t.Fatalf("first ClientID of node 1: %d (node %d)", id, id.Node())
	}
	c, gotC := roomClient(t, s2, "marmot.v1", nil)
	if id := recv(t, ids, "client c"); id != 2_000_000_000_001 || id.Node() != 2 {
		t.Fatalf("first ClientID of node 2: %d (node %d)", id, id.Node())
	}
	ctx := ctxTimeout(t)
	for _, cl := range []*marmot.Client{a, c} {
		if err := cl.Join(ctx, "r"); err != nil {
			t.Fatal(err)
		}
	}
	const n = 50
	var wg sync.WaitGroup
	for _, cl := range []*marmot.Client{a, c} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range n {
				if err := cl.Publish("r", fmt.Appendf(nil, "%p-%d", cl, i)); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	if _, err := s2.Publish("r", []byte("server")); err != nil {
		t.Fatal(err)
	}
	waitGroup(t, &wg, "publishers")
	var orderA []string
	for i := range 2*n + 1 {
		ma, mc := recv(t, gotA, "a's message"), recv(t, gotC, "c's message")
		if ma.Offset != uint64(i+1) || mc.Offset != uint64(i+1) || string(ma.Payload) != string(mc.Payload) {
			t.Fatalf("message %d: a got #%d %q, c got #%d %q", i, ma.Offset, ma.Payload, mc.Offset, mc.Payload)
		}
		orderA = append(orderA, string(ma.Payload))
	}
	// Each publisher's messages in its own order.
	for _, cl := range []*marmot.Client{a, c} {
		next := 0
		for _, p := range orderA {
			var i int
			if _, err := fmt.Sscanf(p, fmt.Sprintf("%p-%%d", cl), &i); err == nil {
				if i != next {
					t.Fatalf("publisher %p: message %d after %d", cl, i, next-1)
				}
				next++
			}
		}
		if next != n {
			t.Fatalf("publisher %p: %d of %d messages", cl, next, n)
		}
	}
	// A publish the broker refuses fails, and reaches nobody.
	if _, err := s1.Publish("r", []byte("refuse")); err == nil {
		t.Fatal("a publish the broker refused succeeded")
	} else if re := (*marmot.RoomError)(nil); !errors.As(err, &re) {
		t.Fatalf("refused publish: %v, want a *RoomError", err)
	}
	// Only rooms with a broker may not have history.
	if _, err := marmot.NewServer(marmot.ServerConfig{RoomBroker: b.For(&s1), RoomHistory: marmot.HistoryConfig{Size: 10}}); err == nil {
		t.Fatal("RoomHistory with a RoomBroker accepted")
	}
	if _, err := marmot.NewServer(marmot.ServerConfig{NodeID: 1_000_000}); err == nil {
		t.Fatal("NodeID above the maximum accepted")
	}
}

// TestRoomBrokerDropsStaleDeliveries: a delivery at or below the position
// the room subscribed at (or has delivered up to), in the same epoch, is
// not fanned out again; a new epoch starts over.
func TestRoomBrokerDropsStaleDeliveries(t *testing.T) {
	b := newMemBroker()
	b.offsets["r"] = 5 // the room is at e1 #5 when this server subscribes
	var s *marmot.Server
	s = startServer(t, marmot.ServerConfig{RoomBroker: b.For(&s)})
	a, got := roomClient(t, s, "marmot.v1", nil)
	if err := a.Join(ctxTimeout(t), "r"); err != nil {
		t.Fatal(err)
	}
	deliver := func(epoch string, offset uint64, text string) {
		t.Helper()
		if !s.DeliverRoom("r", &marmot.RoomMessage{Epoch: epoch, Offset: offset, Data: []byte(text)}) {
			t.Fatal("DeliverRoom found no room r")
		}
	}
	deliver("e1", 5, "late: from before the subscribe")
	deliver("e1", 6, "six")
	deliver("e1", 6, "six again")
	deliver("e1", 4, "older")
	deliver("e2", 1, "new epoch")
	for _, want := range []struct {
		offset uint64
		text   string
	}{{6, "six"}, {1, "new epoch"}} {
		m := recv(t, got, "a room message")
		if m.Offset != want.offset || string(m.Payload) != want.text {
			t.Fatalf("got #%d %q, want #%d %q", m.Offset, m.Payload, want.offset, want.text)
		}
	}
	// Nothing else came: the next message is this one.
	deliver("e2", 2, "last")
	if m := recv(t, got, "the last message"); string(m.Payload) != "last" {
		t.Fatalf("got #%d %q after the new epoch, want \"last\"", m.Offset, m.Payload)
	}
}
