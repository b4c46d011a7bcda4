package marmot_test

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/marmotws/marmot"
	"github.com/marmotws/marmot/chaos"
)

// failoverNode is a server that records what it handles and answers
// requests with its own name.
type failoverNode struct {
	name string
	s    *marmot.Server
	mu   sync.Mutex
	seen []string
	got  chan string
}

func newFailoverNode(t *testing.T, name string) *failoverNode {
	t.Helper()
	n := &failoverNode{name: name, got: make(chan string, 64)}
	n.s = startServer(t, marmot.ServerConfig{KeepAlive: -1, ServerEvents: marmot.ServerEvents{
		OnHandleCommand: func(m *marmot.Message) {
			if m.IsRequest() {
				_ = m.Reply([]byte(n.name + ": " + string(m.Payload)))
				return
			}
			n.mu.Lock()
			n.seen = append(n.seen, string(m.Payload))
			n.mu.Unlock()
			n.got <- string(m.Payload)
		},
	}})
	return n
}

func (n *failoverNode) handled() []string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return append([]string(nil), n.seen...)
}

type recovery struct {
	room      string
	recovered bool
}

// failoverClient connects to url with failover to the others and reports
// its states, errors, room messages and recoveries.
type failoverClient struct {
	c         *marmot.Client
	states    chan marmot.ClientState
	errs      chan error
	room      chan *marmot.Message
	recovered chan recovery
	written   chan []byte // copies of what OnDataSent saw
}

func newFailoverClient(t *testing.T, url string, failover ...string) *failoverClient {
	t.Helper()
	f := &failoverClient{states: make(chan marmot.ClientState, 64), errs: make(chan error, 64),
		room: make(chan *marmot.Message, 64), recovered: make(chan recovery, 8), written: make(chan []byte, 256)}
	f.c = newClient(t, marmot.ClientConfig{URL: url, FailoverURLs: failover, Subprotocol: "marmot.v1",
		AutoReconnect: true, ReconnectStrategy: marmot.ReconnectFixed, ReconnectInterval: 20 * time.Millisecond,
		KeepAlive: -1, ClientEvents: marmot.ClientEvents{
			OnStateChange: func(_, s marmot.ClientState) { f.states <- s },
			OnError: func(err error) {
				select {
				case f.errs <- err:
				default:
				}
			},
			OnHandleCommand: func(m *marmot.Message) {
				if m.Room != "" {
					f.room <- m
				}
			},
			OnRecover: func(room string, recovered bool, _ int, _ string) { f.recovered <- recovery{room, recovered} },
			OnDataSent: func(data []byte) {
				select {
				case f.written <- bytes.Clone(data):
				default:
				}
			},
		}})
	return f
}

// works checks that the client, connected to n, sends to it, gets its
// answer to a request, and receives what n publishes in room "lobby".
func (f *failoverClient) works(t *testing.T, n *failoverNode, payload string) {
	t.Helper()
	if got := f.c.URL(); got != n.s.URL() {
		t.Fatalf("client on %s, want %s (%s)", got, n.s.URL(), n.name)
	}
	if err := f.c.Send([]byte(payload)); err != nil {
		t.Fatal(err)
	}
	if got := recv(t, n.got, "a message on "+n.name); got != payload {
		t.Fatalf("%s handled %q, want %q", n.name, got, payload)
	}
	reply, err := f.c.Request(ctxTimeout(t), "who", []byte(payload))
	if err != nil || string(reply) != n.name+": "+payload {
		t.Fatalf("Request: %q, %v", reply, err)
	}
	if k, err := n.s.Publish("lobby", []byte("from "+n.name)); k != 1 || err != nil {
		t.Fatalf("%s: Publish reached %d members, %v", n.name, k, err)
	}
	if m := recv(t, f.room, "a room message"); m.Room != "lobby" || string(m.Payload) != "from "+n.name {
		t.Fatalf("room message %q %q", m.Room, m.Payload)
	}
}

// TestFailoverToNextURL: a client connected to the first of two servers
// moves to the second when the first goes (stopped, or unreachable behind
// a proxy that goes down), re-joins its room there and works: sends,
// requests, room messages.
func TestFailoverToNextURL(t *testing.T) {
	for _, how := range []string{"stop", "proxy down"} {
		t.Run(how, func(t *testing.T) {
			a, b := newFailoverNode(t, "a"), newFailoverNode(t, "b")
			urlA := a.s.URL()
			var p *chaos.Proxy
			if how == "proxy down" {
				var err error
				p, err = chaos.NewProxy("127.0.0.1:0", a.s.Addr().String(), chaos.Options{Logger: quietLogger()})
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { _ = p.Close() })
				urlA = strings.Replace(urlA, a.s.Addr().String(), p.Addr().String(), 1)
			}
			f := newFailoverClient(t, urlA, b.s.URL())
			if err := f.c.Connect(ctxTimeout(t)); err != nil {
				t.Fatal(err)
			}
			if got := f.c.URL(); got != urlA {
				t.Fatalf("connected to %s, want the first URL %s", got, urlA)
			}
			if err := f.c.Join(ctxTimeout(t), "lobby"); err != nil {
				t.Fatal(err)
			}
			if err := f.c.Send([]byte("one")); err != nil {
				t.Fatal(err)
			}
			recv(t, a.got, "a message on a")
			if k, err := a.s.Publish("lobby", []byte("from a")); k != 1 || err != nil {
				t.Fatalf("Publish on a: %d, %v", k, err)
			}
			recv(t, f.room, "a room message from a")

			switch how {
			case "stop":
				if err := a.s.Stop(ctxTimeout(t)); err != nil {
					t.Fatal(err)
				}
			default:
				if err := p.Down(); err != nil {
					t.Fatal(err)
				}
			}
			for recv(t, f.states, "state Reconnecting") != marmot.StateReconnecting {
			}
			for recv(t, f.states, "state Connected") != marmot.StateConnected {
			}
			// b never saw the room: it is re-joined, not recovered.
			if r := recv(t, f.recovered, "OnRecover"); r.room != "lobby" || r.recovered {
				t.Fatalf("OnRecover %+v, want lobby not recovered", r)
			}
			f.works(t, b, "two")
			if got := a.handled(); len(got) != 1 {
				t.Fatalf("a handled %q, want only the first message", got)
			}
			if st := f.c.Stats(); st.Reconnects != 1 {
				t.Fatalf("%d reconnect attempts, want 1 (straight to b)", st.Reconnects)
			}
		})
	}
}

// TestFailoverSessionLost: what the client wrote to a server that went away
// before acknowledging it is not sent again to the next server, which does
// not know the session: it is reported as ErrSessionLost with its count.
func TestFailoverSessionLost(t *testing.T) {
	a, b := newFailoverNode(t, "a"), newFailoverNode(t, "b")
	p, err := chaos.NewProxy("127.0.0.1:0", a.s.Addr().String(), chaos.Options{Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Close() })
	urlA := strings.Replace(a.s.URL(), a.s.Addr().String(), p.Addr().String(), 1)
	f := newFailoverClient(t, urlA, b.s.URL())
	if err := f.c.Connect(ctxTimeout(t)); err != nil {
		t.Fatal(err)
	}
	if err := f.c.Join(ctxTimeout(t), "lobby"); err != nil {
		t.Fatal(err)
	}
	// a gets nothing more: the three messages are written, never acknowledged.
	if err := p.Set(chaos.Faults{Blackhole: true}); err != nil {
		t.Fatal(err)
	}
	const sent = 3
	for i := range sent {
		if err := f.c.Send(fmt.Appendf(nil, "m%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	// Written in order: once the last is on the socket, all are.
	for !bytes.Contains(recv(t, f.written, "OnDataSent"), fmt.Appendf(nil, "m%d", sent-1)) {
	}
	if err := p.Down(); err != nil {
		t.Fatal(err)
	}
	for recv(t, f.states, "state Connected") != marmot.StateConnected {
	}
	err = recv(t, f.errs, "ErrSessionLost")
	if !errors.Is(err, marmot.ErrSessionLost) || !strings.HasSuffix(err.Error(), fmt.Sprintf(": %d", sent)) {
		t.Fatalf("OnError %v, want ErrSessionLost: %d", err, sent)
	}
	if len(a.handled()) != 0 {
		t.Fatalf("a handled %q through a blackhole", a.handled())
	}
	f.works(t, b, "after")
	if got := b.handled(); len(got) != 1 {
		t.Fatalf("b handled %q, want only the message sent after the failover", got)
	}
}

// TestFailoverFirstConnect: a first URL that refuses makes Connect go on to
// the next at once, without RetryFirstConnect; when every URL refuses,
// Connect fails with each URL's error.
func TestFailoverFirstConnect(t *testing.T) {
	b := newFailoverNode(t, "b")
	dead := "ws://" + freeAddr(t) + "/websocket"
	f := newFailoverClient(t, dead, b.s.URL())
	if err := f.c.Connect(ctxTimeout(t)); err != nil {
		t.Fatal(err)
	}
	if err := f.c.Join(ctxTimeout(t), "lobby"); err != nil {
		t.Fatal(err)
	}
	f.works(t, b, "first")
	if st := f.c.Stats(); st.Reconnects != 0 {
		t.Fatalf("Stats.Reconnects %d: the first pass over the URLs is not a retry", st.Reconnects)
	}

	dead2 := "ws://" + freeAddr(t) + "/websocket"
	g := newFailoverClient(t, dead, dead2)
	err := g.c.Connect(ctxTimeout(t))
	if err == nil || !strings.Contains(err.Error(), "all 2 URLs failed") ||
		!strings.Contains(err.Error(), dead) || !strings.Contains(err.Error(), dead2) {
		t.Fatalf("Connect to two dead URLs: %v", err)
	}
	if g.c.State() != marmot.StateError {
		t.Fatalf("state %v", g.c.State())
	}
}

// TestFailoverAttemptsCountOverall: retries go round the URLs, one attempt
// each, and MaxReconnectAttempts counts them all together.
func TestFailoverAttemptsCountOverall(t *testing.T) {
	dead := []string{"ws://" + freeAddr(t) + "/a", "ws://" + freeAddr(t) + "/b"}
	var c *marmot.Client
	dialed := make(chan string, 16)
	failed := make(chan error, 16)
	c = newClient(t, marmot.ClientConfig{URL: dead[0], FailoverURLs: dead[1:], RetryFirstConnect: true,
		MaxReconnectAttempts: 3, ReconnectStrategy: marmot.ReconnectFixed, ReconnectInterval: 5 * time.Millisecond,
		ClientEvents: marmot.ClientEvents{OnReconnecting: func(int, time.Duration) { dialed <- c.URL() },
			OnReconnectFailed: func(_ int, err error) { failed <- err }}})
	err := c.Connect(ctxTimeout(t))
	if !errors.Is(err, marmot.ErrReconnectExhausted) {
		t.Fatalf("Connect: %v", err)
	}
	// Attempt 0 dialed a; retries 1, 2 and 3 dial b, a, b.
	for i, want := range []string{dead[1], dead[0], dead[1]} {
		if got := recv(t, dialed, "OnReconnecting"); got != want {
			t.Fatalf("retry %d dials %s, want %s", i+1, got, want)
		}
	}
	// Each failure names the URL its attempt dialed.
	for i, want := range []string{dead[0], dead[1], dead[0], dead[1]} {
		if err := recv(t, failed, "OnReconnectFailed"); !strings.Contains(err.Error(), "connect to "+want+":") {
			t.Fatalf("attempt %d: %v, want a failure of %s", i, err, want)
		}
	}
	if len(dialed) != 0 || len(failed) != 0 || c.Stats().Reconnects != 3 {
		t.Fatalf("%d more retries, Stats.Reconnects %d", len(dialed), c.Stats().Reconnects)
	}
}

func TestFailoverURLsValidated(t *testing.T) {
	for _, tc := range []struct {
		urls []string
		want string
	}{
		{[]string{"http://127.0.0.1:1/"}, `invalid FailoverURLs[0] "http://127.0.0.1:1/": scheme must be ws or wss`},
		{[]string{"ws://127.0.0.1:2/", "ws:///x"}, `invalid FailoverURLs[1] "ws:///x": no host`},
		{[]string{"ws://127.0.0.1:1/"}, `invalid FailoverURLs[0] "ws://127.0.0.1:1/": listed twice`},
		{[]string{"ws://127.0.0.1:2/", "ws://127.0.0.1:2/"}, `invalid FailoverURLs[1] "ws://127.0.0.1:2/": listed twice`},
	} {
		_, err := marmot.NewClient(marmot.ClientConfig{URL: "ws://127.0.0.1:1/", FailoverURLs: tc.urls})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("FailoverURLs %q: %v, want %q", tc.urls, err, tc.want)
		}
	}
}
