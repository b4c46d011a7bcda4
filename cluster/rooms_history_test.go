package cluster

import (
	"errors"
	"log/slog"
	"strconv"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/marmotws/marmot"
	"github.com/marmotws/marmot/actors"
	"github.com/marmotws/marmot/cluster/internal/wire"
	"github.com/marmotws/marmot/protocol"
)

// Origins of the tests' publishers: runs of nodes 1, 2 and 3.
var (
	originA = newOrigin(1, time.UnixMilli(1_000))
	originB = newOrigin(2, time.UnixMilli(1_000))
	originC = newOrigin(3, time.UnixMilli(1_000))
)

func entry(off uint64, origin uint64, seq uint64) *wire.HistEntry {
	return &wire.HistEntry{Offset: off, Data: []byte("m" + strconv.FormatUint(off, 10)), Origin: origin, Seq: seq}
}

func offsets(es []marmot.HistoryEntry) []uint64 {
	out := make([]uint64, len(es))
	for i, e := range es {
		out[i] = e.Offset
	}
	return out
}

// TestRoomHist: a node's history of a room is bounded, says why it cannot
// fill a gap, starts over on a new epoch or a hole in the offsets, and
// remembers which publishes it has seen numbered.
func TestRoomHist(t *testing.T) {
	h := newRoomHist(marmot.HistoryConfig{Size: 5})
	for k := uint64(1); k <= 10; k++ {
		h.add(entry(k, originA, k), "e1")
	}
	h.add(entry(7, originA, 7), "e1") // a late copy: ignored
	if h.last != 10 || len(h.entries) != 5 {
		t.Fatalf("last %d, %d entries; want 10, 5", h.last, len(h.entries))
	}
	es, err := h.history("e1", 5, 9)
	if err != nil || len(es) != 4 || es[0].Offset != 6 || es[3].Offset != 9 {
		t.Fatalf("history after 5 up to 9: %v %v", offsets(es), err)
	}
	var gap *actors.HistoryGap
	if _, err := h.history("e1", 4, 10); !errors.As(err, &gap) || gap.Reason != protocol.RecoverOverflow {
		t.Fatalf("history after 4: %v, want an overflow gap", err)
	}
	if _, err := h.history("e0", 9, 10); !errors.As(err, &gap) || gap.Reason != protocol.RecoverEpochChanged {
		t.Fatalf("history of another epoch: %v, want epoch changed", err)
	}
	if !h.numbered(originA, 10) || !h.numbered(originA, 3) || h.numbered(originA, 11) || h.numbered(originB, 1) || h.numbered(0, 1) {
		t.Fatal("numbered: wrong for origin a's seqs 3, 10, 11 or origin b")
	}
	// A hole (a message that never reached this node): the history
	// starts over after it, and says it cannot fill what came before.
	h.add(entry(13, originA, 13), "e1")
	if _, err := h.history("e1", 10, 13); err == nil {
		t.Fatal("history across a hole returned no gap")
	}
	if es, err := h.history("e1", 12, 13); err != nil || len(es) != 1 {
		t.Fatalf("history after the hole: %v %v", offsets(es), err)
	}
	// A new epoch starts over.
	h.add(entry(1, originB, 1), "e2")
	if h.epoch != "e2" || h.last != 1 || len(h.entries) != 1 {
		t.Fatalf("after a new epoch: %s #%d, %d entries", h.epoch, h.last, len(h.entries))
	}
}

// TestRoomTakeOver: a new grain goes on from the longest history its
// members hold, and numbers a publish sent again after the old grain's
// node died once: (origin, seq) it finds in that history are numbered.
func TestRoomTakeOver(t *testing.T) {
	cfg := marmot.HistoryConfig{Size: 100}
	node := func(addr string, upTo uint64) *wire.RoomState {
		h := newRoomHist(cfg)
		for k := uint64(1); k <= upTo; k++ {
			h.add(entry(k, originA, k), "e1")
		}
		st := h.state("r")
		st.Node = addr
		return st
	}
	states := []*wire.RoomState{node("n1", 40), node("n2", 47), {Room: "r", Node: "n3"}, node("n4", 12)}
	states[3].Epoch = "e0" // an older run
	states[3].Offset = 46
	best := longestState(states)
	if best == nil || best.Node != "n2" {
		t.Fatalf("longest: %+v, want n2's", best)
	}
	g := newRoomHist(cfg)
	g.install(best)
	if g.epoch != "e1" || g.last != 47 {
		t.Fatalf("taken over at %s #%d, want e1 #47", g.epoch, g.last)
	}
	// The publisher had not seen #41-#47 delivered: it sends seqs 41-50
	// again. 41-47 are in the history (numbered once), 48-50 are new.
	var fresh []uint64
	for seq := uint64(41); seq <= 50; seq++ {
		if g.numbered(originA, seq) {
			continue
		}
		g.add(entry(g.last+1, originA, seq), g.epoch)
		fresh = append(fresh, seq)
	}
	if len(fresh) != 3 || fresh[0] != 48 || g.last != 50 {
		t.Fatalf("numbered again: %v, last #%d; want 48-50 at #48-#50", fresh, g.last)
	}
	// A node that lagged (n1, at #40) is served from the grain's history.
	es, ok := g.since(40, g.last)
	if !ok || len(es) != 10 || es[0].Offset != 41 {
		t.Fatalf("catch-up after #40: %d entries, ok %v", len(es), ok)
	}
	// Nobody holds the room: no state to take over (a new epoch).
	if longestState([]*wire.RoomState{{Node: "n1"}, {Node: "n2"}}) != nil {
		t.Fatal("a state taken over from members that hold nothing")
	}
}

// TestRoomStateBounded: the history a RoomState carries between nodes
// stays under gRPC's message limit; the position and seqs are whole.
func TestRoomStateBounded(t *testing.T) {
	h := newRoomHist(marmot.HistoryConfig{Size: 10})
	big := make([]byte, 900<<10)
	for k := uint64(1); k <= 5; k++ {
		h.add(&wire.HistEntry{Offset: k, Data: big, Origin: originA, Seq: k}, "e")
	}
	st := h.state("r")
	if len(st.Entries) != 2 || st.Entries[1].Offset != 5 || st.Offset != 5 || st.Seqs[originA] != 5 {
		t.Fatalf("state: %d entries, #%d, seqs %v; want the last 2, #5, A:5", len(st.Entries), st.Offset, st.Seqs)
	}
	g := newRoomHist(marmot.HistoryConfig{Size: 10})
	g.install(st)
	if _, ok := g.since(3, 5); !ok {
		t.Fatal("installed state does not serve #4-#5")
	}
	if _, ok := g.since(2, 5); ok {
		t.Fatal("installed state serves #3, which it was not sent")
	}
}

// TestBrokerRoom: a node keeps its publishes until it sees them
// delivered, refuses more than maxUnconfirmed, and keeps the deliveries
// that reached it before the grain's answer to its subscription.
func TestBrokerRoom(t *testing.T) {
	n := &Node{hist: marmot.HistoryConfig{Size: 100}}
	b := newRoomBroker(n)
	b.origin = originA
	r := b.room("r")
	r.local = true // subscribing: not ready, publishes wait
	for k := range 5 {
		if _, err := b.Publish("r", &marmot.RoomMessage{Data: []byte{byte(k)}}); err != nil {
			t.Fatal(err)
		}
	}
	if len(r.unconfirmed) != 5 || r.unconfirmed[4].Seq != 5 {
		t.Fatalf("%d unconfirmed, want seqs 1-5", len(r.unconfirmed))
	}
	// Deliveries #6 and #7 (this node's seqs 1 and 2) come before the
	// answer that the grain was at #5.
	b.delivered(&wire.RoomDeliverSeq{Room: "r", Epoch: "e", Offset: 6, Origin: originA, Seq: 1})
	b.delivered(&wire.RoomDeliverSeq{Room: "r", Epoch: "e", Offset: 7, Origin: originA, Seq: 2})
	if len(r.unconfirmed) != 3 || r.unconfirmed[0].Seq != 3 {
		t.Fatalf("after seqs 1-2 delivered: %d unconfirmed, first seq %d", len(r.unconfirmed), r.unconfirmed[0].Seq)
	}
	st := &wire.RoomState{Room: "r", Has: true, Epoch: "e", Offset: 5}
	for k := uint64(1); k <= 5; k++ {
		st.Entries = append(st.Entries, entry(k, originC, k))
	}
	b.merge(r, st)
	es, err := b.History("r", "e", 0, 7)
	if err != nil || len(es) != 7 {
		t.Fatalf("history after the merge: %v %v, want #1-#7", offsets(es), err)
	}
	// Bounded, in count and in bytes.
	if _, err := b.Publish("r", &marmot.RoomMessage{Data: make([]byte, maxUnconfirmedBytes)}); !errors.Is(err, ErrPublishBacklog) {
		t.Fatalf("publish of %d bytes: %v", maxUnconfirmedBytes, err)
	}
	r.unconfirmed = make([]*wire.RoomPublishSeq, maxUnconfirmed)
	if _, err := b.Publish("r", &marmot.RoomMessage{}); !errors.Is(err, ErrPublishBacklog) {
		t.Fatalf("publish with %d unconfirmed: %v", maxUnconfirmed, err)
	}
	// A room that does not live here.
	if _, err := b.Publish("nope", &marmot.RoomMessage{}); !errors.Is(err, ErrNoRoute) {
		t.Fatalf("publish to a room not here: %v", err)
	}
}

// TestRoomStateWhileStarting: a node whose member is still starting (one
// that has just come back) answers a grain's take-over query with its own
// address, which the grain waits for; an answer naming nobody left the
// grain waiting out RequestTimeout for an answer it had (test/soak
// -cluster lost the publishes that piled up meanwhile; docs/FAULTS.md).
func TestRoomStateWhileStarting(t *testing.T) {
	n := &Node{hist: marmot.HistoryConfig{Size: 100}}
	n.rb = newRoomBroker(n)
	sys := actor.NewActorSystem()
	defer sys.Shutdown()
	pid := sys.Root.Spawn(actor.PropsFromProducer(func() actor.Actor { return &nodeActor{n: n} }))
	defer sys.Root.Stop(pid)
	res, err := sys.Root.RequestFuture(pid, &wire.RoomStateQuery{Room: "r"}, 5*time.Second).Result()
	if err != nil {
		t.Fatal(err)
	}
	st, ok := res.(*wire.RoomState)
	if !ok || st.Node != sys.Address() || st.Has {
		t.Fatalf("answer %T %+v, want an empty state naming %q", res, res, sys.Address())
	}
}

// TestOrigin: an origin names its node and its run: two nodes never
// share one, a node restarted later is a new one, and none is 0 (none).
func TestOrigin(t *testing.T) {
	start := time.Date(2026, 12, 3, 14, 0, 0, 0, time.UTC)
	a1 := newOrigin(actors.MaxNodeID, start)
	a2 := newOrigin(actors.MaxNodeID, start.Add(time.Millisecond)) // restarted
	b1 := newOrigin(1, start)
	if a1 == a2 || a1 == b1 || a2 == b1 || a1 == 0 || newOrigin(1, time.UnixMilli(0)) == 0 {
		t.Fatalf("origins %#x, %#x, %#x: want distinct and non-zero", a1, a2, b1)
	}
	if a1>>originRunBits != actors.MaxNodeID || b1>>originRunBits != 1 {
		t.Fatalf("origins %#x, %#x do not carry NodeIDs %d and 1", a1, b1, actors.MaxNodeID)
	}
	// A run numbered by the old grain is not taken for the new one's.
	h := newRoomHist(marmot.HistoryConfig{})
	h.add(entry(1, a1, 1), "e")
	if h.numbered(a2, 1) || !h.numbered(a1, 1) {
		t.Fatal("the restarted node's seq 1 is taken for its previous run's")
	}
}

// TestBrokerQueueBounded: a room's unconfirmed queue, published to and
// confirmed from the front for a long time, keeps an array within a small
// multiple of what it holds (it is sliced from the front, not copied).
func TestBrokerQueueBounded(t *testing.T) {
	b := newRoomBroker(&Node{})
	b.origin = originA
	r := b.room("r")
	r.local = true
	const live = 1000
	for k := uint64(1); k <= 100*live; k++ {
		if _, err := b.Publish("r", &marmot.RoomMessage{Data: []byte{1}}); err != nil {
			t.Fatal(err)
		}
		if k > live {
			b.delivered(&wire.RoomDeliverSeq{Room: "r", Epoch: "e", Offset: k - live, Origin: originA, Seq: k - live})
		}
		if len(r.unconfirmed) > live || cap(r.unconfirmed) > 4*live {
			t.Fatalf("after %d publishes: %d unconfirmed in an array of %d, want at most %d in %d", k, len(r.unconfirmed), cap(r.unconfirmed), live, 4*live)
		}
	}
	if r.unconfirmed[0].Seq != 99*live+1 || r.unconfBytes != live {
		t.Fatalf("queue starts at seq %d with %d bytes, want %d and %d", r.unconfirmed[0].Seq, r.unconfBytes, 99*live+1, live)
	}
}

// TestRoomHole: the grain numbers an origin's seqs without a hole: one
// after a hole waits for its node to send the missing ones again, unless
// the node says the seqs before it were confirmed; an unknown origin
// starts anywhere.
func TestRoomHole(t *testing.T) {
	h := newRoomHist(marmot.HistoryConfig{})
	for k := uint64(1); k <= 10; k++ {
		h.add(entry(k, originA, k), "e")
	}
	for _, c := range []struct {
		origin, seq, confirmed uint64
		hole                   bool
	}{
		{originA, 11, 0, false}, {originA, 13, 0, true}, {originA, 13, 12, false},
		{originA, 14, 12, true}, {originB, 5, 0, false}, {0, 5, 0, false},
	} {
		if got := h.after(c.origin, c.seq, c.confirmed); got != c.hole {
			t.Errorf("after(%#x, %d, confirmed %d) = %v, want %v", c.origin, c.seq, c.confirmed, got, c.hole)
		}
	}
}

// TestBrokerStall: a room whose publishes go unconfirmed for stallAfter
// is subscribed again and its publishes sent again (ready is cleared for
// run); one that sees confirmations, or has nothing unconfirmed, is not.
func TestBrokerStall(t *testing.T) {
	n := &Node{log: slog.New(slog.DiscardHandler)}
	n.cfg.RequestTimeout = time.Second
	b := newRoomBroker(n)
	b.origin = originA
	r := b.room("r")
	r.local = true
	for range 3 {
		if _, err := b.Publish("r", &marmot.RoomMessage{Data: []byte{1}}); err != nil {
			t.Fatal(err)
		}
	}
	b.retry = false
	r.ready = true
	start := r.progress
	if b.stalled(start.Add(n.stallAfter() - time.Millisecond)) {
		t.Fatal("stalled before stallAfter")
	}
	b.delivered(&wire.RoomDeliverSeq{Room: "r", Epoch: "e", Offset: 1, Origin: originA, Seq: 1})
	if !r.progress.After(start) {
		t.Fatal("a confirmation did not count as progress")
	}
	if b.stalled(r.progress.Add(n.stallAfter() - time.Millisecond)) {
		t.Fatal("stalled within stallAfter of a confirmation")
	}
	if !b.stalled(r.progress.Add(n.stallAfter())) || r.ready || !b.retry {
		t.Fatalf("not stalled after stallAfter without a confirmation: ready %v, retry %v", r.ready, b.retry)
	}
	// Nothing unconfirmed: nothing to send again.
	b.delivered(&wire.RoomDeliverSeq{Room: "r", Epoch: "e", Offset: 3, Origin: originA, Seq: 3})
	r.ready, b.retry = true, false
	if b.stalled(time.Now().Add(time.Hour)) {
		t.Fatal("stalled with nothing unconfirmed")
	}
}
