package marmot_test

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/marmotws/marmot"
	"github.com/marmotws/marmot/chaos"
	"github.com/marmotws/marmot/protocol"
)

// outboxRig is a server behind a chaos proxy and a client with the outbox,
// whose connection the test takes down and brings back.
type outboxRig struct {
	s      *marmot.Server
	p      *chaos.Proxy
	c      *marmot.Client
	states chan marmot.ClientState
	errs   chan error

	mu   sync.Mutex
	seen []string // commands and data the server handled, as "name payload"
	got  chan struct{}
}

func newOutboxRig(t *testing.T, scfg marmot.ServerConfig, ccfg marmot.ClientConfig) *outboxRig {
	t.Helper()
	r := &outboxRig{states: make(chan marmot.ClientState, 64), errs: make(chan error, 64), got: make(chan struct{}, 1024)}
	if scfg.KeepAlive == 0 {
		scfg.KeepAlive = -1
	}
	if scfg.OnHandleCommand == nil {
		scfg.OnHandleCommand = func(m *marmot.Message) {
			if m.IsRequest() {
				_ = m.Reply(append([]byte("re: "), m.Payload...))
				return
			}
			r.mu.Lock()
			r.seen = append(r.seen, m.Name+" "+string(m.Payload))
			r.mu.Unlock()
			r.got <- struct{}{}
		}
	}
	r.s = startServer(t, scfg)
	p, err := chaos.NewProxy("127.0.0.1:0", r.s.Addr().String(), chaos.Options{Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Close() })
	r.p = p
	ccfg.URL = strings.Replace(r.s.URL(), r.s.Addr().String(), p.Addr().String(), 1)
	if ccfg.Subprotocol == "" {
		ccfg.Subprotocol = "marmot.v1"
	}
	ccfg.AutoReconnect = true
	ccfg.ReconnectStrategy = marmot.ReconnectFixed
	ccfg.ReconnectInterval = 20 * time.Millisecond
	ccfg.KeepAlive = -1
	ccfg.OnStateChange = func(_, s marmot.ClientState) { r.states <- s }
	ccfg.OnError = func(err error) {
		select {
		case r.errs <- err:
		default:
		}
	}
	r.c = newClient(t, ccfg)
	if err := r.c.Connect(ctxTimeout(t)); err != nil {
		t.Fatal(err)
	}
	return r
}

// down cuts the connection and keeps the client out; it returns once the
// client is reconnecting.
func (r *outboxRig) down(t *testing.T) {
	t.Helper()
	if err := r.p.Down(); err != nil {
		t.Fatal(err)
	}
	for recv(t, r.states, "state Reconnecting") != marmot.StateReconnecting {
	}
}

// up lets the client back in and returns once it is connected.
func (r *outboxRig) up(t *testing.T) {
	t.Helper()
	if err := r.p.Up(); err != nil {
		t.Fatal(err)
	}
	for recv(t, r.states, "state Connected") != marmot.StateConnected {
	}
}

// handled waits until the server has handled n messages and returns them.
func (r *outboxRig) handled(t *testing.T, n int) []string {
	t.Helper()
	for range n {
		recv(t, r.got, "a message on the server")
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.seen...)
}

func TestOutboxQueuesWhileReconnecting(t *testing.T) {
	for _, sub := range []string{protocol.SubprotocolBinary, protocol.SubprotocolJSON} {
		t.Run(sub, func(t *testing.T) { outboxQueues(t, marmot.ServerConfig{}, marmot.ClientConfig{Subprotocol: sub}) })
	}
	// Encrypted: what is sent again is sealed again, with the new
	// connection's keys.
	t.Run("marmot.v1+gcm", func(t *testing.T) {
		enc := marmot.EncryptionConfig{EncryptionEnabled: true, EncryptionKey: testKey, EncryptionMode: "gcm", EncryptionKDF: testKDF}
		outboxQueues(t, marmot.ServerConfig{EncryptionConfig: enc}, marmot.ClientConfig{EncryptionConfig: enc})
	})
}

func outboxQueues(t *testing.T, scfg marmot.ServerConfig, ccfg marmot.ClientConfig) {
	r := newOutboxRig(t, scfg, ccfg)
	if err := r.c.SendCommand("n", []byte("0")); err != nil {
		t.Fatal(err)
	}
	r.handled(t, 1)
	r.down(t)
	for i := 1; i <= 5; i++ {
		if err := r.c.SendCommand("n", []byte(strconv.Itoa(i))); err != nil {
			t.Fatalf("SendCommand while reconnecting: %v", err)
		}
	}
	if err := r.c.Send([]byte("6")); err != nil {
		t.Fatalf("Send while reconnecting: %v", err)
	}
	r.up(t)
	got := r.handled(t, 6)
	want := []string{"n 0", "n 1", "n 2", "n 3", "n 4", "n 5", " 6"}
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("server handled %q, want %q", got, want)
	}
}

func TestOutboxFull(t *testing.T) {
	const bound = 200
	r := newOutboxRig(t, marmot.ServerConfig{}, marmot.ClientConfig{OutboxBytes: bound})
	r.down(t)
	payload := []byte(strings.Repeat("x", 40))
	sent := 0
	var err error
	for ; sent < 100; sent++ {
		if err = r.c.SendCommand("n", payload); err != nil {
			break
		}
	}
	if !errors.Is(err, marmot.ErrOutboxFull) {
		t.Fatalf("send %d into a full outbox: %v, want ErrOutboxFull", sent, err)
	}
	// Each command is 3 header bytes, the name (2), the extension block
	// with its sequence number (2) and the payload (40): 47 bytes, so 4
	// fit in 200 and the 5th does not.
	if sent != 4 {
		t.Fatalf("the outbox took %d commands of 48 bytes within %d bytes, want 4", sent, bound)
	}
	r.up(t)
	got := r.handled(t, sent)
	if len(got) != sent {
		t.Fatalf("server handled %d, want %d", len(got), sent)
	}
	// Room again once they are acknowledged: a send succeeds.
	if err := r.c.SendCommand("n", payload); err != nil && !errors.Is(err, marmot.ErrOutboxFull) {
		t.Fatal(err)
	}
}

func TestOutboxRequestAcrossOutage(t *testing.T) {
	r := newOutboxRig(t, marmot.ServerConfig{}, marmot.ClientConfig{})
	r.down(t)
	type result struct {
		reply []byte
		err   error
	}
	done := make(chan result, 1)
	go func() {
		reply, err := r.c.Request(ctxTimeout(t), "echo", []byte("ping"))
		done <- result{reply, err}
	}()
	// A request whose context ends while it waits is given up, not sent.
	short, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := r.c.Request(short, "echo", []byte("never")); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled Request: %v", err)
	}
	r.up(t)
	res := recv(t, done, "the Request across the outage")
	if res.err != nil || string(res.reply) != "re: ping" {
		t.Fatalf("Request across the outage: %q, %v", res.reply, res.err)
	}
}

func TestOutboxJoinPublishWhileReconnecting(t *testing.T) {
	room := make(chan string, 16)
	r := newOutboxRig(t, marmot.ServerConfig{}, marmot.ClientConfig{
		ClientEvents: marmot.ClientEvents{
			OnHandleCommand: func(m *marmot.Message) {
				if m.Room != "" {
					room <- string(m.Payload)
				}
			},
			OnRecover: func(string, bool, int, string) { t.Error("OnRecover for a first join") },
		},
	})
	r.down(t)
	joined := make(chan error, 1)
	go func() { joined <- r.c.Join(ctxTimeout(t), "lobby") }()
	if err := r.c.Publish("lobby", []byte("hello")); err != nil {
		t.Fatalf("Publish while reconnecting: %v", err)
	}
	if err := r.c.Leave(ctxTimeout(t), "gone"); err != nil {
		t.Fatalf("Leave while reconnecting: %v", err)
	}
	r.up(t)
	if err := recv(t, joined, "the Join"); err != nil {
		t.Fatalf("Join while reconnecting: %v", err)
	}
	// The join went out before the publish (re-joins first), so the
	// client receives its own message.
	if got := recv(t, room, "the room message"); got != "hello" {
		t.Fatalf("room message %q", got)
	}
	if m := r.s.Members("lobby"); len(m) != 1 {
		t.Fatalf("members %v", m)
	}
}

func TestOutboxGivesUp(t *testing.T) {
	r := newOutboxRig(t, marmot.ServerConfig{}, marmot.ClientConfig{})
	r.down(t)
	if err := r.c.SendCommand("n", []byte("lost")); err != nil {
		t.Fatal(err)
	}
	reqDone := make(chan error, 1)
	go func() {
		_, err := r.c.Request(ctxTimeout(t), "echo", nil)
		reqDone <- err
	}()
	// A Disconnect drops the outbox: it fails the request (if it got
	// there first; else the Request finds the client disconnected) and
	// reports what was never sent.
	if err := r.c.Disconnect(ctxTimeout(t)); err != nil {
		t.Fatal(err)
	}
	if err := recv(t, reqDone, "the Request to fail"); !errors.Is(err, marmot.ErrDisconnected) && !errors.Is(err, marmot.ErrNotConnected) {
		t.Fatalf("Request after Disconnect: %v", err)
	}
	for err := recv(t, r.errs, "ErrUndelivered"); !errors.Is(err, marmot.ErrUndelivered); err = recv(t, r.errs, "ErrUndelivered") {
	}
	if err := r.c.SendCommand("n", nil); !errors.Is(err, marmot.ErrNotConnected) {
		t.Fatalf("send after Disconnect: %v, want ErrNotConnected", err)
	}
}

func TestOutboxRawModeHasNone(t *testing.T) {
	s := startServer(t, marmot.ServerConfig{KeepAlive: -1})
	p, err := chaos.NewProxy("127.0.0.1:0", s.Addr().String(), chaos.Options{Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Close() })
	states := make(chan marmot.ClientState, 16)
	c := newClient(t, marmot.ClientConfig{
		URL:           strings.Replace(s.URL(), s.Addr().String(), p.Addr().String(), 1),
		AutoReconnect: true, ReconnectInterval: time.Hour, KeepAlive: -1,
		ClientEvents: marmot.ClientEvents{OnStateChange: func(_, s marmot.ClientState) { states <- s }},
	})
	if err := c.Connect(ctxTimeout(t)); err != nil {
		t.Fatal(err)
	}
	if st := s.Stats(); st.Sessions != 0 {
		t.Fatalf("a raw-mode client got a session")
	}
	if err := p.Down(); err != nil {
		t.Fatal(err)
	}
	for recv(t, states, "Reconnecting") != marmot.StateReconnecting {
	}
	if err := c.Send([]byte("x")); !errors.Is(err, marmot.ErrNotConnected) {
		t.Fatalf("raw Send while reconnecting: %v, want ErrNotConnected", err)
	}
	if err := c.Publish("r", []byte("x")); !errors.Is(err, marmot.ErrNotConnected) {
		t.Fatalf("raw Publish while reconnecting: %v, want ErrNotConnected", err)
	}
}

// sessionDial opens a marmot.v1 connection asking for a session with tok
// ("" for none) and returns it with the response's token and whether it
// resumed.
func sessionDial(t *testing.T, url, tok string) (*websocket.Conn, string, bool) {
	t.Helper()
	h := http.Header{}
	if tok != "" {
		h.Set(protocol.HeaderSession, tok)
	}
	d := websocket.Dialer{HandshakeTimeout: 10 * time.Second, Subprotocols: []string{"marmot.v1"}}
	ws, resp, err := d.Dial(url, h)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	resp.Body.Close()
	t.Cleanup(func() { ws.Close() })
	return ws, resp.Header.Get(protocol.HeaderSession), resp.Header.Get(protocol.HeaderSessionResumed) == "true"
}

// sendSeq sends command "n" with payload and sequence number seq.
func sendSeq(t *testing.T, ws *websocket.Conn, seq uint64, payload string) {
	t.Helper()
	b, err := protocol.Binary.Append(nil, &protocol.Envelope{Kind: protocol.KindCommand, Name: "n", Seq: seq, Payload: []byte(payload)})
	if err != nil {
		t.Fatal(err)
	}
	if err := ws.WriteMessage(websocket.BinaryMessage, b); err != nil {
		t.Fatal(err)
	}
}

// readAck reads until a marmot.ack arrives and returns its number.
func readAck(t *testing.T, ws *websocket.Conn) uint64 {
	t.Helper()
	_ = ws.SetReadDeadline(time.Now().Add(waitTimeout))
	for {
		_, b, err := ws.ReadMessage()
		if err != nil {
			t.Fatalf("waiting for an ack: %v", err)
		}
		var e protocol.Envelope
		if err := protocol.Binary.Decode(b, &e); err != nil {
			t.Fatal(err)
		}
		if e.Name == protocol.AckCommand {
			return e.Ack
		}
	}
}

func TestSessionResumeTokens(t *testing.T) {
	var mu sync.Mutex
	var seen []string
	got := make(chan struct{}, 16)
	s := startServer(t, marmot.ServerConfig{KeepAlive: -1, ServerEvents: marmot.ServerEvents{
		OnHandleCommand: func(m *marmot.Message) {
			mu.Lock()
			seen = append(seen, string(m.Payload))
			mu.Unlock()
			got <- struct{}{}
		},
	}})
	url := s.URL()

	// An old client (no header) gets no session.
	if _, tok, _ := sessionDial(t, url, ""); tok != "" {
		t.Fatalf("a client that did not ask got session %q", tok)
	}
	ws1, t1, resumed := sessionDial(t, url, protocol.SessionNew)
	if t1 == "" || resumed {
		t.Fatalf("new session: token %q resumed %v", t1, resumed)
	}
	sendSeq(t, ws1, 1, "a")
	sendSeq(t, ws1, 2, "b")
	if n := readAck(t, ws1); n != 2 {
		t.Fatalf("ack %d, want 2", n)
	}
	ws1.Close()

	// Resumed: a new token, the acknowledgement state carried over (told
	// at once), 2 is a duplicate, 3 is new.
	ws2, t2, resumed := sessionDial(t, url, t1)
	if !resumed || t2 == "" || t2 == t1 {
		t.Fatalf("resume: token %q (was %q) resumed %v", t2, t1, resumed)
	}
	if n := readAck(t, ws2); n != 2 {
		t.Fatalf("ack on resume %d, want 2", n)
	}
	sendSeq(t, ws2, 2, "b again")
	sendSeq(t, ws2, 3, "c")
	if n := readAck(t, ws2); n != 3 {
		t.Fatalf("ack %d, want 3", n)
	}

	// The used token again: refused (a fresh session, not resumed), as is
	// a forged one, and the live session is left alone.
	_, t3, resumed := sessionDial(t, url, t1)
	if resumed || t3 == "" || t3 == t2 {
		t.Fatalf("reused token: resumed %v, token %q", resumed, t3)
	}
	id, secret, _ := strings.Cut(t2, ".")
	forged := id + "." + strings.Repeat("A", len(secret))
	_, t4, resumed := sessionDial(t, url, forged)
	if resumed || t4 == "" {
		t.Fatalf("forged token resumed %v", resumed)
	}
	if _, _, resumed := sessionDial(t, url, "not a token"); resumed {
		t.Fatal("garbage token resumed")
	}
	sendSeq(t, ws2, 4, "d")
	for range 4 {
		recv(t, got, "a command")
	}
	mu.Lock()
	if strings.Join(seen, ",") != "a,b,c,d" {
		t.Fatalf("handled %q, want a,b,c,d", seen)
	}
	mu.Unlock()

	// A gap, and a sequence number without a session: 1002.
	sendSeq(t, ws2, 9, "gap")
	if ce := readClose(t, ws2); ce.Code != marmot.CloseProtocolError {
		t.Fatalf("gap closed with %d, want 1002", ce.Code)
	}
	ws5, _, _ := sessionDial(t, url, "")
	sendSeq(t, ws5, 1, "x")
	if ce := readClose(t, ws5); ce.Code != marmot.CloseProtocolError {
		t.Fatalf("seq without a session closed with %d, want 1002", ce.Code)
	}
}

func TestSessionResumeClosesTheOldConnection(t *testing.T) {
	s := startServer(t, marmot.ServerConfig{KeepAlive: -1})
	ws1, t1, _ := sessionDial(t, s.URL(), protocol.SessionNew)
	if _, _, resumed := sessionDial(t, s.URL(), t1); !resumed {
		t.Fatal("not resumed")
	}
	if ce := readClose(t, ws1); ce.Code != marmot.CloseSessionMoved {
		t.Fatalf("old connection closed with %d, want %d", ce.Code, marmot.CloseSessionMoved)
	}
}

func TestSessionExpiry(t *testing.T) {
	s := startServer(t, marmot.ServerConfig{KeepAlive: -1, SessionTTL: 50 * time.Millisecond, MaxSessions: 2})
	ws, tok, _ := sessionDial(t, s.URL(), protocol.SessionNew)
	ws.Close()
	// There is no event for an expiry: watch the count, bounded.
	deadline := time.Now().Add(waitTimeout)
	for s.Stats().Sessions != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("session still there after %v (TTL 50ms)", waitTimeout)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if _, _, resumed := sessionDial(t, s.URL(), tok); resumed {
		t.Fatal("an expired session resumed")
	}
	// MaxSessions 2: attached sessions are never evicted; a third client
	// gets none.
	sessionDial(t, s.URL(), protocol.SessionNew)
	if _, tok, _ := sessionDial(t, s.URL(), protocol.SessionNew); tok != "" {
		t.Fatalf("third session granted over MaxSessions 2 (%d sessions)", s.Stats().Sessions)
	}
}

func TestOutboxSessionLost(t *testing.T) {
	entered, release := make(chan struct{}, 1), make(chan struct{})
	r := newOutboxRig(t, marmot.ServerConfig{
		SessionTTL: 50 * time.Millisecond,
		ServerEvents: marmot.ServerEvents{OnHandleCommand: func(m *marmot.Message) {
			if string(m.Payload) == "block" {
				entered <- struct{}{}
				<-release
			}
		}},
	}, marmot.ClientConfig{})
	// Sent and being handled, so not acknowledged when the connection goes.
	if err := r.c.SendCommand("n", []byte("block")); err != nil {
		t.Fatal(err)
	}
	recv(t, entered, "the handler")
	r.down(t)
	if err := r.c.SendCommand("n", []byte("queued")); err != nil {
		t.Fatal(err)
	}
	close(release)
	// The session ends SessionTTL after its connection: no event for it.
	deadline := time.Now().Add(waitTimeout)
	for r.s.Stats().Sessions != 0 {
		if time.Now().After(deadline) {
			t.Fatal("the session did not expire")
		}
		time.Sleep(10 * time.Millisecond)
	}
	r.up(t)
	for {
		err := recv(t, r.errs, "ErrSessionLost")
		if errors.Is(err, marmot.ErrSessionLost) {
			if !strings.HasSuffix(err.Error(), ": 1") {
				t.Fatalf("%v: want 1 message of uncertain fate", err)
			}
			break
		}
	}
}

func TestOutboxReplyLost(t *testing.T) {
	entered, release := make(chan struct{}, 1), make(chan struct{})
	r := newOutboxRig(t, marmot.ServerConfig{
		ServerEvents: marmot.ServerEvents{OnHandleCommand: func(m *marmot.Message) {
			entered <- struct{}{}
			<-release
			_ = m.Reply([]byte("done")) // onto a connection that is gone
		}},
	}, marmot.ClientConfig{})
	done := make(chan error, 1)
	go func() {
		_, err := r.c.Request(ctxTimeout(t), "save", nil)
		done <- err
	}()
	recv(t, entered, "the handler")
	r.down(t)
	close(release)
	r.up(t)
	// Sent again on the resumed session, found handled: not handled twice,
	// and its reply is lost.
	err := recv(t, done, "the Request")
	if !errors.Is(err, marmot.ErrReplyLost) {
		t.Fatalf("Request whose reply was lost: %v, want ErrReplyLost", err)
	}
	select {
	case <-entered:
		t.Fatal("the request was handled twice")
	default:
	}
}

// TestOutboxOverHTTP: the session and its outbox work the same over the
// HTTP fallback transport: the session open's answer carries the resume
// token (as a 101 does), and after the HTTP session is lost (the proxy
// down past the server's idle timeout) the client resumes the same
// session and what it queued is handled once, in order.
func TestOutboxOverHTTP(t *testing.T) {
	r := newOutboxRig(t, marmot.ServerConfig{KeepAlive: time.Second}, marmot.ClientConfig{Transport: marmot.TransportHTTP})
	if tr := r.c.Transport(); tr != "http" {
		t.Fatalf("transport %q, want http", tr)
	}
	if n := r.s.Stats().Sessions; n != 1 {
		t.Fatalf("%d sessions after the HTTP open, want 1", n)
	}
	if err := r.c.SendCommand("n", []byte("0")); err != nil {
		t.Fatal(err)
	}
	r.handled(t, 1)
	r.down(t) // once the client's HTTP session has given up
	for i := 1; i <= 5; i++ {
		if err := r.c.SendCommand("n", []byte(strconv.Itoa(i))); err != nil {
			t.Fatalf("SendCommand while reconnecting: %v", err)
		}
	}
	r.up(t)
	got := r.handled(t, 5)
	want := []string{"n 0", "n 1", "n 2", "n 3", "n 4", "n 5"}
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("server handled %q, want %q", got, want)
	}
	if tr := r.c.Transport(); tr != "http" {
		t.Fatalf("reconnected over %q, want http", tr)
	}
	// A new session instead of the resumed one would be a second (the
	// old one waits SessionTTL for its client).
	if n := r.s.Stats().Sessions; n != 1 {
		t.Fatalf("%d sessions after the reconnect, want 1 (resumed)", n)
	}
	select {
	case err := <-r.errs:
		t.Fatalf("client error: %v", err)
	default:
	}
}
