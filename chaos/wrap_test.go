package chaos_test

import (
	"context"
	"errors"
	"io"
	"net"
	"syscall"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/marmotws/marmot/chaos"
)

// A wrapped listener's connections carry the faults; a reset reaches the
// dialling peer as ECONNRESET and the wrapped side as ErrReset.
func TestWrapListener(t *testing.T) {
	inj := chaos.New(chaos.Options{Logger: logger()})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	wl := inj.WrapListener(ln)
	defer wl.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := wl.Accept()
		if err == nil {
			accepted <- c
		}
		close(accepted)
	}()
	c := dial(t, ln.Addr().String())
	sc := <-accepted
	if sc == nil {
		t.Fatal("accept failed")
	}
	defer sc.Close()
	_ = sc.SetDeadline(time.Now().Add(guard))
	if err := inj.Set(chaos.Faults{Latency: 100 * time.Millisecond}); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if _, err := sc.Write([]byte("hi")); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took < 100*time.Millisecond {
		t.Fatalf("write took %v, want at least the latency", took)
	}
	buf := make([]byte, 2)
	if _, err := io.ReadFull(c, buf); err != nil {
		t.Fatal(err)
	}
	// A blackhole makes the wrapped Read wait, bounded by its deadline.
	if err := inj.Set(chaos.Faults{Blackhole: true}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Write([]byte("z")); err != nil {
		t.Fatal(err)
	}
	_ = sc.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
	if n, err := sc.Read(buf); n != 0 || !errors.Is(err, errDeadline) {
		t.Fatalf("read through a blackhole: %d, %v", n, err)
	}
	if err := inj.Set(chaos.Faults{}); err != nil {
		t.Fatal(err)
	}
	_ = sc.SetReadDeadline(time.Now().Add(guard))
	if n, err := sc.Read(buf); n != 1 || buf[0] != 'z' {
		t.Fatalf("held byte: %q, %v", buf[:n], err)
	}
	id := sc.(*chaos.Conn).ID()
	if err := inj.Reset(id); err != nil {
		t.Fatal(err)
	}
	if _, err := readErr(c); !isReset(err) {
		t.Fatalf("peer: %v, want ECONNRESET", err)
	}
	if _, err := sc.Read(buf); !errors.Is(err, chaos.ErrReset) {
		t.Fatalf("wrapped side: %v, want ErrReset", err)
	}
	// Refused connections never come out of Accept.
	if err := inj.Refuse(); err != nil {
		t.Fatal(err)
	}
	go func() { _, _ = wl.Accept() }()
	dialRefused(t, ln.Addr().String())
	if inj.Counts().Refused != 1 {
		t.Fatalf("counts %+v", inj.Counts())
	}
}

// A wrapped dialer refuses with ECONNREFUSED and its connections reset
// after N bytes; every fault is a span event.
func TestWrapDialAndSpans(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	defer tp.Shutdown(context.Background())
	inj := chaos.New(chaos.Options{Logger: logger(), TracerProvider: tp})
	addr, got := sink(t)
	dialer := inj.WrapDial(nil)
	if err := inj.Set(chaos.Faults{ResetAfter: 100}); err != nil {
		t.Fatal(err)
	}
	c, err := dialer(context.Background(), "tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(guard))
	roundTrip(t, c, "x") // 2 bytes of the budget
	n, err := c.Write(make([]byte, 300))
	if n != 98 || !errors.Is(err, chaos.ErrReset) {
		t.Fatalf("write: %d, %v; want 98, ErrReset", n, err)
	}
	if r := <-got; r.n != 99 || !isReset(r.err) {
		t.Fatalf("peer: %d bytes, %v", r.n, r.err)
	}
	if err := inj.Refuse(); err != nil {
		t.Fatal(err)
	}
	if _, err := dialer(context.Background(), "tcp", addr); !errors.Is(err, syscall.ECONNREFUSED) {
		t.Fatalf("dial while refusing: %v", err)
	}
	faults := map[string]int{}
	for _, s := range rec.Ended() {
		if s.Name() != "chaos.conn" {
			continue
		}
		for _, ev := range s.Events() {
			for _, a := range ev.Attributes {
				if ev.Name == "chaos.fault" && a.Key == "chaos.fault" {
					faults[a.Value.AsString()]++
				}
			}
		}
	}
	if faults["shape"] != 1 || faults["reset_after"] != 1 || faults["refuse"] != 1 {
		t.Fatalf("fault events %v", faults)
	}
}
