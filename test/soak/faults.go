package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/trace"

	"github.com/marmotws/marmot/chaos"
)

// A fault the soak injects in one slot of its schedule.
type fault int

const (
	faultReset     fault = iota // every connection reset (RST) at the proxy
	faultBlackhole              // nothing passes for 2 s, then what was held flows on
	faultBandwidth              // 32 KiB/s per connection and direction for half a slot
	faultPanics                 // handler panics: random connection actors crash, the next publishes panic
	faultKill                   // the server SIGKILLed and started again
	nFaults
)

func (f fault) String() string {
	return [...]string{"reset", "blackhole 2s", "bandwidth cap", "handler panics", "server SIGKILL"}[f]
}

// schedule returns the faults of slots slots, those other than kills rotating in an
// order drawn from rng: first one round of them (settled is its length,
// after which the soak takes its RSS baseline; 0 when there is no room
// for it), then the kills spread evenly over the rest.
func schedule(rng *rand.Rand, slots, kills int) (out []fault, settled int) {
	rot := []fault{faultReset, faultBlackhole, faultBandwidth, faultPanics}
	if slots >= len(rot)+kills {
		settled = len(rot)
	}
	out = make([]fault, slots)
	isKill := make([]bool, slots)
	for k := 1; k <= kills && slots > settled; k++ {
		isKill[settled+k*(slots-settled)/(kills+1)] = true
	}
	rng.Shuffle(len(rot), func(i, j int) { rot[i], rot[j] = rot[j], rot[i] })
	n := 0
	for i := range out {
		if isKill[i] {
			out[i] = faultKill
			continue
		}
		out[i] = rot[n%len(rot)]
		n++
	}
	return out, settled
}

// injector applies the soak's faults.
type injector struct {
	proxy  proxies
	server nodes
	rng    *rand.Rand
	slot   time.Duration
	crash  int          // connection actors crashed per panics fault
	tracer trace.Tracer // the soak's own spans: kills
	counts [nFaults]atomic.Int64
	// restart is how long each server restart took to serve again.
	restarts []time.Duration
	killed   []string // what each kill killed, and when
	// killedNodes are the index in server of each kill's victim.
	killedNodes []int
	// The actor panics (and crashes among them) that killed processes
	// had injected.
	killedPanics, killedCrashes int64
}

// do injects f and lifts it when it is a lasting one; it returns once
// the fault is over (not once the clients have recovered).
func (in *injector) do(ctx context.Context, f fault) error {
	in.counts[f].Add(1)
	switch f {
	case faultReset:
		in.proxy.resetAll()
	case faultBlackhole:
		if err := in.proxy.set(chaos.Faults{Blackhole: true}); err != nil {
			return err
		}
		sleep(ctx, 2*time.Second)
		return in.proxy.set(chaos.Faults{})
	case faultBandwidth:
		if err := in.proxy.set(chaos.Faults{Bandwidth: 32 << 10}); err != nil {
			return err
		}
		sleep(ctx, in.slot/2)
		return in.proxy.set(chaos.Faults{})
	case faultPanics:
		// The crashes are shared among the nodes.
		if err := in.server.post(ctx, fmt.Sprintf("/crash?n=%d&seed=%d", max(in.crash/len(in.server), 1), in.rng.Uint64())); err != nil {
			return err
		}
		return in.server.post(ctx, "/panic-publish?n=3")
	case faultKill:
		// One server, or a node drawn from the seed; back once it serves
		// (and, in a cluster, once every node sees every other again).
		vi, what := 0, "server"
		if len(in.server) > 1 {
			vi = in.rng.IntN(len(in.server))
			what = fmt.Sprintf("node %d", in.server[vi].node)
		}
		victim := in.server[vi]
		in.killedNodes = append(in.killedNodes, vi)
		recordKill(in.tracer, what)
		// The victim's own counts, before the kill takes them.
		if s, err := victim.stats(ctx, false); err == nil {
			in.killedPanics += s.Faults.Panics
			in.killedCrashes += s.Faults.Crashes
		}
		victim.kill()
		start := time.Now()
		what += " at " + start.Format("15:04:05.000")
		if err := victim.start(ctx); err != nil {
			return err
		}
		if err := in.server.formed(ctx); err != nil {
			return err
		}
		in.restarts = append(in.restarts, time.Since(start))
		in.killed = append(in.killed, what)
	}
	return nil
}

// sleep waits d or until ctx ends: the soak paces its faults in time.
func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}
