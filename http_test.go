package marmot_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/marmotws/marmot"
	"github.com/marmotws/marmot/actors"
)

func TestHTTPTransportEcho(t *testing.T) {
	infos := make(chan marmot.ClientInfo, 1)
	gone := make(chan *marmot.CloseError, 1)
	s := echoServer(t, marmot.ServerConfig{ServerEvents: marmot.ServerEvents{
		OnClientConnected:    func(ci marmot.ClientInfo) { infos <- ci },
		OnClientDisconnected: func(_ marmot.ClientInfo, ce *marmot.CloseError) { gone <- ce },
	}})
	got := make(chan string, 16)
	c := newClient(t, marmot.ClientConfig{URL: s.URL(), Subprotocol: "marmot.v1", Transport: marmot.TransportHTTP,
		ClientEvents: marmot.ClientEvents{OnHandleCommand: func(m *marmot.Message) { got <- m.Name + ":" + string(m.Payload) }}})
	if err := c.Connect(ctxTimeout(t)); err != nil {
		t.Fatal(err)
	}
	if ci := recv(t, infos, "OnClientConnected"); ci.Transport != "http" || ci.Subprotocol != "marmot.v1" {
		t.Fatalf("server's ClientInfo: transport %q subprotocol %q", ci.Transport, ci.Subprotocol)
	}
	if tr := c.Transport(); tr != "http" {
		t.Fatalf("client transport %q", tr)
	}
	if cl := s.Clients(); len(cl) != 1 || cl[0].Transport != "http" {
		t.Fatalf("Clients() = %+v", cl)
	}
	for i := range 20 {
		if err := c.SendCommand("greet", fmt.Appendf(nil, "hello %d", i)); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 20 {
		if m, want := recv(t, got, "an echo"), fmt.Sprintf("greet:hello %d", i); m != want {
			t.Fatalf("got %q, want %q", m, want)
		}
	}
	reply, err := c.Request(ctxTimeout(t), "time", []byte("ping"))
	if err != nil || string(reply) != "ping" {
		t.Fatalf("Request: %q %v", reply, err)
	}
	if n, err := s.Broadcast([]byte("all")); err != nil || n != 1 {
		t.Fatalf("Broadcast: %d %v", n, err)
	}
	if m := recv(t, got, "the broadcast"); m != ":all" {
		t.Fatalf("broadcast arrived as %q", m)
	}
	st := c.Stats()
	if st.MessagesSent < 21 || st.MessagesReceived < 22 {
		t.Fatalf("client stats %+v", st)
	}
	if err := c.Disconnect(ctxTimeout(t)); err != nil {
		t.Fatal(err)
	}
	if ce := recv(t, gone, "OnClientDisconnected"); ce.Code != 1000 || !ce.ByPeer {
		t.Fatalf("server saw the end as %v", ce)
	}
}

func TestHTTPFallbackDisabled(t *testing.T) {
	s := echoServer(t, marmot.ServerConfig{DisableHTTPFallback: true})
	httpURL := "http" + strings.TrimPrefix(s.URL(), "ws")
	resp, err := http.Post(httpURL+"?transport=http", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound || !strings.Contains(string(body), "HTTP fallback is disabled") {
		t.Fatalf("open with the fallback off: %s %q", resp.Status, body)
	}
	c := newClient(t, marmot.ClientConfig{URL: s.URL(), Transport: marmot.TransportHTTP})
	if err := c.Connect(ctxTimeout(t)); err == nil || !strings.Contains(err.Error(), "404") {
		t.Fatalf("Connect over HTTP with the fallback off: %v", err)
	}
	// WebSocket still works, and auto does not need the fallback.
	c2 := newClient(t, marmot.ClientConfig{URL: s.URL()})
	if err := c2.Connect(ctxTimeout(t)); err != nil {
		t.Fatal(err)
	}
	if tr := c2.Transport(); tr != "websocket" {
		t.Fatalf("auto connected over %q", tr)
	}
}

// stripProxy forwards to target with the Upgrade header removed, as some
// proxies do; upgrades counts the requests that asked for one.
func stripProxy(t *testing.T, target string) (string, *atomic.Int64) {
	t.Helper()
	u, err := url.Parse("http" + strings.TrimPrefix(target, "ws"))
	if err != nil {
		t.Fatal(err)
	}
	var upgrades atomic.Int64
	rp := &httputil.ReverseProxy{Rewrite: func(pr *httputil.ProxyRequest) {
		pr.SetURL(u)
		pr.Out.URL.Path = u.Path
		if pr.Out.Header.Get("Upgrade") != "" {
			upgrades.Add(1)
		}
		pr.Out.Header.Del("Upgrade")
		pr.Out.Header.Del("Connection")
	}}
	ps := httptest.NewServer(rp)
	t.Cleanup(ps.Close)
	return "ws" + strings.TrimPrefix(ps.URL, "http") + u.Path, &upgrades
}

func TestAutoFallsBackWhenUpgradeIsStripped(t *testing.T) {
	s := echoServer(t, marmot.ServerConfig{})
	proxied, upgrades := stripProxy(t, s.URL())
	got := make(chan string, 4)
	c := newClient(t, marmot.ClientConfig{URL: proxied, Subprotocol: "marmot.json.v1",
		ClientEvents: marmot.ClientEvents{OnHandleCommand: func(m *marmot.Message) { got <- string(m.Payload) }}})
	if err := c.Connect(ctxTimeout(t)); err != nil {
		t.Fatal(err)
	}
	if upgrades.Load() == 0 {
		t.Fatal("the client never tried WebSocket")
	}
	if tr := c.Transport(); tr != "http" {
		t.Fatalf("connected over %q through a proxy that strips upgrades", tr)
	}
	if err := c.SendCommand("x", []byte("through the proxy")); err != nil {
		t.Fatal(err)
	}
	if m := recv(t, got, "the echo"); m != "through the proxy" {
		t.Fatalf("got %q", m)
	}
	// Forced WebSocket through the same proxy fails, and says why.
	c2 := newClient(t, marmot.ClientConfig{URL: proxied, Transport: marmot.TransportWebSocket})
	if err := c2.Connect(ctxTimeout(t)); err == nil || !strings.Contains(err.Error(), "400") {
		t.Fatalf("WebSocket through the stripping proxy: %v", err)
	}
}

func TestHTTPTransportEncrypted(t *testing.T) {
	s := encryptedServer(t, marmot.EncryptionConfig{EncryptionMode: "gcm"}, marmot.ServerEvents{})
	got := make(chan string, 1)
	c := newClient(t, marmot.ClientConfig{URL: s.URL(), Transport: marmot.TransportHTTP,
		EncryptionConfig: marmot.EncryptionConfig{EncryptionEnabled: true, EncryptionKey: testKey, EncryptionMode: "gcm", EncryptionKDF: testKDF},
		ClientEvents:     marmot.ClientEvents{OnHandleCommand: func(m *marmot.Message) { got <- string(m.Payload) }}})
	if err := c.Connect(ctxTimeout(t)); err != nil {
		t.Fatal(err)
	}
	reply, err := c.Request(ctxTimeout(t), "echo", []byte("secret"))
	if err != nil || string(reply) != "secret" {
		t.Fatalf("Request: %q %v", reply, err)
	}
	// A wrong key fails over HTTP as over WebSocket: the handshake's 4501.
	c2 := newClient(t, marmot.ClientConfig{URL: s.URL(), Transport: marmot.TransportHTTP,
		EncryptionConfig: marmot.EncryptionConfig{EncryptionEnabled: true, EncryptionKey: "not the key", EncryptionMode: "gcm", EncryptionKDF: testKDF}})
	if err := c2.Connect(ctxTimeout(t)); !errors.Is(err, marmot.ErrHandshakeFailed) {
		t.Fatalf("wrong key over HTTP: %v", err)
	}
	// Encryption mismatch: refused at the open, with the server's profile.
	c3 := newClient(t, marmot.ClientConfig{URL: s.URL(), Transport: marmot.TransportHTTP})
	if err := c3.Connect(ctxTimeout(t)); !errors.Is(err, marmot.ErrEncryptionMismatch) {
		t.Fatalf("plain client over HTTP to an encrypting server: %v", err)
	}
}

func TestHTTPReconnectAfterServerRestart(t *testing.T) {
	s := echoServer(t, marmot.ServerConfig{})
	addr := s.Addr().String()
	connects := make(chan struct{}, 4)
	c := newClient(t, marmot.ClientConfig{URL: s.URL(), Transport: marmot.TransportHTTP, Subprotocol: "marmot.v1",
		AutoReconnect: true, ReconnectInterval: 50 * time.Millisecond,
		ClientEvents: marmot.ClientEvents{OnConnect: func() { connects <- struct{}{} }}})
	if err := c.Connect(ctxTimeout(t)); err != nil {
		t.Fatal(err)
	}
	recv(t, connects, "the first connect")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	start := time.Now()
	if err := s.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > 8*time.Second {
		t.Fatalf("Stop took %v with an HTTP session open", d)
	}
	s2 := echoServer(t, marmot.ServerConfig{Addr: addr})
	recv(t, connects, "the reconnect")
	reply, err := c.Request(ctxTimeout(t), "x", []byte("again"))
	if err != nil || string(reply) != "again" {
		t.Fatalf("Request after the restart: %q %v", reply, err)
	}
	if cl := s2.Clients(); len(cl) != 1 || cl[0].Transport != "http" {
		t.Fatalf("restarted server's clients: %+v", cl)
	}
}

func TestHTTPHostileRequests(t *testing.T) {
	errs := make(chan error, 64)
	gone := make(chan *marmot.CloseError, 4)
	s := echoServer(t, marmot.ServerConfig{MaxConnections: 3, MaxMessageSize: 1000, ServerEvents: marmot.ServerEvents{
		OnError:              func(_ marmot.ClientID, err error) { errs <- err },
		OnClientDisconnected: func(_ marmot.ClientInfo, ce *marmot.CloseError) { gone <- ce },
	}})
	base := "http" + strings.TrimPrefix(s.URL(), "ws")
	do := func(method, query string, body []byte) (int, string) {
		t.Helper()
		req, _ := http.NewRequest(method, base+query, strings.NewReader(string(body)))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	open := func() (int, string) { return do("POST", "?transport=http", nil) }
	// A flood of opens: MaxConnections counts sessions.
	var sids []string
	for i := range 5 {
		code, body := open()
		switch {
		case i < 3 && code == 200:
			sids = append(sids, strings.Split(strings.Split(body, `"session":"`)[1], `"`)[0])
		case i >= 3 && code == 503:
		default:
			t.Fatalf("open %d: %d %s", i, code, body)
		}
	}
	for _, tc := range []struct {
		name, method, query string
		body                []byte
		want                int
	}{
		{"open by GET", "GET", "?transport=http", nil, 405},
		{"unknown session", "GET", "?session=nope&ack=0", nil, 404},
		{"wrong method", "DELETE", "?session=" + sids[0], nil, 405},
		{"bad ack", "GET", "?session=" + sids[0] + "&ack=x", nil, 400},
		{"malformed body", "POST", "?session=" + sids[0] + "&seq=1", []byte{1, 0, 0}, 400},
		{"huge body", "POST", "?session=" + sids[1] + "&seq=1", make([]byte, 100<<10), 413},
	} {
		if code, body := do(tc.method, tc.query, tc.body); code != tc.want {
			t.Errorf("%s: %d %s, want %d", tc.name, code, body, tc.want)
		}
	}
	if ce := recv(t, gone, "the end of the session sent a huge body"); ce.Code != 1009 {
		t.Fatalf("huge body ended the session with %v", ce)
	}
	// A slot is free again.
	if code, body := open(); code != 200 {
		t.Fatalf("open after a session ended: %d %s", code, body)
	}
}

// TestHTTP500Sessions: 500 concurrent HTTP sessions echo with nothing lost.
func TestHTTP500Sessions(t *testing.T) {
	if testing.Short() {
		t.Skip("500 sessions")
	}
	const clients, msgs = 500, 20
	s := echoServer(t, marmot.ServerConfig{MaxConnections: clients})
	sys := actors.NewActorSystem(quietLogger())
	defer sys.Shutdown()
	var wg sync.WaitGroup
	failures := make(chan error, clients)
	for i := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			got := make(chan string, msgs)
			var why atomic.Pointer[marmot.CloseError]
			c, err := marmot.NewClient(marmot.ClientConfig{URL: s.URL(), Transport: marmot.TransportHTTP, Subprotocol: "marmot.v1",
				ActorSystem: sys, Logger: quietLogger(), ConnectionTimeout: time.Minute,
				ClientEvents: marmot.ClientEvents{
					OnHandleCommand: func(m *marmot.Message) { got <- string(m.Payload) },
					OnDisconnect:    func(ce *marmot.CloseError) { why.Store(ce) },
				}})
			if err != nil {
				failures <- err
				return
			}
			defer c.Close(context.Background())
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			if err := c.Connect(ctx); err != nil {
				failures <- fmt.Errorf("client %d: %w", i, err)
				return
			}
			for j := range msgs {
				if err := c.SendCommand("e", fmt.Appendf(nil, "%d/%d", i, j)); err != nil {
					failures <- fmt.Errorf("client %d: %w", i, err)
					return
				}
			}
			for j := range msgs {
				select {
				case m := <-got:
					if want := fmt.Sprintf("%d/%d", i, j); m != want {
						failures <- fmt.Errorf("client %d: got %q, want %q", i, m, want)
						return
					}
				case <-ctx.Done():
					failures <- fmt.Errorf("client %d: %d of %d echoes (state %v, stats %+v, ended by %v)", i, j, msgs, c.State(), c.Stats(), why.Load())
					return
				}
			}
		}()
	}
	wg.Wait()
	close(failures)
	for err := range failures {
		t.Error(err)
	}
	if t.Failed() {
		for _, ci := range s.Clients() {
			if ci.MessagesReceived != msgs || ci.MessagesSent != msgs {
				t.Logf("server side: client %d received %d, sent %d", ci.ID, ci.MessagesReceived, ci.MessagesSent)
			}
		}
	}
	if st := s.Stats(); st.TotalMessagesReceived < clients*msgs {
		t.Fatalf("server received %d messages, want %d", st.TotalMessagesReceived, clients*msgs)
	}
}

// TestHTTPSessionThatStopsPollingIsBounded: a session whose client stops
// polling holds at most MaxQueueBytes unacknowledged, then is closed as a
// slow consumer, as a WebSocket client that stops reading is.
func TestHTTPSessionThatStopsPollingIsBounded(t *testing.T) {
	ids := make(chan marmot.ClientID, 1)
	gone := make(chan *marmot.CloseError, 1)
	s := echoServer(t, marmot.ServerConfig{MaxQueueBytes: 64 << 10, WriteTimeout: time.Second, ServerEvents: marmot.ServerEvents{
		OnClientConnected:    func(ci marmot.ClientInfo) { ids <- ci.ID },
		OnClientDisconnected: func(_ marmot.ClientInfo, ce *marmot.CloseError) { gone <- ce },
	}})
	resp, err := http.Post("http"+strings.TrimPrefix(s.URL(), "ws")+"?transport=http", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	id := recv(t, ids, "the session")
	msg := make([]byte, 1024)
	sent := 0
	for ; sent < 10_000; sent++ {
		if err := s.SendToClient(id, msg); err != nil {
			break
		}
	}
	ce := recv(t, gone, "the end of the session")
	if ce.Code != 4008 && ce.Code != 1006 {
		t.Fatalf("session ended with %v", ce)
	}
	if sent >= 10_000 {
		t.Fatalf("%d messages of 1 KiB were taken for a client that never polls", sent)
	}
	t.Logf("closed with %d after %d messages", ce.Code, sent)
}
