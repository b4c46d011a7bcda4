package marmot_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/gorilla/websocket"

	"github.com/marmotws/marmot"
	"github.com/marmotws/marmot/protocol"
)

// selfAskTimeout bounds a handler's request to its own client in these
// tests: well under waitTimeout, so a request that can only end with its
// deadline fails the test with that error rather than a test timeout.
const selfAskTimeout = 8 * time.Second

// envelopeConn is a raw WebSocket client speaking one envelope codec, so
// that a test controls exactly which frames travel and in which order.
type envelopeConn struct {
	t     *testing.T
	ws    *websocket.Conn
	codec protocol.Codec
}

func dialEnvelopes(t *testing.T, url, sub string) *envelopeConn {
	codec, ok := protocol.Lookup(sub)
	if !ok {
		t.Fatalf("no codec for %q", sub)
	}
	return &envelopeConn{t: t, ws: dial(t, url, sub), codec: codec}
}

func (c *envelopeConn) write(e protocol.Envelope) {
	c.t.Helper()
	frame, err := c.codec.Append(nil, &e)
	if err != nil {
		c.t.Fatal(err)
	}
	if err := c.ws.WriteMessage(c.codec.MessageType(), frame); err != nil {
		c.t.Fatal(err)
	}
}

func (c *envelopeConn) read() protocol.Envelope {
	c.t.Helper()
	_ = c.ws.SetReadDeadline(time.Now().Add(waitTimeout))
	_, frame, err := c.ws.ReadMessage()
	if err != nil {
		c.t.Fatalf("reading: %v", err)
	}
	var e protocol.Envelope
	if err := c.codec.Decode(frame, &e); err != nil {
		c.t.Fatal(err)
	}
	return e
}

// TestRequestClientFromOwnHandler: a handler asks the very client whose
// message it is handling (Server.RequestClient) and answers that message
// with the client's reply (issue #14). The client's frames that come
// between the server's request and the client's answer are handled after
// the asking handler returns, in the order they were sent; what the
// handler sends before it asks reaches the client before the request.
// Over the callback path and the full actor path (a receive middleware).
func TestRequestClientFromOwnHandler(t *testing.T) {
	passThrough := func(next actor.ReceiverFunc) actor.ReceiverFunc { return next }
	for _, sub := range []string{"marmot.v1", "marmot.json.v1"} {
		for _, path := range []string{"direct", "middleware"} {
			t.Run(sub+"/"+path, func(t *testing.T) {
				var s *marmot.Server
				handled := make(chan string, 16)
				cfg := marmot.ServerConfig{ServerEvents: marmot.ServerEvents{
					OnHandleCommand: func(m *marmot.Message) {
						handled <- m.Name + ":" + string(m.Payload)
						if m.Name != "ask" {
							return
						}
						_ = s.SendToClient(m.ClientID, []byte("before the request"))
						ctx, cancel := context.WithTimeout(m.Context(), selfAskTimeout)
						defer cancel()
						res, err := s.RequestClient(ctx, m.ClientID, "question", m.Payload)
						if err != nil {
							handled <- "ask failed: " + err.Error()
							_ = m.ReplyError(500, err.Error())
							return
						}
						handled <- "asked"
						_ = m.Reply(append([]byte("the client said "), res...))
					},
				}}
				if path == "middleware" {
					cfg.ActorMiddleware = []actor.ReceiverMiddleware{passThrough}
				}
				s = startServer(t, cfg)
				c := dialEnvelopes(t, s.URL(), sub)
				defer c.ws.Close()

				c.write(protocol.Envelope{Kind: protocol.KindCommand, Name: "first", Payload: []byte("1")})
				c.write(protocol.Envelope{Kind: protocol.KindRequest, ID: 1, Name: "ask", Payload: []byte("x")})
				if e := c.read(); e.Kind != protocol.KindData || string(e.Payload) != "before the request" {
					t.Fatalf("first from the server: %v %q, want the data sent before the request", e.Kind, e.Payload)
				}
				q := c.read()
				if q.Kind != protocol.KindRequest || q.Name != "question" || string(q.Payload) != "x" {
					t.Fatalf("second from the server: %v %q %q, want the request", q.Kind, q.Name, q.Payload)
				}
				// Frames after the request, before its answer: the
				// server reads past them to the answer and handles them
				// after the asking handler.
				c.write(protocol.Envelope{Kind: protocol.KindCommand, Name: "after", Payload: []byte("2")})
				c.write(protocol.Envelope{Kind: protocol.KindCommand, Name: "after", Payload: []byte("3")})
				c.write(protocol.Envelope{Kind: protocol.KindReply, ID: q.ID, Payload: []byte("yes")})
				c.write(protocol.Envelope{Kind: protocol.KindCommand, Name: "after", Payload: []byte("4")})
				r := c.read()
				if r.Kind != protocol.KindReply || r.ID != 1 || string(r.Payload) != "the client said yes" {
					t.Fatalf("answer to ask: %v %d %q, want the reply with the client's answer", r.Kind, r.ID, r.Payload)
				}
				want := []string{"first:1", "ask:x", "asked", "after:2", "after:3", "after:4"}
				for i, w := range want {
					if got := recv(t, handled, fmt.Sprintf("handled message %d", i)); got != w {
						t.Fatalf("handled #%d: %q, want %q (want order %q)", i, got, w, want)
					}
				}
				// The connection goes on as usual.
				c.write(protocol.Envelope{Kind: protocol.KindRequest, ID: 2, Name: "ask", Payload: []byte("y")})
				c.read() // before the request
				q = c.read()
				c.write(protocol.Envelope{Kind: protocol.KindReply, ID: q.ID, Payload: []byte("again")})
				if r := c.read(); r.ID != 2 || string(r.Payload) != "the client said again" {
					t.Fatalf("second ask: %d %q", r.ID, r.Payload)
				}
			})
		}
	}
}

// TestRequestClientFromOwnHandlerClosed: a connection that ends while its
// handler waits for its answer ends the wait with ErrConnectionClosed, not
// the request's deadline.
func TestRequestClientFromOwnHandlerClosed(t *testing.T) {
	var s *marmot.Server
	asked := make(chan error, 1)
	s = startServer(t, marmot.ServerConfig{ServerEvents: marmot.ServerEvents{
		OnHandleCommand: func(m *marmot.Message) {
			ctx, cancel := context.WithTimeout(m.Context(), selfAskTimeout)
			defer cancel()
			_, err := s.RequestClient(ctx, m.ClientID, "question", nil)
			asked <- err
		},
	}})
	c := dialEnvelopes(t, s.URL(), "marmot.v1")
	c.write(protocol.Envelope{Kind: protocol.KindRequest, ID: 1, Name: "ask"})
	if q := c.read(); q.Kind != protocol.KindRequest || q.Name != "question" {
		t.Fatalf("from the server: %v %q, want the request", q.Kind, q.Name)
	}
	_ = c.ws.Close() // no answer, no close frame: the socket just ends
	if err := recv(t, asked, "the request's end"); !errors.Is(err, marmot.ErrConnectionClosed) {
		t.Fatalf("request to a connection that ended: %v, want ErrConnectionClosed", err)
	}
}

// TestRequestClientFromOwnHandlerBounded: what the client sends before its
// answer waits within the connection's input budget (1 MiB here); a client
// that sends more than that first leaves the request to end with its
// deadline, and everything it sent is then handled in order, its late
// answer dropped, the connection going on.
func TestRequestClientFromOwnHandlerBounded(t *testing.T) {
	const (
		frames = 24
		size   = 64 << 10 // frames × size: 1.5 MiB, over the 1 MiB budget
	)
	var s *marmot.Server
	handled := make(chan string, frames+8)
	s = startServer(t, marmot.ServerConfig{ServerEvents: marmot.ServerEvents{
		OnHandleCommand: func(m *marmot.Message) {
			if m.Name != "ask" {
				handled <- fmt.Sprintf("%s:%d", m.Name, len(m.Payload))
				return
			}
			ctx, cancel := context.WithTimeout(m.Context(), time.Second)
			defer cancel()
			_, err := s.RequestClient(ctx, m.ClientID, "question", nil)
			switch {
			case errors.Is(err, context.DeadlineExceeded):
				handled <- "ask: deadline"
			default:
				handled <- fmt.Sprintf("ask: %v, want the deadline", err)
			}
		},
	}})
	c := dialEnvelopes(t, s.URL(), "marmot.v1")
	defer c.ws.Close()
	c.write(protocol.Envelope{Kind: protocol.KindRequest, ID: 1, Name: "ask"})
	q := c.read()
	if q.Kind != protocol.KindRequest || q.Name != "question" {
		t.Fatalf("from the server: %v %q, want the request", q.Kind, q.Name)
	}
	// The server stops reading once the budget is spent, so the writes
	// block until the request has given up: write from a goroutine.
	wrote := make(chan error, 1)
	go func() {
		var err error
		for i := 0; i < frames && err == nil; i++ {
			var frame []byte
			frame, err = c.codec.Append(nil, &protocol.Envelope{Kind: protocol.KindCommand, Name: fmt.Sprint("f", i), Payload: make([]byte, size)})
			if err == nil {
				err = c.ws.WriteMessage(c.codec.MessageType(), frame)
			}
		}
		for _, e := range []protocol.Envelope{{Kind: protocol.KindReply, ID: q.ID}, {Kind: protocol.KindCommand, Name: "after"}} {
			if err != nil {
				break
			}
			var frame []byte
			if frame, err = c.codec.Append(nil, &e); err == nil {
				err = c.ws.WriteMessage(c.codec.MessageType(), frame)
			}
		}
		wrote <- err
	}()
	if got := recv(t, handled, "the request's end"); got != "ask: deadline" {
		t.Fatal(got)
	}
	for i := range frames {
		if got, want := recv(t, handled, "a frame sent before the answer"), fmt.Sprintf("f%d:%d", i, size); got != want {
			t.Fatalf("handled %q, want %q", got, want)
		}
	}
	if got := recv(t, handled, "the frame after the late answer"); got != "after:0" {
		t.Fatalf("handled %q, want after:0 (the late answer dropped, the connection going on)", got)
	}
	if err := recv(t, wrote, "the client's writes"); err != nil {
		t.Fatal(err)
	}
}

// TestRequestClientHandoffUnderLoad: while a client streams numbered
// messages, its handler asks it from time to time (handing the reader on
// each time) and another goroutine asks it over and over (handing the
// reader on whenever it finds the handler running on it): every message
// is handled once, in order, and every request is answered.
func TestRequestClientHandoffUnderLoad(t *testing.T) {
	const (
		n     = 2000
		every = 50 // the handler asks its client on every 50th message
	)
	var s *marmot.Server
	problems := make(chan string, 16)
	handledAll := make(chan struct{})
	ids := make(chan marmot.ClientID, 1)
	next := 0
	s = startServer(t, marmot.ServerConfig{ServerEvents: marmot.ServerEvents{
		OnClientConnected: func(info marmot.ClientInfo) { ids <- info.ID },
		OnHandleCommand: func(m *marmot.Message) {
			if got := string(m.Payload); got != fmt.Sprint(next) {
				problems <- fmt.Sprintf("handled %s, want %d", got, next)
			}
			next++
			if next%every == 0 {
				ctx, cancel := context.WithTimeout(m.Context(), waitTimeout/2)
				res, err := s.RequestClient(ctx, m.ClientID, "echo", m.Payload)
				cancel()
				if err != nil || string(res) != string(m.Payload) {
					problems <- fmt.Sprintf("own request at %d: %q, %v", next, res, err)
				}
			}
			if next == n {
				close(handledAll)
			}
		},
	}})
	c := newClient(t, marmot.ClientConfig{URL: s.URL(), Subprotocol: "marmot.v1", ClientEvents: marmot.ClientEvents{
		OnHandleCommand: func(m *marmot.Message) {
			if m.IsRequest() {
				_ = m.Reply(m.Payload)
			}
		},
	}})
	ctx := ctxTimeout(t)
	if err := c.Connect(ctx); err != nil {
		t.Fatal(err)
	}
	id := recv(t, ids, "the client")
	stop := make(chan struct{})
	asked := make(chan int, 1)
	go func() { // the other goroutine's requests
		k := 0
		defer func() { asked <- k }()
		for {
			select {
			case <-stop:
				return
			default:
			}
			p := []byte(fmt.Sprint("outside-", k))
			res, err := s.RequestClient(ctx, id, "echo", p)
			if err != nil || string(res) != string(p) {
				problems <- fmt.Sprintf("outside request %d: %q, %v", k, res, err)
				return
			}
			k++
		}
	}()
	for i := range n {
		if err := c.SendCommand("n", []byte(fmt.Sprint(i))); err != nil {
			t.Fatal(err)
		}
	}
	select {
	case <-handledAll:
	case p := <-problems:
		t.Fatal(p)
	case <-time.After(waitTimeout):
		t.Fatal("timed out waiting for every message to be handled")
	}
	close(stop)
	k := recv(t, asked, "the outside requests' end")
	select {
	case p := <-problems:
		t.Fatal(p)
	default:
	}
	if k == 0 {
		t.Fatal("no outside request was answered")
	}
	t.Logf("%d messages, %d requests from the handler, %d from outside", n, n/every, k)
}

// TestRequestClientFromOwnHandlerTransports: the same with marmot's own
// client, over each transport: over HTTP the answer comes in a later send,
// which the transport takes while the first is still being handled.
func TestRequestClientFromOwnHandlerTransports(t *testing.T) {
	for _, tr := range []marmot.Transport{marmot.TransportWebSocket, marmot.TransportHTTP} {
		t.Run(tr.String(), func(t *testing.T) {
			var s *marmot.Server
			handled := make(chan string, 16)
			s = startServer(t, marmot.ServerConfig{ServerEvents: marmot.ServerEvents{
				OnHandleCommand: func(m *marmot.Message) {
					handled <- m.Name + ":" + string(m.Payload)
					if m.Name != "ask" {
						return
					}
					ctx, cancel := context.WithTimeout(m.Context(), selfAskTimeout)
					defer cancel()
					res, err := s.RequestClient(ctx, m.ClientID, "question", m.Payload)
					if err != nil {
						_ = m.ReplyError(500, err.Error())
						return
					}
					handled <- "asked"
					_ = m.Reply(append([]byte("the client said "), res...))
				},
			}})
			c := newClient(t, marmot.ClientConfig{URL: s.URL(), Subprotocol: "marmot.v1", Transport: tr,
				ClientEvents: marmot.ClientEvents{OnHandleCommand: func(m *marmot.Message) {
					if m.IsRequest() && m.Name == "question" {
						_ = m.Reply(append([]byte("yes to "), m.Payload...))
					}
				}}})
			ctx := ctxTimeout(t)
			if err := c.Connect(ctx); err != nil {
				t.Fatal(err)
			}
			for round := range 3 {
				if err := c.SendCommand("before", []byte(fmt.Sprint(round))); err != nil {
					t.Fatal(err)
				}
				res, err := c.Request(ctx, "ask", []byte(fmt.Sprint(round)))
				if want := fmt.Sprint("the client said yes to ", round); err != nil || string(res) != want {
					t.Fatalf("round %d: %q, %v; want %q", round, res, err, want)
				}
				if err := c.SendCommand("after", []byte(fmt.Sprint(round))); err != nil {
					t.Fatal(err)
				}
				for _, w := range []string{fmt.Sprint("before:", round), fmt.Sprint("ask:", round), "asked", fmt.Sprint("after:", round)} {
					if got := recv(t, handled, w); got != w {
						t.Fatalf("round %d: handled %q, want %q", round, got, w)
					}
				}
			}
		})
	}
}
