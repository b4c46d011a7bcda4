package cluster_test

import (
	"context"
	"log"
	"time"

	"github.com/marmotws/marmot"
	"github.com/marmotws/marmot/cluster"
)

// A node of a three-node cluster: start the same program on the other
// two with their own NodeID and Bind (and the others as Seeds).
func Example() {
	ctx := context.Background()
	var node *cluster.Node
	node, err := cluster.New(cluster.Config{
		Name:   "chat",
		NodeID: 1,
		Bind:   "127.0.0.2:7011",
		Seeds:  []string{"127.0.0.3:7021", "127.0.0.4:7031"},
	}, marmot.ServerConfig{
		Addr: "127.0.0.2:8080",
		ServerEvents: marmot.ServerEvents{
			OnHandleCommand: func(m *marmot.Message) {
				// To every client of every node, once.
				if _, err := node.Broadcast(m.Context(), m.Payload); err != nil {
					log.Print(err)
				}
			},
		},
	})
	if err != nil {
		log.Fatal(err)
	}
	if err := node.Start(ctx); err != nil {
		log.Fatal(err)
	}
	defer node.Stop(context.Background())

	// Room members on every node receive it, in one order.
	_, _ = node.Server().Publish("lobby", []byte("hello"))
	// ClientIDs name their node: this client is on node 3.
	_ = node.SendToClient(ctx, 3_000_000_000_007, []byte("hi"))

	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	n, _ := node.ClientCount(ctx)
	log.Printf("%d clients on %d nodes", n, len(node.Members()))
}

// A handler asks another client, on whichever node it is, and answers its
// own client with that client's reply; rooms with presence list every
// node's members.
func ExampleNode_RequestClient() {
	var node *cluster.Node
	node, err := cluster.New(cluster.Config{
		Name: "chat", NodeID: 1, Bind: "127.0.0.2:7011",
		Seeds: []string{"127.0.0.3:7021", "127.0.0.4:7031"},
	}, marmot.ServerConfig{
		Addr:         "127.0.0.2:8080",
		RoomPresence: func(room string) bool { return room == "lobby" },
		ServerEvents: marmot.ServerEvents{
			OnHandleCommand: func(m *marmot.Message) {
				if m.Name != "ask-peer" {
					return
				}
				// Bound it: a peer that does not answer fails the call
				// with context.DeadlineExceeded.
				ctx, cancel := context.WithTimeout(m.Context(), 2*time.Second)
				defer cancel()
				peer := marmot.ClientID(3_000_000_000_007) // a client of node 3
				res, err := node.RequestClient(ctx, peer, "question", m.Payload)
				if err != nil {
					_ = m.ReplyError(502, err.Error())
					return
				}
				_ = m.Reply(res)
			},
		},
	})
	if err != nil {
		log.Fatal(err)
	}
	if err := node.Start(context.Background()); err != nil {
		log.Fatal(err)
	}
	defer node.Stop(context.Background())

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ids, _ := node.RoomMembers(ctx, "lobby") // any room, every node
	log.Printf("%d members in the lobby", len(ids))
}
