package chaos

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"syscall"
	"time"
)

// WrapListener returns ln with the injector's faults on every connection
// it accepts: Accept returns *Conn values. Connections refused by the mode
// (Refuse, Down) are reset as soon as they are accepted and never
// returned. Closing the returned listener closes ln; its connections live
// on until closed or reset.
func (i *Injector) WrapListener(ln net.Listener) net.Listener {
	return &listener{Listener: ln, inj: i}
}

type listener struct {
	net.Listener
	inj *Injector
}

// Accept waits for the next connection the injector lets through.
func (l *listener) Accept() (net.Conn, error) {
	for {
		nc, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		c := l.inj.admit("listener", nc.RemoteAddr().String(), nc.LocalAddr().String(), nc)
		if c == nil {
			rst(nc)
			continue
		}
		return &Conn{Conn: nc, c: c}, nil
	}
}

// DialFunc dials as net.Dialer.DialContext does.
type DialFunc func(ctx context.Context, network, addr string) (net.Conn, error)

// WrapDial returns dial (nil: a zero net.Dialer's DialContext) with the
// injector's faults on every connection it makes: it returns *Conn
// values. While the mode refuses (Refuse, Down) it fails without dialing,
// with an error that errors.Is syscall.ECONNREFUSED. Use it where a client
// takes a dial function: gorilla/websocket's Dialer.NetDialContext,
// http.Transport.DialContext, grpc.WithContextDialer.
func (i *Injector) WrapDial(dial DialFunc) DialFunc {
	if dial == nil {
		dial = (&net.Dialer{}).DialContext
	}
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		if i.refused("dialer", "", addr) {
			return nil, &net.OpError{Op: "dial", Net: network, Err: fmt.Errorf("chaos: %s: %w", addr, syscall.ECONNREFUSED)}
		}
		nc, err := dial(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		c := i.admit("dialer", nc.LocalAddr().String(), addr, nc)
		if c == nil {
			_ = nc.Close()
			return nil, &net.OpError{Op: "dial", Net: network, Err: fmt.Errorf("chaos: %s: %w", addr, syscall.ECONNREFUSED)}
		}
		return &Conn{Conn: nc, c: c}, nil
	}
}

// Conn is a connection of a wrapped listener or dialer, with the
// injector's faults on what it writes (the up direction) and reads (down).
// Faults make Read and Write wait (latency is serial here, unlike in a
// Proxy); the waits respect the conn's deadlines. After a reset, Read and
// Write fail with ErrReset, and the peer sees ECONNRESET.
type Conn struct {
	net.Conn
	c *conn

	rmu     sync.Mutex // one Read at a time
	buf     []byte
	pending []byte    // read from the socket, not yet let through
	perr    error     // the socket's error after pending
	pat     time.Time // when pending arrived
	wmu     sync.Mutex

	dmu      sync.Mutex
	rdl, wdl time.Time
}

// ID is the connection's id in its Injector (Conns, SetConn, Reset).
func (c *Conn) ID() ConnID { return c.c.id }

// Read reads through the faults.
func (c *Conn) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	c.rmu.Lock()
	defer c.rmu.Unlock()
	if len(c.pending) == 0 {
		if c.perr != nil {
			return 0, c.perr
		}
		if c.buf == nil {
			c.buf = make([]byte, chunkSize)
		}
		n, err := c.Conn.Read(c.buf)
		if n == 0 {
			return 0, c.sockErr(err)
		}
		c.pending, c.perr, c.pat = c.buf[:n], c.sockErr(err), time.Now()
	}
	c.dmu.Lock()
	dl := c.rdl
	c.dmu.Unlock()
	k := 0
	n, err := c.c.pass(dirDown, c.pending[:min(len(c.pending), len(p))], c.pat, dl, func(b []byte) error {
		k += copy(p[k:], b)
		return nil
	})
	c.pending = c.pending[n:]
	if errors.Is(err, ErrReset) {
		c.pending, c.perr = nil, ErrReset
		if n > 0 {
			err = nil
		}
	}
	return n, c.sockErr(err)
}

// Write writes through the faults.
func (c *Conn) Write(p []byte) (int, error) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.dmu.Lock()
	dl := c.wdl
	c.dmu.Unlock()
	n, err := c.c.pass(dirUp, p, time.Now(), dl, func(b []byte) error {
		_, err := c.Conn.Write(b)
		return err
	})
	return n, c.sockErr(err)
}

// sockErr turns the error of a socket the injector reset into ErrReset.
func (c *Conn) sockErr(err error) error {
	if err != nil && c.c.wasReset.Load() {
		return ErrReset
	}
	return err
}

// Close closes the connection (no RST) and ends it in the injector.
func (c *Conn) Close() error {
	c.c.end()
	return nil
}

// SetDeadline sets both deadlines; they bound the faults' waits too.
func (c *Conn) SetDeadline(t time.Time) error {
	c.dmu.Lock()
	c.rdl, c.wdl = t, t
	c.dmu.Unlock()
	return c.Conn.SetDeadline(t)
}

// SetReadDeadline bounds Read, the faults' waits included.
func (c *Conn) SetReadDeadline(t time.Time) error {
	c.dmu.Lock()
	c.rdl = t
	c.dmu.Unlock()
	return c.Conn.SetReadDeadline(t)
}

// SetWriteDeadline bounds Write, the faults' waits included.
func (c *Conn) SetWriteDeadline(t time.Time) error {
	c.dmu.Lock()
	c.wdl = t
	c.dmu.Unlock()
	return c.Conn.SetWriteDeadline(t)
}
