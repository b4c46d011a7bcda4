//go:build linux

package actors

import (
	"bytes"
	"context"
	"errors"
	"net/http/httptest"
	"runtime"
	"runtime/pprof"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// parkHarness is a hub whose readers park after one or two 10 ms ticks, with
// the poller's test hooks turned into channels.
type parkHarness struct {
	hub     *Hub
	srv     *httptest.Server
	url     string
	parked  chan uint64
	ticks   chan uint64
	closed  chan *CloseError
	connect chan ClientID
	// stageHeld counts readers that parked still holding a read buffer.
	stageHeld atomic.Int32
}

func newParkHarness(t *testing.T, cfg HubConfig) *parkHarness {
	t.Helper()
	old := parkTick
	parkTick = 10 * time.Millisecond
	t.Cleanup(func() { parkTick = old })

	h := &parkHarness{
		parked:  make(chan uint64, 1024),
		ticks:   make(chan uint64, 1024),
		closed:  make(chan *CloseError, 16),
		connect: make(chan ClientID, 16),
	}
	cfg.Events.OnHandleCommand = func(m *Message) { _ = m.Reply(m.Payload) }
	cfg.Events.OnClientDisconnected = func(_ ClientInfo, r *CloseError) { h.closed <- r }
	cfg.Events.OnClientConnected = func(ci ClientInfo) { h.connect <- ci.ID }
	h.hub = NewHub(cfg)
	h.hub.acceptor.Polls().OnPark = func(id uint64, stageHeld bool) {
		if stageHeld {
			h.stageHeld.Add(1)
		}
		select {
		case h.parked <- id:
		default:
		}
	}
	h.hub.acceptor.Polls().OnSweep = func(e uint64) {
		select {
		case h.ticks <- e:
		default:
		}
	}
	h.srv = httptest.NewServer(h.hub)
	h.url = "ws" + strings.TrimPrefix(h.srv.URL, "http")
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = h.hub.Shutdown(ctx)
		h.srv.Close()
	})
	return h
}

func (h *parkHarness) dial(t *testing.T) *websocket.Conn {
	t.Helper()
	return h.dialWith(t, websocket.DefaultDialer)
}

func (h *parkHarness) dialWith(t *testing.T, d *websocket.Dialer) *websocket.Conn {
	t.Helper()
	c, _, err := d.Dial(h.url, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	select {
	case <-h.connect:
	case <-time.After(10 * time.Second):
		t.Fatal("no OnClientConnected")
	}
	return c
}

func waitFor[T any](t *testing.T, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(10 * time.Second):
		t.Fatalf("timed out waiting for %s", what)
		panic("unreachable")
	}
}

// readerGoroutines counts goroutines running a transport's read loop.
func readerGoroutines() int {
	var b bytes.Buffer
	_ = pprof.Lookup("goroutine").WriteTo(&b, 1)
	return strings.Count(b.String(), "wsconn.(*Conn).run+")
}

func echo(t *testing.T, c *websocket.Conn, msg string) {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if err := c.WriteMessage(websocket.TextMessage, []byte(msg)); err != nil {
		t.Fatal(err)
	}
	_, got, err := c.ReadMessage()
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != msg {
		t.Fatalf("echo = %q, want %q", got, msg)
	}
}

// An idle connection gives up its reader goroutine, and the next message
// brings one back; over and over.
func TestIdleReaderParksAndResumes(t *testing.T) {
	h := newParkHarness(t, HubConfig{})
	conns := []*websocket.Conn{h.dial(t), h.dial(t), h.dial(t)}
	for round := range 3 {
		for range conns {
			waitFor(t, h.parked, "a reader to park")
		}
		// The hook runs just before the parked reader's goroutine returns.
		deadline := time.Now().Add(5 * time.Second)
		for readerGoroutines() != 0 && time.Now().Before(deadline) {
			runtime.Gosched()
		}
		if n := readerGoroutines(); n != 0 {
			t.Fatalf("round %d: %d reader goroutines with every connection parked", round, n)
		}
		for i, c := range conns {
			echo(t, c, strings.Repeat("x", 100*i+round))
		}
	}
	if got := h.hub.Stats().TotalMessagesReceived; got != 9 {
		t.Fatalf("TotalMessagesReceived = %d, want 9", got)
	}
	// A busy reader keeps its stage buffer between messages; a parked one
	// must not (idle connections hold no read buffer).
	if n := h.stageHeld.Load(); n != 0 {
		t.Fatalf("%d readers parked holding a stage buffer", n)
	}
}

// A message split into fragments, with a ping between them, must not be cut
// by parking: the reader only parks between messages.
func TestNoParkingInsideAFragmentedMessage(t *testing.T) {
	h := newParkHarness(t, HubConfig{})
	c := h.dial(t)
	waitFor(t, h.parked, "the reader to park")

	w, err := c.NextWriter(websocket.BinaryMessage)
	if err != nil {
		t.Fatal(err)
	}
	first := bytes.Repeat([]byte{1}, 10_000) // larger than gorilla's client buffer: a frame goes out now
	if _, err := w.Write(first); err != nil {
		t.Fatal(err)
	}
	if err := c.WriteControl(websocket.PingMessage, []byte("mid"), time.Now().Add(5*time.Second)); err != nil {
		t.Fatal(err)
	}
	// Let several ticks pass with the message half sent: the reader waits
	// inside the message, where the poller must leave it alone.
	start := waitFor(t, h.ticks, "a tick")
	for e := start; e < start+5; {
		e = waitFor(t, h.ticks, "a tick")
	}
	select {
	case id := <-h.parked:
		t.Fatalf("reader %d parked in the middle of a message", id)
	default:
	}
	if _, err := w.Write([]byte("tail")); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	typ, got, err := c.ReadMessage()
	if err != nil {
		t.Fatal(err)
	}
	want := append(first, "tail"...)
	if typ != websocket.BinaryMessage || !bytes.Equal(got, want) {
		t.Fatalf("echo: type %d, %d bytes; want binary, %d bytes", typ, len(got), len(want))
	}
}

// Parked readers still keep the keep-alive promise both ways: a peer that
// answers pings stays connected through many KeepAlive periods (its reader
// waking for each pong and parking again), and one that does not is closed
// with ErrKeepAliveTimeout although nothing ever wakes its reader.
func TestKeepAliveWithParkedReaders(t *testing.T) {
	// Long enough that a busy machine's delay in answering a ping does not
	// close the answering connection, short enough for several periods.
	const keepAlive = time.Second
	h := newParkHarness(t, HubConfig{KeepAlive: keepAlive})

	alive := h.dial(t)
	pongs := make(chan struct{}, 64)
	alive.SetPingHandler(func(s string) error {
		pongs <- struct{}{}
		return alive.WriteControl(websocket.PongMessage, []byte(s), time.Now().Add(time.Second))
	})
	aliveDone := make(chan error, 1)
	go func() {
		_, _, err := alive.ReadMessage() // answers pings until the connection ends
		aliveDone <- err
	}()

	silent := h.dial(t) // never reads, so never answers a ping

	r := waitFor(t, h.closed, "the silent connection to be closed")
	if !errors.Is(r.Err, ErrKeepAliveTimeout) {
		t.Fatalf("silent connection closed with %v, want ErrKeepAliveTimeout", r)
	}
	// Several more keep-alive periods, each answered by a woken and then
	// re-parked reader.
	for i := range 6 {
		select {
		case <-pongs:
		case r := <-h.closed:
			t.Fatalf("answering connection closed after %d pings: %v", i, r)
		case err := <-aliveDone:
			t.Fatalf("answering connection ended after %d pings: %v", i, err)
		case <-time.After(10 * time.Second):
			t.Fatalf("no ping %d within 10 s", i+1)
		}
	}
	select {
	case r := <-h.closed:
		t.Fatalf("answering connection closed: %v", r)
	case err := <-aliveDone:
		t.Fatalf("answering connection ended: %v", err)
	default:
	}
	_ = silent.Close()
}

// Shutdown reaches parked readers: every client gets 1001 Going Away.
func TestShutdownClosesParkedConnections(t *testing.T) {
	h := newParkHarness(t, HubConfig{})
	conns := []*websocket.Conn{h.dial(t), h.dial(t)}
	for range conns {
		waitFor(t, h.parked, "a reader to park")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- h.hub.Shutdown(ctx) }()
	for _, c := range conns {
		_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
		_, _, err := c.ReadMessage()
		var ce *websocket.CloseError
		if !errors.As(err, &ce) || ce.Code != CloseGoingAway {
			t.Fatalf("client read after Shutdown: %v, want close 1001", err)
		}
	}
	if err := <-done; err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
}

// A socket closed under a parked reader (a failed write does that) leaves
// the epoll set without an event; the reader must still wake, see the
// closed socket and report the connection lost.
func TestClosedSocketWakesParkedReader(t *testing.T) {
	h := newParkHarness(t, HubConfig{})
	h.dial(t)
	id := waitFor(t, h.parked, "the reader to park")
	c, err := h.hub.lookup(ClientID(id))
	if err != nil {
		t.Fatal(err)
	}
	c.link.t.Drop()
	waitFor(t, h.closed, "OnClientDisconnected")
}
