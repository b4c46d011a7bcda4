package cluster_test

import (
	"testing"

	"github.com/marmotws/marmot/chaos"
	"github.com/marmotws/marmot/internal/rawconn"
	"github.com/marmotws/marmot/protocol"
)

// TestRejoinJoinPosition: a client that joins a room on a node that has
// just rejoined the cluster is told the room's position in the cluster,
// not the node's from before it was dropped, so the next message follows
// it with no gap. Node 3 (no room history) is dropped by nodes 1 and 2
// (its health endpoint blackholed, as TestSlowNodeRejoins), misses two
// messages, and rejoins; a client that joins its room once it has
// rejoined, and one that joins at once from the rejoin's start (parked
// until the room is subscribed again), must be told offset 3 and get #4
// next. Before the room was told of its subscription, both were told 1
// (the node's room still stood there: nothing is delivered again without
// history) and the next message was #4.
func TestRejoinJoinPosition(t *testing.T) {
	specs := loopbackNodes(t)
	adv, proxies := proxyPair(t, specs[2].ip, specs[2].bind, specs)
	specs[2].advertise = adv
	health := proxies[1]

	procs := startNodes(t, clusterName("marmot-rejoin-join"), specs, "MARMOT_WARNINGS=1")
	c1 := connect(t, procs[0])
	c3 := connect(t, procs[2])
	joinAll(t, "r", c1, c3)
	if err := c1.c.Publish("r", []byte("m1")); err != nil {
		t.Fatal(err)
	}
	for _, c := range []*tclient{c1, c3} {
		if m := c.next(t, "m1"); m.Offset != 1 {
			t.Fatalf("client %d: m1 at #%d", c.id, m.Offset)
		}
	}

	if err := health.Set(chaos.Faults{Blackhole: true}); err != nil {
		t.Fatal(err)
	}
	procs[0].waitMembers("1,2")
	procs[1].waitMembers("1,2")
	for _, p := range []string{"m2", "m3"} {
		if err := c1.c.Publish("r", []byte(p)); err != nil {
			t.Fatal(err)
		}
		if m := c1.next(t, p); string(m.Payload) != p {
			t.Fatalf("node 1's client got %q, want %s", m.Payload, p)
		}
	}
	if err := health.Set(chaos.Faults{}); err != nil {
		t.Fatal(err)
	}
	// A join from the rejoin's start on: it waits for the subscription.
	procs[2].waitLine("WARN marmot cluster: rejoining the cluster with a new member ID")
	early := rawconn.Dial(t, procs[2].url)
	earlyJoin := early.Request(t, protocol.RequestJoin, "r")
	procs[2].waitLine("WARN marmot cluster: rejoined the cluster")
	for _, p := range procs {
		p.waitMembers("1,2,3")
	}
	late := rawconn.Dial(t, procs[2].url)
	lateJoin := late.Request(t, protocol.RequestJoin, "r")
	for _, j := range []struct {
		c    *rawconn.Conn
		id   uint64
		what string
	}{{early, earlyJoin, "from the rejoin's start"}, {late, lateJoin, "after the rejoin"}} {
		if res := j.c.JoinResult(t, j.id, waitTimeout); res.Offset != 3 {
			t.Fatalf("a join on node 3 %s was told #%d, want #3 (the cluster's position)", j.what, res.Offset)
		}
	}
	if err := c1.c.Publish("r", []byte("m4")); err != nil {
		t.Fatal(err)
	}
	for _, c := range []*rawconn.Conn{early, late} {
		if e := c.Recv(t, "m4", waitTimeout); string(e.Payload) != "m4" || e.Offset != 4 {
			t.Fatalf("got #%d %q after the join, want #4 m4", e.Offset, e.Payload)
		}
	}
	// The member from before missed m2 and m3 (no history): it sees the
	// gap.
	if m := c3.next(t, "m4"); string(m.Payload) != "m4" || m.Offset != 4 {
		t.Fatalf("node 3's client got #%d %q, want #4 m4", m.Offset, m.Payload)
	}
}
