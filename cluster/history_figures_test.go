package cluster_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/marmotws/marmot"
)

// TestRoomHistoryCostFigures measures what keeping room history across
// nodes costs a room publish: three node processes, members on each, one
// publisher on node 1 sending as fast as it can, with history (every node
// and the grain keep 1,000 messages) and without, interleaved. It prints
// deliveries/s (messages × members / the time from the first publish to
// the last member's last message). Only with MARMOT_FIGURES set; the
// figures are in docs/PERFORMANCE.md. MARMOT_FIGURES_BASE names a
// baseline's testnode binary (built from main) to run as two more modes,
// with and without history; MARMOT_FIGURES_ROUNDS sets the rounds (3).
func TestRoomHistoryCostFigures(t *testing.T) {
	if os.Getenv("MARMOT_FIGURES") == "" {
		t.Skip("figures: set MARMOT_FIGURES")
	}
	const perNode, count = 100, 20000
	rounds := 3
	if r, err := strconv.Atoi(os.Getenv("MARMOT_FIGURES_ROUNDS")); err == nil && r > 0 {
		rounds = r
	}
	res := map[string][]float64{}
	modes := []string{"history", "no history"}
	base := os.Getenv("MARMOT_FIGURES_BASE")
	if base != "" {
		modes = append(modes, "baseline history", "baseline no history")
	}
	for round := range rounds {
		for _, mode := range modes {
			env := []string{"MARMOT_HISTORY=0"}
			if mode == "history" || mode == "baseline history" {
				env = []string{"MARMOT_HISTORY=1000"}
			}
			bin := testnode(t)
			if strings.HasPrefix(mode, "baseline") {
				bin = base
			}
			rate := historyCostRun(t, bin, perNode, count, env)
			t.Logf("round %d, %s: %.0f deliveries/s", round+1, mode, rate)
			res[mode] = append(res[mode], rate)
		}
	}
	for mode, rs := range res {
		slices.Sort(rs)
		t.Logf("%s: median %.0f deliveries/s (min %.0f, max %.0f)", mode, rs[len(rs)/2], rs[0], rs[len(rs)-1])
	}
}

func historyCostRun(t *testing.T, bin string, perNode, count int, env []string) float64 {
	specs := loopbackNodes(t)
	name := fmt.Sprintf("marmot-fig-%d", time.Now().UnixNano())
	procs := make([]*proc, len(specs))
	for i, s := range specs {
		procs[i] = startProcBin(t, bin, name, s, specs, env...)
	}
	defer func() {
		for _, p := range procs {
			p.stop()
		}
	}()
	for _, p := range procs {
		p.waitMembers("1,2,3")
	}
	ctx := ctxTimeout(t)
	var wg sync.WaitGroup
	var clients []*marmot.Client
	var counts []*atomic.Int64
	var closed atomic.Int64
	defer func() {
		for _, c := range clients {
			cctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			_ = c.Close(cctx)
			cancel()
		}
	}()
	for _, p := range procs {
		for range perNode {
			got := new(atomic.Int64)
			counts = append(counts, got)
			wg.Add(1)
			c, err := marmot.NewClient(marmot.ClientConfig{URL: p.url, Subprotocol: "marmot.v1", Logger: slog.New(slog.DiscardHandler),
				ClientEvents: marmot.ClientEvents{
					OnHandleCommand: func(m *marmot.Message) {
						if m.Room != "" && got.Add(1) == int64(count) {
							wg.Done()
						}
					},
					OnDisconnect: func(e *marmot.CloseError) {
						if closed.Add(1) == 1 {
							t.Logf("first disconnect: %v", e)
						}
					},
				}})
			if err != nil {
				t.Fatal(err)
			}
			clients = append(clients, c)
			if err := c.Connect(ctx); err != nil {
				t.Fatal(err)
			}
			if err := c.Join(ctx, "fig"); err != nil {
				t.Fatal(err)
			}
		}
	}
	// The publisher is a client of node 1 outside the room.
	// Its close or first error (a publish the server refused), if any,
	// says why messages went missing.
	var pubClosed atomic.Pointer[marmot.CloseError]
	var pubErr atomic.Value
	pub, err := marmot.NewClient(marmot.ClientConfig{URL: procs[0].url, Subprotocol: "marmot.v1", Logger: slog.New(slog.DiscardHandler),
		ClientEvents: marmot.ClientEvents{
			OnDisconnect: func(e *marmot.CloseError) { pubClosed.CompareAndSwap(nil, e) },
			OnError:      func(err error) { pubErr.CompareAndSwap(nil, err.Error()) },
		}})
	if err != nil {
		t.Fatal(err)
	}
	clients = append(clients, pub)
	if err := pub.Connect(ctx); err != nil {
		t.Fatal(err)
	}
	payload := make([]byte, 64)
	start := time.Now()
	for range count {
		if err := pub.Publish("fig", payload); err != nil {
			t.Fatal(err)
		}
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(waitTimeout):
		short, low, high := 0, int64(count), int64(0)
		for _, g := range counts {
			if g.Load() < int64(count) {
				short++
			}
			low, high = min(low, g.Load()), max(high, g.Load())
		}
		t.Logf("received: %d to %d", low, high)
		t.Fatalf("not every member got every message: %d of %d short, %d disconnected; the publisher's close: %v, its first error: %v", short, len(counts), closed.Load(), pubClosed.Load(), pubErr.Load())
	}
	return float64(count*len(counts)) / time.Since(start).Seconds()
}
