package chaos

import (
	"errors"
	"io"
	"log/slog"
	"net"
	"sync"
	"syscall"
	"time"
)

// DialTimeout bounds a Proxy's dial of its upstream for each connection.
const DialTimeout = 10 * time.Second

// chunkQueue is how many chunks a direction of a proxied connection holds
// between reading and forwarding (latency is pipelined through it).
const chunkQueue = 4

// chunkSize is the largest read of a proxied connection.
const chunkSize = 16 << 10

// Proxy is a TCP proxy that injects faults: every connection to its
// listen address is forwarded to the upstream address through its
// Injector's faults. The Injector's methods (Set, SetConn, Reset,
// ResetAll, Refuse, Down, Up, Conns, Handler, ...) control it.
type Proxy struct {
	*Injector
	upstream string

	mu   sync.Mutex
	ln   net.Listener
	addr net.Addr
	// closed is set by Close: no more listening, even on Up.
	closed bool
	wg     sync.WaitGroup
}

// NewProxy listens on listen ("127.0.0.1:0" picks a port: see Addr) and
// forwards every connection to upstream.
func NewProxy(listen, upstream string, opts Options) (*Proxy, error) {
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return nil, err
	}
	p := &Proxy{Injector: New(opts), upstream: upstream, ln: ln, addr: ln.Addr()}
	p.modeHook = p.mode
	p.wg.Add(1)
	go p.accept(ln)
	p.log.Info("chaos: proxy", slog.String("listen", p.addr.String()), slog.String("upstream", upstream))
	return p, nil
}

// Addr is the address the proxy listens on.
func (p *Proxy) Addr() net.Addr { return p.addr }

// Upstream is the address connections are forwarded to.
func (p *Proxy) Upstream() string { return p.upstream }

// Close stops listening, closes every connection (without RST) and waits
// for the proxy's goroutines.
func (p *Proxy) Close() error {
	p.mu.Lock()
	p.closed = true
	ln := p.ln
	p.ln = nil
	p.mu.Unlock()
	var err error
	if ln != nil {
		err = ln.Close()
	}
	for _, c := range p.snapshot() {
		c.end()
	}
	p.wg.Wait()
	return err
}

// mode closes the listener on ModeDown and listens again when leaving it
// (Injector.setMode, with the injector's lock held).
func (p *Proxy) mode(m Mode) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return net.ErrClosed
	}
	switch {
	case m == ModeDown && p.ln != nil:
		err := p.ln.Close()
		p.ln = nil
		return err
	case m != ModeDown && p.ln == nil:
		ln, err := net.Listen("tcp", p.addr.String())
		if err != nil {
			return err
		}
		p.ln = ln
		p.wg.Add(1)
		go p.accept(ln)
	}
	return nil
}

func (p *Proxy) accept(ln net.Listener) {
	defer p.wg.Done()
	var delay time.Duration
	for {
		down, err := ln.Accept()
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() || errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) {
				// Out of descriptors: back off as net/http does.
				delay = min(max(2*delay, 5*time.Millisecond), time.Second)
				p.log.Warn("chaos: accept", slog.Any("err", err), slog.Duration("retry", delay))
				time.Sleep(delay)
				continue
			}
			return
		}
		delay = 0
		p.wg.Add(1)
		go p.serve(down)
	}
}

// serve dials the upstream for the client connection down and forwards
// both ways until either side ends or a fault resets them.
func (p *Proxy) serve(down net.Conn) {
	defer p.wg.Done()
	client := down.RemoteAddr().String()
	if p.refused("proxy", client, p.upstream) {
		rst(down)
		return
	}
	up, err := net.DialTimeout("tcp", p.upstream, DialTimeout)
	if err != nil {
		p.log.Warn("chaos: upstream dial failed", slog.String("client", client), slog.String("upstream", p.upstream), slog.Any("err", err))
		rst(down)
		return
	}
	c := p.admit("proxy", client, p.upstream, down, up)
	if c == nil {
		rst(down)
		rst(up)
		return
	}
	p.mu.Lock()
	closed := p.closed
	p.mu.Unlock()
	if closed { // Close's sweep may have missed it
		c.end()
		return
	}
	var wg sync.WaitGroup
	wg.Add(2)
	go p.direction(c, dirUp, down, up, &wg)
	go p.direction(c, dirDown, up, down, &wg)
	wg.Wait()
	c.end()
}

// bufs recycles the proxy's read buffers.
var bufs = sync.Pool{New: func() any { b := make([]byte, chunkSize); return &b }}

type chunk struct {
	buf *[]byte
	b   []byte
	at  time.Time
}

// direction forwards src to dst through c's faults: a reader goroutine
// queues what src sends (when it arrived), this one lets it through the
// faults and writes it. src's EOF becomes dst's half-close; an error ends
// the connection (an RST from a peer is passed on as an RST).
func (p *Proxy) direction(c *conn, dir int, src, dst net.Conn, wg *sync.WaitGroup) {
	defer wg.Done()
	q := make(chan chunk, chunkQueue)
	readErr := make(chan error, 1)
	go func() {
		defer close(q)
		for {
			buf := bufs.Get().(*[]byte)
			n, err := src.Read(*buf)
			if n > 0 {
				select {
				case q <- chunk{buf, (*buf)[:n], time.Now()}:
				case <-c.ctx.Done():
					bufs.Put(buf)
					readErr <- net.ErrClosed
					return
				}
			} else {
				bufs.Put(buf)
			}
			if err != nil {
				readErr <- err
				return
			}
		}
	}()
	write := func(b []byte) error { _, err := dst.Write(b); return err }
	for ch := range q {
		_, err := c.pass(dir, ch.b, ch.at, time.Time{}, write)
		bufs.Put(ch.buf)
		if err != nil {
			c.end()
			for ch := range q { // let the reader finish
				bufs.Put(ch.buf)
			}
			return
		}
	}
	switch err := <-readErr; {
	case errors.Is(err, io.EOF):
		if cw, ok := dst.(interface{ CloseWrite() error }); ok && cw.CloseWrite() == nil {
			return
		}
		c.end()
	case errors.Is(err, syscall.ECONNRESET):
		rst(dst) // pass the peer's RST on
		c.end()
	default:
		c.end()
	}
}
