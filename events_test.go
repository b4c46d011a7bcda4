package marmot_test

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/marmotws/marmot"
	"github.com/marmotws/marmot/protocol"
)

// TestPerConnectionEventOrder: for each of many concurrent connections,
// OnClientConnected comes before any OnDataReceived or OnHandleCommand,
// every message is received then handled, in the order sent, and
// OnClientDisconnected comes after all of them.
func TestPerConnectionEventOrder(t *testing.T) {
	const conns, msgs = 50, 20
	var mu sync.Mutex
	logs := map[marmot.ClientID][]string{}
	note := func(id marmot.ClientID, e string) {
		mu.Lock()
		logs[id] = append(logs[id], e)
		mu.Unlock()
	}
	var gone sync.WaitGroup
	gone.Add(conns)
	s := startServer(t, marmot.ServerConfig{ServerEvents: marmot.ServerEvents{
		OnClientConnected:    func(ci marmot.ClientInfo) { note(ci.ID, "connected") },
		OnDataReceived:       func(id marmot.ClientID, d []byte) { note(id, "received "+string(d)) },
		OnHandleCommand:      func(m *marmot.Message) { note(m.ClientID, "handled "+string(m.Payload)); _ = m.Reply(m.Payload) },
		OnClientDisconnected: func(ci marmot.ClientInfo, _ *marmot.CloseError) { note(ci.ID, "disconnected"); gone.Done() },
	}})
	var wg sync.WaitGroup
	errs := make(chan error, conns)
	for range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- chatAndClose(s.URL(), msgs)
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	waitGroup(t, &gone, "every OnClientDisconnected")
	want := []string{"connected"}
	for j := range msgs {
		want = append(want, "received "+strconv.Itoa(j), "handled "+strconv.Itoa(j))
	}
	want = append(want, "disconnected")
	mu.Lock()
	defer mu.Unlock()
	if len(logs) != conns {
		t.Fatalf("events for %d connections, want %d", len(logs), conns)
	}
	for id, got := range logs {
		if !slices.Equal(got, want) {
			t.Fatalf("client %d events:\n%v\nwant\n%v", id, got, want)
		}
	}
}

// chatAndClose sends msgs numbered messages, reads their echoes, then
// closes with 1000 and waits for the server's answer.
func chatAndClose(url string, msgs int) error {
	d := websocket.Dialer{HandshakeTimeout: waitTimeout}
	ws, resp, err := d.Dial(url, nil)
	if err != nil {
		return err
	}
	resp.Body.Close()
	defer ws.Close()
	for j := range msgs {
		if err := ws.WriteMessage(websocket.TextMessage, []byte(strconv.Itoa(j))); err != nil {
			return err
		}
	}
	_ = ws.SetReadDeadline(time.Now().Add(waitTimeout))
	for j := range msgs {
		if _, got, err := ws.ReadMessage(); err != nil || string(got) != strconv.Itoa(j) {
			return fmt.Errorf("echo %d: %q %v", j, got, err)
		}
	}
	if err := ws.WriteMessage(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, "")); err != nil {
		return err
	}
	_, _, err = ws.ReadMessage()
	if ce := (*websocket.CloseError)(nil); !errors.As(err, &ce) || ce.Code != websocket.CloseNormalClosure {
		return fmt.Errorf("close answered with %v", err)
	}
	return nil
}

// TestExactStatsManyClients: 50 clients each send 100 messages of
// different sizes to an echo server at once. Once every message and echo
// has been written and reported, every counter on both sides is exact, and
// the server's totals survive the connections closing.
func TestExactStatsManyClients(t *testing.T) {
	const clients, msgs = 50, 100
	size := func(i, j int) int { return 1 + (i*7+j*13)%200 }
	payload := func(i, j int) []byte { return bytes.Repeat([]byte{'a' + byte(j%26)}, size(i, j)) }
	perClient := make([]int64, clients)
	var total int64
	for i := range clients {
		for j := range msgs {
			perClient[i] += int64(size(i, j))
		}
		total += perClient[i]
	}

	var serverSent, clientsSent, echoed, gone sync.WaitGroup
	serverSent.Add(clients * msgs)
	clientsSent.Add(clients * msgs)
	echoed.Add(clients * msgs)
	gone.Add(clients)
	s := startServer(t, marmot.ServerConfig{ServerEvents: marmot.ServerEvents{
		OnHandleCommand:      func(m *marmot.Message) { _ = m.Reply(m.Payload) },
		OnDataSent:           func(marmot.ClientID, []byte) { serverSent.Done() },
		OnClientDisconnected: func(marmot.ClientInfo, *marmot.CloseError) { gone.Done() },
	}})

	type seen struct{ msgs, bytes int64 } // OnDataReceived, on the client's actor
	received := make([]seen, clients)
	cs := make([]*marmot.Client, clients)
	for i := range cs {
		c := newClient(t, marmot.ClientConfig{URL: s.URL(), ClientEvents: marmot.ClientEvents{
			OnDataReceived: func(d []byte) {
				received[i].msgs++
				received[i].bytes += int64(len(d))
			},
			OnHandleCommand: func(*marmot.Message) { echoed.Done() },
			OnDataSent:      func([]byte) { clientsSent.Done() },
		}})
		if err := c.Connect(ctxTimeout(t)); err != nil {
			t.Fatal(err)
		}
		cs[i] = c
	}
	var wg sync.WaitGroup
	errs := make(chan error, clients)
	for i, c := range cs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range msgs {
				if err := c.Send(payload(i, j)); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	waitGroup(t, &echoed, "every echo")
	waitGroup(t, &serverSent, "server OnDataSent for every echo")
	waitGroup(t, &clientsSent, "client OnDataSent for every message")

	want := marmot.Stats{
		ClientCount: clients, TotalConnections: clients, TotalActiveConnections: clients,
		TotalBytesReceived: total, TotalBytesSent: total,
		TotalMessagesReceived: clients * msgs, TotalMessagesSent: clients * msgs,
	}
	if st := s.Stats(); st != want {
		t.Fatalf("server stats\n%+v\nwant\n%+v", st, want)
	}
	var infoBytes int64
	for _, ci := range s.Clients() {
		if ci.MessagesReceived != msgs || ci.MessagesSent != msgs || ci.BytesReceived != ci.BytesSent {
			t.Fatalf("client %d info %+v", ci.ID, ci)
		}
		infoBytes += ci.BytesReceived
	}
	if infoBytes != total {
		t.Fatalf("ClientInfo bytes add up to %d, want %d", infoBytes, total)
	}
	for i, c := range cs {
		wantC := marmot.ClientStats{BytesReceived: perClient[i], BytesSent: perClient[i], MessagesReceived: msgs, MessagesSent: msgs}
		if st := c.Stats(); st != wantC {
			t.Fatalf("client %d stats %+v, want %+v", i, st, wantC)
		}
		// Read after the echoes, which the same actor handled later.
		if r := received[i]; r.msgs != msgs || r.bytes != perClient[i] {
			t.Fatalf("client %d OnDataReceived saw %d messages, %d bytes", i, r.msgs, r.bytes)
		}
	}

	// Closed connections keep their counts in the totals.
	for _, c := range cs {
		if err := c.Disconnect(ctxTimeout(t)); err != nil {
			t.Fatal(err)
		}
	}
	waitGroup(t, &gone, "every OnClientDisconnected")
	want.ClientCount, want.TotalActiveConnections = 0, 0
	if st := s.Stats(); st != want {
		t.Fatalf("server stats after the clients left\n%+v\nwant\n%+v", st, want)
	}
}

// TestClientOnDataReceived: the client's OnDataReceived sees every inbound
// frame exactly as it was on the wire (the bytes the server's OnDataSent
// saw: raw data, or the whole envelope), counted in Stats, before
// OnHandleCommand gets the decoded message.
func TestClientOnDataReceived(t *testing.T) {
	for _, sub := range []string{"", protocol.SubprotocolBinary, protocol.SubprotocolJSON} {
		t.Run("sub="+sub, func(t *testing.T) {
			ids := make(chan marmot.ClientID, 1)
			wire := make(chan []byte, 4)
			s := startServer(t, marmot.ServerConfig{ServerEvents: marmot.ServerEvents{
				OnClientConnected: func(ci marmot.ClientInfo) { ids <- ci.ID },
				OnDataSent:        func(_ marmot.ClientID, d []byte) { wire <- bytes.Clone(d) },
			}})
			type event struct {
				what string
				data []byte
				st   marmot.ClientStats
			}
			events := make(chan event, 8)
			var c *marmot.Client
			c = newClient(t, marmot.ClientConfig{URL: s.URL(), Subprotocol: sub, ClientEvents: marmot.ClientEvents{
				OnDataReceived:  func(d []byte) { events <- event{"data", bytes.Clone(d), c.Stats()} },
				OnHandleCommand: func(m *marmot.Message) { events <- event{"handle " + m.Name, m.Payload, c.Stats()} },
			}})
			if err := c.Connect(ctxTimeout(t)); err != nil {
				t.Fatal(err)
			}
			id := recv(t, ids, "connect")
			var want marmot.ClientStats // counted before OnDataReceived runs
			check := func(name string, send func() error) {
				t.Helper()
				if err := send(); err != nil {
					t.Fatal(err)
				}
				sent := recv(t, wire, "server OnDataSent")
				d := recv(t, events, "OnDataReceived")
				if d.what != "data" || !bytes.Equal(d.data, sent) {
					t.Fatalf("first event %s %q, want data %q", d.what, d.data, sent)
				}
				h := recv(t, events, "OnHandleCommand")
				if h.what != "handle "+name || string(h.data) != "hello" {
					t.Fatalf("second event %s %q", h.what, h.data)
				}
				want.MessagesReceived++
				want.BytesReceived += int64(len(sent))
				if d.st != want || h.st != want {
					t.Fatalf("stats in OnDataReceived %+v, in OnHandleCommand %+v, want %+v", d.st, h.st, want)
				}
				if sub != "" && bytes.Equal(d.data, []byte("hello")) {
					t.Fatal("OnDataReceived saw the payload, not the envelope")
				}
			}
			check("", func() error { return s.SendToClient(id, []byte("hello")) })
			if sub != "" {
				check("greet", func() error { return s.SendCommandToClient(id, "greet", []byte("hello")) })
			}
			if got := c.Stats(); got != want {
				t.Fatalf("stats %+v, want %+v", got, want)
			}
		})
	}
}

// TestReconnectExponentialJitterAndCap: each delay passed to OnReconnecting
// stays within ±ReconnectJitter of ReconnectInterval × 2^(attempt-1)
// capped at MaxReconnectInterval, so it never exceeds MaxReconnectInterval
// × (1 + jitter); and the jitter is applied.
func TestReconnectExponentialJitterAndCap(t *testing.T) {
	cases := []struct {
		name     string
		jitter   float64 // configured
		effect   float64 // in force
		attempts int
	}{
		{"jitter 0.5", 0.5, 0.5, 10},
		{"default jitter", 0, marmot.DefaultReconnectJitter, 8},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			const interval, maxInterval = 10 * time.Millisecond, 80 * time.Millisecond
			srv := &restartableServer{t: t, addr: "127.0.0.1:0"}
			srv.start()
			t.Cleanup(srv.stop)
			delays := make(chan time.Duration, 64)
			attempts := make(chan int, 64)
			errs := make(chan error, 64)
			c := newClient(t, marmot.ClientConfig{URL: srv.s.URL(), AutoReconnect: true,
				ReconnectStrategy: marmot.ReconnectExponential, ReconnectInterval: interval,
				MaxReconnectInterval: maxInterval, ReconnectJitter: tc.jitter, MaxReconnectAttempts: tc.attempts,
				ClientEvents: marmot.ClientEvents{
					OnReconnecting: func(a int, d time.Duration) { attempts <- a; delays <- d },
					OnError:        func(err error) { errs <- err },
				}})
			if j := c.Config().ReconnectJitter; j != tc.effect {
				t.Fatalf("ReconnectJitter in force %v, want %v", j, tc.effect)
			}
			if err := c.Connect(ctxTimeout(t)); err != nil {
				t.Fatal(err)
			}
			srv.stop()
			var jittered bool
			for a := 1; a <= tc.attempts; a++ {
				if got := recv(t, attempts, "OnReconnecting"); got != a {
					t.Fatalf("attempt %d, want %d", got, a)
				}
				d := recv(t, delays, "delay")
				base := min(interval<<(a-1), maxInterval)
				lo := time.Duration(float64(base) * (1 - tc.effect))
				hi := time.Duration(float64(base) * (1 + tc.effect))
				if d < lo-1 || d > hi+1 {
					t.Fatalf("attempt %d: delay %v outside %v ± %v%% [%v, %v]", a, d, base, tc.effect*100, lo, hi)
				}
				if limit := time.Duration(float64(maxInterval) * (1 + tc.effect)); d > limit+1 {
					t.Fatalf("attempt %d: delay %v over the cap %v", a, d, limit)
				}
				if d != base {
					jittered = true
				}
			}
			// A delay comes out unjittered with probability
			// 1/(2 × jitter percent): all of them, 1/20^8 at most.
			if !jittered {
				t.Fatal("no delay was jittered")
			}
			for {
				if err := recv(t, errs, "ErrReconnectExhausted"); errors.Is(err, marmot.ErrReconnectExhausted) {
					break
				}
			}
			if len(attempts) != 0 {
				t.Fatalf("%d attempts beyond MaxReconnectAttempts", len(attempts))
			}
		})
	}
}
