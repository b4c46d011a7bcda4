package chaos

import (
	"context"
	"log/slog"
	"math/rand/v2"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"
	"golang.org/x/time/rate"
)

// The two directions of a connection's bytes.
const (
	dirUp   = 0 // client → upstream (a wrapped conn: Write)
	dirDown = 1 // upstream → client (a wrapped conn: Read)
)

// closer is a socket the injector can reset.
type closer interface{ Close() error }

// conn is one connection under an Injector: its faults and the state the
// faults need. Its sockets are reset or closed by end.
type conn struct {
	inj      *Injector
	id       ConnID
	kind     string
	client   string
	upstream string
	since    time.Time
	sockets  []closer
	span     trace.Span
	// ctx ends with the connection; every wait of a fault watches it.
	ctx    context.Context
	cancel context.CancelFunc
	once   sync.Once
	// wasReset is set once a fault reset the connection.
	wasReset atomic.Bool

	mu  sync.Mutex
	f   Faults
	own bool
	// changed is closed (and replaced) whenever f changes: a blackhole's
	// hold waits on it.
	changed chan struct{}
	lim     [2]*rate.Limiter
	// resetAt is the forwarded byte count (both directions) at which the
	// connection is reset; 0: never.
	resetAt   int64
	forwarded [2]int64
	// due is, per direction, when the last chunk was let through: later
	// chunks never overtake it.
	due [2]time.Time
}

func newConn(i *Injector, id ConnID, kind, client, upstream string, sockets []closer) *conn {
	c := &conn{inj: i, id: id, kind: kind, client: client, upstream: upstream, since: time.Now(),
		sockets: sockets, changed: make(chan struct{})}
	c.ctx, c.cancel = context.WithCancel(context.Background())
	_, c.span = i.tracer.Start(context.Background(), "chaos.conn", trace.WithAttributes(
		attribute.Int64("chaos.conn.id", int64(id)), attribute.String("chaos.kind", kind),
		attribute.String("client.address", client), attribute.String("server.address", upstream)))
	return c
}

// setFaults puts f on c; own says it is c's own (SetConn). A connection
// with faults of its own keeps them through Set (own false). It reports
// whether f was put.
func (c *conn) setFaults(f Faults, own bool) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.own && !own {
		return false
	}
	return c.putLocked(f, own)
}

// clear gives c the faults for all (f) instead of its own.
func (c *conn) clear(f Faults) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.putLocked(f, false)
}

func (c *conn) putLocked(f Faults, own bool) bool {
	old := c.f
	c.f, c.own = f, own
	for d := range c.lim {
		if f.Bandwidth == 0 {
			c.lim[d] = nil
		} else if c.lim[d] == nil || old.Bandwidth != f.Bandwidth {
			c.lim[d] = rate.NewLimiter(rate.Limit(f.Bandwidth), burst(f.Bandwidth))
		}
	}
	c.resetAt = 0
	if f.ResetAfter > 0 {
		c.resetAt = c.forwarded[dirUp] + c.forwarded[dirDown] + f.ResetAfter
	}
	close(c.changed)
	c.changed = make(chan struct{})
	if f != (Faults{}) {
		c.span.AddEvent("chaos.fault", trace.WithAttributes(attribute.String("chaos.fault", "shape"),
			attribute.Bool("chaos.own", own),
			attribute.Int64("chaos.latency_ms", f.Latency.Milliseconds()), attribute.Int64("chaos.jitter_ms", f.Jitter.Milliseconds()),
			attribute.Int64("chaos.bandwidth", f.Bandwidth), attribute.Bool("chaos.blackhole", f.Blackhole),
			attribute.Int64("chaos.reset_after", f.ResetAfter)))
	} else if old != (Faults{}) {
		c.span.AddEvent("chaos.clear")
	}
	return true
}

// burst is the bucket size of a bandwidth cap: a tenth of a second's worth,
// within [1, 32 KiB], so that the cap holds over short transfers too.
func burst(bw int64) int { return int(min(max(bw/10, 1), 32<<10)) }

func (c *conn) info() ConnInfo {
	c.mu.Lock()
	defer c.mu.Unlock()
	return ConnInfo{ID: c.id, Kind: c.kind, Client: c.client, Upstream: c.upstream, Since: c.since,
		Up: c.forwarded[dirUp], Down: c.forwarded[dirDown], Faults: c.f, Own: c.own}
}

// reset ends c with an RST on each of its sockets (why: "reset",
// "reset_after", "down"), as an injected fault: logged, counted, traced.
func (c *conn) reset(why string) {
	c.once.Do(func() {
		c.wasReset.Store(true)
		c.inj.counts.resets.Add(1)
		c.span.AddEvent("chaos.fault", trace.WithAttributes(attribute.String("chaos.fault", why)))
		c.inj.log.Info("chaos: connection reset", slog.Uint64("conn", uint64(c.id)), slog.String("fault", why),
			slog.String("client", c.client), slog.String("upstream", c.upstream))
		for _, s := range c.sockets {
			rst(s)
		}
		c.finish()
	})
}

// end closes c's sockets normally (a peer closed, or the owner is done).
func (c *conn) end() {
	c.once.Do(func() {
		for _, s := range c.sockets {
			_ = s.Close()
		}
		c.finish()
	})
}

func (c *conn) finish() {
	c.cancel()
	c.span.End()
	c.inj.forget(c)
}

// rst closes s with an RST where it can (a TCP socket: SO_LINGER 0).
func rst(s closer) {
	if l, ok := s.(interface{ SetLinger(int) error }); ok {
		_ = l.SetLinger(0)
	}
	_ = s.Close()
}

// pass lets p (bytes of direction dir that arrived at at) through c's
// faults, handing them to write piece by piece: it holds them while a
// blackhole is on, delays them by latency and jitter, paces them to the
// bandwidth cap, and resets c when the ResetAfter budget runs out (after
// writing exactly up to it). It returns how many bytes were written, and
// ErrReset, the connection's end, write's error or os.ErrDeadlineExceeded
// (deadline, when not zero, bounds the waits).
func (c *conn) pass(dir int, p []byte, at, deadline time.Time, write func([]byte) error) (int, error) {
	ctx := c.ctx
	if !deadline.IsZero() {
		var cancel context.CancelFunc
		ctx, cancel = context.WithDeadline(ctx, deadline)
		defer cancel()
	}
	// A blackhole holds the bytes until lifted.
	held := false
	for {
		c.mu.Lock()
		f, ch := c.f, c.changed
		c.mu.Unlock()
		if !f.Blackhole {
			break
		}
		if !held {
			held = true
			c.inj.counts.held.Add(1)
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return 0, c.waitErr(ctx)
		}
	}
	if held {
		at = time.Now()
	}
	c.mu.Lock()
	f := c.f
	due := at
	if f.Latency > 0 || f.Jitter > 0 {
		d := f.Latency
		if f.Jitter > 0 {
			d += time.Duration(rand.Int64N(int64(2*f.Jitter)+1)) - f.Jitter
		}
		due = at.Add(max(d, 0))
	}
	if due.Before(c.due[dir]) {
		due = c.due[dir] // never overtake an earlier chunk
	}
	c.due[dir] = due
	c.mu.Unlock()
	if wait := time.Until(due); wait > 0 {
		c.inj.counts.delayed.Add(1)
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return 0, c.waitErr(ctx)
		}
	}
	done, throttled := 0, false
	for done < len(p) {
		piece := p[done:]
		c.mu.Lock()
		lim := c.lim[dir]
		if lim != nil && len(piece) > lim.Burst() {
			piece = piece[:lim.Burst()]
		}
		last := false
		if c.resetAt > 0 {
			left := c.resetAt - c.forwarded[dirUp] - c.forwarded[dirDown]
			if int64(len(piece)) >= left {
				piece, last = piece[:max(left, 0)], true
			}
		}
		c.forwarded[dir] += int64(len(piece))
		c.mu.Unlock()
		if lim != nil {
			if !throttled && lim.TokensAt(time.Now()) < float64(len(piece)) {
				throttled = true
				c.inj.counts.throttled.Add(1)
			}
			if err := lim.WaitN(ctx, len(piece)); err != nil {
				return done, c.waitErr(ctx)
			}
		}
		if len(piece) > 0 {
			if err := write(piece); err != nil {
				return done, err
			}
		}
		done += len(piece)
		c.inj.counts.bytes.Add(int64(len(piece)))
		if last {
			c.reset("reset_after")
			return done, ErrReset
		}
	}
	return done, nil
}

// waitErr is the error of a wait that ctx (c.ctx, or its deadline) ended.
func (c *conn) waitErr(ctx context.Context) error {
	if c.ctx.Err() != nil {
		return net.ErrClosed
	}
	return os.ErrDeadlineExceeded
}
