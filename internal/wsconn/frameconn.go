package wsconn

import (
	"bytes"
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"syscall"
	"time"

	"github.com/gorilla/websocket"
)

// Idle connections do not keep a goroutine. A server connection's reader
// waits for the next message inside frameConn.Read, where it is interruptible:
// once it has waited a while (see poller), it is handed a synthetic empty
// frame, gorilla's NextReader returns it, and the reader parks — the
// goroutine ends and an epoll registration resumes reading on a fresh one
// when bytes arrive. gorilla stays the frame codec; frameConn only watches
// frame boundaries go by, so it knows when the stream is between messages
// (the only place where the synthetic frame is valid).

// Reader states of a parkable connection.
const (
	readerUnstarted int32 = iota // Start has not run yet
	readerRunning                // a goroutine is reading or handling input
	readerWaiting                // blocked in frameConn.Read between messages
	readerParking                // the poller forced the wait to end; about to park
	readerParked                 // no goroutine; epoll wakes the reader
)

// stageSize is the read size while input flows. The buffer comes from a
// pool and goes back as soon as it is drained, so an idle connection holds
// only gorilla's small bufio.Reader. (Keeping it per connection while busy
// saves the pool round trips but loses more: a recycled buffer is still in
// the core's cache, one per connection is not.)
const stageSize = 4096

var stageBuffers = sync.Pool{New: func() any { return new([stageSize]byte) }}

// parkFrame is what the reader is handed when it should park: an empty,
// final, masked binary frame (a client's frames are always masked).
var parkFrame = [...]byte{0x82, 0x80, 0, 0, 0, 0}

// aLongTimeAgo is a read deadline that ends a blocked Read at once.
var aLongTimeAgo = time.Unix(1, 0)

// frameConn is the net.Conn gorilla reads a server connection through.
type frameConn struct {
	// Fields in the order a message touches them, packed so that it touches
	// three cache lines (see Conn).
	net.Conn
	frames frameTracker

	stageBuf *[stageSize]byte
	stage    []byte          // unread part of stageBuf
	rc       syscall.RawConn // nil when c is not a socket
	readFn   func(fd uintptr) bool
	rn       int // rawRead's result

	rerr     error // rawRead's error
	owner    *Conn // set when the reader may park; nil before
	injected bool  // the last Read returned parkFrame

	// The write side, under wmu (see writeData); z is read before it.
	z         *deflater // negotiated compression (compress.go); nil: none
	wmu       sync.Mutex
	wdSet     bool
	wd        time.Time // the write deadline on the socket
	batchWD   time.Time // the deadline for the open batch
	gorillaWD time.Time // the deadline for gorilla's next Write
	werr      error     // a failed write (the stream is broken) or ErrCloseSent
	batch     *[]byte   // open batch (see beginBatch); nil: writes go straight out
	hdr       [maxHeader]byte
	bufs      [][]byte // writev scratch

	// offer is what z becomes if the handshake's response accepts
	// permessage-deflate, until gorilla's first Write (the response) is
	// seen (compress.go).
	offer *deflater
}

func newFrameConn(c net.Conn) *frameConn {
	fc := &frameConn{Conn: c}
	if sc, ok := c.(syscall.Conn); ok {
		fc.rc, _ = sc.SyscallConn()
		fc.readFn = fc.rawRead
	}
	return fc
}

// Read is called by gorilla's bufio.Reader only; see the package comment
// above for the waiting protocol.
func (c *frameConn) Read(p []byte) (int, error) {
	if len(c.stage) > 0 {
		n := copy(p, c.stage)
		c.stage = c.stage[n:]
		if len(c.stage) == 0 {
			c.dropStage()
		}
		c.frames.observe(p[:n])
		if c.frames.strayRSV1 && c.z != nil {
			return 0, errStrayRSV1
		}
		return n, nil
	}
	var n int
	var err error
	switch {
	case !c.frames.betweenMessages():
		n, err = c.fill(p)
	case c.owner != nil:
		n, err = c.waitRead(p)
		if c.injected {
			return n, err
		}
	default:
		n, err = c.fillWaiting(p)
	}
	c.frames.observe(p[:n])
	if c.frames.strayRSV1 && c.z != nil {
		// gorilla would take the frame; the connection fails instead
		// (Conn.run sends the 1002). What the read held is dropped with it.
		return 0, errStrayRSV1
	}
	return n, err
}

// fill reads from the socket: straight into p when it is large, else through
// a pooled stage buffer so that small bufio fills still read a lot at once.
func (c *frameConn) fill(p []byte) (int, error) {
	if len(p) >= stageSize {
		return c.Conn.Read(p)
	}
	if c.stageBuf == nil {
		c.stageBuf = stageBuffers.Get().(*[stageSize]byte)
	}
	n, err := c.Conn.Read(c.stageBuf[:])
	if n > 0 {
		return c.handOut(p, n), nil // TCP reads return data or an error; keep the data
	}
	c.dropStage()
	return 0, err
}

// handOut copies what fits of the n staged bytes into p and keeps the rest
// for the next Read (or gives the stage buffer back when nothing is left).
func (c *frameConn) handOut(p []byte, n int) int {
	k := copy(p, c.stageBuf[:n])
	if k < n {
		c.stage = c.stageBuf[k:n]
	} else {
		c.dropStage()
	}
	return k
}

// fillWaiting is fill for a read that may wait long (the next message may
// be minutes away): the stage buffer is taken only once bytes are there, so
// a waiting connection holds no buffer.
func (c *frameConn) fillWaiting(p []byte) (int, error) {
	if c.rc == nil {
		return c.fill(p)
	}
	err := c.rc.Read(c.readFn)
	n, rerr := c.rn, c.rerr
	c.rerr = nil
	switch {
	case err != nil:
		c.dropStage()
		return 0, err
	case rerr != nil:
		c.dropStage()
		return 0, &net.OpError{Op: "read", Net: "tcp", Source: c.LocalAddr(), Addr: c.RemoteAddr(), Err: os.NewSyscallError("read", rerr)}
	case n <= 0:
		c.dropStage()
		return 0, io.EOF
	}
	return c.handOut(p, n), nil
}

// rawRead is fillWaiting's RawConn.Read callback, bound once per connection
// (readFn) so that a read allocates nothing.
func (c *frameConn) rawRead(fd uintptr) bool {
	if c.stageBuf == nil {
		c.stageBuf = stageBuffers.Get().(*[stageSize]byte)
	}
	for {
		c.rn, c.rerr = syscall.Read(int(fd), c.stageBuf[:])
		if errno, _ := c.rerr.(syscall.Errno); errno != syscall.EINTR {
			break
		}
	}
	if errno, _ := c.rerr.(syscall.Errno); errno == syscall.EAGAIN {
		c.dropStage()
		return false // wait for readability (or the deadline)
	}
	return true
}

func (c *frameConn) dropStage() {
	if c.stageBuf != nil {
		stageBuffers.Put(c.stageBuf)
		c.stageBuf, c.stage = nil, nil
	}
}

// waitRead reads the first bytes of the next message, or returns parkFrame
// when the poller decided this connection is idle.
func (c *frameConn) waitRead(p []byte) (int, error) {
	o := c.owner
	for {
		// Stored only when it changed (every tick): a load is cheaper
		// than the locked store.
		if e := o.poll.Epoch(); o.waitEpoch.Load() != e {
			o.waitEpoch.Store(e)
		}
		o.rstate.Store(readerWaiting)
		n, err := c.fillWaiting(p)
		if o.rstate.CompareAndSwap(readerWaiting, readerRunning) {
			return n, err
		}
		// The poller moved us to readerParking and cut the read short with
		// a past deadline; under o.mu its SetReadDeadline is done, so the
		// deadline the connection really wants can be put back.
		o.mu.Lock()
		_ = c.Conn.SetReadDeadline(o.deadline)
		if n > 0 || (err != nil && !isTimeout(err)) || !o.mayPark() {
			o.rstate.Store(readerRunning)
			o.mu.Unlock()
			if n > 0 || !isTimeout(err) {
				return n, err
			}
			continue // the timeout was ours; wait again under the real deadline
		}
		o.mu.Unlock()
		c.injected = true
		return copy(p, parkFrame[:]), nil
	}
}

// batchLimit bounds a coalesced write; a flush with more goes out in
// several writes of about this size.
const batchLimit = 64 << 10

var batchBuffers = bytePool{size: 8 << 10}

// bytePool hands out reusable byte slices; slices that grew past 64 KiB are
// left to the GC, so one huge write does not pin its buffer.
type bytePool struct {
	p    sync.Pool
	size int
}

func (bp *bytePool) get() *[]byte {
	if b, ok := bp.p.Get().(*[]byte); ok {
		return b
	}
	b := make([]byte, 0, bp.size)
	return &b
}

func (bp *bytePool) put(b *[]byte) {
	if b != nil && cap(*b) <= 64<<10 {
		*b = (*b)[:0]
		bp.p.Put(b)
	}
}

// A server connection's data frames are encoded here, not by gorilla's writer
// (writeData): a server frame is a 2–10-byte header and the payload, never
// masked (RFC 6455 §5.2), while gorilla's writer costs a channel lock, a
// mutex, a pooled-buffer round trip and an allocation per frame — about a
// seventh of the server's user CPU in a 64-byte echo. gorilla still reads
// every frame and writes the handshake and the control frames (pings,
// pongs, closes), through Write. wmu serializes the two writers, so frames
// never interleave on the wire, and each write goes out under its own
// deadline. With permessage-deflate negotiated, a data frame's payload may
// be compressed, with RSV1 set (compress.go).

// maxHeader is the longest server frame header: no mask, 64-bit length.
const maxHeader = 10

// copyMax is the largest payload copied behind its header into one write;
// a larger one goes out with writev instead of being copied.
const copyMax = 4 << 10

// Write is how gorilla writes (the handshake and control frames on server
// connections), under gorilla's write lock and with the deadline it set just
// before (see SetWriteDeadline). While a batch is open the frame joins it,
// which RFC 6455 allows: control frames may come between data messages.
func (c *frameConn) Write(p []byte) (int, error) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.offer != nil {
		// The handshake's response, in one Write (gorilla's Upgrade).
		if bytes.Contains(p, deflateAnswer) {
			c.z = c.offer
		}
		c.offer = nil
	}
	if isCloseFrame(p) && c.werr == nil {
		// Every close frame goes through here: marmot's own (sent with
		// gorilla's WriteControl) and those gorilla sends by itself after
		// some read errors (a protocol error, a message over the read
		// limit). No data frame may follow it (RFC 6455 §5.5.1).
		c.werr = websocket.ErrCloseSent
	}
	if c.batch != nil {
		if err := c.appendBatch(p); err != nil {
			return 0, err
		}
		return len(p), nil
	}
	if err := c.applyDeadline(c.gorillaWD); err != nil {
		return 0, c.fail(err)
	}
	n, err := c.Conn.Write(p)
	return n, c.fail(err)
}

// SetWriteDeadline records the deadline for gorilla's next Write. gorilla
// sets it before every frame it writes; Write applies it under wmu, so a
// data frame written in between keeps its own.
func (c *frameConn) SetWriteDeadline(t time.Time) error {
	c.wmu.Lock()
	c.gorillaWD = t
	c.wmu.Unlock()
	return nil
}

// applyDeadline puts t on the socket unless it is already there: re-arming
// a socket deadline costs a runtime timer update. Under wmu. The deadlines
// are the same values passed around, so == finds them (cheaper than Equal;
// equal instants that compare unequal only cost a re-arm).
func (c *frameConn) applyDeadline(t time.Time) error {
	if c.wdSet && t == c.wd {
		return nil
	}
	c.wd, c.wdSet = t, true
	return c.Conn.SetWriteDeadline(t)
}

// isCloseFrame reports whether p is a whole server close frame, the way
// gorilla writes control frames: FIN and opcode 8, no mask, the payload
// length in the second byte, in one Write.
func isCloseFrame(p []byte) bool {
	return len(p) >= 2 && p[0] == 0x88 && int(p[1]) == len(p)-2
}

// writeData writes payload as one final data frame of message type typ
// (websocket.TextMessage or BinaryMessage, which are the opcodes) under
// deadline, or adds it to the open batch; compressed when the connection
// negotiated it and payload is large enough.
func (c *frameConn) writeData(typ int, payload []byte, deadline time.Time) error {
	if c.z.wants(len(payload)) {
		bp := batchBuffers.get()
		defer batchBuffers.put(bp)
		var ok bool
		if *bp, ok = deflate((*bp)[:0], payload, c.z.level); ok {
			return c.writePayload(typ|rsv1, *bp, deadline)
		}
	}
	return c.writePayload(typ, payload, deadline)
}

// writePayload is writeData after compression: typ may have rsv1 set.
func (c *frameConn) writePayload(typ int, payload []byte, deadline time.Time) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.werr != nil {
		return c.werr
	}
	hdr := appendHeader(c.hdr[:0], typ, len(payload))
	if c.batch != nil {
		small := len(payload) <= batchLimit/2
		// A large payload goes out on its own, after what the batch holds.
		if !small || len(*c.batch)+len(hdr)+len(payload) > batchLimit {
			if err := c.writeBatch(); err != nil {
				return err
			}
		}
		if small {
			*c.batch = append(append(*c.batch, hdr...), payload...)
			return nil
		}
	}
	if err := c.applyDeadline(deadline); err != nil {
		return c.fail(err)
	}
	if len(payload) <= copyMax {
		bp := batchBuffers.get()
		*bp = append(append((*bp)[:0], hdr...), payload...)
		_, err := c.Conn.Write(*bp)
		batchBuffers.put(bp)
		return c.fail(err)
	}
	c.bufs = append(c.bufs[:0], hdr, payload)
	nb := net.Buffers(c.bufs)
	_, err := nb.WriteTo(c.Conn) // writev on a TCP socket
	c.bufs[0], c.bufs[1] = nil, nil
	return c.fail(err)
}

// writeFrame writes frame, a complete data frame encoded once for many
// connections (see EncodeFrame), under deadline, or adds it to the open
// batch.
func (c *frameConn) writeFrame(frame []byte, deadline time.Time) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.werr != nil {
		return c.werr
	}
	if c.batch != nil {
		return c.appendBatch(frame)
	}
	if err := c.applyDeadline(deadline); err != nil {
		return c.fail(err)
	}
	_, err := c.Conn.Write(frame)
	return c.fail(err)
}

// fail keeps a write error: after a partial write the stream is broken, so
// every later data frame fails too.
func (c *frameConn) fail(err error) error {
	if err != nil && c.werr == nil {
		c.werr = err
	}
	return err
}

// appendBatch adds p to the open batch, first writing out what the batch
// holds when p would take it past batchLimit; a large p goes straight out.
func (c *frameConn) appendBatch(p []byte) error {
	if len(*c.batch)+len(p) > batchLimit {
		if err := c.writeBatch(); err != nil {
			return err
		}
		if len(p) > batchLimit/2 {
			if err := c.applyDeadline(c.batchWD); err != nil {
				return c.fail(err)
			}
			_, err := c.Conn.Write(p)
			return c.fail(err)
		}
	}
	*c.batch = append(*c.batch, p...)
	return nil
}

// beginBatch starts collecting frames; endBatch sends them in one write,
// under deadline.
func (c *frameConn) beginBatch(deadline time.Time) {
	c.wmu.Lock()
	c.batch = batchBuffers.get()
	c.batchWD = deadline
	c.wmu.Unlock()
}

// endBatch writes what the batch collected. Its error is the error of
// every frame in the batch: they were reported written.
func (c *frameConn) endBatch() error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	err := c.writeBatch()
	batchBuffers.put(c.batch)
	c.batch = nil
	return err
}

func (c *frameConn) writeBatch() error {
	b := *c.batch
	*c.batch = b[:0]
	if len(b) == 0 {
		return nil
	}
	if err := c.applyDeadline(c.batchWD); err != nil {
		return c.fail(err)
	}
	_, err := c.Conn.Write(b)
	return c.fail(err)
}

// rsv1 marks a compressed message in its first frame's header (RFC 7692
// §6); or'ed into typ for appendHeader.
const rsv1 = 0x40

// appendHeader appends the header of a final, unmasked frame of type typ
// (with rsv1 when compressed) with an n-byte payload.
func appendHeader(b []byte, typ, n int) []byte {
	b0 := byte(0x80 | typ) // FIN
	switch {
	case n < 126:
		return append(b, b0, byte(n))
	case n <= 0xffff:
		return append(b, b0, 126, byte(n>>8), byte(n))
	default:
		u := uint64(n)
		return append(b, b0, 127, byte(u>>56), byte(u>>48), byte(u>>40), byte(u>>32),
			byte(u>>24), byte(u>>16), byte(u>>8), byte(u))
	}
}

// takeInjected reports, once, that the message just read was parkFrame.
func (c *frameConn) takeInjected() bool {
	if c.injected {
		c.injected = false
		return true
	}
	return false
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
