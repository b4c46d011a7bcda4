package cluster

import (
	"context"
	"log/slog"
	"slices"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/asynkron/protoactor-go/cluster"
	"google.golang.org/protobuf/proto"

	"github.com/marmotws/marmot"
	"github.com/marmotws/marmot/cluster/internal/wire"
)

// wireKinds are the messages another node can send a node's actor (and
// its room grains), by the first byte of a fuzz input.
var wireKinds = []func() proto.Message{
	func() proto.Message { return &wire.Broadcast{} },
	func() proto.Message { return &wire.SendTo{} },
	func() proto.Message { return &wire.Disconnect{} },
	func() proto.Message { return &wire.ClientsRequest{} },
	func() proto.Message { return &wire.StatsRequest{} },
	func() proto.Message { return &wire.RoomDeliverSeq{} },
	func() proto.Message { return &wire.RoomStateQuery{} },
	func() proto.Message { return &wire.RoomReplicate{} },
	func() proto.Message { return &wire.RoomRelease{} },
	func() proto.Message { return &wire.RoomPresenceChange{} },
	func() proto.Message { return &wire.RoomPresenceSync{} },
	func() proto.Message { return &wire.RoomMembersRequest{} },
	func() proto.Message { return &wire.RequestTo{} },
	func() proto.Message { return &wire.SessionMarks{} },
	func() proto.Message { return &wire.SessionTake{} },
	func() proto.Message { return &wire.SessionHandover{} },
	func() proto.Message { return &wire.MemberProbe{} },
	func() proto.Message { return &wire.RoomResubscribe{} },
	func() proto.Message { return &wire.RoomPublishDone{} },
	func() proto.Message { return &wire.SessionFence{} },
}

// FuzzNodeMessages feeds the node actor what protoactor's remote decodes
// from the network: any bytes, decoded as one of the wire messages,
// must be answered (requests) or dropped, never panic or hang. The
// node's server has a client in a room, so deliveries and sends reach a
// real connection.
func FuzzNodeMessages(f *testing.F) {
	for i, m := range []proto.Message{
		&wire.Broadcast{Name: "n", Data: []byte("d"), Meta: map[string]string{"traceparent": "00-x"}},
		&wire.SendTo{Id: 1, Data: []byte("d")},
		&wire.Disconnect{Id: 1, Code: 1000},
		&wire.ClientsRequest{},
		&wire.StatsRequest{},
		&wire.RoomDeliverSeq{Room: "r", Epoch: "e", Offset: 7, Name: "x", Data: []byte("d"), Origin: 1<<originRunBits | 5, Seq: 3},
		&wire.RoomStateQuery{Room: "r"},
		&wire.RoomReplicate{State: &wire.RoomState{Room: "q", Has: true, Epoch: "e", Offset: 2,
			Entries: []*wire.HistEntry{{Offset: 1, Data: []byte("a")}, {Offset: 2, Data: []byte("b")}}, Seqs: map[uint64]uint64{1<<originRunBits | 5: 9}}},
		&wire.RoomRelease{Room: "q"},
		&wire.RoomPresenceChange{Room: "r", Node: 2, Client: 2_000_000_000_001, Joined: true},
		&wire.RoomPresenceSync{Room: "r", Node: 2, Members: []uint64{2_000_000_000_001, 2_000_000_000_002}},
		&wire.RoomMembersRequest{Room: "r"},
		&wire.RequestTo{Id: 1, Name: "q", Data: []byte("d"), TimeoutMs: 10},
		&wire.SessionMarks{Home: "h", TtlNanos: int64(time.Minute), Marks: []*wire.SessionMark{{Id: 5, SecretHash: make([]byte, 32), Last: 9}}, Deleted: []uint64{4}},
		&wire.SessionTake{Id: 5, Secret: make([]byte, 32)},
		&wire.SessionHandover{Id: 1, Secret: []byte("s")},
	} {
		b, _ := proto.Marshal(m)
		f.Add(append([]byte{byte(i)}, b...))
	}
	// A grain's word on one of this node's publishes (its origin, below),
	// and a state with publish keys.
	done, _ := proto.Marshal(&wire.RoomPublishDone{Room: "r", Origin: 1<<originRunBits | 5, Seq: 2, Offset: 4, Failed: true})
	f.Add(append([]byte{byte(len(wireKinds) - 2)}, done...))
	keyed, _ := proto.Marshal(&wire.RoomReplicate{State: &wire.RoomState{Room: "q", Has: true, Epoch: "e", Offset: 1,
		Entries: []*wire.HistEntry{{Offset: 1, Data: []byte("a"), Key: "s1.2"}}, Keys: map[string]uint64{"s1.2": 1, "k": 9}}})
	f.Add(append([]byte{byte(slices.IndexFunc(wireKinds, func(k func() proto.Message) bool {
		_, ok := k().(*wire.RoomReplicate)
		return ok
	}))}, keyed...))
	fence, _ := proto.Marshal(&wire.SessionFence{Ids: []uint64{5, 1}})
	f.Add(append([]byte{byte(len(wireKinds) - 1)}, fence...))
	srv, err := marmot.NewServer(marmot.ServerConfig{Addr: "127.0.0.1:0", Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		f.Fatal(err)
	}
	if err := srv.Start(context.Background()); err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = srv.Stop(ctx)
	})
	c, err := marmot.NewClient(marmot.ClientConfig{URL: srv.URL(), Subprotocol: "marmot.v1", Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		f.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.Connect(ctx); err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { _ = c.Close(context.Background()) })
	if err := c.Join(ctx, "r"); err != nil {
		f.Fatal(err)
	}
	n := &Node{srv: srv, log: slog.New(slog.DiscardHandler), prop: defaultPropagator(), reqSlots: make(chan struct{}, maxNodeRequests)}
	n.rb = newRoomBroker(n)
	n.rb.origin = 1<<originRunBits | 5
	// A member with the server's actor system and no cluster: what the
	// node actor's messages need of it (sessions send on its system).
	n.mem.Store(&member{sys: srv.ActorSystem()})
	n.ss = newSessionStore(n, 0)
	// The broker has room r (as a node whose room lives), with history.
	n.hist = marmot.HistoryConfig{Size: 8, Bytes: 1 << 10}
	n.rb.room("r").local = true
	pid := srv.ActorSystem().Root.Spawn(actorProps(n, nil))
	f.Cleanup(func() { _ = srv.ActorSystem().Root.StopFuture(pid).Wait() })

	f.Fuzz(func(t *testing.T, in []byte) {
		if len(in) == 0 {
			return
		}
		m := wireKinds[int(in[0])%len(wireKinds)]()
		if proto.Unmarshal(in[1:], m) != nil {
			return // protoactor's remote drops what does not decode
		}
		if d, ok := m.(*wire.RoomDeliverSeq); ok {
			d.Room = "r" // the room that lives here, at any offset
		}
		if d, ok := m.(*wire.RoomPublishDone); ok {
			d.Room = "r"
		}
		root := srv.ActorSystem().Root
		switch m.(type) {
		case *wire.RoomDeliverSeq, *wire.RoomReplicate, *wire.RoomRelease, *wire.RoomPresenceChange, *wire.RoomPresenceSync, *wire.SessionMarks, *wire.RoomResubscribe, *wire.SessionFence, *wire.RoomPublishDone:
			// Not answered: a request after it tells that the actor
			// has handled it.
			root.Send(pid, m)
			m = &wire.StatsRequest{}
		}
		if _, err := root.RequestFuture(pid, m, 5*time.Second).Result(); err != nil {
			t.Fatalf("%T not answered: %v", m, err)
		}
	})
}

// grainKinds are the messages another node can send a room's grain: the
// room path's (history.proto) and presence's.
var grainKinds = []func() proto.Message{
	func() proto.Message { return &wire.RoomPresenceChange{} },
	func() proto.Message { return &wire.RoomPresenceSync{} },
	func() proto.Message { return &wire.RoomPresenceRequest{} },
	func() proto.Message { return &wire.RoomPublishSeq{} },
	func() proto.Message { return &wire.RoomSubscribeSeq{} },
	func() proto.Message { return &wire.RoomUnsubscribe{} },
}

// FuzzGrain feeds a room's grain, once it holds the room, publishes,
// subscriptions, unsubscriptions, presence changes, syncs and state
// requests decoded from any bytes: never a panic or a hang; a publish
// with an origin and seq is numbered once (the offset moves by one the
// first time, not again), and not after a hole in its origin's seqs; the state answers list each node's members in
// increasing order. The subscriptions name node addresses this process
// cannot reach (their deliveries end as dead letters); one node, keeper,
// stays subscribed so that the grain does not end.
func FuzzGrain(f *testing.F) {
	for i, m := range []proto.Message{
		&wire.RoomPresenceChange{Room: "r", Node: 2, Client: 2_000_000_000_001, Joined: true},
		&wire.RoomPresenceSync{Room: "r", Node: 3, Members: []uint64{3_000_000_000_002, 3_000_000_000_001}},
		&wire.RoomPresenceRequest{Room: "r"},
		&wire.RoomPublishSeq{Room: "r", Name: "n", Data: []byte("d"), Origin: 2<<originRunBits | 7, Seq: 1},
		&wire.RoomSubscribeSeq{Room: "r", Node: "127.0.0.3:7001", History: true},
		&wire.RoomUnsubscribe{Room: "r", Node: "127.0.0.3:7001"},
	} {
		b, _ := proto.Marshal(m)
		f.Add(append([]byte{byte(i)}, b...))
	}
	const keeper = "127.0.0.2:7001"
	sys := marmot.NewActorSystem(slog.New(slog.DiscardHandler))
	f.Cleanup(sys.Shutdown)
	n := &Node{log: slog.New(slog.DiscardHandler), hist: marmot.HistoryConfig{Size: 8, Bytes: 1 << 10}}
	var g *roomGrain // read between requests: the grain is idle then
	pid := sys.Root.Spawn(actor.PropsFromProducer(func() actor.Actor { g = newRoomGrain(n); return g }))
	// Activated as the cluster does it; with no member to ask it takes
	// the room over at once, in a new epoch.
	sys.Root.Send(pid, &cluster.ClusterInit{Identity: cluster.NewClusterIdentity("r", roomKind)})
	sys.Root.Send(pid, &wire.RoomSubscribeSeq{Room: "r", Node: keeper})
	f.Fuzz(func(t *testing.T, in []byte) {
		if len(in) == 0 {
			return
		}
		m := grainKinds[int(in[0])%len(grainKinds)]()
		if proto.Unmarshal(in[1:], m) != nil {
			return
		}
		if u, ok := m.(*wire.RoomUnsubscribe); ok && u.Node == keeper {
			u.Node += "x"
		}
		p, _ := m.(*wire.RoomPublishSeq)
		if _, err := sys.Root.RequestFuture(pid, &wire.RoomPresenceRequest{Room: "r"}, 5*time.Second).Result(); err != nil {
			t.Fatalf("state not answered: %v", err)
		}
		last, seen := g.hist.last, p != nil && g.hist.numbered(p.Origin, p.Seq)
		hole := p != nil && g.hist.after(p.Origin, p.Seq, p.Confirmed)
		sys.Root.Send(pid, m)
		res, err := sys.Root.RequestFuture(pid, &wire.RoomPresenceRequest{Room: "r"}, 5*time.Second).Result()
		if err != nil {
			t.Fatalf("state not answered after %T: %v", m, err)
		}
		if p != nil && p.Origin != 0 && p.Seq != 0 {
			want := last + 1 // a new one takes the next offset
			if seen || hole {
				want = last // one numbered already, or after a hole, is dropped
			}
			if g.hist.last != want || g.hist.numbered(p.Origin, p.Seq) == hole {
				t.Fatalf("publish (%#x, %d), numbered before %v, after a hole %v: offset %d → %d, want %d", p.Origin, p.Seq, seen, hole, last, g.hist.last, want)
			}
		}
		for _, s := range res.(*wire.RoomPresenceState).Nodes {
			if !slices.IsSorted(s.Members) || len(s.Members) == 0 {
				t.Fatalf("node %d: members %v, want a non-empty increasing list", s.Node, s.Members)
			}
		}
	})
}
