package delivery_test

import (
	"fmt"

	"github.com/marmotws/marmot/chaos/delivery"
)

// Record what a publisher sent and what a receiver got, then check: the
// receiver missed #2 and got #3 twice.
func Example() {
	rec := delivery.NewRecorder()
	pub := rec.Stream("pub-1", "lobby")
	rec.Joined("alice", "lobby") // once alice's Join has returned

	var sent [][]byte
	for _, body := range []string{"a", "b", "c"} {
		payload, seq := pub.Next([]byte(body)) // send payload as it is
		pub.Acked(seq)                         // the server took it
		sent = append(sent, payload)
	}
	// In alice's OnHandleCommand: rec.Received(name, m.Room, m.Epoch, m.Offset, m.Payload)
	rec.Received("alice", "lobby", "e1", 1, sent[0])
	rec.Received("alice", "lobby", "e1", 3, sent[2])
	rec.Received("alice", "lobby", "e1", 3, sent[2])

	rep := rec.Check()
	fmt.Println(rep.OK(), rep.Lost, rep.Duplicated)
	for _, a := range rep.Examples {
		fmt.Println(a)
	}
	// Output:
	// false 1 1
	// lost: alice in lobby: pub-1 #2
	// duplicated: alice in lobby: pub-1 #3 at offset 3 of epoch e1 (received again)
}
