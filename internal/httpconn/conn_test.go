package httpconn

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/marmotws/marmot/internal/transport"
	"github.com/marmotws/marmot/internal/transport/transporttest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const guard = 20 * time.Second

// recorder is the transports' shared test Receiver.
type recorder = transporttest.Recorder

func newRecorder() *recorder { return transporttest.NewRecorder(1024) }

func wait[T any](t *testing.T, ch <-chan T, what string) T {
	t.Helper()
	return transporttest.Wait(t, ch, what, guard)
}

// endpoint serves a Server whose opened sessions go to the test.
type endpoint struct {
	srv   *Server
	ts    *httptest.Server
	conns chan *Conn
}

func newEndpoint(t *testing.T, cfg Config) *endpoint {
	t.Helper()
	return newEndpointOver(t, cfg, false)
}

// newEndpointOver is newEndpoint; with h2, over TLS and HTTP/2.
func newEndpointOver(t *testing.T, cfg Config, h2 bool) *endpoint {
	t.Helper()
	e := &endpoint{srv: NewServer([]string{"marmot.v1", "marmot.json.v1"}, nil, cfg), conns: make(chan *Conn, 16)}
	e.ts = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if h2 && r.ProtoMajor != 2 {
			http.Error(w, "not HTTP/2", http.StatusBadRequest)
			return
		}
		switch KindOf(r) {
		case Open:
			if c, err := e.srv.Accept(w, r); err == nil {
				e.conns <- c
			}
		case Session:
			e.srv.Serve(w, r)
		default:
			http.Error(w, "not the HTTP transport", http.StatusBadRequest)
		}
	}))
	if h2 {
		e.ts.EnableHTTP2 = true
		e.ts.StartTLS()
	} else {
		e.ts.Start()
	}
	t.Cleanup(e.ts.Close)
	return e
}

func (e *endpoint) url() string { return "ws" + strings.TrimPrefix(e.ts.URL, "http") + "/ws" }

// pair opens a session: the server's and the client's ends, both started.
func (e *endpoint) pair(t *testing.T) (*Conn, *recorder, *ClientConn, *recorder) {
	t.Helper()
	cc, err := NewDialer("marmot.v1", 5*time.Second, 5*time.Second, nil).Dial(context.Background(), e.url(), nil)
	if err != nil {
		t.Fatal(err)
	}
	sc := wait(t, e.conns, "the session")
	sr, cr := newRecorder(), newRecorder()
	sc.Start(sr)
	cc.Start(cr)
	return sc, sr, cc, cr
}

func write(t *testing.T, c transport.Conn, msgs ...string) {
	t.Helper()
	c.BeginWrite(time.Time{}, len(msgs) > 1)
	for _, m := range msgs {
		if err := c.WriteMessage(transport.BinaryMessage, []byte(m)); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.EndWrite(); err != nil {
		t.Fatal(err)
	}
}

func TestEchoBothWays(t *testing.T) {
	e := newEndpoint(t, Config{})
	sc, sr, cc, cr := e.pair(t)
	if sc.Subprotocol() != "marmot.v1" || cc.Subprotocol() != "marmot.v1" {
		t.Fatalf("subprotocols %q %q", sc.Subprotocol(), cc.Subprotocol())
	}
	if cc.RemoteAddr() == nil || sc.RemoteAddr() == nil {
		t.Fatal("no remote address")
	}
	write(t, cc, "a", "b", "c")
	write(t, cc, "d")
	for _, want := range []string{"a", "b", "c", "d"} {
		if got := wait(t, sr.Msgs, "a message at the server"); got != want {
			t.Fatalf("server got %q, want %q", got, want)
		}
	}
	write(t, sc, "x", "y")
	for _, want := range []string{"x", "y"} {
		if got := wait(t, cr.Msgs, "a message at the client"); got != want {
			t.Fatalf("client got %q, want %q", got, want)
		}
	}
	// The client closes; the server answers; both readers end with the
	// other's close.
	cc.Close(1000, "bye", time.Now().Add(5*time.Second))
	var pc *transport.PeerClose
	if err := wait(t, sr.Ended, "the server's end"); !errors.As(err, &pc) || pc.Code != 1000 || pc.Text != "bye" {
		t.Fatalf("server ended with %v", err)
	}
	sc.AnswerClose(1000, time.Now().Add(5*time.Second))
	sc.Release()
	if err := wait(t, cr.Ended, "the client's end"); !errors.As(err, &pc) || pc.Code != 1000 {
		t.Fatalf("client ended with %v", err)
	}
	cc.Release()
	waitGone(t, e.srv)
}

// waitGone waits for the server to forget every session.
func waitGone(t *testing.T, s *Server) {
	t.Helper()
	deadline := time.Now().Add(guard)
	for s.Len() > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("%d sessions left", s.Len())
		}
		time.Sleep(10 * time.Millisecond) // polling a count: no event to wait on
	}
}

func TestServerClose(t *testing.T) {
	e := newEndpoint(t, Config{})
	sc, sr, cc, cr := e.pair(t)
	sc.Close(1001, "going away", time.Now().Add(5*time.Second))
	var pc *transport.PeerClose
	if err := wait(t, cr.Ended, "the client's end"); !errors.As(err, &pc) || pc.Code != 1001 || pc.Text != "going away" {
		t.Fatalf("client ended with %v", err)
	}
	cc.AnswerClose(pc.Code, time.Now().Add(5*time.Second))
	cc.Release()
	if err := wait(t, sr.Ended, "the server's end"); !errors.As(err, &pc) || pc.Code != 1001 {
		t.Fatalf("server ended with %v", err)
	}
	if code, _, ok := sc.LocalClose(); !ok || code != 1001 {
		t.Fatalf("LocalClose = %d %v", code, ok)
	}
	sc.Release()
	waitGone(t, e.srv)
}

// raw is a test client speaking the protocol by hand.
type raw struct {
	t   *testing.T
	url string
	sid string
}

func (e *endpoint) rawOpen(t *testing.T) (*raw, *Conn) {
	t.Helper()
	resp, err := http.Post(e.ts.URL+"/ws?transport=http", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	reply, err := decodeOpenReply(body)
	if resp.StatusCode != 200 || err != nil {
		t.Fatalf("open: %s %s %v", resp.Status, body, err)
	}
	return &raw{t: t, url: e.ts.URL + "/ws", sid: reply.Session}, wait(t, e.conns, "the session")
}

func (r *raw) do(method, query string, body []byte) (int, http.Header, []byte) {
	r.t.Helper()
	req, _ := http.NewRequest(method, r.url+"?session="+r.sid+query, bytes.NewReader(body))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		r.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, b
}

func records(msgs ...string) []byte {
	var b []byte
	for _, m := range msgs {
		b = appendRecord(b, recBinary, []byte(m))
	}
	return b
}

func TestHostileRequests(t *testing.T) {
	e := newEndpoint(t, Config{ReadLimit: 100, PollTimeout: 200 * time.Millisecond})
	r, sc := e.rawOpen(t)
	sr := newRecorder()
	sc.Start(sr)
	bad := &raw{t: t, url: r.url, sid: "AAAAAAAAAAAAAAAAAAAAAA"}
	cases := []struct {
		name   string
		r      *raw
		method string
		query  string
		body   []byte
		want   int
	}{
		{"unknown session", bad, "GET", "&ack=0", nil, 404},
		{"unknown session send", bad, "POST", "&seq=1", records("x"), 404},
		{"wrong method", r, "PUT", "", nil, 405},
		{"poll without ack", r, "GET", "", nil, 400},
		{"poll ack beyond", r, "GET", "&ack=7", nil, 400},
		{"send without seq", r, "POST", "", records("x"), 400},
		{"send seq 0", r, "POST", "&seq=0", records("x"), 400},
		{"send gap", r, "POST", "&seq=5", records("x"), 400},
		{"malformed body", r, "POST", "&seq=1", []byte{2, 0, 0, 0, 9, 1}, 400},
		{"unknown record type", r, "POST", "&seq=1", []byte{3, 0, 0, 0, 0}, 400},
		{"huge seq", r, "POST", "&seq=99999999999999999999", records("x"), 400},
		{"good send", r, "POST", "&seq=1", records("ok"), 204},
		{"repeated send", r, "POST", "&seq=1", records("ok"), 204},
	}
	for _, tc := range cases {
		if got, _, body := tc.r.do(tc.method, tc.query, tc.body); got != tc.want {
			t.Errorf("%s: status %d (%s), want %d", tc.name, got, body, tc.want)
		}
	}
	if got := wait(t, sr.Msgs, "the good send"); got != "ok" {
		t.Fatalf("got %q", got)
	}
	select {
	case m := <-sr.Msgs:
		t.Fatalf("a repeated or refused send was delivered: %q", m)
	default:
	}
	// An empty poll is answered after PollTimeout with the next number.
	if code, h, body := r.do("GET", "&ack=0", nil); code != 200 || len(body) != 0 || h.Get(HeaderSeq) != "1" {
		t.Fatalf("empty poll: %d %q seq %q", code, body, h.Get(HeaderSeq))
	}
	// A record over the read limit: 413, and the session ends with 1009.
	if code, _, _ := r.do("POST", "&seq=2", records(strings.Repeat("x", 101))); code != 413 {
		t.Fatalf("oversized record: %d", code)
	}
	if err := wait(t, sr.Ended, "the reader's end"); !errors.Is(err, transport.ErrReadLimit) {
		t.Fatalf("reader ended with %v", err)
	}
	code, _, body := r.do("GET", "&ack=0", nil)
	if code != 200 || len(body) < recHeader || body[0] != recClose || binary.BigEndian.Uint16(body[recHeader:]) != 1009 {
		t.Fatalf("after 413: %d %q", code, body)
	}
	sc.Release()
	if code, _, _ := r.do("GET", "&ack=1", nil); code != 404 {
		t.Fatalf("poll acking the close: %d", code)
	}
	waitGone(t, e.srv)
}

func TestConcurrentPollSupersedes(t *testing.T) {
	e := newEndpoint(t, Config{PollTimeout: 10 * time.Second})
	r, sc := e.rawOpen(t)
	sr := newRecorder()
	sc.Start(sr)
	first := make(chan int, 1)
	go func() { code, _, _ := r.do("GET", "&ack=0", nil); first <- code }()
	// Wait until the first poll is pending (the session has an active request).
	deadline := time.Now().Add(guard)
	for {
		sc.mu.Lock()
		pending := sc.poll != nil
		sc.mu.Unlock()
		if pending {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("first poll never arrived")
		}
		time.Sleep(5 * time.Millisecond) // no event for "a request arrived"
	}
	second := make(chan int, 1)
	go func() { code, _, _ := r.do("GET", "&ack=0", nil); second <- code }()
	if code := wait(t, first, "the superseded poll"); code != 409 {
		t.Fatalf("superseded poll: %d", code)
	}
	write(t, sc, "m")
	if code := wait(t, second, "the second poll"); code != 200 {
		t.Fatalf("second poll: %d", code)
	}
	sc.Drop()
	wait(t, sr.Ended, "the reader's end")
	waitGone(t, e.srv)
}

func TestIdleSessionEnds(t *testing.T) {
	e := newEndpoint(t, Config{IdleTimeout: 300 * time.Millisecond})
	_, sc := e.rawOpen(t)
	sr := newRecorder()
	sc.Start(sr)
	start := time.Now()
	if err := wait(t, sr.Ended, "the idle end"); !errors.Is(err, transport.ErrKeepAlive) {
		t.Fatalf("ended with %v", err)
	}
	if d := time.Since(start); d < 250*time.Millisecond {
		t.Fatalf("ended after %v, before the idle timeout", d)
	}
	sc.Release()
	waitGone(t, e.srv)
}

// cutPolls cuts the body of every other poll answer after a few bytes.
type cutPolls struct {
	rt http.RoundTripper
	mu sync.Mutex
	n  int
}

func (c *cutPolls) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := c.rt.RoundTrip(req)
	if err != nil || req.Method != http.MethodGet || resp.StatusCode != 200 || resp.ContentLength < 12 {
		return resp, err
	}
	c.mu.Lock()
	c.n++
	cut := c.n%2 == 1
	c.mu.Unlock()
	if cut {
		resp.Body = &cutBody{rc: resp.Body, left: 7}
	}
	return resp, nil
}

type cutBody struct {
	rc   io.ReadCloser
	left int
}

func (b *cutBody) Read(p []byte) (int, error) {
	if b.left == 0 {
		return 0, io.ErrUnexpectedEOF
	}
	n, err := b.rc.Read(p[:min(len(p), b.left)])
	b.left -= n
	return n, err
}

func (b *cutBody) Close() error { return b.rc.Close() }

func TestCutPollLosesNothing(t *testing.T) {
	e := newEndpoint(t, Config{})
	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	cut := &cutPolls{rt: tr}
	d := NewDialer("", 5*time.Second, 5*time.Second, nil)
	d.Transport = cut
	cc, err := d.Dial(context.Background(), e.url(), nil)
	if err != nil {
		t.Fatal(err)
	}
	sc := wait(t, e.conns, "the session")
	sr, cr := newRecorder(), newRecorder()
	sc.Start(sr)
	cc.Start(cr)
	const n = 100
	for i := range n {
		write(t, sc, fmt.Sprintf("m%d", i), fmt.Sprintf("n%d", i))
		for _, p := range []string{"m", "n"} {
			if got, want := wait(t, cr.Msgs, "a message"), fmt.Sprintf("%s%d", p, i); got != want {
				t.Fatalf("got %q, want %q", got, want)
			}
		}
	}
	cut.mu.Lock()
	cuts := cut.n / 2
	cut.mu.Unlock()
	if cuts < n/4 {
		t.Fatalf("only %d polls were cut", cuts)
	}
	t.Logf("%d polls cut, nothing lost", cuts)
	cc.Drop()
	wait(t, cr.Ended, "the client's end")
	sc.Drop()
	wait(t, sr.Ended, "the server's end")
	waitGone(t, e.srv)
}

// countDone counts Done calls.
type countDone struct {
	recorder
	n atomic.Int32
}

func (c *countDone) Done(err error) { c.n.Add(1); c.recorder.Done(err) }

// TestDoneOnceAroundStart: a session that ends just before or just after
// Start reports Done exactly once.
func TestDoneOnceAroundStart(t *testing.T) {
	e := newEndpoint(t, Config{})
	for i := range 50 {
		_, sc := e.rawOpen(t)
		r := &countDone{recorder: *newRecorder()}
		if i%2 == 0 {
			sc.Drop()
			sc.Start(r)
		} else {
			sc.Start(r)
			sc.Drop()
		}
		wait(t, r.Ended, "Done")
		waitGone(t, e.srv)
		// Start's goroutine and endReader both run under inMu: once it is
		// free after Done, a second Done would have been counted.
		for range 3 {
			sc.inMu.Lock()
			sc.inMu.Unlock()
		}
		if n := r.n.Load(); n != 1 {
			t.Fatalf("round %d: Done called %d times", i, n)
		}
	}
}

// blockingRecorder holds every message until release is closed.
type blockingRecorder struct {
	recorder
	entered chan struct{}
	release chan struct{}
}

func (b *blockingRecorder) Message(typ int, rd io.Reader) error {
	b.entered <- struct{}{}
	<-b.release
	return b.recorder.Message(typ, rd)
}

// TestConcurrentSendConflicts: a second send while one is being delivered
// is answered 409 and delivers nothing; the first completes.
func TestConcurrentSendConflicts(t *testing.T) {
	e := newEndpoint(t, Config{})
	r, sc := e.rawOpen(t)
	br := &blockingRecorder{recorder: *newRecorder(), entered: make(chan struct{}, 1), release: make(chan struct{})}
	sc.Start(br)
	first := make(chan int, 1)
	go func() { code, _, _ := r.do("POST", "&seq=1", records("one")); first <- code }()
	wait(t, br.entered, "the first send's delivery")
	for range 5 {
		if code, _, body := r.do("POST", "&seq=2", records("two")); code != 409 {
			t.Fatalf("concurrent send: %d %s", code, body)
		}
	}
	close(br.release)
	if code := wait(t, first, "the first send"); code != 204 {
		t.Fatalf("first send: %d", code)
	}
	if got := wait(t, br.Msgs, "the message"); got != "one" {
		t.Fatalf("got %q", got)
	}
	if code, _, _ := r.do("POST", "&seq=2", records("two")); code != 204 {
		t.Fatalf("send after the conflict: %d", code)
	}
	wait(t, br.entered, "the second delivery")
	if got := wait(t, br.Msgs, "the second message"); got != "two" {
		t.Fatalf("got %q", got)
	}
	sc.Drop()
	wait(t, br.Ended, "the end")
	waitGone(t, e.srv)
}

// handoffReceiver is a Receiver whose Message, on "wait", hands the reader
// off (Conn.Handoff) and waits for "release", which comes in a later send.
type handoffReceiver struct {
	c        *Conn
	msgs     chan string
	ended    chan error
	handed   chan bool
	released chan struct{}
}

func newHandoffReceiver(c *Conn) *handoffReceiver {
	return &handoffReceiver{c: c, msgs: make(chan string, 64), ended: make(chan error, 2),
		handed: make(chan bool, 1), released: make(chan struct{})}
}

// openClient opens a session whose client end is started and server end
// is not; with h2, over TLS and HTTP/2.
func openClient(t *testing.T, h2 bool) (*endpoint, *Conn, *ClientConn, *recorder) {
	t.Helper()
	e := newEndpointOver(t, Config{}, h2)
	d := NewDialer("marmot.v1", 5*time.Second, 5*time.Second, nil)
	if h2 {
		d.Transport = e.ts.Client().Transport
	}
	cc, err := d.Dial(context.Background(), e.url(), nil)
	if err != nil {
		t.Fatal(err)
	}
	sc := wait(t, e.conns, "the session")
	cr := newRecorder()
	cc.Start(cr)
	return e, sc, cc, cr
}

func (r *handoffReceiver) Message(_ int, rd io.Reader) error {
	b, err := io.ReadAll(rd)
	if err != nil {
		return err
	}
	r.msgs <- string(b)
	switch string(b) {
	case "wait":
		r.handed <- r.c.Handoff()
		select {
		case <-r.released:
			r.msgs <- "wait returned"
		case <-time.After(guard):
			r.msgs <- "wait timed out"
		}
	case "release":
		close(r.released)
	}
	return nil
}

func (r *handoffReceiver) Done(err error) { r.ended <- err }

// checkHandoff reads what r was handed: want in order, then the waiting
// call's end and last, in either order (they run at once).
func checkHandoff(t *testing.T, r *handoffReceiver, want []string, last string) {
	t.Helper()
	for _, w := range want {
		if got := wait(t, r.msgs, w); got != w {
			t.Fatalf("got %q, want %q", got, w)
		}
	}
	got := map[string]bool{wait(t, r.msgs, "the rest"): true, wait(t, r.msgs, "the rest"): true}
	if !got["wait returned"] || !got[last] {
		t.Fatalf("got %v, want the waiting call's end and %q", got, last)
	}
	if !wait(t, r.handed, "Handoff") {
		t.Fatal("Handoff reported false")
	}
}

// Handoff inside a send's Message: the send's later records are delivered
// and the send answered, so the client's next send, with what the
// receiver waits for, comes through while that call still runs; every
// record once, in order.
// Over HTTP/1.1 the answer closes the connection (the server reads no
// more from it until that call returns); over HTTP/2 its stream's end
// waits for that call, but the client goes on once it has the status.
func TestHandoff(t *testing.T) {
	for _, h2 := range []bool{false, true} {
		t.Run(map[bool]string{false: "http1", true: "http2"}[h2], func(t *testing.T) {
			e, sc, cc, cr := openClient(t, h2)
			r := newHandoffReceiver(sc)
			sc.Start(r)
			write(t, cc, "a", "wait", "b")
			write(t, cc, "release", "c") // sent once the first send is answered
			checkHandoff(t, r, []string{"a", "wait", "b", "release"}, "c")
			write(t, cc, "d")
			if got := wait(t, r.msgs, "d"); got != "d" {
				t.Fatalf("got %q, want d", got)
			}
			closeBoth(t, e, sc, cc, cr, r.ended)
		})
	}
}

// The same for records that came before Start: Start's delivery of them
// is handed off too.
func TestHandoffBeforeStart(t *testing.T) {
	e, sc, cc, cr := openClient(t, false)
	write(t, cc, "wait", "b")
	write(t, cc, "release", "c")
	r := newHandoffReceiver(sc)
	sc.Start(r)
	checkHandoff(t, r, []string{"wait", "b", "release"}, "c")
	closeBoth(t, e, sc, cc, cr, r.ended)
}

// closeBoth closes a session from the client and has the server answer;
// both readers end once.
func closeBoth(t *testing.T, e *endpoint, sc *Conn, cc *ClientConn, cr *recorder, ended <-chan error) {
	t.Helper()
	cc.Close(1000, "bye", time.Now().Add(5*time.Second))
	var pc *transport.PeerClose
	if err := wait(t, ended, "the server's end"); !errors.As(err, &pc) || pc.Code != 1000 {
		t.Fatalf("server ended with %v", err)
	}
	sc.AnswerClose(pc.Code, time.Now().Add(5*time.Second))
	sc.Release()
	if err := wait(t, cr.Ended, "the client's end"); !errors.As(err, &pc) || pc.Code != 1000 {
		t.Fatalf("client ended with %v", err)
	}
	cc.Release()
	waitGone(t, e.srv)
	select {
	case err := <-ended:
		t.Fatalf("the server's end reported twice: %v", err)
	default:
	}
}
