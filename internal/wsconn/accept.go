package wsconn

import (
	"bufio"
	"net"
	"net/http"
	"sync"
	"sync/atomic"

	"github.com/gorilla/websocket"

	"github.com/marmotws/marmot/internal/netpoll"
)

// Acceptor upgrades HTTP requests to server connections.
type Acceptor struct {
	u     websocket.Upgrader
	uz    *websocket.Upgrader // u with compression, for requests that offer it; nil: off
	z     *deflater           // the compression of every connection that negotiates it
	cfg   Config
	polls *netpoll.Group
	ids   atomic.Uint64 // parking keys
}

// NewAcceptor returns an acceptor offering subprotocols (in preference
// order). checkOrigin nil accepts requests without an Origin header and
// those whose Origin host equals Host. onError, when set, writes the HTTP
// response of a refused upgrade (gorilla's headers, such as
// Sec-WebSocket-Version on a version mismatch, are already set).
func NewAcceptor(subprotocols []string, checkOrigin func(*http.Request) bool, onError func(w http.ResponseWriter, r *http.Request, status int, reason error), cfg Config) *Acceptor {
	tick := cfg.ParkTick
	if tick <= 0 {
		tick = netpoll.DefaultTick
	}
	a := &Acceptor{cfg: cfg, polls: netpoll.NewGroup(tick)}
	if onError != nil {
		inner := onError
		// gorilla sets this header only when it writes the response itself;
		// RFC 6455 §4.4 wants it on a version mismatch.
		onError = func(w http.ResponseWriter, r *http.Request, status int, reason error) {
			w.Header().Set("Sec-WebSocket-Version", "13")
			inner(w, r, status, reason)
		}
	}
	a.u = websocket.Upgrader{
		Subprotocols: subprotocols,
		CheckOrigin:  checkOrigin,
		// Idle connections stay cheap: gorilla's own read buffer is small
		// (frameConn reads through a pooled 4 KiB buffer while input
		// flows), and write buffers come from a pool only while gorilla
		// writes a frame (the handshake and control frames).
		ReadBufferSize:  256,
		WriteBufferSize: 4096,
		WriteBufferPool: &writeBuffers,
		Error:           onError,
	}
	if cfg.Compression.Enabled {
		uz := a.u
		uz.EnableCompression = true
		a.uz, a.z = &uz, newDeflater(cfg.Compression)
	}
	return a
}

// writeBuffers is shared by every server connection.
var writeBuffers sync.Pool

// Accept upgrades r. On failure the response has been written.
func (a *Acceptor) Accept(w http.ResponseWriter, r *http.Request) (*Conn, error) {
	hw := &hijackFrames{ResponseWriter: w}
	u := &a.u
	if a.uz != nil && deflateOffered(r.Header) {
		u, hw.offer = a.uz, a.z
	}
	// Headers the caller set on w (marmot's session token) go into the
	// 101 response, which gorilla writes itself.
	ws, err := u.Upgrade(hw, r, w.Header())
	if err != nil {
		return nil, err
	}
	c := newConn(ws, hw.fc, hw.fc.z, a.cfg)
	c.joinPoller(a.polls, a.ids.Add(1))
	return c, nil
}

// Polls returns the acceptor's poller group, for tests that watch readers
// park.
func (a *Acceptor) Polls() *netpoll.Group { return a.polls }

// Offers reports whether r offers subprotocol sub.
func Offers(r *http.Request, sub string) bool {
	for _, s := range websocket.Subprotocols(r) {
		if s == sub {
			return true
		}
	}
	return false
}

// hijackFrames hands gorilla a frameConn instead of the raw connection, so
// that idle readers can park (see frameconn.go). gorilla v1.5 upgrades
// through the http.Hijacker interface, which this wrapper provides.
type hijackFrames struct {
	http.ResponseWriter
	fc    *frameConn
	offer *deflater // the compression to use if the response accepts it
}

func (w *hijackFrames) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	c, brw, err := http.NewResponseController(w.ResponseWriter).Hijack()
	if err != nil {
		return nil, nil, err
	}
	w.fc = newFrameConn(c)
	w.fc.offer = w.offer
	return w.fc, brw, nil
}
