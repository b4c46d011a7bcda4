package cluster_test

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/marmotws/marmot"
	"github.com/marmotws/marmot/chaos"
	"github.com/marmotws/marmot/chaos/delivery"
)

// TestConfirmedPublishHeldByTwo: a publish answered on the node that
// hosts its room's grain is held by another node too. Publishers on node 1
// publish to a room whose grain is on node 1; the room's members are on
// nodes 2 and 3, which node 1 reaches through chaos proxies. The proxies
// delay node 1's deliveries (and everything else to nodes 2 and 3) by a
// second; once 40 publishes have been answered since, node 1 is SIGKILLed
// and the proxies drop what they still hold (reset). Every answered
// publish reaches every member on nodes 2 and 3 exactly once, in order.
//
// Before the grain waited for another holder, a publish was answered as
// soon as the grain's delivery reached its own node, while its copies to
// nodes 2 and 3 were still on their way: those answered in the last
// second died with node 1.
func TestConfirmedPublishHeldByTwo(t *testing.T) {
	specs := loopbackNodes(t)
	var slow []*chaos.Proxy // in front of nodes 2 and 3's cluster ports
	for i := 1; i < 3; i++ {
		adv, ps := proxyPair(t, specs[i].ip, specs[i].bind, specs)
		specs[i].advertise = adv
		slow = append(slow, ps[0])
	}
	procs := startNodes(t, clusterName("marmot-held"), specs, "MARMOT_HISTORY=1000")
	ctx := ctxTimeout(t)

	room := roomOn(t, connect(t, procs[0]), "held-", 1)

	// Members on nodes 2 and 3; ends[i] gets member i's "end" marker.
	rec := delivery.NewRecorder()
	var ends []chan struct{}
	for _, p := range procs[1:] {
		for k := range 2 {
			name := fmt.Sprintf("n%d-m%d", p.id, k)
			end := make(chan struct{}, 1)
			c, _ := dialNode(t, p, marmot.ClientEvents{OnHandleCommand: func(m *marmot.Message) {
				if m.Room != room {
					return
				}
				rec.Received(name, m.Room, m.Epoch, m.Offset, m.Payload)
				if s, _, _, err := delivery.Unstamp(m.Payload); err == nil && s == "end" {
					end <- struct{}{}
				}
			}})
			if err := c.Join(ctx, room); err != nil {
				t.Fatal(err)
			}
			rec.Joined(name, room)
			ends = append(ends, end)
		}
	}
	// publish has c ask its node to publish the stream's next message
	// (Server.Publish, answered once confirmed); acked says whether it
	// was answered.
	publish := func(ctx context.Context, c *marmot.Client, s *delivery.Stream) bool {
		payload, seq := s.Next([]byte("m"))
		if _, err := c.Request(ctx, "pub/"+room, payload); err != nil {
			return false
		}
		s.Acked(seq)
		return true
	}
	// waitEnd publishes the end marker from node 2 until it is answered
	// (a new grain may be taking the room over), and waits until every
	// member has it: it comes after everything numbered before it.
	waitEnd := func(what string) {
		t.Helper()
		endc := connect(t, procs[1])
		es := rec.Stream("end", room)
		for !publish(ctx, endc.c, es) {
			if ctx.Err() != nil {
				t.Fatalf("node 2 does not take the room's publishes %s", what)
			}
		}
		for i, e := range ends {
			select {
			case <-e:
			case <-ctx.Done():
				t.Fatalf("member %d did not get the end marker %s\n%s", i, what, rec.Check())
			}
		}
	}

	// Publishers on node 1; warm-up without faults.
	const publishers = 8
	pubs := make([]*marmot.Client, publishers)
	streams := make([]*delivery.Stream, publishers)
	for p := range pubs {
		pubs[p], _ = dialNode(t, procs[0], marmot.ClientEvents{})
		streams[p] = rec.Stream("pub-"+strconv.Itoa(p), room)
		for range 5 {
			if !publish(ctx, pubs[p], streams[p]) {
				t.Fatalf("publisher %d: warm-up publish not answered", p)
			}
		}
	}
	waitEnd("after the warm-up")

	// Node 1's links to nodes 2 and 3 slowed by a second; the publishers
	// publish one after another, each once the last was answered.
	for _, p := range slow {
		if err := p.Set(chaos.Faults{Latency: time.Second}); err != nil {
			t.Fatal(err)
		}
	}
	answered := make(chan struct{}, 1<<16)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for p := range pubs {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
				ok := publish(rctx, pubs[p], streams[p])
				cancel()
				if !ok {
					return // not answered (node 1 died): stop here
				}
				answered <- struct{}{}
			}
		})
	}
	const want = 40
	for range want {
		select {
		case <-answered:
		case <-ctx.Done():
			t.Fatalf("fewer than %d publishes answered with the links slowed", want)
		}
	}
	// Node 1 dies right after those answers, and what its links still
	// hold is dropped.
	procs[0].kill()
	for _, p := range slow {
		p.ResetAll()
		if err := p.Set(chaos.Faults{}); err != nil {
			t.Fatal(err)
		}
	}
	close(stop)
	wg.Wait()
	t.Logf("%d publishes answered with the links slowed", want+len(answered))
	procs[1].waitMembers("2,3")
	procs[2].waitMembers("2,3")

	waitEnd("after node 1's death")
	rep := rec.Check()
	t.Logf("%s", rep)
	if err := rep.Err(); err != nil {
		t.Fatal(err)
	}
}

// roomOn returns the first room named prefix and a number whose grain is
// on node, as c's node places it.
func roomOn(t *testing.T, c *tclient, prefix string, node int) string {
	t.Helper()
	for i := range 200 {
		r := prefix + strconv.Itoa(i)
		res, err := c.c.Request(ctxTimeout(t), "owner", []byte(r))
		if err != nil {
			t.Fatal(err)
		}
		if string(res) == strconv.Itoa(node) {
			return r
		}
	}
	t.Fatalf("no room of 200 has its grain on node %d", node)
	return ""
}
