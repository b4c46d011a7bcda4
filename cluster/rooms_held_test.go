package cluster

import (
	"log/slog"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/asynkron/protoactor-go/cluster"

	"github.com/marmotws/marmot"
	"github.com/marmotws/marmot/cluster/internal/wire"
)

// heldTestWait bounds the test's waits (only a failing test reaches it).
const heldTestWait = time.Minute

// TestGrainHeld runs a room grain in process, its own node's actor a
// recorder: the grain's own node's publishes go to that node held back,
// and are confirmed (roomHeld, with the highest own seq) only once
// another holder answers that it holds them; the other nodes' publishes
// are not held back; in a cluster of one (no other subscriber, no member
// to be a replica) an own publish is not held back; the publishes that
// wait are bounded.
func TestGrainHeld(t *testing.T) {
	sys := marmot.NewActorSystem(slog.New(slog.DiscardHandler))
	t.Cleanup(sys.Shutdown)
	n := &Node{log: slog.New(slog.DiscardHandler), hist: marmot.HistoryConfig{Size: 8, Bytes: 1 << 10}, cfg: Config{RequestTimeout: time.Minute}}
	n.rb = newRoomBroker(n)
	own, other := uint64(1<<originRunBits|5), uint64(2<<originRunBits|7)
	n.rb.origin = own

	got := make(chan any, 8192)
	if _, err := sys.Root.SpawnNamed(actor.PropsFromFunc(func(c actor.Context) {
		switch m := c.Message().(type) {
		case *heldBack, *roomHeld, *wire.RoomDeliverSeq:
			got <- m
		}
	}), nodeActorName); err != nil {
		t.Fatal(err)
	}
	next := func() any {
		t.Helper()
		select {
		case m := <-got:
			return m
		case <-time.After(heldTestWait):
			t.Fatal("the grain's node got nothing")
			return nil
		}
	}
	var g *roomGrain // read after a request: the grain is idle then
	pid := sys.Root.Spawn(actor.PropsFromProducer(func() actor.Actor { g = newRoomGrain(n); return g }))
	t.Cleanup(func() { _ = sys.Root.StopFuture(pid).Wait() })
	sync := func() {
		t.Helper()
		if _, err := sys.Root.RequestFuture(pid, &wire.RoomPresenceRequest{Room: "r"}, heldTestWait).Result(); err != nil {
			t.Fatal(err)
		}
	}
	sys.Root.Send(pid, &cluster.ClusterInit{Identity: cluster.NewClusterIdentity("r", roomKind)})
	self, peer := sys.Address(), "127.0.0.3:7001" // the peer's deliveries end as dead letters
	sys.Root.Send(pid, &wire.RoomSubscribeSeq{Room: "r", Node: self})
	sys.Root.Send(pid, &wire.RoomSubscribeSeq{Room: "r", Node: peer})
	publish := func(origin, seq uint64) {
		sys.Root.Send(pid, &wire.RoomPublishSeq{Room: "r", Data: []byte("d"), Origin: origin, Seq: seq})
	}

	publish(own, 1)   // offset 1
	publish(other, 1) // offset 2
	publish(own, 2)   // offset 3
	hb, ok := next().(*heldBack)
	if !ok || hb.d.Offset != 1 || hb.d.Seq != 1 {
		t.Fatalf("own publish #1: %+v, want it held back at offset 1", hb)
	}
	epoch := hb.d.Epoch
	if d, ok := next().(*wire.RoomDeliverSeq); !ok || d.Offset != 2 || d.Origin != other {
		t.Fatalf("another node's publish: %+v, want a plain delivery at offset 2", d)
	}
	if hb, ok := next().(*heldBack); !ok || hb.d.Offset != 3 {
		t.Fatalf("own publish #2: %+v, want it held back at offset 3", hb)
	}

	// A holder at offset 2: own #1 is held by two; offset 2 again, or
	// another epoch, confirms nothing more; offset 3: own #2.
	for _, h := range []*wire.RoomHeld{
		{Room: "r", Epoch: epoch, Offset: 2},
		{Room: "r", Epoch: epoch, Offset: 2},
		{Room: "r", Epoch: "other", Offset: 9},
		{Room: "r", Epoch: epoch, Offset: 3},
	} {
		sys.Root.Send(pid, h)
	}
	for _, want := range []uint64{1, 2} {
		if h, ok := next().(*roomHeld); !ok || h.room != "r" || h.seq != want {
			t.Fatalf("confirmation: %+v, want own publishes up to seq %d held", h, want)
		}
	}

	// Bounded: the oldest of more than maxHeldWaiting are forgotten; a
	// holder at the last offset confirms up to the last seq.
	const many = maxHeldWaiting + 10
	for s := uint64(3); s < 3+many; s++ {
		publish(own, s)
	}
	sync()
	if k := len(g.held.waiting); k != maxHeldWaiting {
		t.Fatalf("%d own publishes wait, want at most %d", k, maxHeldWaiting)
	}
	last := g.hist.last
	for range many {
		if _, ok := next().(*heldBack); !ok {
			t.Fatal("an own publish was not held back")
		}
	}
	sys.Root.Send(pid, &wire.RoomHeld{Room: "r", Epoch: epoch, Offset: last})
	if h, ok := next().(*roomHeld); !ok || h.seq != 2+many {
		t.Fatalf("confirmation: %+v, want seq %d", h, 2+many)
	}

	// A cluster of one: nobody else to hold it, not held back.
	sys.Root.Send(pid, &wire.RoomUnsubscribe{Room: "r", Node: peer})
	publish(own, 3+many)
	if d, ok := next().(*wire.RoomDeliverSeq); !ok || d.Seq != 3+many {
		t.Fatalf("own publish alone: %+v, want a plain delivery", d)
	}
	sync()
	if k := len(g.held.waiting); k != 0 {
		t.Fatalf("%d own publishes wait with nobody to hold them", k)
	}
}
