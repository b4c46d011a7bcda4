package marmot_test

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"
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

// TestEncryptedAllModesAndKeySizes runs every mode x key size in both
// profiles against one server that accepts them all and answers in kind.
func TestEncryptedAllModesAndKeySizes(t *testing.T) {
	sizes := []int{128, 192, 256}
	for _, profile := range []string{"secure", "compat"} {
		t.Run(profile, func(t *testing.T) {
			var mu sync.Mutex
			wire := map[string]int{}
			s := encryptedServer(t, marmot.EncryptionConfig{
				EncryptionProfile:        profile,
				EncryptionMode:           "gcm",
				EncryptionAcceptModes:    allModes,
				EncryptionAcceptKeySizes: sizes,
			}, marmot.ServerEvents{
				OnDataReceived: func(_ marmot.ClientID, d []byte) {
					if !crypto.IsEncrypted(d) {
						t.Errorf("OnDataReceived saw plaintext %q", d)
					}
					mu.Lock()
					wire[profile]++
					mu.Unlock()
				},
			})
			for _, mode := range allModes {
				for _, size := range sizes {
					got := make(chan *marmot.Message, 1)
					c := newClient(t, marmot.ClientConfig{URL: s.URL(),
						EncryptionConfig: marmot.EncryptionConfig{EncryptionEnabled: true, EncryptionKey: testKey,
							EncryptionMode: mode, EncryptionKeySize: size, EncryptionProfile: profile},
						ClientEvents: marmot.ClientEvents{OnHandleCommand: func(m *marmot.Message) { got <- m }}})
					if err := c.Connect(ctxTimeout(t)); err != nil {
						t.Fatalf("%s-%d: %v", mode, size, err)
					}
					for _, n := range []int{0, 1, 15, 16, 17, 4096} {
						msg := bytes.Repeat([]byte{byte(n)}, n)
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
					if err := c.Close(ctxTimeout(t)); err != nil {
						t.Fatal(err)
					}
				}
			}
		})
	}
}

func TestEncryptedWrongKey(t *testing.T) {
	serverErrs := make(chan error, 4)
	s := encryptedServer(t, marmot.EncryptionConfig{EncryptionMode: "gcm"}, marmot.ServerEvents{
		OnError: func(_ marmot.ClientID, err error) { serverErrs <- err },
	})
	clientErrs := make(chan error, 4)
	c := newClient(t, marmot.ClientConfig{URL: s.URL(), AutoReconnect: true,
		EncryptionConfig: marmot.EncryptionConfig{EncryptionEnabled: true, EncryptionKey: "not the key", EncryptionMode: "gcm"},
		ClientEvents:     marmot.ClientEvents{OnError: func(err error) { clientErrs <- err }}})
	err := c.Connect(ctxTimeout(t))
	if !errors.Is(err, marmot.ErrHandshakeFailed) || !errors.Is(err, crypto.ErrWrongKey) {
		t.Fatalf("client Connect: %v", err)
	}
	if err := recv(t, clientErrs, "client OnError"); !errors.Is(err, crypto.ErrWrongKey) {
		t.Fatalf("client OnError: %v", err)
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
	ws := dialHeader(t, url, protocol.SubprotocolBinary, http.Header{marmot.HeaderEncryption: {"secure"}})
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
