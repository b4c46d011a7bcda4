package cluster_test

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/marmotws/marmot"
)

// TestAckedPublishSurvivesKill is the cluster soak's lost acknowledged
// publishes (docs/FAULTS.md) as a test. Publishers on node 1 publish to a
// room whose grain is on node 3, each publish a request answered by
// Server.PublishContext; the room's members are on node 2. Node 3 is
// SIGKILLed (the grain is gone, and node 1 does not know it yet), the
// publishers go on for a while, and node 1 is SIGKILLed too. Every
// publish that was answered reaches every member on node 2 exactly once,
// each publisher's in its order.
//
// Before a cluster publish waited for its grain to number it, it was
// answered at once, while it lived only in node 1's queue of unconfirmed
// publishes: those answered after node 3's death died with node 1.
func TestAckedPublishSurvivesKill(t *testing.T) {
	specs := loopbackNodes(t)
	// Node 2 is left alone: it keeps its clients (and goes on).
	procs := startNodes(t, clusterName("marmot-acked"), specs, "MARMOT_KEEP_ISOLATED=1")
	ctx := ctxTimeout(t)

	ask := connect(t, procs[0])
	room := roomOn(t, ask, "acked-", 3)

	const publishers = 8
	// Members on node 2: next[p] is the last of publisher p's messages
	// a member got. A publisher's publishes go one after another, each
	// once the last was answered: a member gets them all, in order.
	type member struct {
		got  chan string
		next [publishers]int
	}
	var members []*member
	for range 2 {
		m := &member{got: make(chan string, 1<<16)}
		c, _ := dialNode(t, procs[1], marmot.ClientEvents{OnHandleCommand: func(msg *marmot.Message) {
			if msg.Room == room {
				m.got <- string(msg.Payload)
			}
		}})
		if err := c.Join(ctx, room); err != nil {
			t.Fatal(err)
		}
		members = append(members, m)
	}
	// take reads member i's next message: false at "end".
	take := func(i int) bool {
		m := members[i]
		select {
		case s := <-m.got:
			if s == "end" {
				return false
			}
			ps, ks, _ := strings.Cut(s, "-")
			p, _ := strconv.Atoi(ps)
			k, _ := strconv.Atoi(ks)
			if p < 0 || p >= publishers || k != m.next[p]+1 {
				t.Fatalf("member %d: %q where %d-%d was due: lost, out of order or twice", i, s, p, m.next[p]+1)
			}
			m.next[p] = k
			return true
		case <-time.After(waitTimeout):
			t.Fatalf("member %d: no message for %v", i, waitTimeout)
			return false
		}
	}

	// Publishers on node 1, each its own client and sequence, as fast as
	// their answers come, until stop is closed or a publish is not
	// answered (not acknowledged: the publisher stops there).
	var acked [publishers]atomic.Int64 // the last answered
	clients := make([]*marmot.Client, publishers)
	for p := range clients {
		clients[p], _ = dialNode(t, procs[0], marmot.ClientEvents{})
	}
	var answered atomic.Int64
	run := func(stop <-chan struct{}) *sync.WaitGroup {
		var wg sync.WaitGroup
		for p, pc := range clients {
			wg.Go(func() {
				for {
					select {
					case <-stop:
						return
					default:
					}
					k := acked[p].Load() + 1
					rctx, cancel := context.WithTimeout(ctx, 3*time.Second)
					_, err := pc.Request(rctx, "pub", fmt.Appendf(nil, "%s\n%d-%d", room, p, k))
					cancel()
					if err != nil {
						return
					}
					acked[p].Store(k)
					answered.Add(1)
				}
			})
		}
		return &wg
	}

	// Steady: 1,000 answered, and every member has them all, before
	// node 3 dies (so that the members' node holds everything
	// acknowledged then: node 3 and node 1 die one after the other).
	stop := make(chan struct{})
	wg := run(stop)
	deadline := time.After(waitTimeout)
	for answered.Load() < 1000 {
		select {
		case <-deadline:
			t.Fatalf("only %d publishes answered", answered.Load())
		default:
		}
		take(0) // a member's progress paces the wait
	}
	close(stop)
	wg.Wait()
	for i, m := range members {
		for p := range publishers {
			for m.next[p] < int(acked[p].Load()) {
				take(i)
			}
		}
	}
	before := answered.Load()

	// Node 3 dies; the publishers go on for half a second (a load shape:
	// node 1 notices the loss a RefreshTTL or two later), then node 1
	// dies.
	procs[2].kill()
	stop = make(chan struct{})
	wg = run(stop)
	time.Sleep(500 * time.Millisecond)
	procs[0].kill()
	close(stop)
	wg.Wait()
	t.Logf("%d publishes answered before node 3 was killed, %d after", before, answered.Load()-before)

	// A last message, from node 2 once it hosts the room's grain, comes
	// after everything numbered: a member that has it has all it gets.
	end := connect(t, procs[1])
	for {
		rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		_, err := end.c.Request(rctx, "pub", []byte(room+"\nend"))
		cancel()
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("node 2 does not take the room's publishes: %v", err)
		}
	}
	for i, m := range members {
		for take(i) {
		}
		for p := range publishers {
			if a := int(acked[p].Load()); m.next[p] < a {
				t.Errorf("member %d: publisher %d's messages end at %d, its publishes were answered up to %d: %d acknowledged publishes lost", i, p, m.next[p], a, a-m.next[p])
			}
		}
	}
}
