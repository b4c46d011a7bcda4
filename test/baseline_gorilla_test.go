package test

import (
	"context"
	"errors"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// gorillaServer is the baseline for bench_test.go: a WebSocket server written
// the way gorilla/websocket's own chat example teaches, without marmot.
// Every connection gets a read pump and a write pump goroutine joined by a
// buffered send channel; a hub goroutine owns the client set and fans a
// broadcast out as one PreparedMessage. It echoes (same frame type) or
// nothing, and broadcasts on request. Unlike the chat example, where only the
// hub sends to a client, the echo reader sends too, so a client is stopped by
// closing its done channel rather than its send channel, which would make a
// concurrent send panic.
type gorillaServer struct {
	echo     bool
	upgrader websocket.Upgrader
	srv      *http.Server
	ln       net.Listener

	register   chan *gorillaClient
	unregister chan *gorillaClient
	broadcast  chan []byte
	quit       chan struct{}
	connected  chan struct{} // one value per registered client

	wg sync.WaitGroup // hub, pumps and Serve
}

// gorillaFrame is one outbound message.
type gorillaFrame struct {
	typ      int
	data     []byte
	prepared *websocket.PreparedMessage
}

type gorillaClient struct {
	conn *websocket.Conn
	send chan gorillaFrame
	done chan struct{} // closed by stop: the write pump says goodbye and closes
	once sync.Once
}

func (c *gorillaClient) stop() { c.once.Do(func() { close(c.done) }) }

const (
	gorillaSendBuffer = 256 // the chat example's value
	gorillaPongWait   = 60 * time.Second
	gorillaPingPeriod = gorillaPongWait * 9 / 10
	gorillaWriteWait  = 10 * time.Second
	gorillaMaxMessage = 1 << 20
)

func startGorilla(tb testing.TB, echo bool) *gorillaServer {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	g := &gorillaServer{
		echo:       echo,
		upgrader:   websocket.Upgrader{ReadBufferSize: 4096, WriteBufferSize: 4096},
		ln:         ln,
		register:   make(chan *gorillaClient),
		unregister: make(chan *gorillaClient),
		broadcast:  make(chan []byte),
		quit:       make(chan struct{}),
		connected:  make(chan struct{}, 1024),
	}
	g.srv = &http.Server{Handler: g, ReadHeaderTimeout: 10 * time.Second}
	g.wg.Add(2)
	go func() { defer g.wg.Done(); g.hub() }()
	go func() {
		defer g.wg.Done()
		if err := g.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			tb.Errorf("gorilla baseline: %v", err)
		}
	}()
	tb.Cleanup(g.close)
	return g
}

// URL is the endpoint; the baseline serves every path.
func (g *gorillaServer) URL() string { return "ws://" + g.ln.Addr().String() + "/" }

// Broadcast hands data to the hub, which sends it to every client.
func (g *gorillaServer) Broadcast(data []byte) { g.broadcast <- data }

// hub owns the client set, as in the chat example; a client whose buffer is
// full is dropped rather than allowed to block everyone.
func (g *gorillaServer) hub() {
	clients := make(map[*gorillaClient]bool)
	for {
		select {
		case c := <-g.register:
			clients[c] = true
			g.connected <- struct{}{}
		case c := <-g.unregister:
			delete(clients, c)
			c.stop()
		case data := <-g.broadcast:
			pm, err := websocket.NewPreparedMessage(websocket.TextMessage, data)
			if err != nil {
				panic(err)
			}
			for c := range clients {
				select {
				case c.send <- gorillaFrame{prepared: pm}:
				default:
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
func (g *gorillaServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	conn, err := g.upgrader.Upgrade(w, r, nil)
	if err != nil {
		return
	}
	c := &gorillaClient{conn: conn, send: make(chan gorillaFrame, gorillaSendBuffer), done: make(chan struct{})}
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

func (g *gorillaServer) readPump(c *gorillaClient) {
	defer func() {
		select {
		case g.unregister <- c:
		case <-g.quit:
			c.stop()
		}
		_ = c.conn.Close()
		g.wg.Done()
	}()
	c.conn.SetReadLimit(gorillaMaxMessage)
	_ = c.conn.SetReadDeadline(time.Now().Add(gorillaPongWait))
	c.conn.SetPongHandler(func(string) error { return c.conn.SetReadDeadline(time.Now().Add(gorillaPongWait)) })
	for {
		typ, data, err := c.conn.ReadMessage()
		if err != nil {
			return
		}
		if g.echo {
			// A blocking send keeps the echo lossless: a full buffer
			// pushes back on this reader, and through TCP on the peer.
			select {
			case c.send <- gorillaFrame{typ: typ, data: data}:
			case <-c.done:
				return
			}
		}
	}
}

// writePump is the connection's only writer. It drains whatever else is
// queued before flushing, like the chat example, and pings the peer.
func (g *gorillaServer) writePump(c *gorillaClient) {
	ticker := time.NewTicker(gorillaPingPeriod)
	defer func() {
		ticker.Stop()
		_ = c.conn.Close()
		g.wg.Done()
	}()
	for {
		select {
		case <-c.done:
			_ = c.conn.SetWriteDeadline(time.Now().Add(gorillaWriteWait))
			_ = c.conn.WriteMessage(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseGoingAway, ""))
			return
		case f := <-c.send:
			_ = c.conn.SetWriteDeadline(time.Now().Add(gorillaWriteWait))
			if err := writeFrame(c.conn, f); err != nil {
				return
			}
			for range len(c.send) {
				if err := writeFrame(c.conn, <-c.send); err != nil {
					return
				}
			}
		case <-ticker.C:
			_ = c.conn.SetWriteDeadline(time.Now().Add(gorillaWriteWait))
			if err := c.conn.WriteMessage(websocket.PingMessage, nil); err != nil {
				return
			}
		}
	}
}

func writeFrame(conn *websocket.Conn, f gorillaFrame) error {
	if f.prepared != nil {
		return conn.WritePreparedMessage(f.prepared)
	}
	return conn.WriteMessage(f.typ, f.data)
}

// close stops the hub (which stops every client, so write pumps say 1001
// and close their sockets, which ends the read pumps) and waits for every
// goroutine.
func (g *gorillaServer) close() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_ = g.srv.Shutdown(ctx)
	close(g.quit)
	g.wg.Wait()
}
