package marmot_test

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/marmotws/marmot"
	"github.com/marmotws/marmot/crypto"
	"github.com/marmotws/marmot/protocol"
)

// testKDF keeps key stretching cheap in tests while staying inside the
// client's accepted bounds (PBKDF2 >= 100,000 iterations).
var testKDF = crypto.KDFParams{Iterations: 100_000}

const testKey = "MySecretKey123!"

var allModes = []string{"ecb", "cbc", "cfb", "ofb", "ctr", "gcm", "cfc", "ofc", "ctc"}

func encryptedServer(t *testing.T, enc marmot.EncryptionConfig, ev marmot.ServerEvents) *marmot.Server {
	enc.EncryptionEnabled = true
	if enc.EncryptionKey == "" {
		enc.EncryptionKey = testKey
	}
	enc.EncryptionKDF = testKDF
	if ev.OnHandleCommand == nil {
		ev.OnHandleCommand = func(m *marmot.Message) { _ = m.Reply(m.Payload) }
	}
	return startServer(t, marmot.ServerConfig{EncryptionConfig: enc, ServerEvents: ev})
}

// wireFrame is one encrypted frame as a server callback saw it.
type wireFrame struct {
	sent bool // OnDataSent; else OnDataReceived
	id   marmot.ClientID
	hdr  crypto.Header
	err  error // the header did not parse
	leak bool  // the frame contains plaintext
}

// plaintextMarker starts every 16-byte block of the test messages, so that
// a frame carrying any whole block in the clear contains it.
var plaintextMarker = []byte("marmot-plaintext")

func markedMessage(n int) []byte {
	return bytes.Repeat(plaintextMarker, n/len(plaintextMarker)+1)[:n]
}

// TestEncryptedAllModesAndKeySizes runs every mode x key size in both
// profiles against one server that accepts them all and answers in kind.
// Every frame on the wire, both ways, is checked: it is encrypted, its
// header names the client's mode, key size and profile (the server answers
// in the mode the client chose), and it carries no plaintext.
func TestEncryptedAllModesAndKeySizes(t *testing.T) {
	sizes := []int{128, 192, 256}
	lengths := []int{0, 1, 15, 16, 17, 4096}
	for _, profile := range []string{"secure", "compat"} {
		t.Run(profile, func(t *testing.T) {
			wantProfile, err := crypto.ParseProfile(profile)
			if err != nil {
				t.Fatal(err)
			}
			frames := make(chan wireFrame, 4*len(lengths))
			see := func(sent bool, id marmot.ClientID, d []byte) {
				h, err := crypto.ParseHeader(d)
				frames <- wireFrame{sent: sent, id: id, hdr: h, err: err, leak: bytes.Contains(d, plaintextMarker)}
			}
			s := encryptedServer(t, marmot.EncryptionConfig{
				EncryptionProfile:        profile,
				EncryptionMode:           "gcm",
				EncryptionAcceptModes:    allModes,
				EncryptionAcceptKeySizes: sizes,
			}, marmot.ServerEvents{
				OnDataReceived: func(id marmot.ClientID, d []byte) { see(false, id, d) },
				OnDataSent:     func(id marmot.ClientID, d []byte) { see(true, id, d) },
			})
			for _, mode := range allModes {
				wantMode, err := crypto.ParseMode(mode)
				if err != nil {
					t.Fatal(err)
				}
				for _, size := range sizes {
					wantSize, err := crypto.ParseKeySize(strconv.Itoa(size))
					if err != nil {
						t.Fatal(err)
					}
					got := make(chan *marmot.Message, 1)
					c := newClient(t, marmot.ClientConfig{URL: s.URL(),
						EncryptionConfig: marmot.EncryptionConfig{EncryptionEnabled: true, EncryptionKey: testKey,
							EncryptionMode: mode, EncryptionKeySize: size, EncryptionProfile: profile},
						ClientEvents: marmot.ClientEvents{OnHandleCommand: func(m *marmot.Message) { got <- m }}})
					if err := c.Connect(ctxTimeout(t)); err != nil {
						t.Fatalf("%s-%d: %v", mode, size, err)
					}
					for _, n := range lengths {
						msg := markedMessage(n)
						if profile == "secure" {
							reply, err := c.Request(ctxTimeout(t), "echo", msg)
							if err != nil || !bytes.Equal(reply, msg) {
								t.Fatalf("%s-%d size %d: %v", mode, size, n, err)
							}
							continue
						}
						if err := c.Send(msg); err != nil {
							t.Fatal(err)
						}
						if m := recv(t, got, "echo"); !bytes.Equal(m.Payload, msg) {
							t.Fatalf("%s-%d size %d: echo differs", mode, size, n)
						}
					}
					// One frame each way per message, all from this client.
					var in, out int
					var id marmot.ClientID
					for range 2 * len(lengths) {
						f := recv(t, frames, "a frame seen by the server")
						switch {
						case f.err != nil:
							t.Fatalf("%s-%d: frame (sent %v) is not encrypted: %v", mode, size, f.sent, f.err)
						case f.hdr.Mode != wantMode || f.hdr.KeySize != wantSize || f.hdr.Profile() != wantProfile:
							t.Fatalf("%s-%d: frame (sent %v) header says %v-%v %v", mode, size, f.sent, f.hdr.Mode, f.hdr.KeySize, f.hdr.Profile())
						case f.leak:
							t.Fatalf("%s-%d: frame (sent %v) carries plaintext", mode, size, f.sent)
						case id != 0 && f.id != id:
							t.Fatalf("%s-%d: frames from clients %d and %d", mode, size, id, f.id)
						}
						id = f.id
						if f.sent {
							out++
						} else {
							in++
						}
					}
					if in != len(lengths) || out != len(lengths) {
						t.Fatalf("%s-%d: %d frames in, %d out, want %d each", mode, size, in, out, len(lengths))
					}
					if err := c.Close(ctxTimeout(t)); err != nil {
						t.Fatal(err)
					}
				}
			}
			if len(frames) != 0 {
				t.Fatalf("%d frames beyond the messages", len(frames))
			}
		})
	}
}

// TestEncryptedWrongKey: a first connect with the wrong key fails with
// errors on both sides that name it, and never reveals the passphrase.
func TestEncryptedWrongKey(t *testing.T) {
	serverErrs := make(chan error, 4)
	s := encryptedServer(t, marmot.EncryptionConfig{EncryptionMode: "gcm"}, marmot.ServerEvents{
		OnError: func(_ marmot.ClientID, err error) { serverErrs <- err },
	})
	clientErrs := make(chan error, 4)
	c := newClient(t, marmot.ClientConfig{URL: s.URL(),
		EncryptionConfig: marmot.EncryptionConfig{EncryptionEnabled: true, EncryptionKey: "not the key", EncryptionMode: "gcm"},
		ClientEvents:     marmot.ClientEvents{OnError: func(err error) { clientErrs <- err }}})
	err := c.Connect(ctxTimeout(t))
	if !errors.Is(err, marmot.ErrHandshakeFailed) || !errors.Is(err, crypto.ErrWrongKey) {
		t.Fatalf("client Connect: %v", err)
	}
	if len(clientErrs) != 0 { // returned, so not reported as well
		t.Fatalf("client OnError got the returned error too: %v", <-clientErrs)
	}
	if err := recv(t, serverErrs, "server OnError"); !errors.Is(err, crypto.ErrWrongKey) {
		t.Fatalf("server OnError: %v", err)
	}
	if strings := fmt.Sprint(err); bytes.Contains([]byte(strings), []byte("not the key")) {
		t.Fatal("the passphrase leaked into an error")
	}
	if st := s.Stats(); st.HandshakeFailures != 1 || st.TotalConnections != 0 {
		t.Fatalf("stats %+v", st)
	}
}

// TestEncryptedWrongKeyAfterRestart: a connected client with AutoReconnect
// meets its server restarted with another key. The server refuses the
// handshake with close 4501 "wrong key"; the client reports
// ErrHandshakeFailed wrapping crypto.ErrWrongKey, ends in StateError and
// never tries again (a wrong key stays wrong).
func TestEncryptedWrongKeyAfterRestart(t *testing.T) {
	serverErrs := make(chan error, 16)
	srv := &restartableServer{t: t, addr: "127.0.0.1:0", cfg: marmot.ServerConfig{
		EncryptionConfig: marmot.EncryptionConfig{EncryptionEnabled: true, EncryptionKey: testKey,
			EncryptionMode: "gcm", EncryptionKDF: testKDF},
		ServerEvents: marmot.ServerEvents{OnError: func(_ marmot.ClientID, err error) { serverErrs <- err }},
	}}
	srv.start()
	t.Cleanup(srv.stop)
	const interval = 20 * time.Millisecond
	ev, events := newReconnectEvents()
	c := newClient(t, marmot.ClientConfig{URL: srv.s.URL(), AutoReconnect: true,
		ReconnectStrategy: marmot.ReconnectFixed, ReconnectInterval: interval,
		EncryptionConfig: marmot.EncryptionConfig{EncryptionEnabled: true, EncryptionKey: testKey, EncryptionMode: "gcm"},
		ClientEvents:     events})
	if err := c.Connect(ctxTimeout(t)); err != nil {
		t.Fatal(err)
	}
	recv(t, ev.connected, "connect")
	ev.drain() // the connect's own events
	srv.stop()
	if ce := recv(t, ev.disconnected, "disconnect"); ce.Code != marmot.CloseGoingAway || !ce.ByPeer {
		t.Fatalf("disconnect %+v", ce)
	}
	for len(serverErrs) > 0 {
		<-serverErrs // the first server's
	}
	srv.cfg.EncryptionKey = "another key"
	srv.start()

	// Attempts fail (connection refused) until the new server listens;
	// the first that reaches it fails on the key, and that ends it.
	err := recv(t, ev.errs, "client OnError")
	if !errors.Is(err, marmot.ErrHandshakeFailed) || !errors.Is(err, crypto.ErrWrongKey) {
		t.Fatalf("client OnError: %v", err)
	}
	for st := recv(t, ev.states, "state"); st != marmot.StateError; st = recv(t, ev.states, "state") {
		if st != marmot.StateReconnecting {
			t.Fatalf("state %v while reconnecting", st)
		}
	}
	// Every callback up to StateError has run: what is queued now
	// belongs to the attempts before it.
	ev.drain()
	reconnects := c.Stats().Reconnects
	if err := recv(t, serverErrs, "server OnError"); !errors.Is(err, crypto.ErrWrongKey) {
		t.Fatalf("server OnError: %v", err)
	}

	// No attempt follows: a retry would come within one interval; give it
	// ten (nothing signals "no retry", so this wait is a window), then pass
	// a Disconnect through the client's actor, after anything the window let
	// in.
	time.Sleep(10 * interval)
	if err := c.Disconnect(ctxTimeout(t)); err != nil {
		t.Fatal(err)
	}
	if c.State() != marmot.StateError {
		t.Fatalf("state %v, want error", c.State())
	}
	if n := len(ev.reconnecting) + len(ev.failed) + len(ev.connected) + len(ev.states) + len(ev.errs); n != 0 {
		t.Fatalf("%d client events after the wrong key (reconnecting %d, failed %d, connected %d, states %d, errors %d)",
			n, len(ev.reconnecting), len(ev.failed), len(ev.connected), len(ev.states), len(ev.errs))
	}
	if st := c.Stats(); st.Reconnects != reconnects {
		t.Fatalf("%d reconnect attempts after the wrong key", st.Reconnects-reconnects)
	}
	if st := srv.s.Stats(); st.HandshakeFailures != 1 || st.TotalConnections != 0 {
		t.Fatalf("the restarted server saw %d handshakes fail and %d connections, want 1 and 0", st.HandshakeFailures, st.TotalConnections)
	}
	if len(serverErrs) != 0 {
		t.Fatalf("%d more server errors: %v", len(serverErrs), <-serverErrs)
	}

	// What the client was told on the wire: close 4501 "wrong key", as a
	// hand-driven client with the old key sees it.
	ring, err := crypto.NewKeyring([]byte(testKey))
	if err != nil {
		t.Fatal(err)
	}
	ws := dialHeader(t, srv.s.URL(), protocol.SubprotocolBinary, http.Header{marmot.HeaderEncryption: {"secure"}, marmot.HeaderHandshake: {"2"}})
	_ = ws.SetReadDeadline(time.Now().Add(waitTimeout))
	_, hello, err := ws.ReadMessage()
	if err != nil {
		t.Fatal(err)
	}
	hs, err := crypto.NewClientHandshake(crypto.ClientConfig{Keyring: ring, Mode: crypto.ModeGCM, KeySize: crypto.KeySize256}, hello)
	if err != nil {
		t.Fatal(err)
	}
	if err := ws.WriteMessage(websocket.BinaryMessage, hs.Hello()); err != nil {
		t.Fatal(err)
	}
	_, _, err = ws.ReadMessage()
	var ce *websocket.CloseError
	if !errors.As(err, &ce) || ce.Code != marmot.CloseHandshakeFailed || ce.Text != "wrong key" {
		t.Fatalf("handshake with the old key ended with %v, want close 4501 (wrong key)", err)
	}
}

func TestEncryptedModeMismatch(t *testing.T) {
	serverErrs := make(chan error, 4)
	s := encryptedServer(t, marmot.EncryptionConfig{EncryptionMode: "gcm"}, marmot.ServerEvents{
		OnError: func(_ marmot.ClientID, err error) { serverErrs <- err },
	})
	c := newClient(t, marmot.ClientConfig{URL: s.URL(),
		EncryptionConfig: marmot.EncryptionConfig{EncryptionEnabled: true, EncryptionKey: testKey, EncryptionMode: "cbc"}})
	err := c.Connect(ctxTimeout(t))
	var mm *crypto.ModeMismatchError
	if !errors.Is(err, crypto.ErrModeMismatch) || !errors.As(err, &mm) {
		t.Fatalf("client Connect: %v", err)
	}
	if mm.LocalMode != crypto.ModeCBC || mm.PeerMode != crypto.ModeGCM {
		t.Fatalf("mismatch names %v/%v", mm.LocalMode, mm.PeerMode)
	}
	if err := recv(t, serverErrs, "server OnError"); !errors.Is(err, crypto.ErrModeMismatch) {
		t.Fatalf("server OnError: %v", err)
	}

	// With the client accepting the server's mode, they agree on GCM.
	c2 := newClient(t, marmot.ClientConfig{URL: s.URL(),
		EncryptionConfig: marmot.EncryptionConfig{EncryptionEnabled: true, EncryptionKey: testKey, EncryptionMode: "cbc",
			EncryptionAcceptModes: []string{"gcm"}}})
	if err := c2.Connect(ctxTimeout(t)); err != nil {
		t.Fatalf("with allow-list: %v", err)
	}
}

func TestEncryptionRequired(t *testing.T) {
	errs := make(chan error, 2)
	s := encryptedServer(t, marmot.EncryptionConfig{EncryptionMode: "gcm"}, marmot.ServerEvents{
		OnError: func(_ marmot.ClientID, err error) { errs <- err },
	})
	// Every subprotocol, marmot.v1 included: without HeaderEncryption (as
	// any client from before it) a marmot.v1 client may well be plain.
	for _, sub := range []string{"", protocol.SubprotocolJSON, protocol.SubprotocolBinary} {
		d := websocket.Dialer{}
		if sub != "" {
			d.Subprotocols = []string{sub}
		}
		_, resp, err := d.Dial(s.URL(), nil)
		if err == nil || resp == nil || resp.StatusCode != http.StatusBadRequest {
			t.Fatalf("unencrypted %q client: %v %v", sub, err, resp)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if !strings.Contains(string(body), "server requires encryption") || resp.Header.Get(marmot.HeaderEncryption) != "secure" {
			t.Fatalf("refusal of a %q client: %q, %s %q", sub, body, marmot.HeaderEncryption, resp.Header.Get(marmot.HeaderEncryption))
		}
		if err := recv(t, errs, "OnError"); !errors.Is(err, marmot.ErrEncryptionRequired) {
			t.Fatalf("OnError %v", err)
		}
	}
}

// secureConn is a hand-driven secure-profile client built from the crypto
// package and gorilla alone, as a peer following docs/ENCRYPTION.md would.
type secureConn struct {
	ws   *websocket.Conn
	sess *crypto.Session
}

func dialSecure(t testing.TB, url string, ring *crypto.Keyring) *secureConn {
	t.Helper()
	ws := dialHeader(t, url, protocol.SubprotocolBinary, http.Header{marmot.HeaderEncryption: {"secure"}, marmot.HeaderHandshake: {"2"}})
	_ = ws.SetReadDeadline(time.Now().Add(waitTimeout))
	_, hello, err := ws.ReadMessage()
	if err != nil {
		t.Fatal(err)
	}
	hs, err := crypto.NewClientHandshake(crypto.ClientConfig{Keyring: ring, Mode: crypto.ModeGCM, KeySize: crypto.KeySize256}, hello)
	if err != nil {
		t.Fatal(err)
	}
	if err := ws.WriteMessage(websocket.BinaryMessage, hs.Hello()); err != nil {
		t.Fatal(err)
	}
	_, fin, err := ws.ReadMessage()
	if err != nil {
		t.Fatal(err)
	}
	sess, err := hs.Finish(fin)
	if err != nil {
		t.Fatal(err)
	}
	_ = ws.SetReadDeadline(time.Time{})
	return &secureConn{ws: ws, sess: sess}
}

func (c *secureConn) seal(t testing.TB, e *protocol.Envelope) []byte {
	plain, err := protocol.Binary.Append(nil, e)
	if err != nil {
		t.Fatal(err)
	}
	frame, err := c.sess.Seal(nil, plain)
	if err != nil {
		t.Fatal(err)
	}
	return frame
}

func (c *secureConn) read(t testing.TB) protocol.Envelope {
	t.Helper()
	_ = c.ws.SetReadDeadline(time.Now().Add(waitTimeout))
	_, frame, err := c.ws.ReadMessage()
	if err != nil {
		t.Fatal(err)
	}
	plain, err := c.sess.Open(nil, frame)
	if err != nil {
		t.Fatal(err)
	}
	var e protocol.Envelope
	if err := protocol.Binary.Decode(plain, &e); err != nil {
		t.Fatal(err)
	}
	return e
}

// TestEncryptedFrameAttacks replays, reorders, tampers with and truncates
// frames on the wire: each closes the connection with 4002 and a precise
// error, and no plaintext reaches the handler.
func TestEncryptedFrameAttacks(t *testing.T) {
	ring, err := crypto.NewKeyring([]byte(testKey))
	if err != nil {
		t.Fatal(err)
	}
	attacks := []struct {
		name string
		want error
		run  func(c *secureConn, first, second []byte)
	}{
		{"replay", crypto.ErrReplay, func(c *secureConn, first, _ []byte) {
			c.ws.WriteMessage(websocket.BinaryMessage, first)
		}},
		{"reorder", crypto.ErrOutOfOrder, func(c *secureConn, _, second []byte) {
			third := c.seal(t, &protocol.Envelope{Kind: protocol.KindData, Payload: []byte("3")})
			c.ws.WriteMessage(websocket.BinaryMessage, third)
		}},
		{"tamper", crypto.ErrAuthFailed, func(c *secureConn, _, second []byte) {
			second[len(second)-20] ^= 1
			c.ws.WriteMessage(websocket.BinaryMessage, second)
		}},
		{"truncate", crypto.ErrTruncated, func(c *secureConn, _, second []byte) {
			c.ws.WriteMessage(websocket.BinaryMessage, second[:len(second)-1])
		}},
		{"downgrade header", crypto.ErrModeMismatch, func(c *secureConn, _, second []byte) {
			second[4] = byte(crypto.ModeCTR)
			c.ws.WriteMessage(websocket.BinaryMessage, second)
		}},
	}
	for _, a := range attacks {
		t.Run(a.name, func(t *testing.T) {
			handled := make(chan string, 4)
			errs := make(chan error, 4)
			s := encryptedServer(t, marmot.EncryptionConfig{EncryptionMode: "gcm"}, marmot.ServerEvents{
				OnHandleCommand: func(m *marmot.Message) { handled <- string(m.Payload); _ = m.Reply(m.Payload) },
				OnError:         func(_ marmot.ClientID, err error) { errs <- err },
			})
			c := dialSecure(t, s.URL(), ring)
			first := c.seal(t, &protocol.Envelope{Kind: protocol.KindData, Payload: []byte("1")})
			second := c.seal(t, &protocol.Envelope{Kind: protocol.KindData, Payload: []byte("2")})
			c.ws.WriteMessage(websocket.BinaryMessage, first)
			if e := c.read(t); string(e.Payload) != "1" {
				t.Fatalf("echo %q", e.Payload)
			}
			a.run(c, first, second)
			_ = c.ws.SetReadDeadline(time.Now().Add(waitTimeout))
			_, _, err := c.ws.ReadMessage()
			var ce *websocket.CloseError
			if !errors.As(err, &ce) || ce.Code != marmot.CloseDecryptFailed {
				t.Fatalf("connection ended with %v, want close 4002", err)
			}
			if err := recv(t, errs, "OnError"); !errors.Is(err, marmot.ErrDecryptFailed) || !errors.Is(err, a.want) {
				t.Fatalf("OnError %v, want %v", err, a.want)
			}
			if h := recv(t, handled, "first message"); h != "1" || len(handled) != 0 {
				t.Fatalf("handler saw %q and %d more", h, len(handled))
			}
		})
	}
}

// TestEncryptedBroadcastThousandClients checks that a broadcast, sealed per
// recipient with per-connection keys, reaches 1,000 encrypted clients once
// each and in order.
func TestEncryptedBroadcastThousandClients(t *testing.T) {
	const clients, rounds = 1000, 3
	ring, err := crypto.NewKeyring([]byte(testKey))
	if err != nil {
		t.Fatal(err)
	}
	var connected sync.WaitGroup
	connected.Add(clients)
	s := encryptedServer(t, marmot.EncryptionConfig{EncryptionMode: "gcm"}, marmot.ServerEvents{
		OnClientConnected: func(marmot.ClientInfo) { connected.Done() },
	})
	conns := make([]*secureConn, clients)
	for i := range conns {
		conns[i] = dialSecure(t, s.URL(), ring)
	}
	connected.Wait()
	if ring.Derivations() != 1 {
		t.Fatalf("client stretched the key %d times for one salt", ring.Derivations())
	}
	for r := range rounds {
		if n, err := s.Broadcast(fmt.Appendf(nil, "b%d", r)); err != nil || n != clients {
			t.Fatalf("broadcast reached %d: %v", n, err)
		}
	}
	var wg sync.WaitGroup
	errs := make(chan error, clients)
	for i, c := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_ = c.ws.SetReadDeadline(time.Now().Add(waitTimeout))
			for r := range rounds {
				_, frame, err := c.ws.ReadMessage()
				if err != nil {
					errs <- err
					return
				}
				plain, err := c.sess.Open(nil, frame)
				if err != nil {
					errs <- fmt.Errorf("client %d: %w", i, err)
					return
				}
				var e protocol.Envelope
				if err := protocol.Binary.Decode(plain, &e); err != nil || string(e.Payload) != fmt.Sprintf("b%d", r) {
					errs <- fmt.Errorf("client %d round %d: %q %v", i, r, e.Payload, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// TestCompatSeedFrames talks to the server as a Delphi client would: text
// frames in the seed's format, under subprotocol synopsejson.
func TestCompatSeedFrames(t *testing.T) {
	got := make(chan string, 2)
	s := encryptedServer(t, marmot.EncryptionConfig{EncryptionProfile: "compat"}, marmot.ServerEvents{
		OnHandleCommand: func(m *marmot.Message) { got <- string(m.Payload); _ = m.Reply([]byte("Echo: " + string(m.Payload))) },
	})
	seed, err := crypto.NewCompatCodec(testKey, crypto.CompatConfig{Mode: crypto.ModeCBC, KeySize: crypto.KeySize256})
	if err != nil {
		t.Fatal(err)
	}
	ws := dial(t, s.URL(), marmot.SubprotocolCompat)
	frame, err := seed.Seal(nil, []byte("Hello Server!"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(frame, []byte("MROM")) {
		t.Fatalf("seed frame starts %q", frame[:4])
	}
	ws.WriteMessage(websocket.TextMessage, frame)
	if g := recv(t, got, "handler"); g != "Hello Server!" {
		t.Fatalf("handler got %q", g)
	}
	typ, reply, err := ws.ReadMessage()
	if err != nil || typ != websocket.TextMessage {
		t.Fatalf("reply type %d: %v", typ, err)
	}
	plain, mode, size, err := seed.Open(nil, reply)
	if err != nil || string(plain) != "Echo: Hello Server!" || mode != crypto.ModeCBC || size != crypto.KeySize256 {
		t.Fatalf("reply %q %v %v %v", plain, mode, size, err)
	}
	// Garbage is an error and a close, never passed through as data (the
	// seed's silent fall-back).
	ws.WriteMessage(websocket.TextMessage, []byte("not encrypted"))
	if ce := readClose(t, ws); ce.Code != marmot.CloseDecryptFailed {
		t.Fatalf("close %d", ce.Code)
	}
	if len(got) != 0 {
		t.Fatal("garbage reached the handler")
	}
}

// A browser cannot set headers on a WebSocket upgrade: the query parameter
// says the same as HeaderEncryption, and the secure handshake follows.
func TestEncryptionClaimByQuery(t *testing.T) {
	s := encryptedServer(t, marmot.EncryptionConfig{EncryptionMode: "gcm"}, marmot.ServerEvents{})
	ws := dial(t, s.URL()+"?"+marmot.QueryEncryption+"=secure&"+marmot.QueryHandshake+"=2", protocol.SubprotocolBinary)
	_ = ws.SetReadDeadline(time.Now().Add(waitTimeout))
	typ, hello, err := ws.ReadMessage()
	if err != nil || typ != websocket.BinaryMessage || len(hello) < 5 || hello[4] != crypto.HandshakeVersion {
		t.Fatalf("after a claim by query: %d %d bytes %v, want the server's version-2 hello", typ, len(hello), err)
	}
	// Without the claim, the same request is refused before the upgrade.
	_, resp, err := websocket.DefaultDialer.Dial(s.URL(), http.Header{"Sec-WebSocket-Protocol": {protocol.SubprotocolBinary}})
	if err == nil || resp == nil || resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("plain request to an encrypted server: %v, want HTTP 400", err)
	}
	resp.Body.Close()
}
