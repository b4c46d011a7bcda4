// Package gorillahub is the gorilla/websocket baseline marmot is measured
// against (the benchmarks in test/ and the load tool in test/load): a server
// written the way gorilla's own chat example teaches, without marmot.
package gorillahub

import (
	"context"
	"errors"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/gorilla/websocket"
)

// Mode says what the server does with the messages it receives.
type Mode int

const (
	// Silent reads and drops them (broadcasts come from Broadcast).
	Silent Mode = iota
	// Echo sends every message back to its sender, same frame type.
	Echo
	// Relay sends every message to every other client.
	Relay
)

// MaxMessage is the read limit of every connection.
const MaxMessage = 1 << 20

const (
	sendBuffer = 256 // the chat example's value
	pongWait   = 60 * time.Second
	pingPeriod = pongWait * 9 / 10
	writeWait  = 10 * time.Second
)

// Server has a read pump and a write pump goroutine per connection, joined
// by a buffered send channel; a hub goroutine owns the client set and fans a
// broadcast out as one PreparedMessage. Unlike the chat example, where only
// the hub sends to a client, the echo reader sends too, so a client is
// stopped by closing its done channel rather than its send channel, which
// would make a concurrent send panic.
type Server struct {
	mode     Mode
	logf     func(format string, args ...any)
	upgrader websocket.Upgrader
	srv      *http.Server
	ln       net.Listener

	register   chan *client
	unregister chan *client
	broadcast  chan broadcast
	quit       chan struct{}

	// Connected gets one value per registered client (buffered; a full
	// buffer is skipped, never blocks the hub).
	Connected chan struct{}

	wg sync.WaitGroup // hub, pumps and Serve
}

type broadcast struct {
	from *client // not sent to; nil: everyone
	typ  int
	data []byte
}

// frame is one outbound message.
type frame struct {
	typ      int
	data     []byte
	prepared *websocket.PreparedMessage
}

type client struct {
	conn *websocket.Conn
	send chan frame
	done chan struct{} // closed by stop: the write pump says goodbye and closes
	once sync.Once
}

func (c *client) stop() { c.once.Do(func() { close(c.done) }) }

// Options are the baseline's settings beyond its mode.
type Options struct {
	// Compression negotiates permessage-deflate (gorilla's only mode: no
	// context takeover, every data message compressed at level 1; a
	// broadcast's PreparedMessage compresses once).
	Compression bool
}

// Start listens on addr and serves every path. logf reports a slow client
// being dropped and Serve failing.
func Start(addr string, mode Mode, logf func(format string, args ...any)) (*Server, error) {
	return StartWith(addr, mode, Options{}, logf)
}

// StartWith is Start with options.
func StartWith(addr string, mode Mode, o Options, logf func(format string, args ...any)) (*Server, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	g := &Server{
		mode:       mode,
		logf:       logf,
		upgrader:   websocket.Upgrader{ReadBufferSize: 4096, WriteBufferSize: 4096, EnableCompression: o.Compression},
		ln:         ln,
		register:   make(chan *client),
		unregister: make(chan *client),
		broadcast:  make(chan broadcast),
		quit:       make(chan struct{}),
		Connected:  make(chan struct{}, 1<<16),
	}
	g.srv = &http.Server{Handler: g, ReadHeaderTimeout: 10 * time.Second}
	g.wg.Add(2)
	go func() { defer g.wg.Done(); g.hub() }()
	go func() {
		defer g.wg.Done()
		if err := g.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			g.logf("gorilla baseline: %v", err)
		}
	}()
	return g, nil
}

// URL is the endpoint; the baseline serves every path.
func (g *Server) URL() string { return "ws://" + g.ln.Addr().String() + "/" }

// Broadcast hands data to the hub, which sends it to every client as one
// text PreparedMessage.
func (g *Server) Broadcast(data []byte) {
	g.broadcast <- broadcast{typ: websocket.TextMessage, data: data}
}

// hub owns the client set, as in the chat example; a client whose buffer is
// full is dropped rather than allowed to block everyone.
func (g *Server) hub() {
	clients := make(map[*client]bool)
	for {
		select {
		case c := <-g.register:
			clients[c] = true
			select {
			case g.Connected <- struct{}{}:
			default:
			}
		case c := <-g.unregister:
			delete(clients, c)
			c.stop()
		case b := <-g.broadcast:
			pm, err := websocket.NewPreparedMessage(b.typ, b.data)
			if err != nil {
				panic(err)
			}
			for c := range clients {
				if c == b.from {
					continue
				}
				select {
				case c.send <- frame{prepared: pm}:
				default:
					g.logf("gorilla baseline: dropping a slow client")
					delete(clients, c)
					c.stop()
				}
			}
		case <-g.quit:
			for c := range clients {
				c.stop()
			}
			return
		}
	}
}

// ServeHTTP upgrades and starts the connection's two pumps.
func (g *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	conn, err := g.upgrader.Upgrade(w, r, nil)
	if err != nil {
		return
	}
	c := &client{conn: conn, send: make(chan frame, sendBuffer), done: make(chan struct{})}
	g.wg.Add(2)
	select {
	case g.register <- c:
	case <-g.quit:
		_ = conn.Close()
		g.wg.Add(-2)
		return
	}
	go g.writePump(c)
	go g.readPump(c)
}

func (g *Server) readPump(c *client) {
	defer func() {
		select {
		case g.unregister <- c:
		case <-g.quit:
			c.stop()
		}
		_ = c.conn.Close()
		g.wg.Done()
	}()
	c.conn.SetReadLimit(MaxMessage)
	_ = c.conn.SetReadDeadline(time.Now().Add(pongWait))
	c.conn.SetPongHandler(func(string) error { return c.conn.SetReadDeadline(time.Now().Add(pongWait)) })
	for {
		typ, data, err := c.conn.ReadMessage()
		if err != nil {
			return
		}
		switch g.mode {
		case Relay:
			select {
			case g.broadcast <- broadcast{from: c, typ: typ, data: data}:
			case <-g.quit:
				return
			}
		case Echo:
			// A blocking send keeps the echo lossless: a full buffer
			// pushes back on this reader, and through TCP on the peer.
			select {
			case c.send <- frame{typ: typ, data: data}:
			case <-c.done:
				return
			}
		}
	}
}

// writePump is the connection's only writer. It drains whatever else is
// queued before returning to select, like the chat example, and pings.
func (g *Server) writePump(c *client) {
	ticker := time.NewTicker(pingPeriod)
	defer func() {
		ticker.Stop()
		_ = c.conn.Close()
		g.wg.Done()
	}()
	for {
		select {
		case <-c.done:
			_ = c.conn.SetWriteDeadline(time.Now().Add(writeWait))
			_ = c.conn.WriteMessage(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseGoingAway, ""))
			return
		case f := <-c.send:
			_ = c.conn.SetWriteDeadline(time.Now().Add(writeWait))
			if err := write(c.conn, f); err != nil {
				return
			}
			for range len(c.send) {
				if err := write(c.conn, <-c.send); err != nil {
					return
				}
			}
		case <-ticker.C:
			_ = c.conn.SetWriteDeadline(time.Now().Add(writeWait))
			if err := c.conn.WriteMessage(websocket.PingMessage, nil); err != nil {
				return
			}
		}
	}
}

func write(conn *websocket.Conn, f frame) error {
	if f.prepared != nil {
		return conn.WritePreparedMessage(f.prepared)
	}
	return conn.WriteMessage(f.typ, f.data)
}

// Close stops the hub (which stops every client, so write pumps say 1001 and
// close their sockets, which ends the read pumps) and waits for every
// goroutine.
func (g *Server) Close() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_ = g.srv.Shutdown(ctx)
	close(g.quit)
	g.wg.Wait()
}
