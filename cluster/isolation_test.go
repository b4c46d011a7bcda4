package cluster_test

import (
	"testing"
	"time"

	"github.com/marmotws/marmot/chaos"
)

// TestEtcdPartition cuts node 3 off from nodes 1 and 2 but not from etcd,
// and heals the cut (the etcd rule of isolation.go). Node 3 advertises a
// chaos proxy as its cluster address: blackholed, nodes 1 and 2 cannot
// reach node 3, and node 3's requests to them get no answer (the answers
// go to the proxy). etcd lists all three throughout.
//
// Nodes 1 and 2 drop node 3 (members 1,2); node 3, which reaches fewer
// than a majority of the members etcd lists, closes its client with
// CloseIsolated, and the client fails over to node 1 or 2 and gets the
// majority's broadcasts and room messages there. After the heal node 3,
// whose member ID nodes 1 and 2 blocked, rejoins with a new one: every
// node lists 1,2,3 again, and a broadcast from node 3 reaches every
// client.
func TestEtcdPartition(t *testing.T) {
	etcd := startEtcd(t)
	specs := loopbackNodes(t)
	adv, proxies := proxyPair(t, specs[2].ip, specs[2].bind, specs)
	specs[2].advertise = adv
	procs := startNodes(t, clusterName("marmot-etcd-part"), specs, "MARMOT_PROVIDER=etcd", "MARMOT_ETCD="+etcd)
	ctx := ctxTimeout(t)
	c1 := connect(t, procs[0])
	c3 := connectPartitioned(t, procs[2], procs[0].url, procs[1].url)
	joinAll(t, "r", c1, c3.tclient)
	if err := c1.c.Publish("r", []byte("before")); err != nil {
		t.Fatal(err)
	}
	c1.expectMarker(t, "before")
	c3.expectMarker(t, "before")

	// The cut.
	cut := time.Now()
	for _, p := range proxies {
		if err := p.Set(chaos.Faults{Blackhole: true}); err != nil {
			t.Fatal(err)
		}
	}
	procs[0].waitMembers("1,2")
	procs[1].waitMembers("1,2")
	t.Logf("nodes 1 and 2 dropped node 3 %v after the cut", time.Since(cut).Round(time.Millisecond))

	// Node 3's client is told, and goes over to the majority.
	c3.expectFailover(t, "r", procs[0], procs[1])
	t.Logf("node 3's client failed over %v after the cut", time.Since(cut).Round(time.Millisecond))
	res, err := c1.c.Request(ctx, "bcast", []byte("during"))
	if err != nil || string(res) != "2" {
		t.Fatalf("broadcast during the cut: %q, %v; want 2 clients", res, err)
	}
	c1.expectMarker(t, "during")
	c3.expectMarker(t, "during")
	if err := c1.c.Publish("r", []byte("room-during")); err != nil {
		t.Fatal(err)
	}
	c1.expectMarker(t, "room-during")
	c3.expectMarker(t, "room-during")

	// The heal: node 3 rejoins under a new member ID.
	for _, p := range proxies {
		if err := p.Set(chaos.Faults{}); err != nil {
			t.Fatal(err)
		}
	}
	procs[0].waitMembers("1,2,3")
	procs[1].waitMembers("1,2,3")
	// (Node 3 went on printing 1,2,3, etcd's list: its count below is
	// what tells that its new member is in place.)
	c3b := connect(t, procs[2])
	// protoactor's remote on nodes 1 and 2 still has its connection to
	// node 3's address from before the cut (held by the proxy, to the
	// old member's closed server): an answer sent on it before it is
	// replaced is lost, and the request it answers ends with its
	// deadline. Node 3 asks every node for its count until that is over
	// (a few tries at most), then the others answer at once.
	for try := 1; ; try++ {
		res, err := c3b.c.Request(ctx, "count", nil)
		if err == nil && string(res) == "3" {
			t.Logf("node 3 counted every client at try %d after the heal", try)
			break
		}
		if try == 5 {
			t.Fatalf("node 3's count after the heal, try %d: %q, %v; want 3 clients", try, res, err)
		}
	}
	// A broadcast from node 3 reaches every client: node 3 lists the
	// others' members again, and they list its new one.
	res, err = c3b.c.Request(ctx, "bcast", []byte("all"))
	if err != nil || string(res) != "3" {
		t.Fatalf("broadcast from node 3 after the heal: %q, %v; want 3 clients", res, err)
	}
	for _, c := range []*tclient{c1, c3.tclient, c3b} {
		c.expectMarker(t, "all")
	}
	// The room goes on for its members on nodes 1 and 2. (A client that
	// joins it on node 3 now has been seen to miss the next message when
	// the grain is on node 1: docs/CLUSTER.md, Left to do.)
	if err := c1.c.Publish("r", []byte("after-heal")); err != nil {
		t.Fatal(err)
	}
	for _, c := range []*tclient{c1, c3.tclient} {
		c.expectMarker(t, "after-heal")
	}
}
