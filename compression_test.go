package marmot_test

import (
	"bytes"
	"context"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/marmotws/marmot"
	"github.com/marmotws/marmot/internal/wsconn"
)

// json1K is a 1 KiB JSON text message, the figure docs/PERFORMANCE.md uses.
var json1K = []byte(`[` + strings.TrimSuffix(strings.Repeat(`{"id":12345,"user":"marmot","text":"hello, room","ts":1700000000},`, 16), ",") + `]`)

// countingConn counts the bytes read from the socket: what came over the
// wire, compressed or not.
type countingConn struct {
	net.Conn
	n *atomic.Int64
}

func (c countingConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.n.Add(int64(n))
	return n, err
}

// dialCounting dials a raw-mode gorilla client, with compression offered or
// not, that counts the bytes it reads.
func dialCounting(t *testing.T, url string, compress bool) (*websocket.Conn, *atomic.Int64) {
	t.Helper()
	n := new(atomic.Int64)
	d := websocket.Dialer{
		HandshakeTimeout:  10 * time.Second,
		EnableCompression: compress,
		NetDialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
			if err != nil {
				return nil, err
			}
			return countingConn{c, n}, nil
		},
	}
	ws, _, err := d.Dial(url, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ws.Close() })
	return ws, n
}

// A broadcast to clients that negotiated compression is compressed once and
// goes over the wire smaller; a client that did not gets it as it is.
func TestCompressedBroadcastDeflatesOnce(t *testing.T) {
	connected := make(chan marmot.ClientID, 8)
	s := startServer(t, marmot.ServerConfig{
		Compression:  marmot.Compression{Enabled: true},
		ServerEvents: marmot.ServerEvents{OnClientConnected: func(ci marmot.ClientInfo) { connected <- ci.ID }},
	})
	type peer struct {
		ws       *websocket.Conn
		read     *atomic.Int64
		compress bool
	}
	var peers []peer
	for i := range 5 {
		ws, n := dialCounting(t, s.URL(), i > 0) // the first one does not offer compression
		peers = append(peers, peer{ws, n, i > 0})
		recv(t, connected, "a connection")
	}
	before := wsconn.Deflations()
	if n, err := s.Broadcast(json1K); n != len(peers) || err != nil {
		t.Fatalf("Broadcast = %d, %v; want %d", n, err, len(peers))
	}
	for i, p := range peers {
		start := p.read.Load()
		_ = p.ws.SetReadDeadline(time.Now().Add(waitTimeout))
		typ, got, err := p.ws.ReadMessage()
		if err != nil || typ != websocket.TextMessage || !bytes.Equal(got, json1K) {
			t.Fatalf("peer %d read %d, %d bytes, %v", i, typ, len(got), err)
		}
		wire := p.read.Load() - start
		if p.compress && wire >= int64(len(json1K))/2 || !p.compress && wire < int64(len(json1K)) {
			t.Fatalf("peer %d (compression %v) read %d bytes off the wire for a %d-byte message", i, p.compress, wire, len(json1K))
		}
	}
	if got := wsconn.Deflations() - before; got != 1 {
		t.Fatalf("a broadcast to 4 compressing clients was deflated %d times, want 1", got)
	}
}

// A room message is compressed once for all its members, and a member's
// echo (a message of its own) is compressed for it; under the threshold
// nothing is compressed.
func TestCompressedRoomPublishDeflatesOnce(t *testing.T) {
	s := startServer(t, marmot.ServerConfig{
		Compression:  marmot.Compression{Enabled: true, Threshold: 256},
		ServerEvents: marmot.ServerEvents{OnHandleCommand: func(m *marmot.Message) { _ = m.Reply(m.Payload) }},
	})
	var clients []*marmot.Client
	var inboxes []chan *marmot.Message
	for range 3 {
		got := make(chan *marmot.Message, 16)
		c := newClient(t, marmot.ClientConfig{URL: s.URL(), Subprotocol: "marmot.v1",
			Compression:  marmot.Compression{Enabled: true},
			ClientEvents: marmot.ClientEvents{OnHandleCommand: func(m *marmot.Message) { got <- m }}})
		if err := c.Connect(ctxTimeout(t)); err != nil {
			t.Fatal(err)
		}
		if err := c.Join(ctxTimeout(t), "lobby"); err != nil {
			t.Fatal(err)
		}
		clients, inboxes = append(clients, c), append(inboxes, got)
	}
	for _, tc := range []struct {
		msg  []byte
		want uint64
	}{{json1K, 1}, {json1K[:200], 0}} {
		before := wsconn.Deflations()
		if n, err := s.Publish("lobby", tc.msg); n != 3 || err != nil {
			t.Fatalf("Publish = %d, %v", n, err)
		}
		for i, in := range inboxes {
			if m := recv(t, in, "the room message"); m.Room != "lobby" || !bytes.Equal(m.Payload, tc.msg) {
				t.Fatalf("client %d got %q in room %q", i, m.Payload, m.Room)
			}
		}
		if got := wsconn.Deflations() - before; got != tc.want {
			t.Fatalf("a %d-byte publish to 3 members was deflated %d times, want %d", len(tc.msg), got, tc.want)
		}
	}
	before := wsconn.Deflations()
	reply, err := clients[0].Request(ctxTimeout(t), "echo", json1K)
	if err != nil || !bytes.Equal(reply, json1K) {
		t.Fatalf("Request = %d bytes, %v", len(reply), err)
	}
	if got := wsconn.Deflations() - before; got != 1 {
		t.Fatalf("a 1 KiB reply was deflated %d times, want 1", got)
	}
}

// Server on/off × client on/off: messages cross either way, and the server
// compresses only when both sides enabled compression.
func TestCompressionNegotiationMatrix(t *testing.T) {
	for _, server := range []bool{false, true} {
		for _, client := range []bool{false, true} {
			infos := make(chan marmot.ClientInfo, 1)
			s := startServer(t, marmot.ServerConfig{
				Compression: marmot.Compression{Enabled: server},
				ServerEvents: marmot.ServerEvents{
					OnHandleCommand:   func(m *marmot.Message) { _ = m.Reply(m.Payload) },
					OnClientConnected: func(ci marmot.ClientInfo) { infos <- ci },
				},
			})
			c := newClient(t, marmot.ClientConfig{URL: s.URL(), Subprotocol: "marmot.v1", Compression: marmot.Compression{Enabled: client}})
			if err := c.Connect(ctxTimeout(t)); err != nil {
				t.Fatal(err)
			}
			if ci := recv(t, infos, "OnClientConnected"); ci.Compressed != (server && client) || c.Compressed() != (server && client) {
				t.Fatalf("server %v, client %v: ClientInfo.Compressed = %v, Client.Compressed() = %v", server, client, ci.Compressed, c.Compressed())
			}
			before := wsconn.Deflations()
			reply, err := c.Request(ctxTimeout(t), "echo", json1K)
			if err != nil || !bytes.Equal(reply, json1K) {
				t.Fatalf("server %v, client %v: Request = %d bytes, %v", server, client, len(reply), err)
			}
			want := uint64(0)
			if server && client {
				want = 1
			}
			if got := wsconn.Deflations() - before; got != want {
				t.Fatalf("server %v, client %v: the reply was deflated %d times, want %d", server, client, got, want)
			}
		}
	}
}

// With encryption, compression stays off (ciphertext does not compress):
// messages still flow.
func TestCompressionOffWithEncryption(t *testing.T) {
	enc := marmot.EncryptionConfig{EncryptionEnabled: true, EncryptionKey: "compress-test"}
	s := startServer(t, marmot.ServerConfig{
		Compression:      marmot.Compression{Enabled: true, Threshold: -1},
		EncryptionConfig: enc,
		ServerEvents:     marmot.ServerEvents{OnHandleCommand: func(m *marmot.Message) { _ = m.Reply(m.Payload) }},
	})
	c := newClient(t, marmot.ClientConfig{URL: s.URL(), Compression: marmot.Compression{Enabled: true, Threshold: -1}, EncryptionConfig: enc})
	if err := c.Connect(ctxTimeout(t)); err != nil {
		t.Fatal(err)
	}
	before := wsconn.Deflations()
	reply, err := c.Request(ctxTimeout(t), "echo", json1K)
	if err != nil || !bytes.Equal(reply, json1K) {
		t.Fatalf("Request = %d bytes, %v", len(reply), err)
	}
	if got := wsconn.Deflations() - before; got != 0 {
		t.Fatalf("an encrypted connection deflated %d messages", got)
	}
}
