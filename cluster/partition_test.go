package cluster_test

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/marmotws/marmot"
	"github.com/marmotws/marmot/chaos"
	"github.com/marmotws/marmot/cluster"
)

// proxyPair starts two chaos proxies on ip, at a port and the next one,
// in front of a node's cluster port upstream and its automanaged health
// port (upstream's port + 1), and returns the first one's address and
// both proxies, avoiding the ports of specs. They close when the test
// ends.
func proxyPair(t *testing.T, ip, upstream string, specs []nodeSpec) (string, []*chaos.Proxy) {
	t.Helper()
	taken := map[int]bool{}
	for _, s := range specs {
		_, p, _ := net.SplitHostPort(s.bind)
		port, _ := strconv.Atoi(p)
		taken[port], taken[port+1] = true, true
	}
	host, p, _ := net.SplitHostPort(upstream)
	port, _ := strconv.Atoi(p)
	health := net.JoinHostPort(host, strconv.Itoa(port+1))
	for range 20 {
		at := freePort(t, ip)
		if taken[at] || taken[at+1] {
			continue // a node's cluster or health port
		}
		a, err := chaos.NewProxy(fmt.Sprintf("%s:%d", ip, at), upstream, chaos.Options{})
		if err != nil {
			continue
		}
		b, err := chaos.NewProxy(fmt.Sprintf("%s:%d", ip, at+1), health, chaos.Options{})
		if err != nil {
			_ = a.Close()
			continue
		}
		t.Cleanup(func() {
			_ = a.Close()
			_ = b.Close()
		})
		return fmt.Sprintf("%s:%d", ip, at), []*chaos.Proxy{a, b}
	}
	t.Fatal("no free port pair for the proxies")
	return "", nil
}

// partClient is a test client that fails over between nodes and reports
// its closes and connects.
type partClient struct {
	*tclient
	closes   chan *marmot.CloseError
	connects chan struct{}
	recovers chan string // rooms re-joined after a reconnect
}

// expectFailover waits until the client, whose node found itself cut
// off, is closed with CloseIsolated, reconnects to one of the nodes to and
// re-joins room there.
func (fc *partClient) expectFailover(t *testing.T, room string, to ...*proc) {
	t.Helper()
	select {
	case r := <-fc.closes:
		if r.Code != cluster.CloseIsolated {
			t.Fatalf("node %d's client closed with %d %q, want CloseIsolated (%d)", fc.node, r.Code, r.Text, cluster.CloseIsolated)
		}
	case <-time.After(waitTimeout):
		t.Fatalf("node %d's client was not closed when its node was cut off", fc.node)
	}
	select {
	case <-fc.connects:
	case <-time.After(waitTimeout):
		t.Fatalf("node %d's client did not reconnect", fc.node)
	}
	if u := fc.c.URL(); !slices.ContainsFunc(to, func(p *proc) bool { return p.url == u }) {
		t.Fatalf("node %d's client reconnected to %s, not to the majority", fc.node, u)
	}
	select {
	case r := <-fc.recovers:
		if r != room {
			t.Fatalf("node %d's client re-joined %q", fc.node, r)
		}
	case <-time.After(waitTimeout):
		t.Fatalf("node %d's client did not re-join its room", fc.node)
	}
}

func connectPartitioned(t *testing.T, p *proc, failover ...string) *partClient {
	t.Helper()
	fc := &partClient{tclient: &tclient{node: p.id, got: make(chan *marmot.Message, 4096)},
		closes: make(chan *marmot.CloseError, 16), connects: make(chan struct{}, 16), recovers: make(chan string, 16)}
	c, err := marmot.NewClient(marmot.ClientConfig{
		URL: p.url, FailoverURLs: failover, Subprotocol: "marmot.v1", Logger: slog.New(slog.DiscardHandler),
		AutoReconnect: true, ReconnectInterval: 100 * time.Millisecond, MaxReconnectInterval: time.Second,
		ClientEvents: marmot.ClientEvents{
			OnHandleCommand: func(m *marmot.Message) { fc.got <- m },
			OnDisconnect:    func(r *marmot.CloseError) { fc.closes <- r },
			OnConnect:       func() { fc.connects <- struct{}{} },
			OnRecover:       func(room string, _ bool, _ int, _ string) { fc.recovers <- room },
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	fc.c = c
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = c.Close(ctx)
	})
	if err := c.Connect(ctxTimeout(t)); err != nil {
		t.Fatal(err)
	}
	<-fc.connects
	return fc
}

// partitionableNodes is three loopback nodes of which node 3 sees the
// others, and is seen by them, only through chaos proxies (the returned
// ones: its advertised cluster and health ports, and its seeds'), so that
// a test cuts node 3 off by blackholing them.
func partitionableNodes(t *testing.T) ([]nodeSpec, []*chaos.Proxy) {
	t.Helper()
	specs := loopbackNodes(t)
	ip := specs[2].ip
	adv, proxies := proxyPair(t, ip, specs[2].bind, specs)
	seed1, p1 := proxyPair(t, ip, specs[0].bind, specs)
	seed2, p2 := proxyPair(t, ip, specs[1].bind, specs)
	proxies = append(append(proxies, p1...), p2...)
	specs[2].advertise = adv
	specs[2].seeds = []string{seed1, seed2}
	return specs, proxies
}

// TestPartition cuts node 3 off from nodes 1 and 2 and heals the cut.
// Node 3 advertises a chaos proxy as its cluster address, and reaches
// nodes 1 and 2's health endpoints through proxies too: blackholing the
// proxies cuts node 3's cluster port and health port off from the others
// and the others' health ports off from node 3 (node 3's own calls to
// the others' cluster ports go direct: the cut is what membership sees).
//
// Both sides notice (members 1,2 and 3); node 3, cut off from the
// majority, closes its client with cluster.CloseIsolated, and the client
// fails over to node 1 or 2 and gets the majority's broadcasts there.
// After the heal node 3, whose member ID nodes 1 and 2 blocked for good,
// rejoins with a new one: every node lists 1,2,3 again, and broadcasts
// and room messages reach node 3's clients.
func TestPartition(t *testing.T) {
	specs, proxies := partitionableNodes(t)

	procs := startNodes(t, clusterName("marmot-partition"), specs)
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
	for _, p := range proxies {
		if err := p.Set(chaos.Faults{Blackhole: true}); err != nil {
			t.Fatal(err)
		}
	}
	procs[0].waitMembers("1,2")
	procs[1].waitMembers("1,2")
	procs[2].waitMembers("3")

	// Node 3's client is told, and goes over to the majority.
	c3.expectFailover(t, "r", procs[0], procs[1])
	res, err := c1.c.Request(ctx, "bcast", []byte("during"))
	if err != nil || string(res) != "2" {
		t.Fatalf("broadcast during the cut: %q, %v; want 2 clients", res, err)
	}
	c1.expectMarker(t, "during")
	c3.expectMarker(t, "during")

	// The heal: node 3 rejoins under a new member ID.
	for _, p := range proxies {
		if err := p.Set(chaos.Faults{}); err != nil {
			t.Fatal(err)
		}
	}
	for _, p := range procs {
		p.waitMembers("1,2,3")
	}
	c3b := connect(t, procs[2])
	if err := c3b.c.Join(ctx, "r"); err != nil {
		t.Fatal(err)
	}
	if err := c1.c.Publish("r", []byte("after-heal")); err != nil {
		t.Fatal(err)
	}
	for _, c := range []*tclient{c1, c3.tclient, c3b} {
		c.expectMarker(t, "after-heal")
	}
	res, err = c3b.c.Request(ctx, "bcast", []byte("all"))
	if err != nil || string(res) != "3" {
		t.Fatalf("broadcast from node 3 after the heal: %q, %v; want 3 clients", res, err)
	}
	for _, c := range []*tclient{c1, c3.tclient, c3b} {
		c.expectMarker(t, "all")
	}
}

// TestSlowNodeRejoins blackholes only node 3's health endpoint, as the
// others reach it, until nodes 1 and 2 have dropped node 3 (as they would
// a node too slow to answer a poll in time) and blocked its member ID for
// good. Node 3 still sees them, so it is not isolated and keeps its
// client; once the health endpoint answers again it finds itself left
// out, rejoins with a new member ID, and its client, connected all along,
// gets broadcasts and room messages from the others again.
func TestSlowNodeRejoins(t *testing.T) {
	specs := loopbackNodes(t)
	adv, proxies := proxyPair(t, specs[2].ip, specs[2].bind, specs)
	specs[2].advertise = adv
	health := proxies[1]

	procs := startNodes(t, clusterName("marmot-slow"), specs)
	ctx := ctxTimeout(t)
	c1 := connect(t, procs[0])
	c3 := connectPartitioned(t, procs[2])
	joinAll(t, "r", c1, c3.tclient)

	if err := health.Set(chaos.Faults{Blackhole: true}); err != nil {
		t.Fatal(err)
	}
	procs[0].waitMembers("1,2")
	procs[1].waitMembers("1,2")
	if err := health.Set(chaos.Faults{}); err != nil {
		t.Fatal(err)
	}
	// Every node, node 3 too (its new member), lists the three, and has
	// subscribed its rooms again since.
	for _, p := range procs {
		p.waitMembers("1,2,3")
	}

	// Node 3's client was never closed, and is reached from node 1.
	res, err := c1.c.Request(ctx, "bcast", []byte("back"))
	if err != nil || string(res) != "2" {
		t.Fatalf("broadcast after the rejoin: %q, %v; want 2 clients", res, err)
	}
	c1.expectMarker(t, "back")
	c3.expectMarker(t, "back")
	if err := c1.c.Publish("r", []byte("room-back")); err != nil {
		t.Fatal(err)
	}
	c1.expectMarker(t, "room-back")
	c3.expectMarker(t, "room-back")
	select {
	case r := <-c3.closes:
		t.Fatalf("node 3's client was closed (%d %q) while node 3 rejoined", r.Code, r.Text)
	default:
	}
}
