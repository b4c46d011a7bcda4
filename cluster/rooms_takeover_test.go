package cluster

import (
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/asynkron/protoactor-go/cluster"

	"github.com/marmotws/marmot"
	"github.com/marmotws/marmot/cluster/internal/wire"
)

// takeOverTestWait bounds the tests' waits (only a failing test reaches it).
const takeOverTestWait = time.Minute

// takeOverNode is an in-process node for a grain's take-over: no cluster,
// no server (the grains' deliveries go to an address nobody serves).
func takeOverNode(t *testing.T, timeout time.Duration) (*Node, *actor.ActorSystem) {
	t.Helper()
	sys := marmot.NewActorSystem(slog.New(slog.DiscardHandler))
	t.Cleanup(sys.Shutdown)
	n := &Node{log: slog.New(slog.DiscardHandler), hist: marmot.HistoryConfig{Size: 64, Bytes: 1 << 20}, cfg: Config{RequestTimeout: timeout}}
	n.rb = newRoomBroker(n)
	n.rb.origin = 1<<originRunBits | 1
	return n, sys
}

// newTakingOver spawns a grain of room that takes it over from the
// members at addrs (as ClusterInit does with its cluster's members).
func newTakingOver(t *testing.T, n *Node, sys *actor.ActorSystem, room string, addrs ...string) *actor.PID {
	t.Helper()
	g := newRoomGrain(n)
	g.room, g.waiting = room, map[string]struct{}{}
	for _, a := range addrs {
		g.waiting[a] = struct{}{}
	}
	pid := sys.Root.Spawn(actor.PropsFromProducer(func() actor.Actor { return g }))
	t.Cleanup(func() { _ = sys.Root.StopFuture(pid).Wait() })
	sys.Root.Send(pid, &grainTakeOverTick{}) // its first question
	return pid
}

// position subscribes a node nobody serves to the grain at pid and
// returns the grain's answer: its position, once it has taken over.
func position(t *testing.T, sys *actor.ActorSystem, pid *actor.PID, room string) *wire.RoomState {
	t.Helper()
	res, err := sys.Root.RequestFuture(pid, &wire.RoomSubscribeSeq{Room: room, Node: "127.0.0.9:1"}, takeOverTestWait).Result()
	if err != nil {
		t.Fatal(err)
	}
	st, ok := res.(*wire.RoomState)
	if !ok {
		t.Fatalf("answer %T", res)
	}
	return st
}

// TestTakeOverFromLiveGrain: a grain that takes a room over while the
// grain before it still runs (disthash moved the room, and the old
// grain's node has not seen it yet) goes on from the old grain's last
// offset, in its epoch, not from the nodes' answers behind it (here the
// node holds nothing: before the fix the new grain started a new epoch
// at offset 0, numbering again what the old one had), and the old grain
// stops, so that one grain numbers at a time.
func TestTakeOverFromLiveGrain(t *testing.T) {
	n, sys := takeOverNode(t, time.Minute)
	if _, err := sys.Root.SpawnNamed(actorProps(n, nil), nodeActorName); err != nil {
		t.Fatal(err)
	}
	old := sys.Root.Spawn(actor.PropsFromProducer(func() actor.Actor { return newRoomGrain(n) }))
	stopped := make(chan struct{})
	sys.Root.Spawn(actor.PropsFromFunc(func(c actor.Context) {
		switch c.Message().(type) {
		case *actor.Started:
			c.Watch(old)
		case *actor.Terminated:
			close(stopped)
		}
	}))
	sys.Root.Send(old, &cluster.ClusterInit{Identity: cluster.NewClusterIdentity("r", roomKind)}) // no cluster: a new epoch
	other := uint64(2<<originRunBits | 7)
	for seq := uint64(1); seq <= 5; seq++ {
		sys.Root.Send(old, &wire.RoomPublishSeq{Room: "r", Name: "m", Origin: other, Seq: seq})
	}
	was := position(t, sys, old, "r")
	if !was.Has || was.Offset != 5 {
		t.Fatalf("old grain at %+v, want offset 5", was)
	}

	next := newTakingOver(t, n, sys, "r", sys.Address())
	st := position(t, sys, next, "r")
	if st.Epoch != was.Epoch || st.Offset != 5 {
		t.Fatalf("new grain went on from epoch %q offset %d, want the old grain's %q offset 5", st.Epoch, st.Offset, was.Epoch)
	}
	select {
	case <-stopped:
	case <-time.After(takeOverTestWait):
		t.Fatal("the old grain did not stop")
	}
	// The next publish is numbered after the old grain's last (the old
	// grain's seqs came over: seq 6 is not taken for one after a hole).
	sys.Root.Send(next, &wire.RoomPublishSeq{Room: "r", Name: "m", Origin: other, Seq: 6})
	if st := position(t, sys, next, "r"); st.Offset != 6 || st.Epoch != was.Epoch {
		t.Fatalf("after a publish the new grain is at %q offset %d, want %q offset 6", st.Epoch, st.Offset, was.Epoch)
	}
}

// TestTakeOverAsksAgain: a member whose answer is lost (protoactor's
// remote drops a message to an address it is reconnecting) is asked
// again, and the grain goes on from its answer; one that never answers
// is asked takeOverTries times, then the take-over ends without it.
func TestTakeOverAsksAgain(t *testing.T) {
	n, sys := takeOverNode(t, 400*time.Millisecond)
	var asked atomic.Int32
	var answerFrom atomic.Int32
	answerFrom.Store(2) // the first question is lost
	if _, err := sys.Root.SpawnNamed(actor.PropsFromFunc(func(c actor.Context) {
		switch m := c.Message().(type) {
		case *wire.RoomStateQuery:
			if asked.Add(1) >= answerFrom.Load() {
				c.Respond(&wire.RoomState{Room: m.Room, Has: true, Epoch: "e1", Offset: 7, Node: c.ActorSystem().Address()})
			}
		case *wire.MemberProbe:
			c.Respond(&wire.MemberView{}) // after the questions before it
		}
	}), nodeActorName); err != nil {
		t.Fatal(err)
	}
	st := position(t, sys, newTakingOver(t, n, sys, "r", sys.Address()), "r")
	if st.Epoch != "e1" || st.Offset != 7 {
		t.Fatalf("grain went on from epoch %q offset %d, want the member's e1 offset 7", st.Epoch, st.Offset)
	}
	// The questions the grain sent are in the member's mailbox before
	// this request (sent after the grain's answer).
	questions := func() int32 {
		t.Helper()
		if _, err := sys.Root.RequestFuture(actor.NewPID(sys.Address(), nodeActorName), &wire.MemberProbe{}, takeOverTestWait).Result(); err != nil {
			t.Fatal(err)
		}
		return asked.Load()
	}
	if k := questions(); k < 2 {
		t.Fatalf("member asked %d times, want at least 2", k) // more when the machine is slow
	}

	asked.Store(0)
	answerFrom.Store(1 << 30) // never
	st = position(t, sys, newTakingOver(t, n, sys, "r2", sys.Address()), "r2")
	if st.Epoch == "" || st.Epoch == "e1" || st.Offset != 0 {
		t.Fatalf("without an answer the grain is at %q offset %d, want a new epoch at 0", st.Epoch, st.Offset)
	}
	if k := questions(); k != takeOverTries {
		t.Fatalf("member asked %d times, want %d", k, takeOverTries)
	}
}
