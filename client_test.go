package marmot_test

import (
	"context"
	"errors"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/marmotws/marmot"
	"github.com/marmotws/marmot/protocol"
)

func echoServer(t *testing.T, cfg marmot.ServerConfig) *marmot.Server {
	cfg.OnHandleCommand = func(m *marmot.Message) {
		switch {
		case m.IsRequest() && m.Name == "fail":
			_ = m.ReplyError(7, "failed on purpose")
		case m.IsRequest() && m.Name == "silent":
		default:
			_ = m.Reply(m.Payload)
		}
	}
	return startServer(t, cfg)
}

func TestClientRequestReplyBothEnvelopes(t *testing.T) {
	s := echoServer(t, marmot.ServerConfig{})
	for _, sub := range []string{protocol.SubprotocolBinary, protocol.SubprotocolJSON} {
		t.Run(sub, func(t *testing.T) {
			got := make(chan *marmot.Message, 4)
			c := newClient(t, marmot.ClientConfig{URL: s.URL(), Subprotocol: sub, ClientEvents: marmot.ClientEvents{
				OnHandleCommand: func(m *marmot.Message) { got <- m },
			}})
			ctx := ctxTimeout(t)
			if err := c.Connect(ctx); err != nil {
				t.Fatal(err)
			}
			reply, err := c.Request(ctx, "echo", []byte("ping"))
			if err != nil || string(reply) != "ping" {
				t.Fatalf("Request = %q, %v", reply, err)
			}
			_, err = c.Request(ctx, "fail", nil)
			var re *marmot.RemoteError
			if !errors.As(err, &re) || re.Code != 7 || re.Message != "failed on purpose" {
				t.Fatalf("error reply %v", err)
			}
			short, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
			defer cancel()
			if _, err := c.Request(short, "silent", nil); !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("unanswered request: %v", err)
			}
			if err := c.SendCommand("chat", []byte("hello")); err != nil {
				t.Fatal(err)
			}
			if m := recv(t, got, "command echo"); m.Kind != protocol.KindCommand || m.Name != "chat" || string(m.Payload) != "hello" {
				t.Fatalf("command echo %+v", m)
			}
			if err := c.Send([]byte("data")); err != nil {
				t.Fatal(err)
			}
			if m := recv(t, got, "data echo"); m.Kind != protocol.KindData || string(m.Payload) != "data" {
				t.Fatalf("data echo %+v", m)
			}
		})
	}
}

func TestClientRawModeAndStats(t *testing.T) {
	s := echoServer(t, marmot.ServerConfig{})
	got := make(chan *marmot.Message, 4)
	sent := make(chan []byte, 4)
	c := newClient(t, marmot.ClientConfig{URL: s.URL(), ClientEvents: marmot.ClientEvents{
		OnHandleCommand: func(m *marmot.Message) { got <- m },
		OnDataSent:      func(b []byte) { sent <- b },
	}})
	if err := c.SendCommand("x", nil); !errors.Is(err, marmot.ErrNotConnected) {
		t.Fatalf("send while disconnected: %v", err)
	}
	if err := c.Connect(ctxTimeout(t)); err != nil {
		t.Fatal(err)
	}
	if err := c.SendCommand("x", nil); !errors.Is(err, marmot.ErrRawMode) {
		t.Fatalf("command in raw mode: %v", err)
	}
	if _, err := c.Request(ctxTimeout(t), "x", nil); !errors.Is(err, marmot.ErrRawMode) {
		t.Fatalf("request in raw mode: %v", err)
	}
	if err := c.SendRaw(marmot.BinaryMessage, []byte("bin")); err != nil {
		t.Fatal(err)
	}
	if m := recv(t, got, "echo"); m.Type != marmot.BinaryMessage || string(m.Payload) != "bin" {
		t.Fatalf("echo %+v", m)
	}
	if string(recv(t, sent, "OnDataSent")) != "bin" {
		t.Fatal("OnDataSent payload")
	}
	st := c.Stats()
	if st.BytesSent != 3 || st.BytesReceived != 3 || st.MessagesSent != 1 || st.MessagesReceived != 1 {
		t.Fatalf("stats %+v", st)
	}
	if c.StateDescription() != "Connected to server" || !c.Connected() {
		t.Fatalf("state %v %q", c.State(), c.StateDescription())
	}
}

func TestClientConnectErrors(t *testing.T) {
	// Nothing listens: connect fails fast with a clear error, state Error.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	errs := make(chan error, 1)
	c := newClient(t, marmot.ClientConfig{URL: "ws://" + addr + "/websocket", ClientEvents: marmot.ClientEvents{
		OnError: func(err error) { errs <- err },
	}})
	if err := c.Connect(ctxTimeout(t)); err == nil || !strings.Contains(err.Error(), addr) {
		t.Fatalf("connect to closed port: %v", err)
	}
	// Returned to the caller, the error is not reported to OnError too
	// (it would run before Connect returns).
	if len(errs) != 0 {
		t.Fatalf("the connect error was returned and also reported: %v", <-errs)
	}
	if c.State() != marmot.StateError {
		t.Fatalf("state %v", c.State())
	}

	// A server that accepts TCP but never answers the handshake: the
	// ConnectionTimeout is honoured (the seed ignores it). Connect gets a
	// context without a deadline, so only ConnectionTimeout can end the
	// attempt; the guard timeout only catches a hang.
	silent, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		if conn, err := silent.Accept(); err == nil {
			accepted <- conn
		}
	}()
	const connTimeout = 300 * time.Millisecond
	const margin = time.Second // a busy 2-core machine running -race
	c2 := newClient(t, marmot.ClientConfig{URL: "ws://" + silent.Addr().String() + "/", ConnectionTimeout: connTimeout})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	connectErr := make(chan error, 1)
	start := time.Now()
	go func() { connectErr <- c2.Connect(ctx) }()
	err = recv(t, connectErr, "Connect to a silent server")
	elapsed := time.Since(start)
	conn := recv(t, accepted, "accept")
	conn.Close()
	if err == nil {
		t.Fatal("handshake with a silent server succeeded")
	}
	if ctx.Err() != nil || errors.Is(err, context.Canceled) {
		t.Fatalf("Connect ended by its context: %v", err)
	}
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("silent server: %v, want a timeout", err)
	}
	if elapsed < connTimeout || elapsed > connTimeout+margin {
		t.Fatalf("silent server: failed after %v, want ConnectionTimeout %v (+ %v)", elapsed, connTimeout, margin)
	}

	// A refused upgrade surfaces the HTTP status.
	s := startServer(t, marmot.ServerConfig{MaxConnections: 1})
	c3 := newClient(t, marmot.ClientConfig{URL: s.URL()})
	if err := c3.Connect(ctxTimeout(t)); err != nil {
		t.Fatal(err)
	}
	c4 := newClient(t, marmot.ClientConfig{URL: s.URL()})
	if err := c4.Connect(ctxTimeout(t)); err == nil || !strings.Contains(err.Error(), "503") {
		t.Fatalf("refused connect: %v", err)
	}
}

type reconnectEvents struct {
	reconnecting chan [2]int64 // attempt, delay in ms
	failed       chan int
	connected    chan struct{}
	disconnected chan *marmot.CloseError
	errs         chan error
	states       chan marmot.ClientState
}

func newReconnectEvents() (*reconnectEvents, marmot.ClientEvents) {
	r := &reconnectEvents{
		reconnecting: make(chan [2]int64, 64),
		failed:       make(chan int, 64),
		connected:    make(chan struct{}, 8),
		disconnected: make(chan *marmot.CloseError, 8),
		errs:         make(chan error, 64),
		states:       make(chan marmot.ClientState, 128),
	}
	return r, marmot.ClientEvents{
		OnReconnecting:    func(a int, d time.Duration) { r.reconnecting <- [2]int64{int64(a), d.Milliseconds()} },
		OnReconnectFailed: func(a int, err error) { r.failed <- a },
		OnConnect:         func() { r.connected <- struct{}{} },
		OnDisconnect:      func(ce *marmot.CloseError) { r.disconnected <- ce },
		OnError:           func(err error) { r.errs <- err },
		OnStateChange:     func(_, n marmot.ClientState) { r.states <- n },
	}
}

// drain empties every channel.
func (r *reconnectEvents) drain() {
	for {
		select {
		case <-r.reconnecting:
		case <-r.failed:
		case <-r.connected:
		case <-r.disconnected:
		case <-r.errs:
		case <-r.states:
		default:
			return
		}
	}
}

// statesNow returns the state changes received so far.
func (r *reconnectEvents) statesNow() []marmot.ClientState {
	var out []marmot.ClientState
	for {
		select {
		case s := <-r.states:
			out = append(out, s)
		default:
			return out
		}
	}
}

// restartableServer can be stopped and started again on the same port.
type restartableServer struct {
	t    *testing.T
	addr string
	cfg  marmot.ServerConfig // for every start; Addr is addr
	s    *marmot.Server
}

func (r *restartableServer) start() {
	cfg := r.cfg
	cfg.Addr = r.addr
	if cfg.Logger == nil {
		cfg.Logger = quietLogger()
	}
	s, err := marmot.NewServer(cfg)
	if err != nil {
		r.t.Fatal(err)
	}
	if err := s.Start(context.Background()); err != nil {
		r.t.Fatal(err)
	}
	r.addr = s.Addr().String()
	r.s = s
}

func (r *restartableServer) stop() {
	if r.s != nil {
		_ = r.s.Stop(ctxTimeout(r.t))
		r.s = nil
	}
}

func TestReconnectFixedAfterServerRestart(t *testing.T) {
	srv := &restartableServer{t: t, addr: "127.0.0.1:0"}
	srv.start()
	t.Cleanup(srv.stop)
	ev, events := newReconnectEvents()
	c := newClient(t, marmot.ClientConfig{URL: srv.s.URL(), AutoReconnect: true,
		ReconnectStrategy: marmot.ReconnectFixed, ReconnectInterval: 30 * time.Millisecond, ClientEvents: events})
	if err := c.Connect(ctxTimeout(t)); err != nil {
		t.Fatal(err)
	}
	recv(t, ev.connected, "first connect")
	srv.stop()
	if ce := recv(t, ev.disconnected, "disconnect"); ce.Code != marmot.CloseGoingAway || !ce.ByPeer {
		t.Fatalf("disconnect %+v", ce)
	}
	// Three attempts fail while the server is down, all with the same delay.
	for i := 1; i <= 3; i++ {
		a := recv(t, ev.reconnecting, "OnReconnecting")
		if a[0] != int64(i) || a[1] != 30 {
			t.Fatalf("attempt %d: got %v", i, a)
		}
		if f := recv(t, ev.failed, "OnReconnectFailed"); f != i {
			t.Fatalf("failed attempt %d, want %d", f, i)
		}
	}
	if !c.Reconnecting() {
		t.Fatalf("state %v", c.State())
	}
	srv.start()
	recv(t, ev.connected, "reconnect")
	if !c.Connected() || c.Stats().Reconnects < 3 {
		t.Fatalf("state %v stats %+v", c.State(), c.Stats())
	}
	// The callbacks run on the client's actor, so every event of the
	// restart is in the channels by the time OnConnect has run: drain them,
	// so that what comes next belongs to the Disconnect.
	ev.drain()
	reconnects := c.Stats().Reconnects

	// A user Disconnect never reconnects.
	if err := c.Disconnect(ctxTimeout(t)); err != nil {
		t.Fatal(err)
	}
	if ce := recv(t, ev.disconnected, "user disconnect"); ce.Code != marmot.CloseNormal || ce.ByPeer {
		t.Fatalf("user disconnect %+v", ce)
	}
	if c.State() != marmot.StateDisconnected {
		t.Fatalf("state after Disconnect %v", c.State())
	}
	// A reconnect would come within one ReconnectInterval (30ms); give it
	// ten. Nothing signals "no reconnect", so this one wait is a window, not
	// synchronisation. A second Disconnect then passes through the client's
	// actor, after anything the window let in.
	time.Sleep(10 * 30 * time.Millisecond)
	if err := c.Disconnect(ctxTimeout(t)); err != nil {
		t.Fatal(err)
	}
	want := []marmot.ClientState{marmot.StateDisconnecting, marmot.StateDisconnected}
	if got := ev.statesNow(); !slices.Equal(got, want) {
		t.Fatalf("states after Disconnect %v, want %v", got, want)
	}
	if n := len(ev.reconnecting) + len(ev.failed) + len(ev.connected) + len(ev.disconnected); n != 0 {
		t.Fatalf("%d reconnect events after Disconnect (reconnecting %d, failed %d, connected %d, disconnected %d)",
			n, len(ev.reconnecting), len(ev.failed), len(ev.connected), len(ev.disconnected))
	}
	if st := c.Stats(); st.Reconnects != reconnects {
		t.Fatalf("reconnect attempts %d after Disconnect, %d before", st.Reconnects, reconnects)
	}
	// The server saw the reconnect and nothing after it.
	if st := srv.s.Stats(); st.TotalConnections != 1 {
		t.Fatalf("the restarted server accepted %d connections, want 1", st.TotalConnections)
	}
	if err := c.Send([]byte("x")); !errors.Is(err, marmot.ErrNotConnected) {
		t.Fatalf("Send after Disconnect: %v", err)
	}
}

func TestReconnectExponentialGivesUp(t *testing.T) {
	srv := &restartableServer{t: t, addr: "127.0.0.1:0"}
	srv.start()
	t.Cleanup(srv.stop)
	ev, events := newReconnectEvents()
	c := newClient(t, marmot.ClientConfig{URL: srv.s.URL(), AutoReconnect: true,
		ReconnectStrategy: marmot.ReconnectExponential, ReconnectInterval: 10 * time.Millisecond,
		ReconnectJitter: -1, MaxReconnectAttempts: 4, ClientEvents: events})
	if err := c.Connect(ctxTimeout(t)); err != nil {
		t.Fatal(err)
	}
	srv.stop()
	want := []int64{10, 20, 40, 80}
	for i, d := range want {
		a := recv(t, ev.reconnecting, "OnReconnecting")
		if a[0] != int64(i+1) || a[1] != d {
			t.Fatalf("attempt %d: got attempt %d delay %dms, want %dms", i+1, a[0], a[1], d)
		}
		recv(t, ev.failed, "OnReconnectFailed")
	}
	for {
		err := recv(t, ev.errs, "ErrReconnectExhausted")
		if errors.Is(err, marmot.ErrReconnectExhausted) {
			break
		}
	}
	if c.State() != marmot.StateError {
		t.Fatalf("state %v, want error", c.State())
	}
	if len(ev.reconnecting) != 0 {
		t.Fatalf("attempts beyond MaxReconnectAttempts: %d", len(ev.reconnecting))
	}
	// The user can still connect again by hand.
	srv.start()
	if err := c.Connect(ctxTimeout(t)); err != nil {
		t.Fatalf("manual connect after giving up: %v", err)
	}
}

func TestNoReconnectOnTerminalClose(t *testing.T) {
	ids := make(chan marmot.ClientID, 1)
	s := startServer(t, marmot.ServerConfig{ServerEvents: marmot.ServerEvents{
		OnClientConnected: func(ci marmot.ClientInfo) { ids <- ci.ID },
	}})
	ev, events := newReconnectEvents()
	c := newClient(t, marmot.ClientConfig{URL: s.URL(), AutoReconnect: true, ReconnectInterval: 10 * time.Millisecond, ClientEvents: events})
	if err := c.Connect(ctxTimeout(t)); err != nil {
		t.Fatal(err)
	}
	id := recv(t, ids, "connect")
	if err := s.Disconnect(id, 4500, "banned"); err != nil {
		t.Fatal(err)
	}
	if ce := recv(t, ev.disconnected, "disconnect"); ce.Code != 4500 || ce.Text != "banned" {
		t.Fatalf("close %+v", ce)
	}
	for st := recv(t, ev.states, "state"); st != marmot.StateDisconnected; st = recv(t, ev.states, "state") {
		if st == marmot.StateReconnecting {
			t.Fatal("reconnecting after a terminal close code")
		}
	}
}

func TestClientHandlerPanicRestartsActor(t *testing.T) {
	s := echoServer(t, marmot.ServerConfig{})
	got := make(chan string, 4)
	errs := make(chan error, 4)
	c := newClient(t, marmot.ClientConfig{URL: s.URL(), ClientEvents: marmot.ClientEvents{
		OnHandleCommand: func(m *marmot.Message) {
			if string(m.Payload) == "boom" {
				panic("client boom")
			}
			got <- string(m.Payload)
		},
		OnError: func(err error) { errs <- err },
	}})
	if err := c.Connect(ctxTimeout(t)); err != nil {
		t.Fatal(err)
	}
	c.Send([]byte("boom"))
	if err := recv(t, errs, "OnError"); !errors.Is(err, marmot.ErrHandlerPanic) {
		t.Fatalf("OnError %v", err)
	}
	c.Send([]byte("after"))
	if g := recv(t, got, "echo after restart"); g != "after" {
		t.Fatalf("got %q", g)
	}
	if !c.Connected() {
		t.Fatalf("state %v", c.State())
	}
}

// TestRequestFromClientCallback calls Request inside client callbacks: the
// reply must not wait for the (busy) ClientActor. Without awaitReply's write
// from the callback, or the reader handing the reply over, both requests
// would wait for their deadline.
func TestRequestFromClientCallback(t *testing.T) {
	s := echoServer(t, marmot.ServerConfig{})
	results := make(chan string, 2)
	var c *marmot.Client
	c = newClient(t, marmot.ClientConfig{URL: s.URL(), Subprotocol: protocol.SubprotocolBinary, ClientEvents: marmot.ClientEvents{
		OnConnect: func() {
			r, err := c.Request(ctxTimeout(t), "echo", []byte("from OnConnect"))
			if err != nil {
				results <- err.Error()
				return
			}
			results <- string(r)
		},
		OnHandleCommand: func(m *marmot.Message) {
			r, err := c.Request(ctxTimeout(t), "echo", []byte("from handler"))
			if err != nil {
				results <- err.Error()
				return
			}
			results <- string(r)
		},
	}})
	if err := c.Connect(ctxTimeout(t)); err != nil {
		t.Fatal(err)
	}
	if r := recv(t, results, "OnConnect request"); r != "from OnConnect" {
		t.Fatalf("OnConnect: %s", r)
	}
	if err := c.SendCommand("poke", nil); err != nil {
		t.Fatal(err)
	}
	if r := recv(t, results, "handler request"); r != "from handler" {
		t.Fatalf("handler: %s", r)
	}
}
