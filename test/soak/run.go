package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"runtime"
	"strings"
	"sync"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/marmotws/marmot/chaos"
	"github.com/marmotws/marmot/chaos/delivery"
)

// config is one soak run.
type config struct {
	Clients  int           // receivers
	Rooms    int           // rooms (one publisher each)
	Rate     float64       // messages per second per room
	Duration time.Duration // publishing while faults rotate
	Seed     uint64        // the fault schedule and targets
	Kills    int           // server SIGKILLs (with Nodes: node SIGKILLs)
	// Nodes, when above 0, runs a cluster of that many nodes (on
	// 127.0.0.2 on) instead of one server, each behind its own proxy,
	// with the clients spread over them and failing over to the others.
	Nodes    int
	History  int       // messages each room keeps (bolt)
	Dir      string    // bolt file and server log; "" a temporary one
	Progress io.Writer // a progress line every second; nil: none
	// ServerExe is the binary run as the server (with MARMOT_SOAK_ROLE
	// set); "" runs this one again.
	ServerExe string
}

// result is what a run found.
type result struct {
	cfg      config
	report   *delivery.Report
	faults   [nFaults]int64
	schedule []fault
	restarts []time.Duration
	killed   []string
	proxy    chaos.Counts
	// The server's RSS after warm-up and at the end (after a forced GC),
	// and its goroutines with every client connected and idle, before
	// and after.
	rssWarm, rssEnd memory
	// Before any fault (after the warm-up proper): reported, not bound.
	rssCalm memory
	memCalm goMemory
	// The Go runtime's view of the same moments: what the anonymous
	// part is made of.
	memWarm, memEnd goMemory
	warm            time.Duration
	gorBase, gorEnd int
	// Node by node (one entry for one server; pernode.go): goroutines
	// at the baseline and the end and their profiles then, the figures
	// after warm-up and at the end, and whether the node was SIGKILLed
	// and started again after the RSS baseline.
	gorNodesBase, gorNodesEnd []int
	profBase, profEnd         []stacks
	warmNodes, endNodes       []nodeSnap
	restarted                 []bool
	sessEnd                   int // the servers' client sessions at the end
	// The soak process's own goroutines before the clients and after
	// they closed.
	selfBase, selfEnd       int
	recovered, notRecovered int64
	// The "chaos.fault" events of the exported trace, by kind (see
	// trace.go), the spans exported and the exports that were unreadable.
	trace                           map[string]int64
	traceSpans, traceBad            int64
	lastReason                      string
	sent, acked, failed, received   int64
	serverPanics, serverCrashes     int64
	connectTime, drainTime, elapsed time.Duration
}

// rssTolerance and goroutineSlack are the run's bounds: the server's RSS
// at the end within 10 % of after warm-up, and its goroutines back to the
// baseline (give or take a few parked readers waking at the tick).
const (
	rssTolerance   = 0.10
	goroutineSlack = 10
)

func mib(b int64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }

// run runs one soak: the server as a child process, the chaos proxy and
// the clients in this one.
func run(ctx context.Context, cfg config) (res *result, err error) {
	start := time.Now()
	res = &result{cfg: cfg, selfBase: runtime.NumGoroutine()}
	dir := cfg.Dir
	if dir == "" {
		if dir, err = os.MkdirTemp("", "marmot-soak-"); err != nil {
			return nil, err
		}
		defer os.RemoveAll(dir)
	}
	exe := cfg.ServerExe
	if exe == "" {
		if exe, err = os.Executable(); err != nil {
			return nil, err
		}
	}
	sink, err := newTraceSink()
	if err != nil {
		return nil, err
	}
	defer sink.close()
	tp, err := tracerProvider(sink.url, "soak")
	if err != nil {
		return nil, err
	}
	defer func() { _ = tp.Shutdown(context.Background()) }()
	srv, err := makeNodes(cfg, exe, dir, sink.url)
	if err != nil {
		return nil, err
	}
	defer srv.stop(10 * time.Second)
	if err := srv.start(ctx); err != nil {
		return nil, fmt.Errorf("%w\nserver log:\n%s", err, srv.logTail())
	}
	defer func() {
		if err != nil {
			err = fmt.Errorf("%w\nserver log:\n%s", err, srv.logTail())
		}
	}()
	proxy := make(proxies, len(srv))
	defer proxy.close()
	for i, c := range srv {
		if proxy[i], err = chaos.NewProxy("127.0.0.1:0", c.addr, chaos.Options{TracerProvider: tp}); err != nil {
			return nil, err
		}
	}

	sys := actor.NewActorSystem(actor.WithDeadLetterThrottleInterval(50*time.Millisecond),
		actor.WithLoggerFactory(func(*actor.ActorSystem) *slog.Logger { return slog.New(slog.DiscardHandler) }))
	rec := delivery.NewRecorder()
	fl := &fleet{urls: proxy.urls(), sys: sys, rec: rec}
	defer func() {
		fl.close()
		sys.Shutdown()
	}()

	phase := &progress{total: cfg.Duration}
	phase.set("connecting")
	stopProgress := phase.run(cfg.Progress, fl, proxy)
	defer stopProgress()

	cctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
	err = fl.connect(cctx, cfg.Clients, cfg.Rooms)
	cancel()
	if err != nil {
		return nil, err
	}
	res.connectTime = time.Since(start)
	phase.set("baseline")
	res.gorNodesBase = settleNodes(ctx, srv, nil)
	res.gorBase = sum(res.gorNodesBase)
	res.profBase = srv.profiles(ctx)

	// Publishing for the whole duration. Warm-up lasts until the rooms'
	// histories are full (History/Rate), so that the RSS it is measured
	// against holds them, but at least a sixth of the duration (at most
	// 10 s) and at most a third; then the faults rotate, one per slot.
	// The RSS baseline is taken after the first round of them (each
	// rotating fault once, no kill): a server under faults keeps the
	// high-water mark of its first reconnect storm (heap spans and stacks
	// the allocator keeps after a peak, not live data; FAULTS.md,
	// "Memory"), and the bound is about growth beyond that, a leak. The
	// RSS before any fault is reported too.
	pctx, stopPub := context.WithCancel(ctx)
	var pubErr error
	var pubWG sync.WaitGroup
	pubWG.Go(func() { pubErr = fl.publish(pctx, cfg.Rooms, cfg.Rate) })
	phase.begin()
	fill := time.Duration(float64(cfg.History) / cfg.Rate * float64(time.Second))
	warm := max(min(cfg.Duration/6, 10*time.Second), min(fill, cfg.Duration/3))
	res.warm = warm
	phase.set("warm-up")
	sleep(ctx, warm)
	calm, err := measure(ctx, srv, fl)
	if err != nil {
		stopPub()
		pubWG.Wait()
		return nil, err
	}
	res.memCalm, res.rssCalm = calm.mem, calm.rss
	res.memWarm, res.rssWarm, res.warmNodes = calm.mem, calm.rss, calm.nodes

	slot := min(max(cfg.Duration/12, 4*time.Second), 15*time.Second)
	slots := max(int((cfg.Duration-warm)/slot), 0)
	rng := rand.New(rand.NewPCG(cfg.Seed, cfg.Seed^0x5eed))
	var settled int
	res.schedule, settled = schedule(rng, slots, cfg.Kills)
	inj := &injector{proxy: proxy, server: srv, rng: rng, slot: slot, crash: max(cfg.Clients/50, 1), tracer: tp.Tracer("soak")}
	for i, f := range res.schedule {
		slotEnd := time.Now().Add(slot)
		phase.set(fmt.Sprintf("fault %d/%d: %s", i+1, len(res.schedule), f))
		if err := inj.do(ctx, f); err != nil {
			stopPub()
			pubWG.Wait()
			return nil, fmt.Errorf("fault %s: %w", f, err)
		}
		sleep(ctx, time.Until(slotEnd))
		if i+1 == settled {
			phase.set("baseline after the first round")
			warmed, err := measure(ctx, srv, fl)
			if err != nil {
				stopPub()
				pubWG.Wait()
				return nil, err
			}
			res.memWarm, res.rssWarm, res.warmNodes = warmed.mem, warmed.rss, warmed.nodes
			res.warm = time.Since(phase.began)
			srv.saveHeaps(ctx, dir, "warm")
		}
	}
	sleep(ctx, time.Until(phase.began.Add(cfg.Duration)))
	stopPub()
	pubWG.Wait()
	if pubErr != nil {
		return nil, pubErr
	}
	for i := range res.faults {
		res.faults[i] = inj.counts[i].Load()
	}
	res.restarts, res.killed = inj.restarts, inj.killed
	// Kills come after the baseline (schedule), so a killed node's end
	// is a fresh process's.
	res.restarted = make([]bool, len(srv))
	for _, i := range inj.killedNodes {
		res.restarted[i] = true
	}
	res.serverPanics, res.serverCrashes = inj.killedPanics, inj.killedCrashes

	// Drain: wait for every receiver to be connected and to have caught
	// up (nothing lost), within a bound.
	phase.set("draining")
	drainStart := time.Now()
	deadline := drainStart.Add(2 * time.Minute)
	for {
		res.report = rec.Check()
		if fl.connected() == len(fl.recv) && res.report.Lost == 0 || time.Now().After(deadline) || ctx.Err() != nil {
			break
		}
		sleep(ctx, 2*time.Second)
	}
	res.drainTime = time.Since(drainStart)
	phase.set("measuring")
	res.gorNodesEnd = settleNodes(ctx, srv, res.gorNodesBase)
	res.gorEnd = sum(res.gorNodesEnd)
	res.profEnd = srv.profiles(ctx)
	if s, err := srv.stats(ctx, false); err == nil {
		res.serverPanics += s.Faults.Panics
		res.serverCrashes += s.Faults.Crashes
	}
	if end, err := measure(ctx, srv, fl); err == nil {
		res.memEnd, res.rssEnd, res.endNodes = end.mem, end.rss, end.nodes
	}
	srv.saveHeaps(ctx, dir, "end")
	if s, err := srv.stats(ctx, false); err == nil {
		res.sessEnd = s.Sessions
	}
	res.proxy = proxy.counts()
	res.recovered, res.notRecovered = fl.recovered.Load(), fl.notRecovered.Load()
	if v, ok := fl.lastReason.Load().(string); ok {
		res.lastReason = v
	}
	res.sent, res.acked, res.failed, res.received = fl.sent.Load(), fl.acked.Load(), fl.failed.Load(), fl.received.Load()
	// The trace: every connection's span ends (the clients close, then
	// the proxy), both sides flush, and the receiver has it all.
	phase.set("collecting the trace")
	fl.close()
	proxy.close()
	if err := tp.ForceFlush(ctx); err != nil {
		return nil, fmt.Errorf("flush the trace: %w", err)
	}
	if err := srv.post(ctx, "/flush"); err != nil {
		return nil, fmt.Errorf("flush the server's trace: %w", err)
	}
	res.trace, res.traceSpans, res.traceBad = sink.snapshot()
	res.elapsed = time.Since(start)
	return res, ctx.Err()
}

// measure returns the servers' memory once every client is connected
// (within a bound: the faults' reconnects and recoveries are over), after
// a forced GC and debug.FreeOSMemory.
func measure(ctx context.Context, srv nodes, fl *fleet) (snapshot, error) {
	for end := time.Now().Add(time.Minute); fl.connected() < len(fl.recv) && time.Now().Before(end) && ctx.Err() == nil; {
		sleep(ctx, 100*time.Millisecond)
	}
	return srv.each(ctx, true)
}

// finish measures the soak process's goroutines once run has returned
// (everything it started closed).
func finish(res *result) {
	ctlClient.CloseIdleConnections()
	res.selfEnd = settle(runtime.NumGoroutine, res.selfBase)
}

// settle samples get for a few seconds (idle readers park within two
// ticks) and returns the lowest value seen, early once at or below
// target.
func settle(get func() int, target int) int {
	low := get()
	for end := time.Now().Add(5 * time.Second); time.Now().Before(end); {
		if low <= target {
			return low
		}
		time.Sleep(250 * time.Millisecond)
		low = min(low, get())
	}
	return low
}

// summary writes the run's table.
func (r *result) summary(w io.Writer) {
	row := func(k, v string) { fmt.Fprintf(w, "  %-28s %s\n", k, v) }
	where := "one server"
	if r.cfg.Nodes > 0 {
		where = fmt.Sprintf("a cluster of %d nodes", r.cfg.Nodes)
	}
	fmt.Fprintf(w, "\nmarmot soak: %d clients in %d rooms on %s, %.0f msg/s per room, history %d, %s, seed %d\n",
		r.cfg.Clients, r.cfg.Rooms, where, r.cfg.Rate, r.cfg.History, r.cfg.Duration, r.cfg.Seed)
	names := make([]string, len(r.schedule))
	for i, f := range r.schedule {
		names[i] = f.String()
	}
	row("fault schedule", strings.Join(names, ", "))
	for f := range fault(nFaults) {
		row("  "+f.String(), fmt.Sprint(r.faults[f]))
	}
	kills := make([]string, len(r.killed))
	for i, k := range r.killed {
		kills[i] = fmt.Sprintf("%s (serving %s later)", k, r.restarts[i].Round(time.Millisecond))
	}
	row("kills", strings.Join(kills, ", "))
	row("actor panics injected", fmt.Sprintf("%d (%d by Crash, the rest on publishes)", r.serverPanics, r.serverCrashes))
	row("proxy resets", fmt.Sprint(r.proxy.Resets))
	row("publishes sent/acked/failed", fmt.Sprintf("%d / %d / %d", r.sent, r.acked, r.failed))
	row("room messages received", fmt.Sprint(r.received))
	row("re-joins recovered / not", fmt.Sprintf("%d / %d", r.recovered, r.notRecovered))
	if r.notRecovered > 0 {
		row("  last reason", r.lastReason)
	}
	if r.report != nil {
		row("deliveries expected", fmt.Sprint(r.report.Expected))
		row("lost", fmt.Sprint(r.report.Lost))
		row("duplicated", fmt.Sprint(r.report.Duplicated))
		row("reordered", fmt.Sprint(r.report.Reordered))
		row("corrupted", fmt.Sprint(r.report.Corrupted))
		row("unrecovered (not given)", fmt.Sprint(r.report.Unrecovered))
	}
	row("server RSS before faults", fmt.Sprintf("%s (anonymous %s, Go heap live %s)", mib(r.rssCalm.rss), mib(r.rssCalm.anon), mib(r.memCalm.HeapAlloc)))
	row("server RSS warm-up -> end", fmt.Sprintf("%s -> %s (%+.1f%%; baseline at %s, after the first round of faults)", mib(r.rssWarm.rss), mib(r.rssEnd.rss),
		100*float64(r.rssEnd.rss-r.rssWarm.rss)/float64(max(r.rssWarm.rss, 1)), r.warm.Round(time.Second)))
	row("  of it anonymous (heap)", fmt.Sprintf("%s -> %s", mib(r.rssWarm.anon), mib(r.rssEnd.anon)))
	row("  of it file-backed (binary, bolt)", fmt.Sprintf("%s -> %s", mib(r.rssWarm.file), mib(r.rssEnd.file)))
	row("  Go heap live / in spans", fmt.Sprintf("%s / %s -> %s / %s", mib(r.memWarm.HeapAlloc), mib(r.memWarm.HeapInuse), mib(r.memEnd.HeapAlloc), mib(r.memEnd.HeapInuse)))
	row("  Go stacks / runtime", fmt.Sprintf("%s / %s -> %s / %s", mib(r.memWarm.StackInuse), mib(r.memWarm.runtime()), mib(r.memEnd.StackInuse), mib(r.memEnd.runtime())))
	row("  Go heap idle, not released", fmt.Sprintf("%s -> %s", mib(r.memWarm.HeapIdle-r.memWarm.HeapReleased), mib(r.memEnd.HeapIdle-r.memEnd.HeapReleased)))
	row("faults in the trace", r.traceLine())
	row("server sessions at the end", fmt.Sprintf("%d (clients %d)", r.sessEnd, r.cfg.Clients+r.cfg.Rooms))
	row("server goroutines base/end", fmt.Sprintf("%d / %d", r.gorBase, r.gorEnd))
	row("soak goroutines base/end", fmt.Sprintf("%d / %d", r.selfBase, r.selfEnd))
	row("connect / drain / total", fmt.Sprintf("%s / %s / %s", r.connectTime.Round(time.Millisecond), r.drainTime.Round(time.Millisecond), r.elapsed.Round(time.Second)))
	r.writeVerdict(w)
}
