package marmot_test

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/marmotws/marmot"
	"github.com/marmotws/marmot/internal/testpki"
	"github.com/marmotws/marmot/protocol"
)

// refusedDial dials url expecting an HTTP refusal; it returns the status
// and the body.
func refusedDial(t *testing.T, url, subprotocol string, header http.Header) (int, string, http.Header) {
	t.Helper()
	d := websocket.Dialer{HandshakeTimeout: 10 * time.Second}
	if subprotocol != "" {
		d.Subprotocols = []string{subprotocol}
	}
	ws, resp, err := d.Dial(url, header)
	if err == nil {
		ws.Close()
		t.Fatalf("dial %s: upgraded, want a refusal", url)
	}
	if resp == nil {
		t.Fatalf("dial %s: %v (no HTTP response)", url, err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp.StatusCode, string(body), resp.Header
}

// errorsTo collects OnError's errors.
func errorsTo(ch chan error) func(marmot.ClientID, error) {
	return func(_ marmot.ClientID, err error) {
		select {
		case ch <- err:
		default:
		}
	}
}

func TestOriginSameOriginByDefault(t *testing.T) {
	errs := make(chan error, 8)
	srv := startServer(t, marmot.ServerConfig{ServerEvents: marmot.ServerEvents{OnError: errorsTo(errs)}})
	status, body, _ := refusedDial(t, srv.URL(), "", http.Header{"Origin": {"https://evil.example"}})
	if status != http.StatusForbidden || !strings.Contains(body, `origin "https://evil.example" not allowed`) {
		t.Fatalf("got %d %q, want 403 with the origin", status, body)
	}
	if err := recv(t, errs, "OnError"); !errors.Is(err, marmot.ErrOriginRefused) {
		t.Fatalf("OnError got %v, want ErrOriginRefused", err)
	}
	if n := srv.Stats().OriginRefusals; n != 1 {
		t.Fatalf("OriginRefusals = %d, want 1", n)
	}
	// Same origin and no Origin (not a browser) pass.
	host := strings.TrimPrefix(srv.URL(), "ws://")
	host = host[:strings.IndexByte(host, '/')]
	dialHeader(t, srv.URL(), "", http.Header{"Origin": {"http://" + host}})
	dial(t, srv.URL(), "")
}

func TestAllowedOrigins(t *testing.T) {
	srv := startServer(t, marmot.ServerConfig{AllowedOrigins: []string{"*.example.com", "https://exact.test"}})
	for _, ok := range []string{"https://app.example.com", "http://APP.example.com", "https://exact.test"} {
		dialHeader(t, srv.URL(), "", http.Header{"Origin": {ok}})
	}
	for _, bad := range []string{"https://example.org", "http://exact.test", "not a url", "https://a.b.example.net"} {
		if status, _, _ := refusedDial(t, srv.URL(), "", http.Header{"Origin": {bad}}); status != http.StatusForbidden {
			t.Fatalf("Origin %q: status %d, want 403", bad, status)
		}
	}
	if n := srv.Stats().OriginRefusals; n != 4 {
		t.Fatalf("OriginRefusals = %d, want 4", n)
	}
	if _, err := marmot.NewServer(marmot.ServerConfig{AllowedOrigins: []string{"[bad"}}); err == nil {
		t.Fatal("a malformed pattern was accepted")
	}
}

// userAuth lets in "Bearer good-USER" as USER, answers 403 to
// "Bearer banned" and 401 to anything else.
func userAuth(expires time.Duration) func(*http.Request) (*marmot.Identity, error) {
	return func(r *http.Request) (*marmot.Identity, error) {
		h := r.Header.Get("Authorization")
		switch {
		case h == "Bearer banned":
			return nil, marmot.ErrForbidden
		case strings.HasPrefix(h, "Bearer good-"):
			id := &marmot.Identity{UserID: strings.TrimPrefix(h, "Bearer good-"), Claims: map[string]any{"role": "tester"}}
			if expires > 0 {
				id.ExpiresAt = time.Now().Add(expires)
			}
			return id, nil
		case h == "":
			return nil, marmot.ErrNoCredentials
		}
		return nil, errors.New("bad token")
	}
}

func TestAuthenticateRefusals(t *testing.T) {
	errs := make(chan error, 8)
	srv := startServer(t, marmot.ServerConfig{
		Authenticate: userAuth(0),
		ServerEvents: marmot.ServerEvents{OnError: errorsTo(errs)},
	})
	status, body, hdr := refusedDial(t, srv.URL(), "", http.Header{"Authorization": {"Bearer wrong"}})
	if status != http.StatusUnauthorized || hdr.Get("WWW-Authenticate") == "" || strings.Contains(body, "bad token") {
		t.Fatalf("got %d %q %v, want 401 with WWW-Authenticate and no hook text", status, body, hdr)
	}
	if err := recv(t, errs, "OnError"); !errors.Is(err, marmot.ErrUnauthorized) {
		t.Fatalf("OnError got %v, want ErrUnauthorized", err)
	}
	if status, _, _ := refusedDial(t, srv.URL(), "", http.Header{"Authorization": {"Bearer banned"}}); status != http.StatusForbidden {
		t.Fatalf("banned: status %d, want 403", status)
	}
	if err := recv(t, errs, "OnError"); !errors.Is(err, marmot.ErrForbidden) {
		t.Fatalf("OnError got %v, want ErrForbidden", err)
	}
	// Without AuthenticateToken, no credentials is a 401 too.
	if status, _, _ := refusedDial(t, srv.URL(), "", nil); status != http.StatusUnauthorized {
		t.Fatalf("no credentials: status %d, want 401", status)
	}
	if st := srv.Stats(); st.AuthRefusals != 3 || st.TotalConnections != 0 {
		t.Fatalf("AuthRefusals = %d, TotalConnections = %d, want 3 and 0", st.AuthRefusals, st.TotalConnections)
	}
	// The Go client does not retry a 401.
	var failed atomic.Int32
	c := newClient(t, marmot.ClientConfig{
		URL: srv.URL(), RetryFirstConnect: true, ReconnectInterval: 10 * time.Millisecond,
		Token:        func(context.Context) (string, error) { return "wrong", nil },
		ClientEvents: marmot.ClientEvents{OnReconnectFailed: func(int, error) { failed.Add(1) }},
	})
	if err := c.Connect(ctxTimeout(t)); !errors.Is(err, marmot.ErrUnauthorized) {
		t.Fatalf("Connect: %v, want ErrUnauthorized", err)
	}
	if n := failed.Load(); n != 0 {
		t.Fatalf("%d retries of a 401, want none", n)
	}
}

func TestIdentityEverywhere(t *testing.T) {
	connected := make(chan marmot.ClientInfo, 1)
	joined := make(chan marmot.ClientInfo, 1)
	handled := make(chan *marmot.Identity, 1)
	srv := startServer(t, marmot.ServerConfig{
		Authenticate: userAuth(0),
		ServerEvents: marmot.ServerEvents{
			OnClientConnected: func(ci marmot.ClientInfo) { connected <- ci },
			OnJoin:            func(ci marmot.ClientInfo, room string) error { joined <- ci; return nil },
			OnHandleCommand: func(m *marmot.Message) {
				handled <- m.Identity
				_ = m.Reply(m.Payload)
			},
		},
	})
	c := newClient(t, marmot.ClientConfig{
		URL: srv.URL(), Subprotocol: protocol.SubprotocolBinary,
		Token: func(context.Context) (string, error) { return "good-alice", nil },
	})
	if err := c.Connect(ctxTimeout(t)); err != nil {
		t.Fatal(err)
	}
	if ci := recv(t, connected, "OnClientConnected"); ci.Identity == nil || ci.Identity.UserID != "alice" {
		t.Fatalf("ClientInfo.Identity = %+v, want alice", ci.Identity)
	}
	if _, err := c.Request(ctxTimeout(t), "echo", []byte("x")); err != nil {
		t.Fatal(err)
	}
	if id := recv(t, handled, "handler"); id == nil || id.UserID != "alice" || id.Claims["role"] != "tester" {
		t.Fatalf("Message.Identity = %+v, want alice the tester", id)
	}
	if err := c.Join(ctxTimeout(t), "lobby"); err != nil {
		t.Fatal(err)
	}
	if ci := recv(t, joined, "OnJoin"); ci.Identity == nil || ci.Identity.UserID != "alice" {
		t.Fatalf("OnJoin's Identity = %+v, want alice", ci.Identity)
	}
	if cs := srv.Clients(); len(cs) != 1 || cs[0].Identity.UserID != "alice" {
		t.Fatalf("Clients() = %+v", cs)
	}
}

func TestIdentityExpiryClosesAndClientRefreshes(t *testing.T) {
	closed := make(chan *marmot.CloseError, 4)
	srv := startServer(t, marmot.ServerConfig{
		Authenticate: userAuth(300 * time.Millisecond),
		ServerEvents: marmot.ServerEvents{OnClientDisconnected: func(_ marmot.ClientInfo, r *marmot.CloseError) { closed <- r }},
	})
	var tokens atomic.Int32
	connects := make(chan struct{}, 4)
	c := newClient(t, marmot.ClientConfig{
		URL: srv.URL(), AutoReconnect: true, ReconnectInterval: 10 * time.Millisecond, ReconnectJitter: -1,
		Token: func(context.Context) (string, error) {
			tokens.Add(1)
			return "good-bob", nil
		},
		ClientEvents: marmot.ClientEvents{OnConnect: func() { connects <- struct{}{} }},
	})
	if err := c.Connect(ctxTimeout(t)); err != nil {
		t.Fatal(err)
	}
	recv(t, connects, "first connect")
	r := recv(t, closed, "the expiry close")
	if r.Code != marmot.CloseTokenExpired || !errors.Is(r, marmot.ErrTokenExpired) {
		t.Fatalf("closed with %v, want 4001 token expired", r)
	}
	recv(t, connects, "reconnect with a fresh token")
	if n := tokens.Load(); n < 2 {
		t.Fatalf("Token called %d times, want once per connect", n)
	}
	if n := srv.Stats().ExpiredCloses; n < 1 {
		t.Fatalf("ExpiredCloses = %d", n)
	}
}

// authFrame is a marmot.v1 marmot.auth request carrying token.
func authFrame(t *testing.T, id uint64, token string) []byte {
	b, err := protocol.Binary.Append(nil, &protocol.Envelope{Kind: protocol.KindRequest, ID: id, Name: protocol.AuthRequestName, Payload: []byte(token)})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func readEnvelope(t *testing.T, ws *websocket.Conn) protocol.Envelope {
	t.Helper()
	_ = ws.SetReadDeadline(time.Now().Add(waitTimeout))
	_, data, err := ws.ReadMessage()
	if err != nil {
		t.Fatal(err)
	}
	var e protocol.Envelope
	if err := protocol.Binary.Decode(data, &e); err != nil {
		t.Fatal(err)
	}
	return e
}

func firstMessageServer(t *testing.T, events marmot.ServerEvents) *marmot.Server {
	return startServer(t, marmot.ServerConfig{
		Authenticate: userAuth(0),
		AuthenticateToken: func(_ context.Context, token string) (*marmot.Identity, error) {
			if user, ok := strings.CutPrefix(token, "good-"); ok {
				return &marmot.Identity{UserID: user}, nil
			}
			return nil, errors.New("bad token")
		},
		AuthTimeout:  time.Second,
		ServerEvents: events,
	})
}

func TestFirstMessageAuth(t *testing.T) {
	connected := make(chan marmot.ClientInfo, 1)
	handled := make(chan *marmot.Identity, 4)
	srv := firstMessageServer(t, marmot.ServerEvents{
		OnClientConnected: func(ci marmot.ClientInfo) { connected <- ci },
		OnHandleCommand: func(m *marmot.Message) {
			handled <- m.Identity
			_ = m.Reply(m.Payload)
		},
	})
	ws := dial(t, srv.URL(), protocol.SubprotocolBinary)
	// Not authenticated yet: no broadcast, no targeted send, no event.
	waitFor(t, "the pending connection", func() bool { return srv.ClientCount() == 1 })
	if n, err := srv.Broadcast([]byte("secret")); n != 0 || err != nil {
		t.Fatalf("Broadcast reached %d pending connections (%v)", n, err)
	}
	if cs := srv.Clients(); len(cs) != 1 || srv.SendToClient(cs[0].ID, []byte("secret")) == nil {
		t.Fatalf("a targeted send to a pending connection was accepted (%d clients)", len(cs))
	}
	if err := ws.WriteMessage(websocket.BinaryMessage, authFrame(t, 7, "good-carol")); err != nil {
		t.Fatal(err)
	}
	if e := readEnvelope(t, ws); e.Kind != protocol.KindReply || e.ID != 7 {
		t.Fatalf("auth answered with %+v, want the reply to 7", e)
	}
	if ci := recv(t, connected, "OnClientConnected"); ci.Identity == nil || ci.Identity.UserID != "carol" {
		t.Fatalf("OnClientConnected's Identity = %+v, want carol", ci.Identity)
	}
	cmd, _ := protocol.Binary.Append(nil, &protocol.Envelope{Kind: protocol.KindCommand, Name: "hi", Payload: []byte("x")})
	if err := ws.WriteMessage(websocket.BinaryMessage, cmd); err != nil {
		t.Fatal(err)
	}
	if id := recv(t, handled, "handler"); id == nil || id.UserID != "carol" {
		t.Fatalf("Message.Identity = %+v", id)
	}
}

func TestFirstMessageAuthRefusals(t *testing.T) {
	errs := make(chan error, 8)
	srv := firstMessageServer(t, marmot.ServerEvents{
		OnError:         errorsTo(errs),
		OnHandleCommand: func(m *marmot.Message) { t.Errorf("handler saw %q before authentication", m.Name) },
	})
	// A wrong token: an error 401, then 4503.
	ws := dial(t, srv.URL(), protocol.SubprotocolBinary)
	if err := ws.WriteMessage(websocket.BinaryMessage, authFrame(t, 1, "evil")); err != nil {
		t.Fatal(err)
	}
	if e := readEnvelope(t, ws); e.Kind != protocol.KindError || e.Code != 401 {
		t.Fatalf("got %+v, want error 401", e)
	}
	if ce := readClose(t, ws); ce.Code != marmot.CloseUnauthorized {
		t.Fatalf("closed with %d, want 4503", ce.Code)
	}
	if err := recv(t, errs, "OnError"); !errors.Is(err, marmot.ErrUnauthorized) {
		t.Fatalf("OnError: %v", err)
	}
	// Anything else first: 4503.
	ws = dial(t, srv.URL(), protocol.SubprotocolBinary)
	cmd, _ := protocol.Binary.Append(nil, &protocol.Envelope{Kind: protocol.KindCommand, Name: "hi"})
	if err := ws.WriteMessage(websocket.BinaryMessage, cmd); err != nil {
		t.Fatal(err)
	}
	if ce := readClose(t, ws); ce.Code != marmot.CloseUnauthorized {
		t.Fatalf("closed with %d, want 4503", ce.Code)
	}
	// Nothing within AuthTimeout: 4503.
	ws = dial(t, srv.URL(), protocol.SubprotocolBinary)
	if ce := readClose(t, ws); ce.Code != marmot.CloseUnauthorized || !strings.Contains(ce.Text, "in time") {
		t.Fatalf("closed with %d %q, want 4503 (in time)", ce.Code, ce.Text)
	}
	if n := srv.Stats().AuthRefusals; n != 3 {
		t.Fatalf("AuthRefusals = %d, want 3", n)
	}
}

func TestClientTokenInMessage(t *testing.T) {
	for _, encrypted := range []bool{false, true} {
		t.Run(map[bool]string{false: "plain", true: "secure"}[encrypted], func(t *testing.T) {
			var enc marmot.EncryptionConfig
			if encrypted {
				enc = marmot.EncryptionConfig{EncryptionEnabled: true, EncryptionKey: "k3y for the test", EncryptionMode: "gcm", EncryptionKDF: testKDF}
			}
			srv := startServer(t, marmot.ServerConfig{
				AuthenticateToken: func(_ context.Context, token string) (*marmot.Identity, error) {
					if token != "good-dave" {
						return nil, errors.New("bad token")
					}
					return &marmot.Identity{UserID: "dave"}, nil
				},
				EncryptionConfig: enc,
				ServerEvents: marmot.ServerEvents{OnHandleCommand: func(m *marmot.Message) {
					_ = m.Reply([]byte(m.Identity.UserID))
				}},
			})
			token := "good-dave"
			c := newClient(t, marmot.ClientConfig{
				URL: srv.URL(), Subprotocol: protocol.SubprotocolBinary, EncryptionConfig: enc, TokenInMessage: true,
				Token: func(context.Context) (string, error) { return token, nil },
			})
			if err := c.Connect(ctxTimeout(t)); err != nil {
				t.Fatal(err)
			}
			got, err := c.Request(ctxTimeout(t), "whoami", nil)
			if err != nil || string(got) != "dave" {
				t.Fatalf("whoami = %q, %v", got, err)
			}
			token = "evil"
			bad := newClient(t, marmot.ClientConfig{
				URL: srv.URL(), Subprotocol: protocol.SubprotocolBinary, EncryptionConfig: enc, TokenInMessage: true,
				Token: func(context.Context) (string, error) { return "evil", nil },
			})
			if err := bad.Connect(ctxTimeout(t)); !errors.Is(err, marmot.ErrUnauthorized) {
				t.Fatalf("Connect with a bad token: %v, want ErrUnauthorized", err)
			}
		})
	}
}

func TestIPLimits(t *testing.T) {
	gone := make(chan struct{}, 4)
	srv := startServer(t, marmot.ServerConfig{
		Limits:       marmot.Limits{MaxConnectionsPerIP: 2},
		ServerEvents: marmot.ServerEvents{OnClientDisconnected: func(marmot.ClientInfo, *marmot.CloseError) { gone <- struct{}{} }},
	})
	a := dial(t, srv.URL(), "")
	dial(t, srv.URL(), "")
	status, body, hdr := refusedDial(t, srv.URL(), "", nil)
	if status != http.StatusTooManyRequests || hdr.Get("Retry-After") == "" || !strings.Contains(body, "more than 2 connections") {
		t.Fatalf("third connection: %d %q, want 429 with Retry-After", status, body)
	}
	a.Close()
	recv(t, gone, "the first connection's end")
	dial(t, srv.URL(), "") // its slot is free again
	if n := srv.Stats().IPLimitRefusals; n != 1 {
		t.Fatalf("IPLimitRefusals = %d, want 1", n)
	}

	rated := startServer(t, marmot.ServerConfig{Limits: marmot.Limits{ConnectionsPerSecondPerIP: 0.001, ConnectionBurstPerIP: 2}})
	dial(t, rated.URL(), "")
	dial(t, rated.URL(), "")
	if status, body, _ := refusedDial(t, rated.URL(), "", nil); status != http.StatusTooManyRequests || !strings.Contains(body, "per second") {
		t.Fatalf("third connection in a burst of 2: %d %q, want 429", status, body)
	}
	// The Go client sees ErrIPLimit.
	c := newClient(t, marmot.ClientConfig{URL: rated.URL()})
	if err := c.Connect(ctxTimeout(t)); !errors.Is(err, marmot.ErrIPLimit) {
		t.Fatalf("Connect: %v, want ErrIPLimit", err)
	}
}

func TestMessageRateClose(t *testing.T) {
	errs := make(chan error, 8)
	srv := startServer(t, marmot.ServerConfig{
		Limits:       marmot.Limits{MessagesPerSecond: 0.001, MessageBurst: 2},
		ServerEvents: marmot.ServerEvents{OnError: errorsTo(errs), OnHandleCommand: func(m *marmot.Message) { _ = m.Reply(m.Payload) }},
	})
	ws := dial(t, srv.URL(), "")
	for i := 0; i < 3; i++ {
		if err := ws.WriteMessage(websocket.TextMessage, []byte("m")); err != nil {
			t.Fatal(err)
		}
	}
	if ce := readClose(t, ws); ce.Code != websocket.ClosePolicyViolation || !strings.Contains(ce.Text, "rate limit") {
		t.Fatalf("closed with %d %q, want 1008 rate limit", ce.Code, ce.Text)
	}
	if err := recv(t, errs, "OnError"); !errors.Is(err, marmot.ErrRateLimited) {
		t.Fatalf("OnError: %v", err)
	}
	if n := srv.Stats().RateLimited; n != 1 {
		t.Fatalf("RateLimited = %d, want 1", n)
	}

	bytesSrv := startServer(t, marmot.ServerConfig{Limits: marmot.Limits{BytesPerSecond: 0.001, ByteBurst: 100}})
	ws = dial(t, bytesSrv.URL(), "")
	for i := 0; i < 2; i++ {
		if err := ws.WriteMessage(websocket.TextMessage, []byte(strings.Repeat("b", 60))); err != nil {
			t.Fatal(err)
		}
	}
	if ce := readClose(t, ws); ce.Code != websocket.ClosePolicyViolation {
		t.Fatalf("closed with %d, want 1008", ce.Code)
	}
}

func TestMessageRateDrop(t *testing.T) {
	errs := make(chan error, 8)
	gone := make(chan struct{}, 1)
	srv := startServer(t, marmot.ServerConfig{
		Limits: marmot.Limits{MessagesPerSecond: 0.001, MessageBurst: 2, Policy: marmot.RateLimitDrop},
		ServerEvents: marmot.ServerEvents{
			OnError:              errorsTo(errs),
			OnHandleCommand:      func(m *marmot.Message) { _ = m.Reply(m.Payload) },
			OnClientDisconnected: func(marmot.ClientInfo, *marmot.CloseError) { gone <- struct{}{} },
		},
	})
	ws := dial(t, srv.URL(), "")
	for i := 0; i < 5; i++ {
		if err := ws.WriteMessage(websocket.TextMessage, []byte{'0' + byte(i)}); err != nil {
			t.Fatal(err)
		}
	}
	for i := 0; i < 2; i++ {
		_ = ws.SetReadDeadline(time.Now().Add(waitTimeout))
		if _, got, err := ws.ReadMessage(); err != nil || got[0] != '0'+byte(i) {
			t.Fatalf("echo %d: %q %v", i, got, err)
		}
	}
	if err := recv(t, errs, "OnError"); !errors.Is(err, marmot.ErrRateLimited) {
		t.Fatalf("OnError: %v", err)
	}
	_ = ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(1000, ""), time.Now().Add(time.Second))
	recv(t, gone, "disconnect")
	if n := srv.Stats().RateLimited; n != 3 {
		t.Fatalf("RateLimited = %d, want 3", n)
	}
	select {
	case err := <-errs:
		t.Fatalf("a run of drops reported twice: %v", err)
	default:
	}
}

func TestTLS(t *testing.T) {
	pki := testpki.New(t)
	echo := marmot.ServerEvents{OnHandleCommand: func(m *marmot.Message) { _ = m.Reply(m.Payload) }}
	srv := startServer(t, marmot.ServerConfig{TLSConfig: &tls.Config{Certificates: []tls.Certificate{pki.Server}}, ServerEvents: echo})
	if !strings.HasPrefix(srv.URL(), "wss://") {
		t.Fatalf("URL() = %s, want wss://", srv.URL())
	}
	c := newClient(t, marmot.ClientConfig{URL: srv.URL(), Subprotocol: protocol.SubprotocolBinary, TLSConfig: &tls.Config{RootCAs: pki.CAPool}})
	if err := c.Connect(ctxTimeout(t)); err != nil {
		t.Fatal(err)
	}
	if got, err := c.Request(ctxTimeout(t), "echo", []byte("over tls")); err != nil || string(got) != "over tls" {
		t.Fatalf("echo = %q, %v", got, err)
	}

	// The wrong CA (the system's roots): ErrCertificate, not retried.
	var failed atomic.Int32
	bad := newClient(t, marmot.ClientConfig{
		URL: srv.URL(), RetryFirstConnect: true, AutoReconnect: true, ReconnectInterval: 10 * time.Millisecond,
		ClientEvents: marmot.ClientEvents{OnReconnectFailed: func(int, error) { failed.Add(1) }},
	})
	err := bad.Connect(ctxTimeout(t))
	if !errors.Is(err, marmot.ErrCertificate) {
		t.Fatalf("Connect with the wrong CA: %v, want ErrCertificate", err)
	}
	if n := failed.Load(); n != 0 {
		t.Fatalf("%d retries after a certificate error, want none", n)
	}
	other := testpki.New(t)
	bad2 := newClient(t, marmot.ClientConfig{URL: srv.URL(), TLSConfig: &tls.Config{RootCAs: other.CAPool}})
	if err := bad2.Connect(ctxTimeout(t)); !errors.Is(err, marmot.ErrCertificate) {
		t.Fatalf("Connect with another CA: %v, want ErrCertificate", err)
	}

	// Certificate files; a plain ws:// dial to the TLS port fails.
	files := startServer(t, marmot.ServerConfig{TLSCertFile: pki.CertFile, TLSKeyFile: pki.KeyFile, ServerEvents: echo})
	d := websocket.Dialer{TLSClientConfig: &tls.Config{RootCAs: pki.CAPool}, HandshakeTimeout: 10 * time.Second}
	ws, _, err := d.Dial(files.URL(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	if err := ws.WriteMessage(websocket.TextMessage, []byte("hi")); err != nil {
		t.Fatal(err)
	}
	_ = ws.SetReadDeadline(time.Now().Add(waitTimeout))
	if _, got, err := ws.ReadMessage(); err != nil || string(got) != "hi" {
		t.Fatalf("echo over wss: %q %v", got, err)
	}
	if _, _, err := websocket.DefaultDialer.Dial(strings.Replace(files.URL(), "wss://", "ws://", 1), nil); err == nil {
		t.Fatal("plain ws:// to a TLS server upgraded")
	}
	if _, err := marmot.NewServer(marmot.ServerConfig{TLSCertFile: pki.CertFile}); err == nil {
		t.Fatal("a certificate without its key was accepted")
	}
}

// TestMessageRateDropEncrypted: dropped frames are still opened, so the
// secure session's sequence goes on and the connection stays up.
func TestMessageRateDropEncrypted(t *testing.T) {
	enc := marmot.EncryptionConfig{EncryptionEnabled: true, EncryptionKey: "k3y for the test", EncryptionMode: "gcm", EncryptionKDF: testKDF}
	errs := make(chan error, 8)
	closed := make(chan *marmot.CloseError, 1)
	srv := startServer(t, marmot.ServerConfig{
		EncryptionConfig: enc,
		Limits:           marmot.Limits{MessagesPerSecond: 0.001, MessageBurst: 2, Policy: marmot.RateLimitDrop},
		ServerEvents: marmot.ServerEvents{
			OnError:              errorsTo(errs),
			OnHandleCommand:      func(m *marmot.Message) { _ = m.Reply(m.Payload) },
			OnClientDisconnected: func(_ marmot.ClientInfo, r *marmot.CloseError) { closed <- r },
		},
	})
	got := make(chan string, 8)
	c := newClient(t, marmot.ClientConfig{URL: srv.URL(), EncryptionConfig: enc,
		ClientEvents: marmot.ClientEvents{OnHandleCommand: func(m *marmot.Message) { got <- string(m.Payload) }}})
	if err := c.Connect(ctxTimeout(t)); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 5; i++ {
		if err := c.SendCommand("n", []byte{'0' + byte(i)}); err != nil {
			t.Fatal(err)
		}
	}
	for i := 0; i < 2; i++ {
		if m := recv(t, got, "echo"); m != string(rune('0'+i)) {
			t.Fatalf("echo %d: %q", i, m)
		}
	}
	if err := recv(t, errs, "OnError"); !errors.Is(err, marmot.ErrRateLimited) {
		t.Fatalf("OnError: %v", err)
	}
	if err := c.Disconnect(ctxTimeout(t)); err != nil {
		t.Fatal(err)
	}
	if r := recv(t, closed, "disconnect"); r.Code != marmot.CloseNormal {
		t.Fatalf("closed with %v, want 1000 (no decrypt failure after the drops)", r)
	}
	if st := srv.Stats(); st.RateLimited != 3 || st.DecryptFailures != 0 {
		t.Fatalf("RateLimited = %d, DecryptFailures = %d, want 3 and 0", st.RateLimited, st.DecryptFailures)
	}
}

// TestSecurityTelemetry: the user id (only) on the upgrade and process
// spans as enduser.id, refusals labelled on the upgrade span, and the
// counters as metrics.
func TestSecurityTelemetry(t *testing.T) {
	tel := newTelemetryKit(t)
	srv := startServer(t, marmot.ServerConfig{
		TracerProvider: tel.tp, MeterProvider: tel.mp,
		Authenticate: userAuth(0),
		ServerEvents: marmot.ServerEvents{OnHandleCommand: echoHandler},
	})
	ws := dialHeader(t, srv.URL(), protocol.SubprotocolBinary, http.Header{"Authorization": {"Bearer good-erin"}})
	cmd, _ := protocol.Binary.Append(nil, &protocol.Envelope{Kind: protocol.KindRequest, ID: 1, Name: "hi"})
	if err := ws.WriteMessage(websocket.BinaryMessage, cmd); err != nil {
		t.Fatal(err)
	}
	readEnvelope(t, ws)
	for _, name := range []string{"marmot.upgrade", "process hi"} {
		sp := tel.spans.wait(t, 1, name, func(sp sdktrace.ReadOnlySpan) bool {
			_, ok := attr(sp, "enduser.id")
			return sp.Name() == name && ok
		})[0]
		wantAttr(t, sp, "enduser.id", "erin")
		for _, kv := range sp.Attributes() {
			if strings.Contains(kv.Value.Emit(), "tester") || strings.Contains(kv.Value.Emit(), "Bearer") {
				t.Errorf("%s carries %s=%s: claims or tokens on a span", name, kv.Key, kv.Value.Emit())
			}
		}
	}
	if status, _, _ := refusedDial(t, srv.URL(), "", http.Header{"Authorization": {"Bearer nope"}, "Origin": {"https://evil.example"}}); status != http.StatusForbidden {
		t.Fatalf("status %d, want 403 (the origin is checked first)", status)
	}
	if status, _, _ := refusedDial(t, srv.URL(), "", http.Header{"Authorization": {"Bearer nope"}}); status != http.StatusUnauthorized {
		t.Fatalf("status %d, want 401", status)
	}
	for _, reason := range []string{"origin", "unauthorized"} {
		tel.spans.wait(t, 1, "refused upgrade "+reason, func(sp sdktrace.ReadOnlySpan) bool {
			v, ok := attr(sp, "marmot.refusal.reason")
			return sp.Name() == "marmot.upgrade" && ok && v.AsString() == reason
		})
	}
	if got := collectInt(t, tel, "marmot.auth.refusals"); got != 1 {
		t.Errorf("marmot.auth.refusals = %d, want 1", got)
	}
	if got := collectInt(t, tel, "marmot.origin.refusals"); got != 1 {
		t.Errorf("marmot.origin.refusals = %d, want 1", got)
	}
}

func TestSecurityConfigErrors(t *testing.T) {
	for name, cfg := range map[string]marmot.ClientConfig{
		"TokenInMessage without Token": {TokenInMessage: true},
		"TokenInMessage with compat": {TokenInMessage: true, Token: func(context.Context) (string, error) { return "t", nil },
			EncryptionConfig: marmot.EncryptionConfig{EncryptionEnabled: true, EncryptionKey: "k", EncryptionProfile: "compat"}},
	} {
		if _, err := marmot.NewClient(cfg); err == nil {
			t.Errorf("%s: NewClient accepted it", name)
		}
	}
	for name, cfg := range map[string]marmot.ServerConfig{
		"negative rate":    {Limits: marmot.Limits{MessagesPerSecond: -1}},
		"unknown policy":   {Limits: marmot.Limits{Policy: 7}},
		"key without cert": {TLSKeyFile: "key.pem"},
		"missing files":    {TLSCertFile: "/nonexistent/cert.pem", TLSKeyFile: "/nonexistent/key.pem"},
		"TLS without cert": {TLSConfig: &tls.Config{}},
	} {
		if _, err := marmot.NewServer(cfg); err == nil {
			t.Errorf("%s: NewServer accepted it", name)
		}
	}
}
