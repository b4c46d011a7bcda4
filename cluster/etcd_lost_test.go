package cluster_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// etcdLeaseTTL is the etcd provider's lease (protoactor's default).
const etcdLeaseTTL = 3 * time.Second

// TestEtcdLost runs three nodes on the etcd provider and kills etcd: for
// twice the lease's TTL the nodes keep their member list and go on
// serving, broadcasts and room messages reach every client; when etcd is
// back on its data, the three members are registered again and all works
// as before.
func TestEtcdLost(t *testing.T) {
	e := newEtcd(t)
	specs := loopbackNodes(t)
	name := clusterName("marmot-etcdlost")
	procs := startNodes(t, name, specs, "MARMOT_PROVIDER=etcd", "MARMOT_ETCD="+e.endpoint)
	ctx := ctxTimeout(t)
	var clients []*tclient
	for _, p := range procs {
		clients = append(clients, connect(t, p))
	}
	joinAll(t, "r", clients...)
	members := func(c *tclient) string {
		res, err := c.c.Request(ctx, "members", nil)
		if err != nil {
			t.Fatalf("members from node %d: %v", c.node, err)
		}
		return string(res)
	}
	// round: a broadcast and a room message from node k reach every
	// client once, and every node lists the three.
	round := func(k int, tag string) {
		t.Helper()
		from := clients[k%len(clients)]
		res, err := from.c.Request(ctx, "bcast", []byte(tag))
		if err != nil || string(res) != "3" {
			t.Fatalf("%s: broadcast from node %d: %q, %v; want 3", tag, from.node, res, err)
		}
		for _, c := range clients {
			c.expectMarker(t, tag)
		}
		if err := from.c.Publish("r", []byte(tag+"-room")); err != nil {
			t.Fatal(err)
		}
		for _, c := range clients {
			c.expectMarker(t, tag+"-room")
		}
		for _, c := range clients {
			if m := members(c); m != "1,2,3" {
				t.Fatalf("%s: node %d lists %q", tag, c.node, m)
			}
		}
	}
	round(0, "before")

	e.stop()
	lost := time.Now()
	for k := 0; k == 0 || time.Since(lost) < 2*etcdLeaseTTL; k++ {
		round(k, fmt.Sprintf("lost-%d", k))
	}

	e.start()
	// The three members are in etcd again (their leases renewed, or
	// registered anew by the provider's keepalive loop).
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{e.endpoint}, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	deadline := time.Now().Add(waitTimeout)
	for {
		gctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		res, err := cli.Get(gctx, "/marmot/"+name+"/", clientv3.WithPrefix(), clientv3.WithCountOnly())
		cancel()
		if err == nil && res.Count == 3 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("etcd back: members registered %v, %v; want 3", res, err)
		}
		time.Sleep(100 * time.Millisecond) // polling etcd: no event to wait on
	}
	// Every node lists the three (a node whose key lapsed meanwhile
	// would have left the others' lists and rejoined).
	for _, c := range clients {
		var last string
		for last = members(c); last != "1,2,3"; last = members(c) {
			if time.Now().After(deadline) {
				t.Fatalf("after etcd came back node %d lists %q", c.node, last)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	for k := range 3 {
		round(k, fmt.Sprintf("after-%d", k))
	}
}
