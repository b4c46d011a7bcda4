package chaos_test

import (
	"errors"
	"io"
	"net"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/marmotws/marmot/chaos"
)

func TestProxyForwards(t *testing.T) {
	e := newEchoServer(t)
	p := newProxy(t, e.ln.Addr().String())
	c := dial(t, p.Addr().String())
	roundTrip(t, c, "hello")
	cs := p.Conns()
	if len(cs) != 1 || cs[0].Up != 5 || cs[0].Down != 5 || cs[0].Kind != "proxy" || cs[0].Client != c.LocalAddr().String() {
		t.Fatalf("conns %+v", cs)
	}
	// A half-close passes on: the echo server ends its side in turn.
	if err := c.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	if n, err := readErr(c); n != 0 || err != io.EOF {
		t.Fatalf("after half-close: %d bytes, %v", n, err)
	}
}

// Latency (and jitter) delay each direction: a round trip takes at least
// twice the smallest delay.
func TestProxyLatency(t *testing.T) {
	e := newEchoServer(t)
	p := newProxy(t, e.ln.Addr().String())
	c := dial(t, p.Addr().String())
	roundTrip(t, c, "warm")
	for _, f := range []chaos.Faults{{Latency: 100 * time.Millisecond}, {Latency: 80 * time.Millisecond, Jitter: 30 * time.Millisecond}} {
		if err := p.Set(f); err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		roundTrip(t, c, "ping")
		if min := 2 * (f.Latency - f.Jitter); time.Since(start) < min {
			t.Fatalf("%+v: round trip %v, want at least %v", f, time.Since(start), min)
		}
	}
	if p.Counts().Delayed < 4 {
		t.Fatalf("counts %+v", p.Counts())
	}
}

// A bandwidth cap holds over a transfer: n bytes each way take at least
// (n - burst)/cap, and not wildly longer.
func TestProxyBandwidth(t *testing.T) {
	e := newEchoServer(t)
	p := newProxy(t, e.ln.Addr().String())
	c := dial(t, p.Addr().String())
	const bw, n = 100 << 10, 200 << 10
	if err := p.Set(chaos.Faults{Bandwidth: bw}); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	go func() { _, _ = c.Write(make([]byte, n)) }()
	if _, err := io.ReadFull(c, make([]byte, n)); err != nil {
		t.Fatal(err)
	}
	took := time.Since(start)
	// Each direction's bucket starts full (burst: a tenth of a second's
	// worth); the two directions are pipelined.
	lower := time.Duration(float64(n-bw/10) / bw * float64(time.Second))
	if took < lower || took > 20*lower {
		t.Fatalf("%d bytes at %d B/s took %v, want %v..%v", n, bw, took, lower, 20*lower)
	}
	if p.Counts().Throttled == 0 {
		t.Fatal("nothing throttled")
	}
}

// Reset closes both sides with an RST: the client and the upstream see
// ECONNRESET.
func TestProxyReset(t *testing.T) {
	addr, got := sink(t)
	p := newProxy(t, addr)
	c := dial(t, p.Addr().String())
	roundTrip(t, c, "x")
	id := p.Conns()[0].ID
	if err := p.Reset(id); err != nil {
		t.Fatal(err)
	}
	if _, err := readErr(c); !isReset(err) {
		t.Fatalf("client: %v, want ECONNRESET", err)
	}
	if r := <-got; !isReset(r.err) {
		t.Fatalf("upstream: %v, want ECONNRESET", r.err)
	}
	if err := p.Reset(id); !errors.Is(err, chaos.ErrNoConn) {
		t.Fatalf("second reset: %v", err)
	}
	if got := p.Counts().Resets; got != 1 {
		t.Fatalf("resets %d", got)
	}
}

type sinkResult struct {
	n   int
	err error
}

// sink accepts one connection, echoes its first byte, then reads it until
// an error and reports the byte count (the first byte included) and the
// error.
func sink(t *testing.T) (string, <-chan sinkResult) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan sinkResult, 1)
	done := make(chan struct{})
	go func() {
		defer close(done)
		c, err := ln.Accept()
		if err != nil {
			got <- sinkResult{0, err}
			return
		}
		defer c.Close()
		_ = c.SetReadDeadline(time.Now().Add(guard))
		b := make([]byte, 1)
		if _, err := io.ReadFull(c, b); err != nil {
			got <- sinkResult{0, err}
			return
		}
		_, _ = c.Write(b)
		n, err := readErr(c)
		got <- sinkResult{n + 1, err}
	}()
	t.Cleanup(func() { ln.Close(); <-done })
	return ln.Addr().String(), got
}

// ResetAfter lets exactly N bytes through, then resets.
func TestProxyResetAfter(t *testing.T) {
	addr, got := sink(t)
	p := newProxy(t, addr)
	const limit = 1000
	if err := p.Set(chaos.Faults{ResetAfter: limit}); err != nil {
		t.Fatal(err)
	}
	c := dial(t, p.Addr().String())
	roundTrip(t, c, "x") // 2 bytes of the budget
	_, _ = c.Write(make([]byte, 4*limit))
	if _, err := readErr(c); !isReset(err) {
		t.Fatalf("client: %v, want ECONNRESET", err)
	}
	r := <-got
	if r.n != limit-1 || !isReset(r.err) {
		t.Fatalf("upstream got %d bytes and %v, want %d and ECONNRESET", r.n, r.err, limit-1)
	}
}

// A blackhole passes no byte and keeps the sockets open; lifted, what was
// held flows on.
func TestProxyBlackhole(t *testing.T) {
	e := newEchoServer(t)
	p := newProxy(t, e.ln.Addr().String())
	c := dial(t, p.Addr().String())
	roundTrip(t, c, "before")
	if err := p.Set(chaos.Faults{Blackhole: true}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Write([]byte("held")); err != nil {
		t.Fatal(err)
	}
	// No byte within a window (an absence can only be watched for a while).
	_ = c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	if n, err := c.Read(make([]byte, 8)); n != 0 || !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("through a blackhole: %d bytes, %v", n, err)
	}
	if cs := p.Conns(); len(cs) != 1 || !cs[0].Faults.Blackhole {
		t.Fatalf("conns %+v", cs)
	}
	if err := p.Set(chaos.Faults{}); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(guard))
	buf := make([]byte, 4)
	if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "held" {
		t.Fatalf("after the blackhole: %q, %v", buf, err)
	}
	if p.Counts().Held == 0 {
		t.Fatal("nothing counted as held")
	}
}

// Faults set for one connection leave the others alone.
func TestProxyPerConnection(t *testing.T) {
	e := newEchoServer(t)
	p := newProxy(t, e.ln.Addr().String())
	a, b := dial(t, p.Addr().String()), dial(t, p.Addr().String())
	roundTrip(t, a, "a")
	roundTrip(t, b, "b")
	var idA chaos.ConnID
	for _, ci := range p.Conns() {
		if ci.Client == a.LocalAddr().String() {
			idA = ci.ID
		}
	}
	if err := p.SetConn(idA, chaos.Faults{Blackhole: true}); err != nil {
		t.Fatal(err)
	}
	if err := p.Set(chaos.Faults{}); err != nil { // does not lift a's own faults
		t.Fatal(err)
	}
	if _, err := a.Write([]byte("A")); err != nil {
		t.Fatal(err)
	}
	roundTrip(t, b, "still")
	if err := p.ClearConn(idA); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 1)
	if _, err := io.ReadFull(a, buf); err != nil || buf[0] != 'A' {
		t.Fatalf("a after clear: %q %v", buf, err)
	}
	if err := p.SetConn(12345, chaos.Faults{}); !errors.Is(err, chaos.ErrNoConn) {
		t.Fatalf("unknown conn: %v", err)
	}
	if err := p.Set(chaos.Faults{Latency: -1}); !errors.Is(err, chaos.ErrBadFaults) {
		t.Fatalf("negative latency: %v", err)
	}
}

// Refuse resets new connections, live ones go on; Up lets them in again.
func TestProxyRefuse(t *testing.T) {
	e := newEchoServer(t)
	p := newProxy(t, e.ln.Addr().String())
	live := dial(t, p.Addr().String())
	roundTrip(t, live, "x")
	if err := p.Refuse(); err != nil {
		t.Fatal(err)
	}
	dialRefused(t, p.Addr().String())
	roundTrip(t, live, "still")
	if got := p.Counts().Refused; got != 1 {
		t.Fatalf("refused %d", got)
	}
	if err := p.Up(); err != nil {
		t.Fatal(err)
	}
	roundTrip(t, dial(t, p.Addr().String()), "again")
}

// Down resets every connection and closes the listener (ECONNREFUSED);
// Up listens again on the same address.
func TestProxyDownUp(t *testing.T) {
	e := newEchoServer(t)
	p := newProxy(t, e.ln.Addr().String())
	c := dial(t, p.Addr().String())
	roundTrip(t, c, "x")
	if err := p.Down(); err != nil {
		t.Fatal(err)
	}
	if _, err := readErr(c); !isReset(err) {
		t.Fatalf("after down: %v", err)
	}
	if _, err := net.DialTimeout("tcp", p.Addr().String(), guard); !errors.Is(err, syscall.ECONNREFUSED) {
		t.Fatalf("dial while down: %v", err)
	}
	if p.Mode() != chaos.ModeDown {
		t.Fatalf("mode %v", p.Mode())
	}
	if err := p.Up(); err != nil {
		t.Fatal(err)
	}
	roundTrip(t, dial(t, p.Addr().String()), "up")
	if s := p.Status(); s.Mode != chaos.ModeUp || len(s.Conns) != 1 || s.Counts.Resets != 1 {
		t.Fatalf("status %+v", s)
	}
}

func TestProxyUpstreamDown(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	p := newProxy(t, addr)
	dialRefused(t, p.Addr().String())
	if !strings.Contains(p.Upstream(), "127.0.0.1") {
		t.Fatal(p.Upstream())
	}
}
