package marmot_test

import (
	"context"
	"errors"
	"testing"

	"github.com/gorilla/websocket"

	"github.com/marmotws/marmot"
	"github.com/marmotws/marmot/protocol"
)

// TestRequestClient: the server's request reaches the client's handler and
// returns its reply or its error; a request the client does not answer
// ends with ctx, and its late answer is dropped without harm; a missing
// client, a raw connection and a connection that ends are clear errors.
func TestRequestClient(t *testing.T) {
	for _, sub := range []string{"marmot.v1", "marmot.json.v1"} {
		t.Run(sub, func(t *testing.T) {
			ids := make(chan marmot.ClientID, 4)
			s := startServer(t, marmot.ServerConfig{ServerEvents: marmot.ServerEvents{
				OnClientConnected: func(info marmot.ClientInfo) { ids <- info.ID },
			}})
			late := make(chan *marmot.Message, 1)
			c := newClient(t, marmot.ClientConfig{URL: s.URL(), Subprotocol: sub, ClientEvents: marmot.ClientEvents{
				OnHandleCommand: func(m *marmot.Message) {
					if !m.IsRequest() {
						return
					}
					switch m.Name {
					case "double":
						_ = m.Reply(append(m.Payload, m.Payload...))
					case "refuse":
						_ = m.ReplyError(409, "no thanks")
					case "later":
						late <- m // answered after the server gave up
					}
				},
			}})
			ctx := ctxTimeout(t)
			if err := c.Connect(ctx); err != nil {
				t.Fatal(err)
			}
			id := recv(t, ids, "the client")

			res, err := s.RequestClient(ctx, id, "double", []byte("ab"))
			if err != nil || string(res) != "abab" {
				t.Fatalf("RequestClient: %q, %v", res, err)
			}
			_, err = s.RequestClient(ctx, id, "refuse", nil)
			var re *marmot.RemoteError
			if !errors.As(err, &re) || re.Code != 409 || re.Message != "no thanks" {
				t.Fatalf("refused request: %v, want a *RemoteError 409", err)
			}
			short, cancel := context.WithCancel(ctx)
			go func() {
				m := recv(t, late, "the unanswered request")
				cancel() // the server gives up, then the answer comes
				_ = m.Reply([]byte("too late"))
			}()
			if _, err := s.RequestClient(short, id, "later", nil); !errors.Is(err, context.Canceled) {
				t.Fatalf("request given up: %v, want context.Canceled", err)
			}
			// The late answer did not end the connection: the next request works.
			if res, err := s.RequestClient(ctx, id, "double", []byte("x")); err != nil || string(res) != "xx" {
				t.Fatalf("after a late answer: %q, %v", res, err)
			}
			if _, err := s.RequestClient(ctx, id+100, "double", nil); !errors.Is(err, marmot.ErrClientNotFound) {
				t.Fatalf("missing client: %v", err)
			}
			if _, err := s.RequestClient(ctx, id, "", nil); !errors.Is(err, marmot.ErrEmptyCommandName) {
				t.Fatalf("no name: %v", err)
			}

			// A connection that ends fails its waiting requests.
			go func() {
				recv(t, late, "the request before the disconnect")
				_ = s.Disconnect(id, marmot.CloseNormal, "bye")
			}()
			if _, err := s.RequestClient(ctx, id, "later", nil); !errors.Is(err, marmot.ErrConnectionClosed) {
				t.Fatalf("connection ended: %v, want ErrConnectionClosed", err)
			}
		})
	}
}

// TestRequestClientRawAndStrays: a raw connection has no requests, and a
// reply to a request the server never sent is still a protocol error.
func TestRequestClientRawAndStrays(t *testing.T) {
	ids := make(chan marmot.ClientID, 2)
	s := startServer(t, marmot.ServerConfig{ServerEvents: marmot.ServerEvents{
		OnClientConnected: func(info marmot.ClientInfo) { ids <- info.ID },
	}})
	ctx := ctxTimeout(t)
	raw := dial(t, s.URL(), "")
	defer raw.Close()
	if _, err := s.RequestClient(ctx, recv(t, ids, "raw client"), "x", nil); !errors.Is(err, marmot.ErrRawMode) {
		t.Fatalf("raw client: %v, want ErrRawMode", err)
	}
	ws := dial(t, s.URL(), "marmot.v1")
	defer ws.Close()
	recv(t, ids, "envelope client")
	frame, err := protocol.Binary.Append(nil, &protocol.Envelope{Kind: protocol.KindReply, ID: 7})
	if err != nil {
		t.Fatal(err)
	}
	if err := ws.WriteMessage(websocket.BinaryMessage, frame); err != nil {
		t.Fatal(err)
	}
	if ce := readClose(t, ws); ce.Code != marmot.CloseProtocolError {
		t.Fatalf("stray reply: close %d, want %d", ce.Code, marmot.CloseProtocolError)
	}
}
