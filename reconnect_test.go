package marmot_test

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
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
