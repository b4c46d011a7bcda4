//go:build linux

package actors

import (
	"bytes"
	"crypto/rand"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/marmotws/marmot/internal/wsconn"
)

// Compressed connections park and resume like the others: compressed
// messages (whole, or fragmented across several parking ticks) wake the
// reader and are echoed compressed, and keep-alive pings are answered by a
// reader that parks between them.
func TestCompressedConnectionParksAndKeepsAlive(t *testing.T) {
	// The client reads (and so answers pings) only now and then before the
	// keep-alive part: a period a busy machine cannot overrun by accident.
	const keepAlive = time.Second
	h := newParkHarness(t, HubConfig{KeepAlive: keepAlive, MaxMessageSize: 1 << 20, Compression: Compression{Enabled: true}})
	c := h.dialWith(t, &websocket.Dialer{EnableCompression: true})
	msg := strings.Repeat(`{"id":1,"name":"marmot"},`, 40)
	for round := range 3 {
		waitFor(t, h.parked, "the reader to park")
		before := wsconn.Deflations()
		echo(t, c, msg[round:])
		if got := wsconn.Deflations() - before; got != 1 {
			t.Fatalf("round %d: the echo was deflated %d times, want 1", round, got)
		}
	}

	// A compressed message in fragments, ticks passing between them.
	waitFor(t, h.parked, "the reader to park")
	w, err := c.NextWriter(websocket.BinaryMessage)
	if err != nil {
		t.Fatal(err)
	}
	first := make([]byte, 20_000) // incompressible: frames go out now
	_, _ = rand.Read(first)
	if _, err := w.Write(first); err != nil {
		t.Fatal(err)
	}
	start := waitFor(t, h.ticks, "a tick")
	for e := start; e < start+4; {
		e = waitFor(t, h.ticks, "a tick")
	}
	if _, err := w.Write([]byte("tail")); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if typ, got, err := c.ReadMessage(); err != nil || typ != websocket.BinaryMessage || !bytes.Equal(got, append(first, "tail"...)) {
		t.Fatalf("fragmented echo: type %d, %d bytes, %v", typ, len(got), err)
	}

	// Keep-alive: pings keep coming and are answered while the reader
	// parks between them.
	pongs := make(chan struct{}, 64)
	c.SetPingHandler(func(s string) error {
		pongs <- struct{}{}
		return c.WriteControl(websocket.PongMessage, []byte(s), time.Now().Add(time.Second))
	})
	done := make(chan error, 1)
	go func() {
		_ = c.SetReadDeadline(time.Time{})
		_, _, err := c.ReadMessage()
		done <- err
	}()
	for i := range 5 {
		select {
		case <-pongs:
		case r := <-h.closed:
			t.Fatalf("the connection closed after %d pings: %v", i, r)
		case err := <-done:
			t.Fatalf("the reader ended after %d pings: %v", i, err)
		case <-time.After(10 * time.Second):
			t.Fatalf("no ping %d within 10 s", i+1)
		}
	}
	select {
	case r := <-h.closed:
		t.Fatalf("the connection closed: %v", r)
	case err := <-done:
		t.Fatalf("the connection ended: %v", err)
	default:
	}
	_ = c.Close()
}
