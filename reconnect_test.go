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
