package cluster_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/marmotws/marmot"
)

// tclient is a test client of one node: every message it receives goes to
// got.
type tclient struct {
	c    *marmot.Client
	id   marmot.ClientID
	node int
	got  chan *marmot.Message
}

func connect(t *testing.T, p *proc) *tclient {
	t.Helper()
	tc := &tclient{node: p.id, got: make(chan *marmot.Message, 4096)}
	tc.c, tc.id = dialNode(t, p, marmot.ClientEvents{OnHandleCommand: func(m *marmot.Message) { tc.got <- m }})
	return tc
}

// dialNode connects a client with events to node p, closed when the test
// ends, and returns it with its ClientID (which names p's node).
func dialNode(t *testing.T, p *proc, ev marmot.ClientEvents) (*marmot.Client, marmot.ClientID) {
	t.Helper()
	c, err := marmot.NewClient(marmot.ClientConfig{
		URL: p.url, Subprotocol: "marmot.v1", Logger: slog.New(slog.DiscardHandler), ClientEvents: ev,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = c.Close(ctx)
	})
	ctx := ctxTimeout(t)
	if err := c.Connect(ctx); err != nil {
		t.Fatal(err)
	}
	res, err := c.Request(ctx, "whoami", nil)
	if err != nil {
		t.Fatal(err)
	}
	v, _ := strconv.ParseUint(string(res), 10, 64)
	id := marmot.ClientID(v)
	if id.Node() != uint32(p.id) {
		t.Fatalf("client %d of node %d names node %d", id, p.id, id.Node())
	}
	return c, id
}

func (tc *tclient) next(t *testing.T, what string) *marmot.Message {
	t.Helper()
	select {
	case m := <-tc.got:
		return m
	case <-time.After(waitTimeout):
		t.Fatalf("client %d: timed out waiting for %s", tc.id, what)
	}
	return nil
}

// none checks that nothing more arrived: it follows a marker that went
// the same way after everything that could have arrived.
func (tc *tclient) expectMarker(t *testing.T, marker string) {
	t.Helper()
	m := tc.next(t, "the marker")
	if string(m.Payload) != marker {
		t.Fatalf("client %d: got %q (%q, room %q #%d) where the marker %q was due", tc.id, m.Payload, m.Name, m.Room, m.Offset, marker)
	}
}

// joinAll has every client join room.
func joinAll(t *testing.T, room string, clients ...*tclient) {
	t.Helper()
	for _, c := range clients {
		if err := c.c.Join(ctxTimeout(t), room); err != nil {
			t.Fatal(err)
		}
	}
}

func ctxTimeout(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	t.Cleanup(cancel)
	return ctx
}

// loopbackNodes returns the three node addresses, on 127.0.0.2 to .4.
func loopbackNodes(t *testing.T) []nodeSpec {
	var specs []nodeSpec
	for i := range 3 {
		ip := fmt.Sprintf("127.0.0.%d", i+2)
		if ln, err := net.Listen("tcp", ip+":0"); err != nil {
			t.Skipf("loopback address %s unusable: %v", ip, err)
		} else {
			ln.Close()
		}
		specs = append(specs, nodeSpec{id: i + 1, ip: ip, bind: fmt.Sprintf("%s:%d", ip, freePort(t, ip))})
	}
	return specs
}

// TestThreeNodes runs three node processes on 127.0.0.2-4 and two clients
// on each: broadcasts, targeted sends and room publishes reach clients on
// every node exactly once and in order; the cluster-wide figures count
// every node; a SIGKILLed node is noticed, and rejoins when started again.
//
// It runs with each membership provider: automanaged, and etcd against a
// real etcd server (Debian's etcd-server) on loopback.
//
// With automanaged the nodes also export their spans to an in-process
// OTLP receiver: a broadcast asked of node 1 makes one trace with the
// broadcasts it caused on nodes 2 and 3.
func TestThreeNodes(t *testing.T) {
	t.Run("automanaged", func(t *testing.T) {
		col := newCollector(t)
		threeNodes(t, col, "MARMOT_OTLP_URL="+col.srv.URL)
	})
	t.Run("etcd", func(t *testing.T) {
		threeNodes(t, nil, "MARMOT_PROVIDER=etcd", "MARMOT_ETCD="+startEtcd(t))
	})
}

func threeNodes(t *testing.T, col *collector, env ...string) {
	specs := loopbackNodes(t)
	name := fmt.Sprintf("marmot-test-%d", time.Now().UnixNano())
	procs := make([]*proc, len(specs))
	for i, s := range specs {
		procs[i] = startProc(t, name, s, specs, env...)
	}
	for _, p := range procs {
		p.waitMembers("1,2,3")
	}
	var clients []*tclient
	for _, p := range procs {
		clients = append(clients, connect(t, p), connect(t, p))
	}
	ctx := ctxTimeout(t)

	t.Run("figures", func(t *testing.T) {
		var want []string
		for _, c := range clients {
			want = append(want, strconv.FormatUint(uint64(c.id), 10))
		}
		slices.Sort(want)
		for _, c := range []*tclient{clients[0], clients[2], clients[4]} {
			res, err := c.c.Request(ctx, "count", nil)
			if err != nil || string(res) != "6" {
				t.Fatalf("ClientCount from node %d: %q, %v", c.node, res, err)
			}
			res, err = c.c.Request(ctx, "clients", nil)
			if err != nil || string(res) != strings.Join(want, ",") {
				t.Fatalf("Clients from node %d: %q, %v; want %v", c.node, res, err, want)
			}
		}
	})

	t.Run("broadcast", func(t *testing.T) {
		const n = 100
		for k := range n {
			res, err := clients[k%len(clients)].c.Request(ctx, "bcast", fmt.Appendf(nil, "b%d", k))
			if err != nil || string(res) != "6" {
				t.Fatalf("broadcast %d: %q, %v", k, res, err)
			}
		}
		if _, err := clients[0].c.Request(ctx, "bcast", []byte("end")); err != nil {
			t.Fatal(err)
		}
		for _, c := range clients {
			for k := range n {
				if m := c.next(t, "a broadcast"); string(m.Payload) != fmt.Sprintf("b%d", k) {
					t.Fatalf("client %d (node %d): broadcast %d is %q", c.id, c.node, k, m.Payload)
				}
			}
			c.expectMarker(t, "end")
		}
	})

	if col != nil {
		t.Run("trace", func(t *testing.T) {
			if _, err := clients[0].c.Request(ctx, "bcast", []byte("traced")); err != nil {
				t.Fatal(err)
			}
			for _, c := range clients {
				c.expectMarker(t, "traced")
			}
			// Node 1's process span of the request, and the broadcast
			// spans on the other nodes in its trace. The spans are
			// exported as they end; wait for each export.
			deadline := time.After(waitTimeout)
			for {
				trace, ok := col.find("node-1", "process bcast", "")
				_, ok2 := col.find("node-2", "broadcast", trace)
				_, ok3 := col.find("node-3", "broadcast", trace)
				if ok && ok2 && ok3 {
					return
				}
				select {
				case <-col.changed:
				case <-deadline:
					t.Fatalf("no trace across the nodes: node 1's process span found %v, broadcast on node 2 %v, on node 3 %v", ok, ok2, ok3)
				}
			}
		})
	}

	t.Run("targeted", func(t *testing.T) {
		// Every client sends one to every other, across nodes and on its own.
		for _, from := range clients {
			for _, to := range clients {
				if _, err := from.c.Request(ctx, "sendto", fmt.Appendf(nil, "%d from-%d", to.id, from.id)); err != nil {
					t.Fatalf("send from %d to %d: %v", from.id, to.id, err)
				}
			}
		}
		for _, to := range clients {
			for _, from := range clients {
				m := to.next(t, "a direct message")
				if m.Name != "direct" || string(m.Payload) != fmt.Sprintf("from-%d", from.id) {
					t.Fatalf("client %d: got %q %q, want from-%d", to.id, m.Name, m.Payload, from.id)
				}
			}
		}
		// A node that is not a member, and a client its node does not have.
		for _, id := range []marmot.ClientID{9_000_000_000_001, clients[3].id + 100} {
			_, err := clients[0].c.Request(ctx, "sendto", fmt.Appendf(nil, "%d x", id))
			var re *marmot.RemoteError
			if !errors.As(err, &re) || !strings.Contains(re.Message, "no such client") {
				t.Fatalf("send to %d: %v, want no such client", id, err)
			}
		}
	})

	t.Run("room", func(t *testing.T) {
		for _, c := range clients {
			if err := c.c.Join(ctx, "r"); err != nil {
				t.Fatal(err)
			}
		}
		// One publisher per node, all at once.
		const n = 300
		pubs := []*tclient{clients[0], clients[2], clients[5]}
		var wg sync.WaitGroup
		for _, p := range pubs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for k := range n {
					if err := p.c.Publish("r", fmt.Appendf(nil, "%d:%d", p.id, k)); err != nil {
						t.Error(err)
						return
					}
				}
			}()
		}
		wg.Wait()
		var first []string
		for ci, c := range clients {
			next := map[string]int{}
			var got []string
			for i := range n * len(pubs) {
				m := c.next(t, "a room message")
				if m.Room != "r" || m.Offset != uint64(i+1) {
					t.Fatalf("client %d (node %d): message %d is room %q #%d %q", c.id, c.node, i, m.Room, m.Offset, m.Payload)
				}
				from, k, _ := strings.Cut(string(m.Payload), ":")
				if strconv.Itoa(next[from]) != k {
					t.Fatalf("client %d: publisher %s's message %s after %d", c.id, from, k, next[from]-1)
				}
				next[from]++
				got = append(got, string(m.Payload))
			}
			if ci == 0 {
				first = got
			} else if !slices.Equal(got, first) {
				t.Fatalf("client %d received the room's messages in another order than client %d", c.id, clients[0].id)
			}
		}
		// Nothing more: a last publish is the next message of everyone.
		if err := clients[1].c.Publish("r", []byte("end")); err != nil {
			t.Fatal(err)
		}
		for _, c := range clients {
			c.expectMarker(t, "end")
		}
	})

	t.Run("kill and rejoin", func(t *testing.T) {
		procs[2].kill()
		procs[0].waitMembers("1,2")
		procs[1].waitMembers("1,2")
		// The room goes on between the nodes that are left.
		if err := clients[0].c.Publish("r", []byte("after-kill")); err != nil {
			t.Fatal(err)
		}
		for _, c := range clients[:4] {
			c.expectMarker(t, "after-kill")
		}
		// Node 3's clients are not counted any more.
		if res, err := clients[0].c.Request(ctx, "count", nil); err != nil || string(res) != "4" {
			t.Fatalf("ClientCount with node 3 gone: %q, %v", res, err)
		}
		procs[2] = startProc(t, name, specs[2], specs, env...)
		for _, p := range procs {
			p.waitMembers("1,2,3")
		}
		c := connect(t, procs[2])
		if err := c.c.Join(ctx, "r"); err != nil {
			t.Fatal(err)
		}
		if err := clients[2].c.Publish("r", []byte("after-rejoin")); err != nil {
			t.Fatal(err)
		}
		for _, c := range append(clients[:4:4], c) {
			c.expectMarker(t, "after-rejoin")
		}
		if res, err := c.c.Request(ctx, "bcast", []byte("all")); err != nil || string(res) != "5" {
			t.Fatalf("broadcast after the rejoin: %q, %v", res, err)
		}
	})
}
