package marmot_test

import (
	"fmt"
	"strings"

	"github.com/marmotws/marmot"
)

// A handler in a cluster, where a client's session follows it to another
// node: after a node is lost, the messages it may already have handled
// come again with Redelivered set. This one applies each "deposit" once
// by the ID the client put in it, and checks its records only for flagged
// messages (the rest cannot be duplicates).
func ExampleMessage_redelivered() {
	applied := map[string]bool{} // your database, in real life
	handle := func(m *marmot.Message) {
		id, amount, _ := strings.Cut(string(m.Payload), " ")
		if m.Redelivered && applied[id] {
			fmt.Println("skip", id, "(applied before the node was lost)")
			return
		}
		applied[id] = true
		fmt.Println("deposit", id, amount)
	}
	handle(&marmot.Message{Name: "deposit", Payload: []byte("tx1 10")})
	handle(&marmot.Message{Name: "deposit", Payload: []byte("tx2 5")})
	// The node that handled tx2 died before acknowledging it: the client
	// sends it again to another node, flagged.
	handle(&marmot.Message{Name: "deposit", Payload: []byte("tx2 5"), Redelivered: true})
	handle(&marmot.Message{Name: "deposit", Payload: []byte("tx3 7"), Redelivered: true})
	// Output:
	// deposit tx1 10
	// deposit tx2 5
	// skip tx2 (applied before the node was lost)
	// deposit tx3 7
}
