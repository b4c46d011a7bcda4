package wsconn

import (
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"go.uber.org/goleak"

	"github.com/marmotws/marmot/internal/transport"
	"github.com/marmotws/marmot/internal/transport/transporttest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const guard = 20 * time.Second

// recorder is the transports' shared test Receiver.
type recorder = transporttest.Recorder

func newRecorder() *recorder { return transporttest.NewRecorder(64) }

func wait[T any](t *testing.T, ch <-chan T, what string) T {
	t.Helper()
	return transporttest.Wait(t, ch, what, guard)
}

// serve accepts one connection with cfg and hands it to the test.
func serve(t *testing.T, cfg Config) (*websocket.Conn, <-chan *Conn) {
	t.Helper()
	a := NewAcceptor(nil, nil, func(w http.ResponseWriter, _ *http.Request, status int, reason error) {
		http.Error(w, reason.Error(), status)
	}, cfg)
	conns := make(chan *Conn, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := a.Accept(w, r)
		if err != nil {
			return
		}
		conns <- c
	}))
	t.Cleanup(srv.Close)
	ws, _, err := websocket.DefaultDialer.Dial("ws"+strings.TrimPrefix(srv.URL, "http"), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ws.Close() })
	return ws, conns
}

// Messages reach the Receiver in order; a close the peer starts ends the
// reader with a PeerClose, and AnswerClose echoes the code.
func TestConnDeliversInOrderAndAnswersClose(t *testing.T) {
	ws, conns := serve(t, Config{WriteTimeout: time.Second})
	c := wait(t, conns, "the accepted connection")
	r := newRecorder()
	c.Start(r)
	for _, m := range []string{"a", "b", "c"} {
		if err := ws.WriteMessage(websocket.TextMessage, []byte(m)); err != nil {
			t.Fatal(err)
		}
	}
	for _, want := range []string{"a", "b", "c"} {
		if got := wait(t, r.Msgs, "a message"); got != want {
			t.Fatalf("got %q, want %q", got, want)
		}
	}
	if err := ws.WriteMessage(websocket.CloseMessage, websocket.FormatCloseMessage(4001, "bye")); err != nil {
		t.Fatal(err)
	}
	err := wait(t, r.Ended, "Done")
	var pc *transport.PeerClose
	if !errors.As(err, &pc) || pc.Code != 4001 || pc.Text != "bye" {
		t.Fatalf("Done(%v), want a PeerClose 4001 bye", err)
	}
	c.AnswerClose(pc.Code, time.Now().Add(time.Second))
	c.Release()
	_ = ws.SetReadDeadline(time.Now().Add(guard))
	_, _, err = ws.ReadMessage()
	var ce *websocket.CloseError
	if !errors.As(err, &ce) || ce.Code != 4001 {
		t.Fatalf("peer read %v, want the echoed close 4001", err)
	}
	if _, _, ok := c.LocalClose(); ok {
		t.Fatal("LocalClose reports a close this side did not start")
	}
}

// A close this side starts for an error discards further input, and the
// reader ends when the peer answers; writes after it fail.
func TestConnCloseForErrorDiscardsInput(t *testing.T) {
	ws, conns := serve(t, Config{WriteTimeout: time.Second})
	c := wait(t, conns, "the accepted connection")
	r := newRecorder()
	c.Start(r)
	c.Close(websocket.CloseProtocolError, "bad", time.Time{})
	if code, text, ok := c.LocalClose(); !ok || code != websocket.CloseProtocolError || text != "bad" {
		t.Fatalf("LocalClose = %d %q %v", code, text, ok)
	}
	_ = ws.SetReadDeadline(time.Now().Add(guard))
	if _, _, err := ws.ReadMessage(); !websocket.IsCloseError(err, websocket.CloseProtocolError) {
		t.Fatalf("peer read %v, want close 1002", err)
	}
	_ = ws.WriteMessage(websocket.TextMessage, []byte("ignored"))
	_ = ws.WriteMessage(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseProtocolError, ""))
	var pc *transport.PeerClose
	if err := wait(t, r.Ended, "Done"); !errors.As(err, &pc) {
		t.Fatalf("Done(%v), want the peer's answering close", err)
	}
	select {
	case m := <-r.Msgs:
		t.Fatalf("message %q delivered after an error close", m)
	default:
	}
	c.BeginWrite(time.Time{}, false)
	if err := c.WriteMessage(websocket.TextMessage, []byte("late")); !errors.Is(err, websocket.ErrCloseSent) {
		t.Fatalf("write after close = %v, want ErrCloseSent", err)
	}
	_ = c.EndWrite()
	c.Release()
}

// A peer that stops answering pings ends the reader with ErrKeepAlive
// within 1.5 keep-alive periods.
func TestConnKeepAliveExpires(t *testing.T) {
	const keepAlive = 200 * time.Millisecond
	ws, conns := serve(t, Config{KeepAlive: keepAlive})
	// The peer reads nothing, so it never answers a ping.
	_ = ws
	c := wait(t, conns, "the accepted connection")
	r := newRecorder()
	start := time.Now()
	c.Start(r)
	err := wait(t, r.Ended, "Done")
	if !errors.Is(err, transport.ErrKeepAlive) {
		t.Fatalf("Done(%v), want ErrKeepAlive", err)
	}
	// The tick notices silence between KeepAlive and 1.5×KeepAlive after
	// the peer was last heard; the margin is for a busy machine.
	if took := time.Since(start); took < keepAlive || took > keepAlive*3/2+2*time.Second {
		t.Fatalf("gave up after %v, want between KeepAlive %v and 1.5×KeepAlive (+2s margin)", took, keepAlive)
	}
	c.Release()
}

// Batched writes reach the peer whole and in order, encoded frames too.
func TestConnBatchedWrites(t *testing.T) {
	ws, conns := serve(t, Config{WriteTimeout: time.Second})
	c := wait(t, conns, "the accepted connection")
	r := newRecorder()
	c.Start(r)
	c.BeginWrite(time.Time{}, true)
	if err := c.WriteMessage(websocket.TextMessage, []byte("one")); err != nil {
		t.Fatal(err)
	}
	if err := c.WriteEncoded(EncodeFrame(websocket.BinaryMessage, []byte("two"))); err != nil {
		t.Fatal(err)
	}
	if err := c.EndWrite(); err != nil {
		t.Fatal(err)
	}
	_ = ws.SetReadDeadline(time.Now().Add(guard))
	for _, want := range []struct {
		typ int
		msg string
	}{{websocket.TextMessage, "one"}, {websocket.BinaryMessage, "two"}} {
		typ, got, err := ws.ReadMessage()
		if err != nil || typ != want.typ || string(got) != want.msg {
			t.Fatalf("read %d %q %v, want %d %q", typ, got, err, want.typ, want.msg)
		}
	}
	c.Close(websocket.CloseNormalClosure, "", time.Now().Add(time.Second))
	if _, _, err := ws.ReadMessage(); !websocket.IsCloseError(err, websocket.CloseNormalClosure) {
		t.Fatalf("peer read %v, want close 1000", err)
	}
	_ = ws.WriteMessage(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""))
	wait(t, r.Ended, "Done")
	c.Release()
}

// A refused upgrade carries Sec-WebSocket-Version: 13 (RFC 6455 §4.4).
func TestAcceptorRefusalNamesTheVersion(t *testing.T) {
	a := NewAcceptor(nil, nil, func(w http.ResponseWriter, _ *http.Request, status int, reason error) {
		http.Error(w, reason.Error(), status)
	}, Config{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = a.Accept(w, r) }))
	defer srv.Close()
	req, _ := http.NewRequest(http.MethodGet, srv.URL, nil)
	req.Header.Set("Connection", "Upgrade")
	req.Header.Set("Upgrade", "websocket")
	req.Header.Set("Sec-WebSocket-Version", "8")
	req.Header.Set("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest || resp.Header.Get("Sec-WebSocket-Version") != "13" {
		t.Fatalf("status %d, Sec-WebSocket-Version %q; want 400 and 13", resp.StatusCode, resp.Header.Get("Sec-WebSocket-Version"))
	}
}

// Handoff from inside Message: the next messages reach the Receiver on a
// new reader, in order, while that call still runs; once it returns, the
// old goroutine reads nothing more (each message once), and the reader's
// end is reported once, by the new reader.
func TestConnHandoff(t *testing.T) {
	ws, conns := serve(t, Config{WriteTimeout: time.Second})
	c := wait(t, conns, "the accepted connection")
	msgs := make(chan string, 16)
	ended := make(chan error, 2)
	release := make(chan struct{})
	handed := make(chan bool, 1)
	c.Start(receiverFunc{
		msg: func(_ int, rd io.Reader) error {
			b, err := io.ReadAll(rd)
			if err != nil {
				return err
			}
			msgs <- string(b)
			if string(b) == "wait" {
				handed <- c.Handoff()
				<-release // the receiver waits for a later message
				msgs <- "wait returned"
			}
			return nil
		},
		done: func(err error) { ended <- err },
	})
	for _, m := range []string{"a", "wait", "b", "c"} {
		if err := ws.WriteMessage(websocket.TextMessage, []byte(m)); err != nil {
			t.Fatal(err)
		}
	}
	for _, want := range []string{"a", "wait", "b", "c"} {
		if got := wait(t, msgs, "a message"); got != want {
			t.Fatalf("got %q, want %q", got, want)
		}
	}
	if !wait(t, handed, "Handoff") {
		t.Fatal("Handoff reported false")
	}
	close(release)
	if got := wait(t, msgs, "the waiting call's end"); got != "wait returned" {
		t.Fatalf("got %q, want the waiting call's end", got)
	}
	if err := ws.WriteMessage(websocket.TextMessage, []byte("d")); err != nil {
		t.Fatal(err)
	}
	if got := wait(t, msgs, "a message after the handoff"); got != "d" {
		t.Fatalf("got %q, want d", got)
	}
	_ = ws.WriteMessage(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""))
	var pc *transport.PeerClose
	if err := wait(t, ended, "Done"); !errors.As(err, &pc) {
		t.Fatalf("Done(%v), want a PeerClose", err)
	}
	c.AnswerClose(pc.Code, time.Now().Add(time.Second))
	c.Release()
	select {
	case m := <-msgs:
		t.Fatalf("message %q delivered twice or after the end", m)
	case err := <-ended:
		t.Fatalf("Done reported twice: %v", err)
	default:
	}
}
