// Package rawconn is a test client that speaks marmot.v1 envelopes
// itself, for the tests (the root package's, with servers in process, and
// package cluster's, with node processes) that check what the server
// puts on the wire, which marmot.Client keeps to itself: the position a
// join is answered with.
package rawconn

import (
	"net/http"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/marmotws/marmot/protocol"
)

// Conn is a marmot.v1 connection whose received envelopes go to In.
type Conn struct {
	ws   *websocket.Conn
	In   chan protocol.Envelope
	last uint64 // request ID
}

// Dial connects to url (a server's ws:// URL); the connection is closed
// when the test ends.
func Dial(t testing.TB, url string) *Conn {
	t.Helper()
	d := websocket.Dialer{HandshakeTimeout: 30 * time.Second}
	ws, _, err := d.Dial(url, http.Header{"Sec-WebSocket-Protocol": {protocol.SubprotocolBinary}})
	if err != nil {
		t.Fatal(err)
	}
	c := &Conn{ws: ws, In: make(chan protocol.Envelope, 64)}
	done := make(chan struct{})
	t.Cleanup(func() { _ = ws.Close(); <-done })
	go func() {
		defer close(done)
		for {
			_, msg, err := ws.ReadMessage()
			if err != nil {
				return
			}
			var e protocol.Envelope
			if err := protocol.Binary.Decode(msg, &e); err != nil {
				t.Errorf("decode: %v", err)
				return
			}
			e.Payload = append([]byte(nil), e.Payload...)
			c.In <- e
		}
	}()
	return c
}

// Request sends a request (room empty for none) and returns its ID.
func (c *Conn) Request(t testing.TB, name, room string) uint64 {
	t.Helper()
	c.last++
	msg, err := protocol.Binary.Append(nil, &protocol.Envelope{Kind: protocol.KindRequest, ID: c.last, Name: name, Room: room})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.ws.WriteMessage(websocket.BinaryMessage, msg); err != nil {
		t.Fatal(err)
	}
	return c.last
}

// Recv returns the next envelope received, failing t after wait.
func (c *Conn) Recv(t testing.TB, what string, wait time.Duration) protocol.Envelope {
	t.Helper()
	select {
	case e := <-c.In:
		return e
	case <-time.After(wait):
		t.Fatalf("timed out waiting for %s", what)
	}
	return protocol.Envelope{}
}

// JoinResult receives the answer to join request id and decodes it.
func (c *Conn) JoinResult(t testing.TB, id uint64, wait time.Duration) protocol.JoinResult {
	t.Helper()
	e := c.Recv(t, "the join's reply", wait)
	if e.Kind != protocol.KindReply || e.ID != id {
		t.Fatalf("got %v #%d %q, want the reply to join #%d", e.Kind, e.ID, e.Payload, id)
	}
	res, err := protocol.DecodeJoinResult(e.Payload)
	if err != nil {
		t.Fatal(err)
	}
	return res
}
