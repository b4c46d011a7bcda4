package cluster_test

import (
	"strconv"
	"testing"
)

// TestTakeOverAnswerLost: three node processes whose room grains each
// drop the first answer of every member to their take-over
// (MARMOT_GRAIN_LOSE_ANSWER), as protoactor's remote drops an answer sent
// to an address it is reconnecting (a node that has just restarted at a
// killed one's address; docs/FAULTS.md, the two-kill cluster soak). The
// node that hosts a room's grain is SIGKILLed; the grain that takes the
// room over on a survivor asks again and goes on from the survivors'
// history: the next message has the next offset in the same epoch.
// Asked once, the grain waited out its take-over and began a new epoch
// at offset 1 while the survivors held offset 2.
func TestTakeOverAnswerLost(t *testing.T) {
	specs := loopbackNodes(t)
	procs := startNodes(t, clusterName("marmot-takeover"), specs, "MARMOT_HISTORY=100", "MARMOT_GRAIN_LOSE_ANSWER=1")
	pub := connect(t, procs[0])
	ctx := ctxTimeout(t)
	room := ""
	for i := range 200 {
		r := "takeover-" + strconv.Itoa(i)
		res, err := pub.c.Request(ctx, "owner", []byte(r))
		if err != nil {
			t.Fatal(err)
		}
		if string(res) == "3" {
			room = r
			break
		}
	}
	if room == "" {
		t.Fatal("no room of 200 has its grain on node 3")
	}
	clients := []*tclient{connect(t, procs[0]), connect(t, procs[1])}
	joinAll(t, room, clients...)
	if err := pub.c.Publish(room, []byte("a")); err != nil {
		t.Fatal(err)
	}
	epoch := expectAll(t, clients, "a", 1, "")
	if err := pub.c.Publish(room, []byte("b")); err != nil {
		t.Fatal(err)
	}
	expectAll(t, clients, "b", 2, epoch)

	procs[2].kill()
	procs[0].waitMembers("1,2")
	procs[1].waitMembers("1,2")
	if err := pub.c.Publish(room, []byte("c")); err != nil {
		t.Fatal(err)
	}
	expectAll(t, clients, "c", 3, epoch)
}
