package marmot_test

import (
	"bytes"
	"context"
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

	"github.com/gorilla/websocket"

	"github.com/marmotws/marmot"
	"github.com/marmotws/marmot/protocol"
)

func TestServerLifecycle(t *testing.T) {
	states := make(chan [2]marmot.ServerState, 16)
	s, err := marmot.NewServer(marmot.ServerConfig{
		Addr:   "127.0.0.1:0",
		Logger: quietLogger(),
		OnServerStateChange: func(old, new marmot.ServerState) {
			states <- [2]marmot.ServerState{old, new}
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	cfg := s.Config()
	if cfg.Path != "/websocket" || cfg.MaxConnections != 1000 || cfg.KeepAlive != 30*time.Second ||
		cfg.HandlerConcurrency != 32 || cfg.MaxMessageSize != 1<<20 {
		t.Fatalf("defaults not applied: %+v", cfg)
	}
	if s.State() != marmot.ServerIdle {
		t.Fatalf("state before Start = %v", s.State())
	}
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := recv(t, states, "starting"); got != [2]marmot.ServerState{marmot.ServerIdle, marmot.ServerStarting} {
		t.Fatalf("first transition %v", got)
	}
	if got := recv(t, states, "listening"); got[1] != marmot.ServerListening {
		t.Fatalf("second transition %v", got)
	}
	if d := s.StateDescription(); !strings.Contains(d, "listening") || !strings.Contains(d, "127.0.0.1:") {
		t.Fatalf("description %q", d)
	}
	ws := dial(t, s.URL(), "")
	if err := ws.WriteMessage(websocket.TextMessage, []byte("hi")); err != nil {
		t.Fatal(err)
	}
	if err := s.Stop(ctxTimeout(t)); err != nil {
		t.Fatal(err)
	}
	if got := recv(t, states, "stopping"); got[1] != marmot.ServerStopping {
		t.Fatalf("third transition %v", got)
	}
	if got := recv(t, states, "idle"); got[1] != marmot.ServerIdle {
		t.Fatalf("fourth transition %v", got)
	}
	if ce := readClose(t, ws); ce.Code != marmot.CloseGoingAway {
		t.Fatalf("close code %d, want 1001", ce.Code)
	}
	if _, err := s.Broadcast([]byte("x")); !errors.Is(err, marmot.ErrServerStopped) {
		t.Fatalf("Broadcast after Stop: %v", err)
	}
	// A stopped server starts again, with IDs from 1 as in the seed.
	ids := make(chan marmot.ClientID, 1)
	s2 := startServer(t, marmot.ServerConfig{ServerEvents: marmot.ServerEvents{
		OnClientConnected: func(ci marmot.ClientInfo) { ids <- ci.ID },
	}})
	dial(t, s2.URL(), "")
	if id := recv(t, ids, "connect"); id != 1 {
		t.Fatalf("first id %d", id)
	}
}

func TestStartErrorOnBusyPort(t *testing.T) {
	s := startServer(t, marmot.ServerConfig{})
	errs := make(chan error, 1)
	s2, err := marmot.NewServer(marmot.ServerConfig{Addr: s.Addr().String(), Logger: quietLogger(),
		ServerEvents: marmot.ServerEvents{OnError: func(_ marmot.ClientID, err error) { errs <- err }}})
	if err != nil {
		t.Fatal(err)
	}
	if err := s2.Start(context.Background()); err == nil {
		t.Fatal("second Start on a busy port succeeded")
	}
	if s2.State() != marmot.ServerError {
		t.Fatalf("state %v, want error", s2.State())
	}
	recv(t, errs, "OnError")
	_ = s2.Stop(ctxTimeout(t))
}

func TestConfigValidation(t *testing.T) {
	if _, err := marmot.NewServer(marmot.ServerConfig{Addr: "nonsense"}); err == nil {
		t.Fatal("bad Addr accepted")
	}
	if _, err := marmot.NewClient(marmot.ClientConfig{URL: "http://x/"}); err == nil {
		t.Fatal("http URL accepted")
	}
	if _, err := marmot.NewClient(marmot.ClientConfig{Subprotocol: "nope"}); err == nil {
		t.Fatal("unknown subprotocol accepted")
	}
	if _, err := marmot.NewClient(marmot.ClientConfig{MaxReconnectAttempts: -1}); err == nil {
		t.Fatal("negative attempts accepted")
	}
}

// TestEventsAndStats checks the two-event model and that every counter is
// exact after a known workload.
func TestEventsAndStats(t *testing.T) {
	var received, sent, handled atomic.Int64
	connected := make(chan marmot.ClientInfo, 1)
	disconnected := make(chan *marmot.CloseError, 1)
	s := startServer(t, marmot.ServerConfig{ServerEvents: marmot.ServerEvents{
		OnClientConnected:    func(ci marmot.ClientInfo) { connected <- ci },
		OnClientDisconnected: func(_ marmot.ClientInfo, r *marmot.CloseError) { disconnected <- r },
		OnDataReceived:       func(_ marmot.ClientID, d []byte) { received.Add(int64(len(d))) },
		OnDataSent:           func(_ marmot.ClientID, d []byte) { sent.Add(int64(len(d))) },
		OnHandleCommand: func(m *marmot.Message) {
			handled.Add(1)
			_ = m.Reply(m.Payload)
		},
	}})
	ws := dial(t, s.URL(), "")
	ci := recv(t, connected, "connect")
	if ci.ID != 1 || ci.IP() != "127.0.0.1" {
		t.Fatalf("info %+v", ci)
	}
	if ip, err := s.ClientIP(ci.ID); err != nil || ip != "127.0.0.1" {
		t.Fatalf("ClientIP = %q, %v", ip, err)
	}
	const n = 50
	var want int64
	for i := range n {
		msg := bytes.Repeat([]byte{'a' + byte(i%26)}, i+1)
		want += int64(len(msg))
		if err := ws.WriteMessage(websocket.BinaryMessage, msg); err != nil {
			t.Fatal(err)
		}
		typ, got, err := ws.ReadMessage()
		if err != nil || typ != websocket.BinaryMessage || !bytes.Equal(got, msg) {
			t.Fatalf("echo %d: type %d err %v", i, typ, err)
		}
	}
	ws.WriteMessage(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, "bye"))
	r := recv(t, disconnected, "disconnect")
	if r.Code != marmot.CloseNormal || !r.ByPeer || r.Text != "bye" {
		t.Fatalf("close reason %+v", r)
	}
	st := s.Stats()
	if st.TotalMessagesReceived != n || st.TotalMessagesSent != n || st.TotalBytesReceived != want ||
		st.TotalBytesSent != want || st.TotalConnections != 1 || st.ClientCount != 0 || handled.Load() != n {
		t.Fatalf("stats %+v handled %d want bytes %d", st, handled.Load(), want)
	}
	if received.Load() != want || sent.Load() != want {
		t.Fatalf("OnDataReceived %d, OnDataSent %d bytes, want %d", received.Load(), sent.Load(), want)
	}
}

// TestBroadcastThousandClients sends to 1,000 raw clients: every client gets
// every broadcast exactly once, in order, and every targeted message.
func TestBroadcastThousandClients(t *testing.T) {
	const clients, rounds = 1000, 5
	var connected, written sync.WaitGroup
	connected.Add(clients)
	written.Add(clients * (rounds + 1))
	s := startServer(t, marmot.ServerConfig{ServerEvents: marmot.ServerEvents{
		OnClientConnected: func(marmot.ClientInfo) { connected.Done() },
		OnDataSent:        func(marmot.ClientID, []byte) { written.Done() },
	}})
	conns := make([]*websocket.Conn, clients)
	for i := range conns {
		conns[i] = dial(t, s.URL(), "")
	}
	connected.Wait()
	if s.ClientCount() != clients {
		t.Fatalf("ClientCount %d", s.ClientCount())
	}
	for r := range rounds {
		n, err := s.Broadcast(fmt.Appendf(nil, "b%d", r))
		if err != nil || n != clients {
			t.Fatalf("broadcast reached %d, %v", n, err)
		}
	}
	for _, ci := range s.Clients() {
		if err := s.SendToClient(ci.ID, fmt.Appendf(nil, "to%d", ci.ID)); err != nil {
			t.Fatal(err)
		}
	}
	var wg sync.WaitGroup
	errs := make(chan error, clients)
	for i, ws := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_ = ws.SetReadDeadline(time.Now().Add(waitTimeout))
			for r := range rounds {
				_, got, err := ws.ReadMessage()
				if err != nil || string(got) != fmt.Sprintf("b%d", r) {
					errs <- fmt.Errorf("client %d round %d: %q %v", i, r, got, err)
					return
				}
			}
			_, got, err := ws.ReadMessage()
			if err != nil || !strings.HasPrefix(string(got), "to") {
				errs <- fmt.Errorf("client %d targeted: %q %v", i, got, err)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	// A client can read a frame before the server's write call returns and
	// counts it; OnDataSent runs after the count.
	written.Wait()
	if st := s.Stats(); st.TotalMessagesSent != clients*(rounds+1) {
		t.Fatalf("messages sent %d, want %d", st.TotalMessagesSent, clients*(rounds+1))
	}
}

func TestBroadcastExcept(t *testing.T) {
	ids := make(chan marmot.ClientID, 2)
	s := startServer(t, marmot.ServerConfig{ServerEvents: marmot.ServerEvents{
		OnClientConnected: func(ci marmot.ClientInfo) { ids <- ci.ID },
	}})
	a := dial(t, s.URL(), "")
	idA := recv(t, ids, "a")
	b := dial(t, s.URL(), "")
	recv(t, ids, "b")
	if n, err := s.BroadcastExcept(idA, []byte("not for a")); n != 1 || err != nil {
		t.Fatalf("BroadcastExcept reached %d: %v", n, err)
	}
	if _, err := s.Broadcast([]byte("for all")); err != nil {
		t.Fatal(err)
	}
	_, got, _ := b.ReadMessage()
	if string(got) != "not for a" {
		t.Fatalf("b got %q", got)
	}
	_, got, _ = a.ReadMessage()
	if string(got) != "for all" {
		t.Fatalf("a got %q first: BroadcastExcept leaked", got)
	}
	if err := s.SendToClient(999, []byte("x")); !errors.Is(err, marmot.ErrClientNotFound) {
		t.Fatalf("SendToClient unknown: %v", err)
	}
}

func TestMaxConnectionsRefused(t *testing.T) {
	errs := make(chan error, 4)
	connected := make(chan struct{}, 2)
	s := startServer(t, marmot.ServerConfig{MaxConnections: 2, ServerEvents: marmot.ServerEvents{
		OnError:           func(_ marmot.ClientID, err error) { errs <- err },
		OnClientConnected: func(marmot.ClientInfo) { connected <- struct{}{} },
	}})
	dial(t, s.URL(), "")
	dial(t, s.URL(), "")
	recv(t, connected, "1")
	recv(t, connected, "2")
	if s.ConnectionsRemaining() != 0 {
		t.Fatalf("remaining %d", s.ConnectionsRemaining())
	}
	_, resp, err := websocket.DefaultDialer.Dial(s.URL(), nil)
	if err == nil {
		t.Fatal("third connection accepted")
	}
	if resp == nil || resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("response %v", resp)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(body), "capacity") {
		t.Fatalf("body %q", body)
	}
	if err := recv(t, errs, "OnError"); !errors.Is(err, marmot.ErrMaxConnections) {
		t.Fatalf("OnError %v", err)
	}
	if st := s.Stats(); st.RefusedConnections != 1 || st.ClientCount != 2 {
		t.Fatalf("stats %+v", st)
	}
}

// TestDeadPeerDetected uses a peer that never reads, so it never answers a
// ping: the server must close it once it has been silent for KeepAlive, and
// no later than 1.5 × KeepAlive (link.keepAliveTick runs every KeepAlive/2
// and notices input at the next tick, so a deadline can slip by up to half a
// period), plus a margin for a busy machine.
func TestDeadPeerDetected(t *testing.T) {
	const keepAlive = 400 * time.Millisecond
	const margin = 400 * time.Millisecond
	connected := make(chan time.Time, 1)
	type closed struct {
		at     time.Time
		reason *marmot.CloseError
	}
	closes := make(chan closed, 1)
	s := startServer(t, marmot.ServerConfig{KeepAlive: keepAlive, ServerEvents: marmot.ServerEvents{
		OnClientConnected: func(marmot.ClientInfo) { connected <- time.Now() },
		OnClientDisconnected: func(_ marmot.ClientInfo, r *marmot.CloseError) {
			closes <- closed{time.Now(), r}
		},
	}})
	dialed := time.Now()
	dial(t, s.URL(), "") // never read: pings go unanswered
	// Keep-alive starts between these two instants, so each bound is
	// measured from the side that cannot make it fail wrongly.
	start := recv(t, connected, "connect")
	c := recv(t, closes, "disconnect")
	if !errors.Is(c.reason, marmot.ErrKeepAliveTimeout) {
		t.Fatalf("reason %+v", c.reason)
	}
	if d := c.at.Sub(dialed); d < keepAlive {
		t.Fatalf("dead peer closed after %v, before KeepAlive %v", d, keepAlive)
	}
	if d, bound := c.at.Sub(start), keepAlive*3/2+margin; d > bound {
		t.Fatalf("dead peer closed after %v, want at most 1.5 × KeepAlive + %v = %v", d, margin, bound)
	}
}

// TestLivePeerKept checks the other side: a peer that answers pings stays.
func TestLivePeerKept(t *testing.T) {
	// 1s rather than less: the peer must be heard within KeepAlive, and a
	// busy 2-core machine running -race can hold a goroutine off its core
	// for a few hundred milliseconds.
	s := startServer(t, marmot.ServerConfig{KeepAlive: time.Second, ServerEvents: marmot.ServerEvents{
		OnHandleCommand: func(m *marmot.Message) { _ = m.Reply(m.Payload) },
	}})
	pings := make(chan struct{}, 100)
	ws := dial(t, s.URL(), "")
	ws.SetPingHandler(func(data string) error {
		select {
		case pings <- struct{}{}:
		default:
		}
		return ws.WriteControl(websocket.PongMessage, []byte(data), time.Now().Add(time.Second))
	})
	done := make(chan error, 1)
	go func() {
		_, _, err := ws.ReadMessage()
		done <- err
	}()
	// Several keep-alive periods pass, measured in pings answered.
	for range 6 {
		select {
		case <-pings:
		case err := <-done:
			t.Fatalf("live peer dropped while answering pings: %v", err)
		case <-time.After(waitTimeout):
			t.Fatal("timed out waiting for a ping")
		}
	}
	if err := ws.WriteMessage(websocket.TextMessage, []byte("still here")); err != nil {
		t.Fatal(err)
	}
	if err := recv(t, done, "echo"); err != nil {
		t.Fatalf("live peer dropped: %v", err)
	}
}

func TestSlowConsumerClosed(t *testing.T) {
	errs := make(chan error, 16)
	reasons := make(chan *marmot.CloseError, 1)
	ids := make(chan marmot.ClientID, 1)
	s := startServer(t, marmot.ServerConfig{MaxQueueBytes: 256 << 10, WriteTimeout: 2 * time.Second, ServerEvents: marmot.ServerEvents{
		OnClientConnected:    func(ci marmot.ClientInfo) { ids <- ci.ID },
		OnError:              func(_ marmot.ClientID, err error) { errs <- err },
		OnClientDisconnected: func(_ marmot.ClientInfo, r *marmot.CloseError) { reasons <- r },
	}})
	dial(t, s.URL(), "") // never reads
	id := recv(t, ids, "connect")
	chunk := bytes.Repeat([]byte("x"), 64<<10)
	var sendErr error
	for i := 0; i < 20000 && sendErr == nil; i++ { // bounded: 1.25 GiB at most
		sendErr = s.SendToClient(id, chunk)
	}
	if !errors.Is(sendErr, marmot.ErrSlowConsumer) && !errors.Is(sendErr, marmot.ErrConnectionClosed) {
		t.Fatalf("send error %v", sendErr)
	}
	r := recv(t, reasons, "disconnect")
	if r.Code != marmot.CloseSlowConsumer || !errors.Is(r, marmot.ErrSlowConsumer) {
		t.Fatalf("reason %+v", r)
	}
	var sawSlow bool
	for len(errs) > 0 {
		if errors.Is(<-errs, marmot.ErrSlowConsumer) {
			sawSlow = true
		}
	}
	if !sawSlow {
		t.Fatal("OnError never said slow consumer")
	}
	if st := s.Stats(); st.SlowConsumerCloses != 1 {
		t.Fatalf("stats %+v", st)
	}
}

func TestHandlerPanicRestartsActorKeepsSocket(t *testing.T) {
	errs := make(chan error, 4)
	disconnected := make(chan struct{}, 1)
	s := startServer(t, marmot.ServerConfig{ServerEvents: marmot.ServerEvents{
		OnHandleCommand: func(m *marmot.Message) {
			if string(m.Payload) == "boom" {
				panic("boom")
			}
			_ = m.Reply(m.Payload)
		},
		OnError:              func(_ marmot.ClientID, err error) { errs <- err },
		OnClientDisconnected: func(marmot.ClientInfo, *marmot.CloseError) { disconnected <- struct{}{} },
	}})
	ws := dial(t, s.URL(), "")
	if err := ws.WriteMessage(websocket.TextMessage, []byte("one")); err != nil {
		t.Fatal(err)
	}
	if _, got, _ := ws.ReadMessage(); string(got) != "one" {
		t.Fatalf("got %q", got)
	}
	ws.WriteMessage(websocket.TextMessage, []byte("boom"))
	err := recv(t, errs, "OnError")
	var ce *marmot.ClientError
	if !errors.Is(err, marmot.ErrHandlerPanic) || !errors.As(err, &ce) || ce.ClientID != 1 {
		t.Fatalf("OnError %v", err)
	}
	ws.WriteMessage(websocket.TextMessage, []byte("two"))
	if _, got, err := ws.ReadMessage(); string(got) != "two" {
		t.Fatalf("after restart got %q, %v", got, err)
	}
	st := s.Stats()
	if st.ActorRestarts != 1 || st.ClientCount != 1 || st.TotalMessagesReceived != 3 {
		t.Fatalf("stats %+v", st)
	}
	if len(disconnected) != 0 {
		t.Fatal("client was disconnected by a restart")
	}
}

func TestRestartBudgetExhaustedCloses1011(t *testing.T) {
	errs := make(chan error, 8)
	s := startServer(t, marmot.ServerConfig{MaxRestarts: 2, ServerEvents: marmot.ServerEvents{
		OnHandleCommand: func(m *marmot.Message) { panic("always") },
		OnError:         func(_ marmot.ClientID, err error) { errs <- err },
	}})
	ws := dial(t, s.URL(), "")
	for range 3 {
		ws.WriteMessage(websocket.TextMessage, []byte("x"))
		recv(t, errs, "failure")
	}
	if ce := readClose(t, ws); ce.Code != marmot.CloseInternalError {
		t.Fatalf("close %d, want 1011", ce.Code)
	}
	if st := s.Stats(); st.ActorRestarts != 2 {
		t.Fatalf("restarts %d", st.ActorRestarts)
	}
}

func TestGracefulShutdownFlushes(t *testing.T) {
	ids := make(chan marmot.ClientID, 3)
	s, err := marmot.NewServer(marmot.ServerConfig{Addr: "127.0.0.1:0", Logger: quietLogger(),
		ServerEvents: marmot.ServerEvents{OnClientConnected: func(ci marmot.ClientInfo) { ids <- ci.ID }}})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	conns := []*websocket.Conn{dial(t, s.URL(), ""), dial(t, s.URL(), ""), dial(t, s.URL(), protocol.SubprotocolBinary)}
	for range conns {
		recv(t, ids, "connect")
	}
	const queued = 200
	for i := range queued {
		if _, err := s.Broadcast(fmt.Appendf(nil, "m%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	stopped := make(chan error, 1)
	go func() { stopped <- s.Stop(ctxTimeout(t)) }()
	for ci, ws := range conns {
		_ = ws.SetReadDeadline(time.Now().Add(waitTimeout))
		got := 0
		for {
			_, _, err := ws.ReadMessage()
			if err != nil {
				var ce *websocket.CloseError
				if !errors.As(err, &ce) || ce.Code != websocket.CloseGoingAway {
					t.Fatalf("conn %d ended with %v", ci, err)
				}
				break
			}
			got++
		}
		if got != queued {
			t.Fatalf("conn %d received %d of %d before 1001", ci, got, queued)
		}
		ws.WriteMessage(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseGoingAway, ""))
	}
	if err := recv(t, stopped, "Stop"); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	// New connections are refused once stopped.
	if _, _, err := websocket.DefaultDialer.Dial(s.URL(), nil); err == nil {
		t.Fatal("dial after Stop succeeded")
	}
}

func TestMountedInMux(t *testing.T) {
	s, err := marmot.NewServer(marmot.ServerConfig{Logger: quietLogger(), ServerEvents: marmot.ServerEvents{
		OnHandleCommand: func(m *marmot.Message) { _ = m.Reply(append([]byte("mux:"), m.Payload...)) },
	}})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("/custom/ws", s)
	hs := httptest.NewServer(mux)
	ws := dial(t, "ws"+strings.TrimPrefix(hs.URL, "http")+"/custom/ws", "")
	ws.WriteMessage(websocket.TextMessage, []byte("hi"))
	if _, got, err := ws.ReadMessage(); string(got) != "mux:hi" {
		t.Fatalf("got %q %v", got, err)
	}
	if err := s.Stop(ctxTimeout(t)); err != nil {
		t.Fatal(err)
	}
	readClose(t, ws)
	hs.Close()
}

func TestOversizedMessageCloses1009(t *testing.T) {
	reasons := make(chan *marmot.CloseError, 1)
	s := startServer(t, marmot.ServerConfig{MaxMessageSize: 1024, ServerEvents: marmot.ServerEvents{
		OnClientDisconnected: func(_ marmot.ClientInfo, r *marmot.CloseError) { reasons <- r },
		OnHandleCommand:      func(m *marmot.Message) { _ = m.Reply(m.Payload) },
	}})
	ws := dial(t, s.URL(), "")
	ws.WriteMessage(websocket.BinaryMessage, make([]byte, 1024))
	if _, got, err := ws.ReadMessage(); err != nil || len(got) != 1024 {
		t.Fatalf("message at the limit: %d %v", len(got), err)
	}
	ws.WriteMessage(websocket.BinaryMessage, make([]byte, 1025))
	if ce := readClose(t, ws); ce.Code != marmot.CloseMessageTooBig {
		t.Fatalf("close %d", ce.Code)
	}
	if r := recv(t, reasons, "disconnect"); !errors.Is(r, marmot.ErrMessageTooLarge) {
		t.Fatalf("reason %+v", r)
	}
}

func TestMalformedEnvelopeCloses1002(t *testing.T) {
	cases := []struct {
		name, sub string
		typ       int
		frame     []byte
		code      int
	}{
		{"unknown kind", protocol.SubprotocolBinary, websocket.BinaryMessage, []byte{1, 99, 0}, marmot.CloseProtocolError},
		{"bad version", protocol.SubprotocolBinary, websocket.BinaryMessage, []byte{7, 1, 0}, marmot.CloseProtocolError},
		{"truncated", protocol.SubprotocolBinary, websocket.BinaryMessage, []byte{1}, marmot.CloseProtocolError},
		{"text on binary protocol", protocol.SubprotocolBinary, websocket.TextMessage, []byte("hi"), marmot.CloseUnsupportedData},
		{"bad json", protocol.SubprotocolJSON, websocket.TextMessage, []byte("{nope"), marmot.CloseProtocolError},
		{"unknown json kind", protocol.SubprotocolJSON, websocket.TextMessage, []byte(`{"v":1,"kind":"shout"}`), marmot.CloseProtocolError},
		{"invalid utf8 raw text", "", websocket.TextMessage, []byte{0xff, 0xfe}, marmot.CloseInvalidPayload},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			errs := make(chan error, 2)
			s := startServer(t, marmot.ServerConfig{ServerEvents: marmot.ServerEvents{
				OnError: func(_ marmot.ClientID, err error) { errs <- err },
			}})
			ws := dial(t, s.URL(), tc.sub)
			if ws.Subprotocol() != tc.sub {
				t.Fatalf("negotiated %q", ws.Subprotocol())
			}
			ws.WriteMessage(tc.typ, tc.frame)
			if ce := readClose(t, ws); ce.Code != tc.code {
				t.Fatalf("close %d (%s), want %d", ce.Code, ce.Text, tc.code)
			}
			recv(t, errs, "OnError")
		})
	}
}

// TestEnvelopeCommandsRaw speaks marmot.v1 by hand, as a peer following
// docs/PROTOCOL.md would.
func TestEnvelopeCommandsRaw(t *testing.T) {
	got := make(chan *marmot.Message, 4)
	s := startServer(t, marmot.ServerConfig{ServerEvents: marmot.ServerEvents{
		OnHandleCommand: func(m *marmot.Message) {
			got <- m
			if m.IsRequest() {
				if m.Name == "fail" {
					_ = m.ReplyError(42, "nope")
					return
				}
				_ = m.Reply(append([]byte("re:"), m.Payload...))
			}
		},
	}})
	ws := dial(t, s.URL(), protocol.SubprotocolBinary)
	send := func(e *protocol.Envelope) {
		b, err := protocol.Binary.Append(nil, e)
		if err != nil {
			t.Fatal(err)
		}
		ws.WriteMessage(websocket.BinaryMessage, b)
	}
	read := func() protocol.Envelope {
		_, b, err := ws.ReadMessage()
		if err != nil {
			t.Fatal(err)
		}
		var e protocol.Envelope
		if err := protocol.Binary.Decode(b, &e); err != nil {
			t.Fatal(err)
		}
		return e
	}
	send(&protocol.Envelope{Kind: protocol.KindCommand, Name: "chat", Payload: []byte("hello")})
	if m := recv(t, got, "command"); m.Name != "chat" || string(m.Payload) != "hello" || m.IsRequest() {
		t.Fatalf("command %+v", m)
	}
	send(&protocol.Envelope{Kind: protocol.KindRequest, ID: 7, Name: "echo", Payload: []byte("x")})
	recv(t, got, "request")
	if e := read(); e.Kind != protocol.KindReply || e.ID != 7 || string(e.Payload) != "re:x" {
		t.Fatalf("reply %+v", e)
	}
	send(&protocol.Envelope{Kind: protocol.KindRequest, ID: 8, Name: "fail"})
	recv(t, got, "request")
	if e := read(); e.Kind != protocol.KindError || e.ID != 8 || e.Code != 42 || string(e.Payload) != "nope" {
		t.Fatalf("error reply %+v", e)
	}
}

// TestReplyKeepsOrderWithQueuedSends: a reply may be written at once, but
// never ahead of frames the same handler queued before it.
func TestReplyKeepsOrderWithQueuedSends(t *testing.T) {
	var srv *marmot.Server
	srv = startServer(t, marmot.ServerConfig{ServerEvents: marmot.ServerEvents{
		OnHandleCommand: func(m *marmot.Message) {
			switch string(m.Payload) {
			case "send-then-reply":
				_ = srv.SendToClient(m.ClientID, []byte("1: sent"))
				_ = m.Reply([]byte("2: reply"))
			case "reply-then-send":
				_ = m.Reply([]byte("1: reply"))
				_ = srv.SendToClient(m.ClientID, []byte("2: sent"))
			}
		},
	}})
	ws := dial(t, srv.URL(), "")
	_ = ws.SetReadDeadline(time.Now().Add(waitTimeout))
	for _, order := range []string{"send-then-reply", "reply-then-send", "send-then-reply"} {
		if err := ws.WriteMessage(websocket.TextMessage, []byte(order)); err != nil {
			t.Fatal(err)
		}
		for _, want := range []string{"1: ", "2: "} {
			_, got, err := ws.ReadMessage()
			if err != nil {
				t.Fatal(err)
			}
			if !strings.HasPrefix(string(got), want) {
				t.Fatalf("%s: got %q, want it to start with %q", order, got, want)
			}
		}
	}
}

// TestStopReturnsWithStuckHandler: Stop honours its context even when a
// handler never returns; that connection's actor finishes once it does.
func TestStopReturnsWithStuckHandler(t *testing.T) {
	release := make(chan struct{})
	entered := make(chan struct{}, 1)
	s, err := marmot.NewServer(marmot.ServerConfig{Addr: "127.0.0.1:0", Logger: quietLogger(), ServerEvents: marmot.ServerEvents{
		OnHandleCommand: func(*marmot.Message) {
			entered <- struct{}{}
			<-release
		},
	}})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	ws := dial(t, s.URL(), "")
	if err := ws.WriteMessage(websocket.TextMessage, []byte("block")); err != nil {
		t.Fatal(err)
	}
	recv(t, entered, "the handler to start")
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	stopped := make(chan error, 1)
	go func() { stopped <- s.Stop(ctx) }()
	if err := recv(t, stopped, "Stop to return"); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Stop = %v, want context.DeadlineExceeded", err)
	}
	close(release) // the actor can finish now; goleak checks that it does
}
