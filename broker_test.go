package marmot_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/marmotws/marmot"
)

// memBroker is a RoomBroker for servers in one process: one lock is the
// order of every room, and each subscribed server is handed every message.
//
// It keeps every room's messages (History), and can hold a server's
// deliveries back (hold, release), as a node that is behind.
type memBroker struct {
	mu      sync.Mutex
	subs    map[string]map[*marmot.Server]bool
	offsets map[string]uint64
	hist    map[string][]marmot.HistoryEntry
	held    map[*marmot.Server][]heldDelivery
	// With confirm set, Publish returns tickets and the delivery to the
	// publishing server confirms them (a cluster's broker does so once
	// its grain has numbered the publish); confirmWait is ConfirmTimeout.
	confirm     bool
	confirmWait time.Duration
	tickets     map[*marmot.Server]uint64
	// keys are the publish keys numbered, per room (a cluster's grain
	// keeps a window of them): a keyed publish seen before is not
	// delivered again, only confirmed (Server.ConfirmRoom). published
	// lists the keys of every publish, as they came.
	keys      map[string]map[string]uint64
	published []string
}

type heldDelivery struct {
	room string
	m    *marmot.RoomMessage
}

func newMemBroker() *memBroker {
	return &memBroker{subs: map[string]map[*marmot.Server]bool{}, offsets: map[string]uint64{},
		hist: map[string][]marmot.HistoryEntry{}, held: map[*marmot.Server][]heldDelivery{}, tickets: map[*marmot.Server]uint64{},
		keys: map[string]map[string]uint64{}}
}

// hold keeps s's deliveries back until release.
func (b *memBroker) hold(s *marmot.Server) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.held[s] = []heldDelivery{}
}

// release hands s what was held back, in order, and the next as they come.
func (b *memBroker) release(s *marmot.Server) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, d := range b.held[s] {
		s.DeliverRoom(d.room, d.m)
	}
	delete(b.held, s)
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

func (v *memBrokerView) Publish(room string, m *marmot.RoomMessage) (uint64, error) {
	v.b.mu.Lock()
	defer v.b.mu.Unlock()
	if string(m.Data) == "refuse" {
		return 0, errors.New("refused by the broker")
	}
	var ticket uint64
	if v.b.confirm {
		v.b.tickets[*v.s]++
		ticket = v.b.tickets[*v.s]
	}
	v.b.published = append(v.b.published, m.Key)
	if _, ok := v.b.keys[room][m.Key]; ok && m.Key != "" {
		if ticket != 0 {
			(*v.s).ConfirmRoom(room, ticket, nil) // numbered before: confirmed, not delivered
		}
		return ticket, nil
	}
	if string(m.Data) == "fail" && ticket != 0 {
		(*v.s).ConfirmRoom(room, ticket, marmot.ErrPublishFailed) // the sequencer failed on it
		return ticket, nil
	}
	v.b.offsets[room]++
	if m.Key != "" {
		if v.b.keys[room] == nil {
			v.b.keys[room] = map[string]uint64{}
		}
		v.b.keys[room][m.Key] = v.b.offsets[room]
	}
	v.b.hist[room] = append(v.b.hist[room], marmot.HistoryEntry{Offset: v.b.offsets[room], Name: m.Name, Data: m.Data})
	for s := range v.b.subs[room] {
		c := *m
		c.Epoch, c.Offset = "e1", v.b.offsets[room]
		if s == *v.s {
			c.Confirms = ticket
		}
		if h, ok := v.b.held[s]; ok {
			v.b.held[s] = append(h, heldDelivery{room, &c})
			continue
		}
		s.DeliverRoom(room, &c)
	}
	return ticket, nil
}

// ConfirmTimeout bounds a room's wait for a confirmation.
func (v *memBrokerView) ConfirmTimeout() time.Duration { return v.b.confirmWait }

// History hands out what the broker has delivered (every server's view
// of it is the same here: the held deliveries are kept back from the
// room, not from the broker).
func (v *memBrokerView) History(room, epoch string, from, to uint64) ([]marmot.HistoryEntry, error) {
	v.b.mu.Lock()
	defer v.b.mu.Unlock()
	h := v.b.hist[room]
	if epoch != "e1" || to > uint64(len(h)) || from > to {
		return nil, &marmot.HistoryGap{Reason: "epoch changed"}
	}
	return append([]marmot.HistoryEntry(nil), h[from:to]...), nil
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
	// With a broker, history is the broker's: no Backend of the server's.
	if _, err := marmot.NewServer(marmot.ServerConfig{RoomBroker: b.For(&s1), RoomHistory: marmot.HistoryConfig{Size: 10, Backend: failingBackend{}}}); err == nil {
		t.Fatal("RoomHistory.Backend with a RoomBroker accepted")
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

// TestRoomBrokerRecoveryWaitsForCatchUp: a client whose server goes away
// fails over to a server whose room is behind it (its deliveries held
// back, as a node that gets the broker's messages later). Its re-join
// waits for that room to catch up, and it recovers from the broker's
// history with every message once, in order; answered at once it would
// be told it is ahead (Recovered=false).
func TestRoomBrokerRecoveryWaitsForCatchUp(t *testing.T) {
	b := newMemBroker()
	hist := marmot.HistoryConfig{Size: 100}
	var s1, s2 *marmot.Server
	s1 = startServer(t, marmot.ServerConfig{RoomBroker: b.For(&s1), RoomHistory: hist})
	s2 = startServer(t, marmot.ServerConfig{RoomBroker: b.For(&s2), RoomHistory: hist, ServerEvents: marmot.ServerEvents{
		OnHandleCommand: func(m *marmot.Message) { _ = m.Reply(nil) },
	}})
	ctx := ctxTimeout(t)
	// s2 has the room (a member of its own), and is behind from here on.
	other, _ := roomClient(t, s2, "marmot.v1", nil)
	if err := other.Join(ctx, "r"); err != nil {
		t.Fatal(err)
	}
	b.hold(s2)
	a := newFailoverClient(t, s1.URL(), s2.URL())
	if err := a.c.Connect(ctx); err != nil {
		t.Fatal(err)
	}
	for recv(t, a.states, "state Connected") != marmot.StateConnected {
	}
	if err := a.c.Join(ctx, "r"); err != nil {
		t.Fatal(err)
	}
	const before, after = 5, 3
	for k := 1; k <= before; k++ {
		if _, err := s1.Publish("r", fmt.Appendf(nil, "m%d", k)); err != nil {
			t.Fatal(err)
		}
	}
	for k := 1; k <= before; k++ {
		if m := recv(t, a.room, "a room message"); m.Offset != uint64(k) {
			t.Fatalf("got #%d %q, want #%d", m.Offset, m.Payload, k)
		}
	}
	if err := s1.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	for k := before + 1; k <= before+after; k++ {
		if _, err := s2.Publish("r", fmt.Appendf(nil, "m%d", k)); err != nil {
			t.Fatal(err)
		}
	}
	// The client fails over to s2 and re-joins from #5, which s2's room
	// has not reached until the release. A request answered after the
	// re-join was read, then a call to the room after the re-join reached
	// it, make sure the room has seen it: it is not answered.
	for recv(t, a.states, "state Connected") != marmot.StateConnected {
	}
	if _, err := a.c.Request(ctx, "ping", nil); err != nil {
		t.Fatal(err)
	}
	_ = s2.Members("r")
	select {
	case r := <-a.recovered:
		t.Fatalf("re-join answered (%+v) while the room was behind the client", r)
	default:
	}
	b.release(s2)
	if r := recv(t, a.recovered, "the recovery"); !r.recovered || r.room != "r" {
		t.Fatalf("recovery %+v, want room r recovered", r)
	}
	for k := before + 1; k <= before+after; k++ {
		if m := recv(t, a.room, "a room message"); m.Offset != uint64(k) || string(m.Payload) != fmt.Sprintf("m%d", k) {
			t.Fatalf("got #%d %q, want #%d m%d", m.Offset, m.Payload, k, k)
		}
	}
	if _, err := s2.Publish("r", []byte("end")); err != nil {
		t.Fatal(err)
	}
	if m := recv(t, a.room, "the last message"); string(m.Payload) != "end" || m.Offset != before+after+1 {
		t.Fatalf("got #%d %q, want the end", m.Offset, m.Payload)
	}
}

// TestBrokerConfirm: under a broker that confirms its publishes (as a
// cluster's does once the room's grain has numbered one), Server.Publish
// returns only once the publish is confirmed, which comes with its
// delivery back to the publishing server; one whose confirmation does not
// come within the broker's ConfirmTimeout fails with
// ErrPublishUnconfirmed (and PublishContext with its ctx).
func TestBrokerConfirm(t *testing.T) {
	b := newMemBroker()
	b.confirm, b.confirmWait = true, 300*time.Millisecond
	var s1, s2 *marmot.Server
	s1 = startServer(t, marmot.ServerConfig{NodeID: 1, RoomBroker: b.For(&s1)})
	s2 = startServer(t, marmot.ServerConfig{NodeID: 2, RoomBroker: b.For(&s2)})
	c, got := roomClient(t, s2, "marmot.v1", nil)
	ctx := ctxTimeout(t)
	if err := c.Join(ctx, "r"); err != nil {
		t.Fatal(err)
	}
	if _, err := s1.Publish("r", []byte("first")); err != nil { // starts s1's room
		t.Fatal(err)
	}
	recv(t, got, "first")

	// s1's deliveries, and with them its confirmations, held back: the
	// publish reaches s2's member, and is not answered until s1 gets it.
	b.hold(s1)
	done := make(chan error, 1)
	go func() {
		_, err := s1.Publish("r", []byte("held"))
		done <- err
	}()
	if m := recv(t, got, "held"); string(m.Payload) != "held" {
		t.Fatalf("got %q", m.Payload)
	}
	select {
	case err := <-done:
		t.Fatalf("Publish returned %v before its confirmation", err)
	default:
	}
	b.release(s1)
	if err := recv(t, done, "Publish's return"); err != nil {
		t.Fatal(err)
	}

	// Never confirmed: ErrPublishUnconfirmed after ConfirmTimeout.
	b.hold(s1)
	start := time.Now()
	if _, err := s1.Publish("r", []byte("lost")); !errors.Is(err, marmot.ErrPublishUnconfirmed) {
		t.Fatalf("Publish without confirmation: %v, want ErrPublishUnconfirmed", err)
	}
	if d := time.Since(start); d < b.confirmWait {
		t.Fatalf("Publish failed after %v, before ConfirmTimeout (%v)", d, b.confirmWait)
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := s1.PublishContext(cctx, "r", []byte("cancelled")); !errors.Is(err, context.Canceled) {
		t.Fatalf("PublishContext with a cancelled ctx: %v", err)
	}
	b.release(s1)
	// The late confirmations answer nobody; the next publish is answered.
	if _, err := s1.Publish("r", []byte("after")); err != nil {
		t.Fatal(err)
	}
}
