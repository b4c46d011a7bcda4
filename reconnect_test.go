package marmot_test

import (
	"context"
	"errors"
	"net"
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

// wsServer is a bare gorilla server on loopback whose every accepted
// connection is handed to serve; it plays the misbehaving servers the
// reconnect tests need. upgrades counts accepted upgrades.
type wsServer struct {
	*httptest.Server
	upgrades atomic.Int64
}

func newWSServer(t *testing.T, serve func(n int64, ws *websocket.Conn)) *wsServer {
	t.Helper()
	s := &wsServer{}
	up := websocket.Upgrader{Subprotocols: []string{"marmot.v1", "marmot.json.v1"}}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ws, err := up.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		serve(s.upgrades.Add(1), ws)
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *wsServer) url() string { return "ws" + strings.TrimPrefix(s.URL, "http") + "/" }

// TestCloseErrorSaysWhatHappened checks the text of the CloseError the
// client reports for each way a connection ends.
func TestCloseErrorSaysWhatHappened(t *testing.T) {
	// The server drops the first connection without a close frame and
	// closes the second with 4001.
	srv := newWSServer(t, func(n int64, ws *websocket.Conn) {
		if n == 2 {
			_ = ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(4001, "go away"), time.Now().Add(time.Second))
			_, _, _ = ws.ReadMessage() // the client's answer
		}
		_ = ws.Close()
	})
	ev, events := newReconnectEvents()
	c := newClient(t, marmot.ClientConfig{URL: srv.url(), ClientEvents: events})
	for _, want := range []struct {
		code   int
		byPeer bool
		text   string
	}{
		{marmot.CloseAbnormal, true, "marmot: connection lost without a close frame (1006)"},
		{4001, true, "marmot: closed by the server with code 4001 (go away)"},
	} {
		if err := c.Connect(ctxTimeout(t)); err != nil {
			t.Fatal(err)
		}
		ce := recv(t, ev.disconnected, "OnDisconnect")
		if ce.Code != want.code || ce.ByPeer != want.byPeer || !strings.HasPrefix(ce.Error(), want.text) {
			t.Fatalf("got %d %v %q, want %d %v %q", ce.Code, ce.ByPeer, ce.Error(), want.code, want.byPeer, want.text)
		}
		var as *marmot.CloseError
		if !errors.As(error(ce), &as) {
			t.Fatal("errors.As")
		}
	}

	// A user Disconnect.
	s := echoServer(t, marmot.ServerConfig{})
	ev2, events2 := newReconnectEvents()
	c2 := newClient(t, marmot.ClientConfig{URL: s.URL(), ClientEvents: events2})
	if err := c2.Connect(ctxTimeout(t)); err != nil {
		t.Fatal(err)
	}
	if err := c2.Disconnect(ctxTimeout(t)); err != nil {
		t.Fatal(err)
	}
	ce := recv(t, ev2.disconnected, "OnDisconnect")
	if ce.Error() != "marmot: you disconnected (1000)" || !errors.Is(ce, marmot.ErrDisconnected) {
		t.Fatalf("user disconnect: %q", ce.Error())
	}

	// A close by this side, with its cause.
	local := &marmot.CloseError{Code: marmot.CloseSlowConsumer, Text: "slow consumer", Err: marmot.ErrSlowConsumer}
	if got := local.Error(); got != "marmot: closed by this side with code 4008 (slow consumer): "+marmot.ErrSlowConsumer.Error() {
		t.Fatalf("local close: %q", got)
	}
	if !errors.Is(local, marmot.ErrSlowConsumer) {
		t.Fatal("errors.Is through CloseError")
	}
}

// drain reads until the connection fails, so the server side sees the
// client's close; pings go unanswered when mute is set.
func drain(ws *websocket.Conn, mute bool) {
	if mute {
		ws.SetPingHandler(func(string) error { return nil })
	}
	_ = ws.SetReadDeadline(time.Now().Add(waitTimeout))
	for {
		if _, _, err := ws.ReadMessage(); err != nil {
			_ = ws.Close()
			return
		}
	}
}

// nextSettled returns the first state after a connection ended that says
// whether the client reconnects: StateReconnecting or a final one.
func nextSettled(t *testing.T, ev *reconnectEvents) marmot.ClientState {
	t.Helper()
	for {
		switch st := recv(t, ev.states, "state change"); st {
		case marmot.StateReconnecting, marmot.StateDisconnected, marmot.StateError:
			return st
		}
	}
}

// TestNoReconnectAfterLocalProtocolError: a connection the client itself
// closes with a terminal code (here 1002 for a message it cannot decode,
// 1009 for one over MaxMessageSize) is not reconnected, as when the server
// closes with that code: every new connection would fail the same way.
func TestNoReconnectAfterLocalProtocolError(t *testing.T) {
	for _, tc := range []struct {
		name  string
		sub   string
		frame []byte
		code  int
		cause error
	}{
		// What an encrypted server's ServerHello looks like to a client
		// without the key.
		{"undecodable", "marmot.v1", []byte("MRSH\x01 not an envelope"), marmot.CloseProtocolError, protocol.ErrUnsupportedVersion},
		{"too big", "", make([]byte, 4096), marmot.CloseMessageTooBig, marmot.ErrMessageTooLarge},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := newWSServer(t, func(_ int64, ws *websocket.Conn) {
				_ = ws.WriteMessage(websocket.BinaryMessage, tc.frame)
				drain(ws, false)
			})
			ev, events := newReconnectEvents()
			c := newClient(t, marmot.ClientConfig{URL: srv.url(), Subprotocol: tc.sub, AutoReconnect: true,
				ReconnectInterval: 10 * time.Millisecond, MaxMessageSize: 1024, ClientEvents: events})
			if err := c.Connect(ctxTimeout(t)); err != nil {
				t.Fatal(err)
			}
			ce := recv(t, ev.disconnected, "OnDisconnect")
			if ce.Code != tc.code || ce.ByPeer || !errors.Is(ce, tc.cause) {
				t.Fatalf("close %+v (%v)", ce, ce)
			}
			if st := nextSettled(t, ev); st != marmot.StateDisconnected {
				t.Fatalf("state %v after a local %d close, want disconnected", st, tc.code)
			}
			if n := srv.upgrades.Load(); n != 1 || len(ev.reconnecting) != 0 {
				t.Fatalf("%d upgrades, %d reconnect attempts", n, len(ev.reconnecting))
			}
		})
	}
}

// TestReconnectAfterKeepAliveTimeout: a connection lost to silence is not
// a terminal close, though the client closed it.
func TestReconnectAfterKeepAliveTimeout(t *testing.T) {
	srv := newWSServer(t, func(_ int64, ws *websocket.Conn) { drain(ws, true) })
	ev, events := newReconnectEvents()
	c := newClient(t, marmot.ClientConfig{URL: srv.url(), AutoReconnect: true, KeepAlive: 200 * time.Millisecond,
		ReconnectInterval: 10 * time.Millisecond, ClientEvents: events})
	if err := c.Connect(ctxTimeout(t)); err != nil {
		t.Fatal(err)
	}
	ce := recv(t, ev.disconnected, "OnDisconnect")
	if ce.Code != marmot.CloseAbnormal || ce.ByPeer || !errors.Is(ce, marmot.ErrKeepAliveTimeout) {
		t.Fatalf("close %+v (%v)", ce, ce)
	}
	if st := nextSettled(t, ev); st != marmot.StateReconnecting {
		t.Fatalf("state %v after a keep-alive timeout, want reconnecting", st)
	}
	if a := recv(t, ev.reconnecting, "OnReconnecting"); a != [2]int64{1, 10} {
		t.Fatalf("OnReconnecting %v", a)
	}
}

// exhausted waits for OnError's ErrReconnectExhausted and checks the client
// gave up.
func exhausted(t *testing.T, c *marmot.Client, ev *reconnectEvents) {
	t.Helper()
	for {
		if err := recv(t, ev.errs, "ErrReconnectExhausted"); errors.Is(err, marmot.ErrReconnectExhausted) {
			break
		}
	}
	if c.State() != marmot.StateError {
		t.Fatalf("state %v after giving up, want error", c.State())
	}
	if len(ev.reconnecting) != 0 {
		t.Fatalf("%d attempts beyond MaxReconnectAttempts", len(ev.reconnecting))
	}
}

// TestFlappingServerBacksOff: a server that accepts every connection and
// drops it at once never gives a healthy connection, so the attempts and
// delays go on growing as if each connect had failed, and
// MaxReconnectAttempts ends it (the attempt counter used to be reset by
// every connection that opened: a reconnect every interval, forever).
func TestFlappingServerBacksOff(t *testing.T) {
	for _, tc := range []struct {
		name     string
		strategy marmot.ReconnectStrategy
		delays   []int64
	}{
		{"exponential", marmot.ReconnectExponential, []int64{10, 20, 40, 80}},
		{"fixed", marmot.ReconnectFixed, []int64{10, 10, 10, 10}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// Dropped without a close frame, as by a crashing server.
			srv := newWSServer(t, func(_ int64, ws *websocket.Conn) { _ = ws.Close() })
			ev, events := newReconnectEvents()
			c := newClient(t, marmot.ClientConfig{URL: srv.url(), AutoReconnect: true,
				ReconnectStrategy: tc.strategy, ReconnectInterval: 10 * time.Millisecond, ReconnectJitter: -1,
				MaxReconnectAttempts: len(tc.delays), HealthyAfter: time.Minute, ClientEvents: events})
			if err := c.Connect(ctxTimeout(t)); err != nil {
				t.Fatal(err)
			}
			for i, d := range tc.delays {
				recv(t, ev.disconnected, "OnDisconnect")
				if a := recv(t, ev.reconnecting, "OnReconnecting"); a != [2]int64{int64(i + 1), d} {
					t.Fatalf("attempt %d: got attempt %d delay %dms, want %dms", i+1, a[0], a[1], d)
				}
				recv(t, ev.connected, "OnConnect") // each attempt connects...
			}
			recv(t, ev.disconnected, "OnDisconnect") // ...and is dropped
			exhausted(t, c, ev)
			if n := srv.upgrades.Load(); n != int64(len(tc.delays)+1) {
				t.Fatalf("%d upgrades, want %d", n, len(tc.delays)+1)
			}
			if len(ev.failed) != 0 {
				t.Fatalf("OnReconnectFailed for %d attempts that connected", len(ev.failed))
			}
		})
	}
}

// TestHealthyConnectionResetsBackoff: once a connection has stayed up for
// HealthyAfter, the next reconnect starts over from attempt 1 and the first
// delay.
func TestHealthyConnectionResetsBackoff(t *testing.T) {
	const healthyAfter = 100 * time.Millisecond
	drop := make(chan struct{})
	var dropOnce sync.Once
	dropNow := func() { dropOnce.Do(func() { close(drop) }) }
	t.Cleanup(dropNow) // a failing test must not leave the handler waiting
	// Connections 1-3 drop at once; the 4th stays until the test drops it;
	// the 5th drops at once again.
	srv := newWSServer(t, func(n int64, ws *websocket.Conn) {
		if n == 4 {
			<-drop
		}
		_ = ws.Close()
	})
	ev, events := newReconnectEvents()
	c := newClient(t, marmot.ClientConfig{URL: srv.url(), AutoReconnect: true,
		ReconnectStrategy: marmot.ReconnectExponential, ReconnectInterval: 10 * time.Millisecond, ReconnectJitter: -1,
		MaxReconnectAttempts: 3, HealthyAfter: healthyAfter, ClientEvents: events})
	if err := c.Connect(ctxTimeout(t)); err != nil {
		t.Fatal(err)
	}
	recv(t, ev.connected, "OnConnect")
	for i, d := range []int64{10, 20, 40} {
		if a := recv(t, ev.reconnecting, "OnReconnecting"); a != [2]int64{int64(i + 1), d} {
			t.Fatalf("attempt %d: got %v, want delay %dms", i+1, a, d)
		}
		recv(t, ev.connected, "OnConnect")
	}
	// Connection 4 is up: let it become healthy (this wait is the
	// behaviour under test, not a synchronisation), then drop it.
	<-time.After(healthyAfter)
	dropNow()
	if a := recv(t, ev.reconnecting, "OnReconnecting"); a != [2]int64{1, 10} {
		t.Fatalf("after a healthy connection: got %v, want attempt 1 after 10ms", a)
	}
	recv(t, ev.connected, "OnConnect") // connection 5, dropped at once
	if a := recv(t, ev.reconnecting, "OnReconnecting"); a != [2]int64{2, 20} {
		t.Fatalf("got %v, want attempt 2 after 20ms", a)
	}
	if err := c.Disconnect(ctxTimeout(t)); err != nil {
		t.Fatal(err)
	}
}

// TestEncryptionMismatchRefusedAtUpgrade: a client whose encryption does not
// match the server's is refused with HTTP 400 before the upgrade, whatever
// its subprotocol, and reports a clear, errors.Is-able error without
// retrying. (A plain marmot.v1 client used to be upgraded by an encrypted
// server, fail on the ServerHello with 1002 and reconnect forever.)
func TestEncryptionMismatchRefusedAtUpgrade(t *testing.T) {
	secure := marmot.EncryptionConfig{EncryptionEnabled: true, EncryptionKey: testKey, EncryptionMode: "gcm"}
	compat := secure
	compat.EncryptionProfile = "compat"
	plain := marmot.EncryptionConfig{}
	for _, tc := range []struct {
		name           string
		server, client marmot.EncryptionConfig
		sub            string
		text           string
		required       bool
	}{
		{"plain raw client, secure server", secure, plain, "", "server requires encryption (secure profile)", true},
		{"plain binary client, secure server", secure, plain, protocol.SubprotocolBinary, "server requires encryption (secure profile)", true},
		{"plain JSON client, secure server", secure, plain, protocol.SubprotocolJSON, "server requires encryption (secure profile)", true},
		{"plain binary client, compat server", compat, plain, protocol.SubprotocolBinary, "server requires encryption (compat profile)", true},
		{"secure client, plain server", plain, secure, "", "server does not encrypt", false},
		{"compat client, plain server", plain, compat, "", "server does not encrypt", false},
		{"compat client, secure server", secure, compat, "", "server encrypts with the secure profile, this client with the compat profile", false},
		{"secure client, compat server", compat, secure, "", "server encrypts with the compat profile, this client with the secure profile", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			serverErrs := make(chan error, 4)
			connected := make(chan struct{}, 1)
			server := tc.server
			server.EncryptionKDF = testKDF
			s := startServer(t, marmot.ServerConfig{EncryptionConfig: server, ServerEvents: marmot.ServerEvents{
				OnClientConnected: func(marmot.ClientInfo) { connected <- struct{}{} },
				OnError:           func(_ marmot.ClientID, err error) { serverErrs <- err },
			}})
			ev, events := newReconnectEvents()
			c := newClient(t, marmot.ClientConfig{URL: s.URL(), Subprotocol: tc.sub, AutoReconnect: true, RetryFirstConnect: true,
				ReconnectInterval: 10 * time.Millisecond, EncryptionConfig: tc.client, ClientEvents: events})
			err := c.Connect(ctxTimeout(t))
			if !errors.Is(err, marmot.ErrEncryptionMismatch) || errors.Is(err, marmot.ErrEncryptionRequired) != tc.required ||
				!strings.Contains(err.Error(), tc.text) || !strings.Contains(err.Error(), "400") {
				t.Fatalf("Connect: %v", err)
			}
			if c.State() != marmot.StateError || len(ev.reconnecting) != 0 || len(ev.failed) != 0 {
				t.Fatalf("state %v, %d reconnect attempts, %d failed", c.State(), len(ev.reconnecting), len(ev.failed))
			}
			want := marmot.ErrEncryptionMismatch
			if tc.required {
				want = marmot.ErrEncryptionRequired
			}
			if serr := recv(t, serverErrs, "server OnError"); !errors.Is(serr, want) {
				t.Fatalf("server OnError: %v", serr)
			}
			if st := s.Stats(); st.HandshakeFailures != 1 || st.TotalConnections != 0 || len(connected) != 0 {
				t.Fatalf("stats %+v, %d connected", st, len(connected))
			}
		})
	}
}

// TestEncryptionMismatchNotRetried: a reconnecting client that meets the
// mismatch (the server came back encrypted) gives up at once.
func TestEncryptionMismatchNotRetried(t *testing.T) {
	s := startServer(t, marmot.ServerConfig{})
	addr := s.Addr().String()
	ev, events := newReconnectEvents()
	// Exponential, so that the attempts while no server listens stay few.
	c := newClient(t, marmot.ClientConfig{URL: s.URL(), Subprotocol: protocol.SubprotocolBinary, AutoReconnect: true,
		ReconnectStrategy: marmot.ReconnectExponential, ReconnectInterval: 10 * time.Millisecond, ClientEvents: events})
	if err := c.Connect(ctxTimeout(t)); err != nil {
		t.Fatal(err)
	}
	recv(t, ev.connected, "OnConnect")
	// The key is stretched before the plain server goes away.
	enc, err := marmot.NewServer(marmot.ServerConfig{Addr: addr, Logger: quietLogger(), EncryptionConfig: marmot.EncryptionConfig{
		EncryptionEnabled: true, EncryptionKey: testKey, EncryptionMode: "gcm", EncryptionKDF: testKDF}})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Stop(ctxTimeout(t)); err != nil {
		t.Fatal(err)
	}
	recv(t, ev.disconnected, "OnDisconnect")
	if err := enc.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = enc.Stop(context.Background()) })
	for recv(t, ev.states, "state change") != marmot.StateError {
	}
	for {
		err := recv(t, ev.errs, "OnError")
		if errors.Is(err, marmot.ErrEncryptionRequired) {
			break
		}
		if errors.Is(err, marmot.ErrReconnectExhausted) {
			t.Fatalf("gave up for another reason: %v", err)
		}
	}
	// The one refused attempt, no other: the mismatch is not retried.
	if st := enc.Stats(); st.HandshakeFailures != 1 {
		t.Fatalf("server refused %d attempts, want 1", st.HandshakeFailures)
	}
}

// freeAddr returns a loopback address where nothing listens (yet).
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// connectAsync runs Connect in the background; its result arrives on the
// returned channel.
func connectAsync(ctx context.Context, c *marmot.Client) <-chan error {
	done := make(chan error, 1)
	go func() { done <- c.Connect(ctx) }()
	return done
}

// TestRetryFirstConnect: with RetryFirstConnect, Connect waits for a server
// that is not up yet, retrying with the reconnect backoff, and returns nil
// once it is.
func TestRetryFirstConnect(t *testing.T) {
	addr := freeAddr(t)
	ev, events := newReconnectEvents()
	c := newClient(t, marmot.ClientConfig{URL: "ws://" + addr + "/websocket", RetryFirstConnect: true,
		ReconnectStrategy: marmot.ReconnectFixed, ReconnectInterval: 20 * time.Millisecond, ClientEvents: events})
	done := connectAsync(ctxTimeout(t), c)
	// Connect's own attempt is attempt 0; then retries 1 and 2 fail too.
	if a := recv(t, ev.failed, "OnReconnectFailed"); a != 0 {
		t.Fatalf("first failure reported as attempt %d", a)
	}
	for i := 1; i <= 2; i++ {
		if a := recv(t, ev.reconnecting, "OnReconnecting"); a != [2]int64{int64(i), 20} {
			t.Fatalf("retry %d: %v", i, a)
		}
		if a := recv(t, ev.failed, "OnReconnectFailed"); a != i {
			t.Fatalf("failure of retry %d reported as %d", i, a)
		}
	}
	if st := c.State(); st != marmot.StateConnecting {
		t.Fatalf("state %v while retrying Connect", st)
	}
	select {
	case err := <-done:
		t.Fatalf("Connect returned before the server was up: %v", err)
	default:
	}
	startServer(t, marmot.ServerConfig{Addr: addr})
	if err := recv(t, done, "Connect"); err != nil {
		t.Fatalf("Connect once the server is up: %v", err)
	}
	recv(t, ev.connected, "OnConnect")
	if !c.Connected() || c.Stats().Reconnects < 2 {
		t.Fatalf("state %v, stats %+v", c.State(), c.Stats())
	}
	if len(ev.errs) > 0 {
		t.Fatalf("OnError while retrying: %v", <-ev.errs)
	}
}

// TestRetryFirstConnectBounded: the retries of Connect end with
// MaxReconnectAttempts, and with Connect's ctx.
func TestRetryFirstConnectBounded(t *testing.T) {
	url := "ws://" + freeAddr(t) + "/websocket"
	t.Run("MaxReconnectAttempts", func(t *testing.T) {
		ev, events := newReconnectEvents()
		c := newClient(t, marmot.ClientConfig{URL: url, RetryFirstConnect: true, MaxReconnectAttempts: 2,
			ReconnectStrategy: marmot.ReconnectExponential, ReconnectInterval: 10 * time.Millisecond, ReconnectJitter: -1,
			ClientEvents: events})
		err := c.Connect(ctxTimeout(t))
		if !errors.Is(err, marmot.ErrReconnectExhausted) || !strings.Contains(err.Error(), "refused") {
			t.Fatalf("Connect: %v", err)
		}
		for i, want := range [][2]int64{{1, 10}, {2, 20}} {
			if a := recv(t, ev.reconnecting, "OnReconnecting"); a != want {
				t.Fatalf("retry %d: %v, want %v", i+1, a, want)
			}
		}
		if len(ev.failed) != 3 { // attempts 0, 1, 2
			t.Fatalf("%d failures reported, want 3", len(ev.failed))
		}
		// Connect returned the error, so OnError does not get it too.
		if c.State() != marmot.StateError || len(ev.errs) != 0 || len(ev.reconnecting) != 0 {
			t.Fatalf("state %v, %d errors reported, %d extra attempts", c.State(), len(ev.errs), len(ev.reconnecting))
		}
	})
	t.Run("ctx", func(t *testing.T) {
		ev, events := newReconnectEvents()
		// The retry waits long enough for ctx to end during the wait.
		c := newClient(t, marmot.ClientConfig{URL: url, RetryFirstConnect: true,
			ReconnectStrategy: marmot.ReconnectFixed, ReconnectInterval: time.Second, ClientEvents: events})
		ctx, cancel := context.WithCancel(ctxTimeout(t))
		done := connectAsync(ctx, c)
		recv(t, ev.failed, "OnReconnectFailed")
		recv(t, ev.reconnecting, "OnReconnecting")
		cancel()
		if err := recv(t, done, "Connect"); !errors.Is(err, context.Canceled) {
			t.Fatalf("Connect: %v", err)
		}
		for recv(t, ev.states, "state change") != marmot.StateError {
		}
		if len(ev.reconnecting) != 0 {
			t.Fatal("retried after ctx ended")
		}
		for len(ev.errs) > 0 {
			if err := <-ev.errs; errors.Is(err, context.Canceled) {
				t.Fatalf("the error Connect returned was reported too: %v", err)
			}
		}
	})
}
