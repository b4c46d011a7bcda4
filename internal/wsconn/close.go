package wsconn

import (
	"time"
	"unicode/utf8"

	"github.com/gorilla/websocket"
)

// Close implements transport.Conn.
func (c *Conn) Close(code int, text string, deadline time.Time) {
	c.mu.Lock()
	if phase(c.phase.Load()) >= phaseClosing {
		c.mu.Unlock()
		return
	}
	next := phaseClosing
	if code != websocket.CloseNormalClosure && code != websocket.CloseGoingAway {
		next = phaseFailing
	}
	c.phase.Store(int32(next))
	c.local.code, c.local.text, c.local.set = code, text, true
	c.mu.Unlock()
	if len(text) > 120 { // control frames carry at most 125 bytes
		// Cut where a code point starts: the reason must stay UTF-8
		// (RFC 6455 §5.5.1).
		n := 120
		for n > 0 && !utf8.RuneStart(text[n]) {
			n--
		}
		text = text[:n]
	}
	if grace := time.Now().Add(CloseGrace); deadline.IsZero() || deadline.After(grace) {
		deadline = grace
	}
	if err := c.ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(code, text), c.controlDeadline(deadline)); err != nil {
		c.Drop()
		return
	}
	c.setDeadline(deadline)
}

// AnswerClose implements transport.Conn: it echoes code (a close without a
// status is answered with 1000).
func (c *Conn) AnswerClose(code int, deadline time.Time) {
	c.mu.Lock()
	if phase(c.phase.Load()) >= phaseClosing {
		c.mu.Unlock()
		return
	}
	c.phase.Store(int32(phaseClosing))
	c.mu.Unlock()
	if code == websocket.CloseNoStatusReceived || code == websocket.CloseAbnormalClosure || code == 0 {
		code = websocket.CloseNormalClosure
	}
	_ = c.ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(code, ""), c.controlDeadline(deadline))
}

// controlDeadline is the write deadline of a close frame: the handshake's
// deadline, but no longer than the write timeout.
func (c *Conn) controlDeadline(deadline time.Time) time.Time {
	if deadline.IsZero() {
		deadline = time.Now().Add(CloseGrace)
	}
	if c.writeTimeout > 0 && time.Until(deadline) > c.writeTimeout {
		return time.Now().Add(c.writeTimeout)
	}
	return deadline
}

// LocalClose implements transport.Conn.
func (c *Conn) LocalClose() (code int, text string, ok bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.local.code, c.local.text, c.local.set
}

// Release implements transport.Conn. The reader and the owner both hold
// the socket: whichever lets go last closes it, so neither a pending close
// handshake nor a final flush is cut short.
func (c *Conn) Release() {
	c.stopKeepAlive()
	c.mu.Lock()
	prev := phase(c.phase.Swap(int32(phaseReleased)))
	closeNow := c.readerEnd
	c.mu.Unlock()
	switch {
	case closeNow:
		c.Drop()
	case prev < phaseClosing:
		// No close frame went out, so nothing is worth waiting for: make
		// the reader return now.
		c.setDeadline(aLongTimeAgo)
	}
}

// readerExited is the reader's half of Release.
func (c *Conn) readerExited() {
	c.mu.Lock()
	c.readerEnd = true
	closeNow := phase(c.phase.Load()) == phaseReleased
	c.mu.Unlock()
	if closeNow {
		c.Drop()
	}
}

// Drop implements transport.Conn. A parked reader is woken to see it: a
// closed descriptor leaves the epoll set without an event, and a reader
// that never runs again would never report the end.
func (c *Conn) Drop() {
	_ = c.ws.NetConn().Close()
	if c.poll != nil && c.rstate.Load() == readerUnstarted {
		c.poll.Leave(c.pollID) // never started: no reader will leave
	}
	c.Wake()
}

// setDeadline makes the reader give up at t, waking it if it is parked so
// that it can: parked, nothing would notice the deadline.
func (c *Conn) setDeadline(t time.Time) {
	c.mu.Lock()
	c.deadline = t
	_ = c.ws.SetReadDeadline(t)
	c.mu.Unlock()
	c.Wake()
}
