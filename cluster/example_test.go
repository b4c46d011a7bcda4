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
