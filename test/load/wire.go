package main

import (
	"fmt"
	"math/rand/v2"
	"net"
	"strings"
	"sync"
	"sync/atomic"
)

// Bytes on the wire: every client connection counts what it reads and
// writes at the socket (frames as sent, compressed or not, headers
// included), so a compressed run and a plain one can be compared byte for
// byte. Each connection has its own counters (no shared cache line on the
// hot path); wire sums them.

type wireCount struct{ rx, tx atomic.Int64 }

type wireConn struct {
	net.Conn
	n *wireCount
}

func (c wireConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.n.rx.Add(int64(n))
	return n, err
}

func (c wireConn) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	c.n.tx.Add(int64(n))
	return n, err
}

// wireCounters is a dialer's set of per-connection counters.
type wireCounters struct {
	mu  sync.Mutex
	all []*wireCount
}

func (w *wireCounters) wrap(c net.Conn) net.Conn {
	n := new(wireCount)
	w.mu.Lock()
	w.all = append(w.all, n)
	w.mu.Unlock()
	return wireConn{c, n}
}

// total returns the bytes read and written so far by every connection.
func (w *wireCounters) total() (rx, tx int64) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, n := range w.all {
		rx += n.rx.Load()
		tx += n.tx.Load()
	}
	return rx, tx
}

// Payloads. The default body is a byte pattern (cheap to check, poorly
// compressible); --payload json makes it JSON text, records of an id, a
// user, a message and a timestamp like a chat app's, which is what
// compression is for. A message's body is a window into jsonText starting
// at an offset that depends on the message, so consecutive messages differ.

const (
	payloadPattern = "pattern"
	payloadJSON    = "json"
)

// jsonText is 64 KiB of JSON records, the same in every run.
var jsonText = func() []byte {
	r := rand.New(rand.NewPCG(1, 2))
	words := strings.Fields("hello room marmot actor socket frame deflate message client server join leave ping pong broadcast publish history offset epoch presence")
	var b strings.Builder
	b.WriteString("[")
	for b.Len() < 64<<10 {
		fmt.Fprintf(&b, `{"id":%d,"user":"user%d","room":"%s","text":"%s %s %s","ts":%d,"ok":%v},`,
			r.IntN(1_000_000), r.IntN(5000), words[r.IntN(len(words))],
			words[r.IntN(len(words))], words[r.IntN(len(words))], words[r.IntN(len(words))],
			1_700_000_000+r.IntN(10_000_000), r.IntN(2) == 0)
	}
	return []byte(b.String())
}()

// fillBody fills b with the body of message key: the byte pattern or,
// with json, JSON text.
func fillBody(b []byte, key uint64, json bool) {
	if !json {
		for i := range b {
			b[i] = byte(key + uint64(i))
		}
		return
	}
	off := int(key * 97 % uint64(len(jsonText)))
	for n := 0; n < len(b); {
		k := copy(b[n:], jsonText[off:])
		n += k
		off = 0
	}
}
