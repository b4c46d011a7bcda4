package marmot_test

import (
	"bytes"
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/marmotws/marmot"
	"github.com/marmotws/marmot/crypto"
	"github.com/marmotws/marmot/protocol"
)

// Forward secrecy (handshake version 2) over real sockets: what goes on
// the wire, tampering and replay, and the downgrade rules in every
// combination of old and current peers.

var (
	// oldClientHeader is what a secure client from before version 2 sends.
	oldClientHeader = http.Header{marmot.HeaderEncryption: {"secure"}}
	// currentHeader is what a current one sends.
	currentHeader = http.Header{marmot.HeaderEncryption: {"secure"}, marmot.HeaderHandshake: {"2"}}
)

func secureClientConfig(url string, allowLegacy bool) marmot.ClientConfig {
	return marmot.ClientConfig{URL: url, EncryptionConfig: marmot.EncryptionConfig{EncryptionEnabled: true,
		EncryptionKey: testKey, EncryptionMode: "gcm", EncryptionAllowLegacyHandshake: allowLegacy}}
}

// readBinary reads one binary message (a handshake message), or fails.
func readBinary(t *testing.T, ws *websocket.Conn, what string) []byte {
	t.Helper()
	_ = ws.SetReadDeadline(time.Now().Add(waitTimeout))
	typ, b, err := ws.ReadMessage()
	if err != nil || typ != websocket.BinaryMessage {
		t.Fatalf("%s: type %d, %v", what, typ, err)
	}
	return b
}

func TestForwardSecrecyOnTheWire(t *testing.T) {
	s := encryptedServer(t, marmot.EncryptionConfig{EncryptionMode: "gcm"}, marmot.ServerEvents{})
	ring, err := crypto.NewKeyring([]byte(testKey))
	if err != nil {
		t.Fatal(err)
	}
	cc := crypto.ClientConfig{Keyring: ring, Mode: crypto.ModeGCM, KeySize: crypto.KeySize256}

	// Two connections: each hello carries a fresh ephemeral key, and the
	// session works (an echo).
	var keys [][]byte
	for range 2 {
		ws := dialHeader(t, s.URL(), protocol.SubprotocolBinary, currentHeader)
		hello := readBinary(t, ws, "ServerHello")
		var sh crypto.ServerHello
		if err := sh.UnmarshalBinary(hello); err != nil || sh.Version != crypto.HandshakeVersion {
			t.Fatalf("ServerHello version %d: %v", sh.Version, err)
		}
		keys = append(keys, sh.Ephemeral[:])
		hs, err := crypto.NewClientHandshake(cc, hello)
		if err != nil {
			t.Fatal(err)
		}
		if err := ws.WriteMessage(websocket.BinaryMessage, hs.Hello()); err != nil {
			t.Fatal(err)
		}
		sess, err := hs.Finish(readBinary(t, ws, "ServerFinished"))
		if err != nil || hs.Version() != crypto.HandshakeVersion {
			t.Fatalf("version %d: %v", hs.Version(), err)
		}
		c := &secureConn{ws: ws, sess: sess}
		if err := ws.WriteMessage(websocket.BinaryMessage, c.seal(t, &protocol.Envelope{Kind: protocol.KindData, Payload: []byte("fs")})); err != nil {
			t.Fatal(err)
		}
		if e := c.read(t); string(e.Payload) != "fs" {
			t.Fatalf("echo %q", e.Payload)
		}
	}
	if bytes.Equal(keys[0], keys[1]) {
		t.Fatal("two connections got the same server ephemeral key")
	}

	// The marmot client speaks it too.
	c := newClient(t, secureClientConfig(s.URL(), false))
	if err := c.Connect(ctxTimeout(t)); err != nil {
		t.Fatal(err)
	}
}

// Tampering with either ephemeral key in transit, or replaying a recorded
// ClientHello into another connection, fails key confirmation: the server
// closes with 4501 "wrong key" and reports crypto.ErrWrongKey.
func TestForwardSecrecyTamperAndReplay(t *testing.T) {
	errs := make(chan error, 8)
	s := encryptedServer(t, marmot.EncryptionConfig{EncryptionMode: "gcm"}, marmot.ServerEvents{
		OnError: func(_ marmot.ClientID, err error) { errs <- err },
	})
	ring, err := crypto.NewKeyring([]byte(testKey))
	if err != nil {
		t.Fatal(err)
	}
	cc := crypto.ClientConfig{Keyring: ring, Mode: crypto.ModeGCM, KeySize: crypto.KeySize256}
	const serverKeyAt, clientKeyAt = 56, 40 // docs/ENCRYPTION.md 2.3
	var recorded []byte
	for _, tc := range []struct {
		name   string
		server func([]byte) // changes the ServerHello before the client reads it
		client func([]byte) // changes the ClientHello before it is sent
	}{
		{name: "server ephemeral key", server: func(b []byte) { b[serverKeyAt+7] ^= 0x10 }},
		{name: "client ephemeral key", client: func(b []byte) { b[clientKeyAt+3] ^= 0x01 }},
		{name: "replayed ClientHello", client: func(b []byte) { copy(b, recorded) }},
	} {
		if recorded == nil { // one genuine handshake to record
			ws := dialHeader(t, s.URL(), protocol.SubprotocolBinary, currentHeader)
			hs, err := crypto.NewClientHandshake(cc, readBinary(t, ws, "ServerHello"))
			if err != nil {
				t.Fatal(err)
			}
			recorded = hs.Hello()
			_ = ws.WriteMessage(websocket.BinaryMessage, recorded)
			if _, err := hs.Finish(readBinary(t, ws, "ServerFinished")); err != nil {
				t.Fatal(err)
			}
		}
		ws := dialHeader(t, s.URL(), protocol.SubprotocolBinary, currentHeader)
		hello := readBinary(t, ws, "ServerHello")
		if tc.server != nil {
			tc.server(hello)
		}
		hs, err := crypto.NewClientHandshake(cc, hello)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		ch := bytes.Clone(hs.Hello())
		if tc.client != nil {
			tc.client(ch)
		}
		if err := ws.WriteMessage(websocket.BinaryMessage, ch); err != nil {
			t.Fatal(err)
		}
		if ce := readClose(t, ws); ce.Code != marmot.CloseHandshakeFailed || ce.Text != "wrong key" {
			t.Fatalf("%s: close %d %q, want 4501 wrong key", tc.name, ce.Code, ce.Text)
		}
		if err := recv(t, errs, "OnError"); !errors.Is(err, crypto.ErrWrongKey) {
			t.Fatalf("%s: OnError %v", tc.name, err)
		}
	}
	if st := s.Stats(); st.HandshakeFailures != 3 {
		t.Fatalf("%d handshake failures, want 3", st.HandshakeFailures)
	}
}

// An old client (no X-Marmot-Handshake) is refused by default with 4501
// "downgrade refused" before any handshake message, counted and reported
// as crypto.ErrDowngrade.
func TestDowngradeOldClientRefused(t *testing.T) {
	errs := make(chan error, 2)
	s := encryptedServer(t, marmot.EncryptionConfig{EncryptionMode: "gcm"}, marmot.ServerEvents{
		OnError: func(_ marmot.ClientID, err error) { errs <- err },
	})
	ws := dialHeader(t, s.URL(), protocol.SubprotocolBinary, oldClientHeader)
	_ = ws.SetReadDeadline(time.Now().Add(waitTimeout))
	_, msg, err := ws.ReadMessage()
	var ce *websocket.CloseError
	if !errors.As(err, &ce) || ce.Code != marmot.CloseHandshakeFailed || ce.Text != "downgrade refused" {
		t.Fatalf("old client got %d bytes, %v; want close 4501 downgrade refused", len(msg), err)
	}
	if err := recv(t, errs, "OnError"); !errors.Is(err, crypto.ErrDowngrade) || !errors.Is(err, marmot.ErrHandshakeFailed) {
		t.Fatalf("OnError %v", err)
	}
	if st := s.Stats(); st.HandshakeFailures != 1 || st.TotalConnections != 0 {
		t.Fatalf("stats: %d handshake failures, %d connections", st.HandshakeFailures, st.TotalConnections)
	}
}

// oldClientHandshake runs a version-1 client written from the spec
// (docs/ENCRYPTION.md 2.3-2.4, with the standard library only), as a marmot
// client from before version 2 would, and checks the server's Finished.
func oldClientHandshake(t *testing.T, ws *websocket.Conn, hello []byte) {
	t.Helper()
	var sh crypto.ServerHello
	if err := sh.UnmarshalBinary(hello); err != nil || sh.Version != crypto.HandshakeV1 {
		t.Fatalf("old client: ServerHello version %d, %v", sh.Version, err)
	}
	master, err := pbkdf2.Key(sha256.New, testKey, sh.Salt, int(sh.KDF.Iterations), 32)
	if err != nil {
		t.Fatal(err)
	}
	ch := make([]byte, 72)
	copy(ch, "MRCH")
	ch[4], ch[5], ch[6] = 1, byte(crypto.ModeGCM), byte(crypto.KeySize256)
	_, _ = rand.Read(ch[8:40])
	prk, _ := hkdf.Extract(sha256.New, master, append(bytes.Clone(ch[8:40]), sh.Nonce[:]...))
	th := sha256.Sum256(append(bytes.Clone(hello), ch[:40]...))
	tag := func(label string, extra []byte) []byte {
		k, _ := hkdf.Expand(sha256.New, prk, label+string(th[:]), 32)
		m := hmac.New(sha256.New, k)
		m.Write(th[:])
		m.Write(extra)
		return m.Sum(nil)
	}
	copy(ch[40:], tag("marmot v1 confirm c2s", nil))
	if err := ws.WriteMessage(websocket.BinaryMessage, ch); err != nil {
		t.Fatal(err)
	}
	fin := readBinary(t, ws, "ServerFinished")
	if len(fin) != 40 || fin[4] != 1 || !hmac.Equal(fin[8:], tag("marmot v1 confirm s2c", ch[40:])) {
		t.Fatalf("old client cannot verify the server's Finished (%d bytes, version %d)", len(fin), fin[4])
	}
}

// With EncryptionAllowLegacyHandshake the server admits an old client with
// the version-1 handshake (whose ServerHello ends its nonce with the
// downgrade sentinel), and still gives current clients version 2.
// The upgrade span says which version each accepted client got.
func TestDowngradeOldClientAllowed(t *testing.T) {
	tel := newTelemetryKit(t)
	s := startServer(t, marmot.ServerConfig{TracerProvider: tel.tp, EncryptionConfig: marmot.EncryptionConfig{EncryptionEnabled: true,
		EncryptionKey: testKey, EncryptionKDF: testKDF, EncryptionMode: "gcm", EncryptionAllowLegacyHandshake: true}})
	ws := dialHeader(t, s.URL(), protocol.SubprotocolBinary, oldClientHeader)
	hello := readBinary(t, ws, "ServerHello")
	if len(hello) < 56 || string(hello[48:56]) != "MRDOWNG2" {
		t.Fatalf("legacy ServerHello without the downgrade sentinel: % x", hello)
	}
	oldClientHandshake(t, ws, hello)

	cur := dialHeader(t, s.URL(), protocol.SubprotocolBinary, currentHeader)
	if v := readBinary(t, cur, "ServerHello")[4]; v != crypto.HandshakeVersion {
		t.Fatalf("current client got version %d", v)
	}
	c := newClient(t, secureClientConfig(s.URL(), true))
	if err := c.Connect(ctxTimeout(t)); err != nil {
		t.Fatal(err)
	}
	// The old client's and the marmot client's upgrades (the raw current
	// connection never finishes its handshake).
	versions := map[int64]int{}
	for _, sp := range tel.spans.wait(t, 2, "accepted marmot.upgrade", func(sp sdktrace.ReadOnlySpan) bool {
		_, ok := attr(sp, "marmot.handshake.version")
		return sp.Name() == "marmot.upgrade" && ok
	}) {
		v, _ := attr(sp, "marmot.handshake.version")
		versions[v.AsInt64()]++
	}
	if versions[1] != 1 || versions[2] != 1 {
		t.Fatalf("upgrade spans' handshake versions %v, want one 1 and one 2", versions)
	}
}

// A man in the middle that removes the client's announcement gets the
// legacy handshake from a server that allows it, but the sentinel makes the
// current client refuse it, even with EncryptionAllowLegacyHandshake: close
// 4501 "downgrade refused", crypto.ErrDowngrade on both sides.
func TestDowngradeStrippedAnnouncement(t *testing.T) {
	errs := make(chan error, 2)
	s := encryptedServer(t, marmot.EncryptionConfig{EncryptionMode: "gcm", EncryptionAllowLegacyHandshake: true}, marmot.ServerEvents{
		OnError: func(_ marmot.ClientID, err error) { errs <- err },
	})
	target, err := url.Parse(strings.Replace(s.URL(), "ws://", "http://", 1))
	if err != nil {
		t.Fatal(err)
	}
	proxy := httputil.NewSingleHostReverseProxy(&url.URL{Scheme: target.Scheme, Host: target.Host})
	inner := proxy.Director
	stripped := make(chan string, 4)
	proxy.Director = func(r *http.Request) {
		inner(r)
		stripped <- r.Header.Get(marmot.HeaderHandshake)
		r.Header.Del(marmot.HeaderHandshake)
	}
	mitm := httptest.NewServer(proxy)
	t.Cleanup(mitm.Close)

	c := newClient(t, secureClientConfig(strings.Replace(mitm.URL, "http://", "ws://", 1)+target.Path, true))
	err = c.Connect(ctxTimeout(t))
	if !errors.Is(err, marmot.ErrHandshakeFailed) || !errors.Is(err, crypto.ErrDowngrade) {
		t.Fatalf("client through the stripping proxy: %v", err)
	}
	if h := recv(t, stripped, "proxied request"); h != "2" {
		t.Fatalf("the client announced %q, want 2", h)
	}
	if err := recv(t, errs, "server OnError"); !errors.Is(err, crypto.ErrDowngrade) {
		t.Fatalf("server OnError: %v", err)
	}
	if st := s.Stats(); st.TotalConnections != 0 {
		t.Fatalf("%d connections admitted", st.TotalConnections)
	}
}

// oldServer is a secure server from before version 2: it sends a version-1
// ServerHello (random nonce, no sentinel) and reports what the client did.
func oldServer(t *testing.T) (string, <-chan []byte, <-chan *websocket.CloseError) {
	answers := make(chan []byte, 1)
	closes := make(chan *websocket.CloseError, 1)
	up := websocket.Upgrader{Subprotocols: []string{protocol.SubprotocolBinary}}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ws, err := up.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		defer ws.Close()
		sh := crypto.ServerHello{Version: crypto.HandshakeV1, Mode: crypto.ModeGCM, KeySize: crypto.KeySize256,
			KDF: testKDF, Salt: bytes.Repeat([]byte{7}, 16)}
		_, _ = rand.Read(sh.Nonce[:])
		hello, _ := sh.MarshalBinary()
		_ = ws.WriteMessage(websocket.BinaryMessage, hello)
		_ = ws.SetReadDeadline(time.Now().Add(waitTimeout))
		_, msg, err := ws.ReadMessage()
		var ce *websocket.CloseError
		if errors.As(err, &ce) {
			closes <- ce
		} else if err == nil {
			answers <- msg
		}
	}))
	t.Cleanup(srv.Close)
	return strings.Replace(srv.URL, "http://", "ws://", 1), answers, closes
}

// A current client meeting an old server refuses it by default (4501
// "downgrade refused", no retry) and answers with the version-1 ClientHello
// when EncryptionAllowLegacyHandshake is set.
func TestDowngradeOldServer(t *testing.T) {
	u, answers, closes := oldServer(t)
	c := newClient(t, secureClientConfig(u, false))
	if err := c.Connect(ctxTimeout(t)); !errors.Is(err, crypto.ErrDowngrade) || !errors.Is(err, marmot.ErrHandshakeFailed) {
		t.Fatalf("client default vs old server: %v", err)
	}
	if ce := recv(t, closes, "client's close"); ce.Code != marmot.CloseHandshakeFailed || ce.Text != "downgrade refused" {
		t.Fatalf("old server saw close %d %q", ce.Code, ce.Text)
	}

	c = newClient(t, secureClientConfig(u, true))
	ctx, done := ctxTimeout(t), make(chan error, 1)
	go func() { done <- c.Connect(ctx) }()
	var ch crypto.ClientHello
	if err := ch.UnmarshalBinary(recv(t, answers, "ClientHello")); err != nil || ch.Version != crypto.HandshakeV1 {
		t.Fatalf("client allowing legacy answered version %d: %v", ch.Version, err)
	}
	// The fake server hangs up instead of finishing the handshake.
	if err := recv(t, done, "Connect"); !errors.Is(err, marmot.ErrHandshakeFailed) {
		t.Fatalf("Connect after the old server hung up: %v", err)
	}
}
