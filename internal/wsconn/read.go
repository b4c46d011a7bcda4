package wsconn

import (
	"compress/flate"
	"errors"
	"time"

	"github.com/gorilla/websocket"

	"github.com/marmotws/marmot/internal/transport"
)

// Start implements transport.Conn: the reader runs on a goroutine of its
// own (or none, while parked) and keep-alive starts.
func (c *Conn) Start(r transport.Receiver) {
	c.recv = r
	// The peer's close frame is not answered here (gorilla's default
	// would answer at once, cutting off replies still queued): the owner
	// flushes first, then calls AnswerClose.
	c.ws.SetCloseHandler(func(int, string) error { return nil })
	c.startKeepAlive()
	c.rstate.Store(readerRunning)
	if c.poll != nil {
		c.fc.owner = c
	}
	go c.run()
}

// run reads until the socket fails, or the reader parks or is handed off.
func (c *Conn) run() {
	stopped, err := c.read()
	if stopped {
		return
	}
	if c.poll != nil {
		c.poll.Leave(c.pollID)
	}
	if c.fc != nil {
		c.fc.dropStage()
	}
	switch {
	case c.phase.Load() == int32(phaseExpired) && isTimeout(err):
		err = transport.ErrKeepAlive
	case errors.Is(err, websocket.ErrReadLimit):
		c.closeBadLength()
	case errors.Is(err, errInflateLimit):
		c.closeForRead(websocket.CloseMessageTooBig, "message too big")
		err = transport.ErrReadLimit
	case errors.Is(err, errStrayRSV1):
		c.closeForRead(websocket.CloseProtocolError, "RSV1 on a control or continuation frame")
	case c.z != nil && errors.As(err, new(flate.CorruptInputError)):
		c.closeForRead(websocket.CloseInvalidFramePayloadData, "invalid compressed data")
	}
	err = readError(err)
	var pc *transport.PeerClose
	if errors.As(err, &pc) && pc.Code == websocket.CloseNoStatusReceived && c.fc != nil && c.fc.frames.shortClose {
		// gorilla reports a 1-byte close body as no body at all; it is
		// malformed (a body starts with a 2-byte code, RFC 6455 §5.5.1).
		// Only a server connection's frameConn sees the frame headers.
		err = &transport.PeerClose{Code: websocket.CloseProtocolError, Text: "malformed close frame"}
	}
	c.readerExited()
	c.recv.Done(err)
}

// closeBadLength sends the close frame gorilla leaves out after a read
// limit error. gorilla answers a message over the read limit with 1009
// itself, but reports a frame length it cannot represent (a 64-bit length
// with its most significant bit set, which RFC 6455 §5.2 forbids) with the
// same error and no close frame: a protocol error, 1002. gorilla refuses a
// second close frame (ErrCloseSent), so the 1002 goes out, and counts as
// this side's close, only when gorilla sent none.
func (c *Conn) closeBadLength() {
	c.closeForRead(websocket.CloseProtocolError, "invalid frame length")
}

// closeForRead sends the close frame for an error the reader found, unless
// one went out already, and counts it as this side's close.
func (c *Conn) closeForRead(code int, text string) {
	if phase(c.phase.Load()) >= phaseClosing {
		return
	}
	if c.ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(code, text), c.controlDeadline(time.Time{})) != nil {
		return
	}
	c.mu.Lock()
	if phase(c.phase.Load()) < phaseClosing {
		c.phase.Store(int32(phaseFailing))
		c.local.code, c.local.text, c.local.set = code, text, true
	}
	c.mu.Unlock()
}

// read delivers messages until the socket fails (stopped false), or the
// reader parks or was handed off to another goroutine (stopped true).
func (c *Conn) read() (stopped bool, err error) {
	inflating := c.z != nil && c.limit > 0 // inflated messages are bounded again (compress.go)
	gen := c.readers.Load()
	for {
		typ, r, err := c.ws.NextReader()
		if err != nil {
			return false, err
		}
		if c.fc != nil && c.fc.takeInjected() {
			if c.park() {
				return true, nil
			}
			continue
		}
		c.touch()
		if phase(c.phase.Load()) >= phaseFailing {
			continue // after an error close, input is garbage until the peer answers (NextReader skips it)
		}
		if inflating {
			c.inflated = inflateLimit{r: r, left: c.limit}
			r = &c.inflated
		}
		err = c.recv.Message(typ, r)
		if c.readers.Load() != gen {
			return true, nil // Handoff: another goroutine reads on
		}
		if err != nil {
			return false, err
		}
	}
}

// Handoff implements transport.Conn: a new goroutine reads on at once,
// and the one in Message stops when it returns (read sees the reader
// generation moved). The Message in progress has read its frame to the
// end, so the two never touch the socket or the reader's state at once;
// while it runs, the reader is not waiting (rstate: running), so it is not
// parked either, and the new reader parks as any reader does.
func (c *Conn) Handoff() bool {
	c.readers.Add(1)
	go c.run()
	return true
}

// IdleSince implements netpoll.Target.
func (c *Conn) IdleSince(epoch uint64) bool {
	return c.rstate.Load() == readerWaiting && c.waitEpoch.Load()+2 <= epoch
}

// Interrupt implements netpoll.Target: it ends an idle reader's wait so
// that it parks (see frameConn.waitRead), unless the connection is on its
// way out.
func (c *Conn) Interrupt() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.mayPark() {
		return
	}
	if c.rstate.CompareAndSwap(readerWaiting, readerParking) {
		_ = c.fc.Conn.SetReadDeadline(aLongTimeAgo)
	}
}

// Wake implements netpoll.Target: it resumes a parked reader on a new
// goroutine.
func (c *Conn) Wake() {
	if c.poll != nil && c.rstate.CompareAndSwap(readerParked, readerRunning) {
		go c.run()
	}
}

// mayPark reports whether an idle reader may park: only while the
// connection is open (under mu).
func (c *Conn) mayPark() bool { return phase(c.phase.Load()) == phaseOpen }

// park ends the reader goroutine after frameConn handed it parkFrame, with
// an epoll registration to resume it. It reports false when the reader must
// go on instead (the connection is closing, or epoll refused).
func (c *Conn) park() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.mayPark() {
		c.rstate.Store(readerRunning)
		return false
	}
	c.rstate.Store(readerParked)
	held := c.fc.stageBuf != nil // before Arm: a woken reader owns fc then
	if err := c.poll.Arm(c.fc.rc, c.pollID, &c.pollAdded); err != nil {
		// Stay a plain blocking reader; unless someone already woke us.
		return !c.rstate.CompareAndSwap(readerParked, readerRunning)
	}
	c.poll.Parked(c.pollID, held)
	return true
}
