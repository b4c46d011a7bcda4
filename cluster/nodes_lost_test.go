package cluster_test

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/marmotws/marmot"
	"github.com/marmotws/marmot/chaos/delivery"
)

// TestNodesLost kills the nodes that hold a room while a publisher sends
// to it, and checks with the delivery recorder (chaos/delivery, as the
// soak does) that every client of the room ends with every acknowledged
// message once and in order, or was told Recovered=false for the gap:
// never silently short.
//
//   - two-at-once: the room is held by two nodes only, the grain's (3)
//     and one other (2), with the members and the publisher on them; both
//     are SIGKILLed at once and everyone fails over to node 1, where no
//     node holds the room's history any more: the new grain starts a new
//     epoch and the clients are told Recovered=false.
//   - replica: every member and the publisher are on the grain's node
//     (3), so the grain has another node keep the room as a replica; node
//     3 is SIGKILLed and its clients fail over to the others, which
//     recover them from the replica.
func TestNodesLost(t *testing.T) {
	t.Run("two-at-once", func(t *testing.T) { nodesLost(t, []int{2, 3}, 2, []int{2, 3}) })
	t.Run("replica", func(t *testing.T) { nodesLost(t, []int{3}, 3, []int{3}) })
}

// lossClient is a room member that records what it gets in rec.
type lossClient struct {
	name      string
	node      int
	c         *marmot.Client
	maxSeq    atomic.Uint64 // the highest publisher seq received
	got       chan struct{} // a message arrived (cap 1)
	recovered chan bool     // OnRecover's recovered, per re-join
}

// nodesLost runs the test: clients (two per node) on the nodes clientsOn,
// the publisher's requests on node pubOn, the nodes kill SIGKILLed at
// once. The room's grain is on node 3.
func nodesLost(t *testing.T, clientsOn []int, pubOn int, kill []int) {
	specs := loopbackNodes(t)
	name := clusterName("marmot-lost")
	env := []string{"MARMOT_HISTORY=100000"}
	procs := startNodes(t, name, specs, env...)
	ctx := ctxTimeout(t)
	others := func(id int) []string {
		var urls []string
		for _, p := range procs {
			if p.id != id {
				urls = append(urls, p.url)
			}
		}
		return urls
	}

	// A room whose grain is on node 3.
	probe := connect(t, procs[0])
	room := roomOn(t, probe, "lost-", 3)

	rec := delivery.NewRecorder()
	stream := rec.Stream("pub", room)
	newClient := func(p *proc, ev marmot.ClientEvents) *marmot.Client {
		c, err := marmot.NewClient(marmot.ClientConfig{
			URL: p.url, FailoverURLs: others(p.id), Subprotocol: "marmot.v1", Logger: slog.New(slog.DiscardHandler),
			AutoReconnect: true, ReconnectStrategy: marmot.ReconnectFixed, ReconnectInterval: 100 * time.Millisecond,
			ClientEvents: ev,
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			_ = c.Close(ctx)
		})
		if err := c.Connect(ctx); err != nil {
			t.Fatal(err)
		}
		return c
	}
	var clients []*lossClient
	for _, p := range procs {
		if !slices.Contains(clientsOn, p.id) {
			continue
		}
		for k := range 2 {
			lc := &lossClient{name: fmt.Sprintf("n%d-c%d", p.id, k), node: p.id, got: make(chan struct{}, 1), recovered: make(chan bool, 16)}
			lc.c = newClient(p, marmot.ClientEvents{
				OnHandleCommand: func(m *marmot.Message) {
					if m.Room == "" {
						return
					}
					rec.Received(lc.name, m.Room, m.Epoch, m.Offset, m.Payload)
					if _, seq, _, err := delivery.Unstamp(m.Payload); err == nil && seq > lc.maxSeq.Load() {
						lc.maxSeq.Store(seq)
					}
					select {
					case lc.got <- struct{}{}:
					default:
					}
				},
				OnRecover: func(r string, ok bool, _ int, _ string) {
					if !ok {
						rec.NotRecovered(lc.name, r)
					}
					lc.recovered <- ok
				},
			})
			if err := lc.c.Join(ctx, room); err != nil {
				t.Fatal(err)
			}
			rec.Joined(lc.name, room)
			clients = append(clients, lc)
		}
	}
	// waitSeq waits until every client got seq (or a later one).
	waitSeq := func(seq uint64, what string) {
		t.Helper()
		deadline := time.After(2 * waitTimeout)
		for _, lc := range clients {
			for lc.maxSeq.Load() < seq {
				select {
				case <-lc.got:
				case <-deadline:
					t.Fatalf("%s (node %d) did not get #%d (%s); it has #%d\n%s", lc.name, lc.node, seq, what, lc.maxSeq.Load(), rec.Check())
				}
			}
		}
	}

	// The publisher asks its node to publish each message
	// (Server.Publish): a message is acked once the node's broker took
	// it; one that fails is not, and the next gets the next number.
	pub := newClient(procs[pubOn-1], marmot.ClientEvents{})
	publish := func() bool {
		payload, seq := stream.Next([]byte("m"))
		rctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		defer cancel()
		if _, err := pub.Request(rctx, "pub/"+room, payload); err != nil {
			return false
		}
		stream.Acked(seq)
		return true
	}
	// It stops once it had 300 messages acked after the kill (from a
	// surviving node).
	var ackedAfter atomic.Int64
	var killed atomic.Bool
	pubDone := make(chan struct{})
	go func() {
		defer close(pubDone)
		// About 500 messages a second (a load shape, not a
		// synchronisation).
		tick := time.NewTicker(2 * time.Millisecond)
		defer tick.Stop()
		for ackedAfter.Load() < 300 && ctx.Err() == nil {
			<-tick.C
			if publish() && killed.Load() {
				ackedAfter.Add(1)
			}
		}
	}()

	// The kill, once the first client has got #300 (the others may be
	// behind, messages are on their way): SIGKILL every node of kill
	// before waiting for any of them.
	for first := clients[0]; first.maxSeq.Load() < 300; {
		select {
		case <-first.got:
		case <-ctx.Done():
			t.Fatalf("%s did not get #300 before the kill", first.name)
		}
	}
	for _, id := range kill {
		_ = procs[id-1].cmd.Process.Kill()
	}
	for _, id := range kill {
		<-procs[id-1].exited
	}
	killed.Store(true)
	killTime := time.Now()
	<-pubDone
	if ctx.Err() != nil {
		t.Fatalf("the publisher had %d messages acked after the kill", ackedAfter.Load())
	}
	// A last message, acked, that every client must get: what came
	// before it from the same node has reached the clients too.
	var last uint64
	for last == 0 {
		payload, seq := stream.Next([]byte("last"))
		if _, err := pub.Request(ctx, "pub/"+room, payload); err == nil {
			stream.Acked(seq)
			last = seq
		} else if ctx.Err() != nil {
			t.Fatalf("the last message: %v", err)
		}
	}
	waitSeq(last, "the last message")

	rep := rec.Check()
	t.Logf("%v after the kill of nodes %v: %d acked after the kill, the last #%d\n%s", time.Since(killTime).Round(time.Millisecond), kill, ackedAfter.Load(), last, rep)
	if err := rep.Err(); err != nil {
		t.Fatal(err)
	}
	// Every client failed over and was told how its rooms came back.
	for _, lc := range clients {
		if u := lc.c.URL(); slices.ContainsFunc(kill, func(id int) bool { return procs[id-1].url == u }) {
			t.Errorf("%s is still on a killed node (%s)", lc.name, u)
		}
		select {
		case ok := <-lc.recovered:
			t.Logf("%s (node %d): re-joined, Recovered=%v", lc.name, lc.node, ok)
		default:
			t.Errorf("%s (node %d) was not told how its room came back", lc.name, lc.node)
		}
	}
	if rep.Expected == 0 {
		t.Fatal("nothing was expected: the test checked nothing")
	}
}
