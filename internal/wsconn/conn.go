// Package wsconn is marmot's WebSocket transport: it implements
// transport.Conn over gorilla/websocket, reading through a frameConn that
// lets idle server readers park (internal/netpoll) and writing server data
// frames itself.
//
// It knows nothing of actors, envelopes or encryption: it delivers data
// messages to a transport.Receiver, writes what it is given, keeps the
// connection alive and runs the closing handshake.
package wsconn

import (
	"errors"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"

	"github.com/marmotws/marmot/internal/netpoll"
	"github.com/marmotws/marmot/internal/transport"
)

// CloseGrace bounds how long a closing side waits for the peer to answer
// its close frame before dropping the TCP connection. Waiting at all
// matters: closing a socket with unread input makes Linux send RST, and the
// peer may then lose the close frame it has not read yet.
const CloseGrace = 2 * time.Second

// phase is where a connection is in its life.
type phase int32

const (
	phaseOpen     phase = iota // messages flow both ways
	phaseExpired               // keep-alive gave up: the reader ends with ErrKeepAlive
	phaseClosing               // a close frame went out (ours, or our answer to the peer's)
	phaseFailing               // our close frame for an error went out: input is discarded
	phaseReleased              // the owner is done: input is discarded; the socket closes with the reader
)

// Config sets a connection's limits.
type Config struct {
	WriteTimeout time.Duration // bounds a run of writes; <= 0: none
	KeepAlive    time.Duration // ping every KeepAlive/2, give up after KeepAlive silent; <= 0: off
	ReadLimit    int64         // largest message; <= 0: unlimited
	// ParkTick is how often an acceptor's poller looks for idle readers
	// (see netpoll); 0: netpoll.DefaultTick.
	ParkTick time.Duration
	// Compression is permessage-deflate (compress.go).
	Compression Compression
}

// Conn is one WebSocket connection. It implements transport.Conn.
type Conn struct {
	// Fields are grouped by when they are touched, the reader's
	// per-message ones first.
	ws *websocket.Conn
	fc *frameConn // server connections only: a client's frames are masked, so gorilla writes them
	// respHeader is the 101 response's header (client connections).
	respHeader http.Header
	recv       transport.Receiver
	readers    atomic.Uint64 // reader generation: Handoff moves it on (read.go)
	heard      atomic.Bool   // a frame was read since the last keep-alive tick
	phase      atomic.Int32  // a phase; written under mu

	// Parking (server connections on Linux).
	poll      *netpoll.Poller // nil: never park
	pollID    uint64
	rstate    atomic.Int32 // a reader state (frameconn.go)
	waitEpoch atomic.Uint64

	// The writer, under the caller's write lock (see transport.Conn).
	writeTimeout time.Duration
	wdMove       int64     // monoNow after which wdeadline moves
	wdeadline    time.Time // the WriteTimeout deadline in force
	wd           time.Time // the deadline of the run in progress
	batched      bool      // the run in progress collects its frames

	mu        sync.Mutex
	deadline  time.Time // the read deadline the connection wants (zero: none)
	pollAdded bool      // in the poller's epoll set
	readerEnd bool      // the reader has stopped for good
	local     struct {
		code int
		text string
		set  bool
	}

	// Keep-alive.
	keepAlive time.Duration
	lastRead  atomic.Int64 // monoNow when the peer was last heard from
	lastPing  int64        // keep-alive timer only
	pinger    *time.Timer

	// Compression (compress.go), last: a plain connection's reader does not
	// touch it per message (read looks once per run).
	z        *deflater    // negotiated compression; nil: none
	limit    int64        // the read limit (<= 0: none), checked again on inflated messages
	inflated inflateLimit // the reader's, for compressed connections
}

func newConn(ws *websocket.Conn, fc *frameConn, z *deflater, cfg Config) *Conn {
	c := &Conn{ws: ws, fc: fc, z: z, limit: cfg.ReadLimit, writeTimeout: cfg.WriteTimeout, keepAlive: cfg.KeepAlive}
	if cfg.ReadLimit > 0 {
		ws.SetReadLimit(cfg.ReadLimit)
	}
	if z != nil {
		// Server frames are marmot's (frameConn) and compressed there;
		// gorilla's writer is told per message (clientCompress).
		ws.EnableWriteCompression(false)
		_ = ws.SetCompressionLevel(z.level)
	}
	return c
}

// Compressed implements transport.Conn: the connection negotiated
// permessage-deflate.
func (c *Conn) Compressed() bool { return c.z != nil }

// Subprotocol implements transport.Conn.
func (c *Conn) Subprotocol() string { return c.ws.Subprotocol() }

// RemoteAddr implements transport.Conn.
func (c *Conn) RemoteAddr() net.Addr { return c.ws.RemoteAddr() }

// Transport implements transport.Conn.
func (c *Conn) Transport() string { return transport.NameWebSocket }

// ReceiveNow implements transport.Conn.
func (c *Conn) ReceiveNow(deadline time.Time) (int, []byte, error) {
	_ = c.ws.SetReadDeadline(deadline)
	typ, data, err := c.ws.ReadMessage()
	_ = c.ws.SetReadDeadline(time.Time{})
	return typ, data, readError(err)
}

// SendNow implements transport.Conn.
func (c *Conn) SendNow(typ int, data []byte, deadline time.Time) error {
	_ = c.ws.SetWriteDeadline(deadline)
	c.clientCompress(len(data)) // gorilla writes even a server's frames here
	err := c.ws.WriteMessage(typ, data)
	if c.z != nil {
		c.ws.EnableWriteCompression(false)
	}
	_ = c.ws.SetWriteDeadline(time.Time{})
	return err
}

// joinPoller registers a server connection with its acceptor's poller, so
// that its reader can park once started (Start sets frameConn.owner:
// parking during a handshake's reads would hand them parkFrame). It runs
// before the connection is shared, so Wake and Drop find the poller set.
func (c *Conn) joinPoller(g *netpoll.Group, id uint64) {
	if c.fc == nil || c.fc.rc == nil {
		return
	}
	c.poll, c.pollID = g.Join(id, c), id
}

// readError turns gorilla's read errors into the transport's.
func readError(err error) error {
	var ce *websocket.CloseError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &ce):
		return &transport.PeerClose{Code: ce.Code, Text: ce.Text}
	case errors.Is(err, websocket.ErrReadLimit):
		return transport.ErrReadLimit
	}
	return err
}

// clockBase anchors monoNow, a cheap monotonic clock.
var clockBase = time.Now()

func monoNow() int64 { return int64(time.Since(clockBase)) }

var _ transport.Conn = (*Conn)(nil)
