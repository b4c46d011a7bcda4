package cluster

import (
	"context"
	"log/slog"
	"testing"
	"time"

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
	func() proto.Message { return &wire.RoomDeliver{} },
	func() proto.Message { return &wire.MemberProbe{} },
	func() proto.Message { return &wire.RoomResubscribe{} },
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
		&wire.RoomDeliver{Room: "r", Epoch: "e", Offset: 7, Name: "x", Data: []byte("d")},
	} {
		b, _ := proto.Marshal(m)
		f.Add(append([]byte{byte(i)}, b...))
	}
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
	n := &Node{srv: srv, log: slog.New(slog.DiscardHandler), prop: defaultPropagator()}
	n.rb = newRoomBroker(n)
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
		if d, ok := m.(*wire.RoomDeliver); ok {
			d.Room = "r" // the room that lives here, at any offset
		}
		root := srv.ActorSystem().Root
		switch m.(type) {
		case *wire.RoomDeliver, *wire.RoomResubscribe:
			// These are not answered: a request after it tells that
			// the actor has handled it.
			root.Send(pid, m)
			m = &wire.StatsRequest{}
		}
		if _, err := root.RequestFuture(pid, m, 5*time.Second).Result(); err != nil {
			t.Fatalf("%T not answered: %v", m, err)
		}
	})
}
