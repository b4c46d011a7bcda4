package wsconn

import (
	"time"

	"github.com/gorilla/websocket"
)

// Keep-alive pings every keepAlive/2 and ends the connection when the peer
// has sent nothing (data, pong or ping) for keepAlive. Data frames are
// noticed at the next tick, so a dead peer is found between keepAlive and
// 1.5×keepAlive after it was last heard. A timer rather than a per-message
// read deadline: it costs nothing per message, keeps idle connections
// cheap, and still notices a dead peer whose reader is parked.

// touch records input for keep-alive: a flag, not a timestamp, since a
// clock read per message costs more than keep-alive needs (the tick turns
// the flag into lastRead), and stored only when unset, since an atomic store
// is a locked instruction and a load is not.
func (c *Conn) touch() {
	if !c.heard.Load() {
		c.heard.Store(true)
	}
}

func (c *Conn) startKeepAlive() {
	if c.keepAlive <= 0 {
		return
	}
	c.ws.SetPongHandler(func(string) error { c.lastRead.Store(monoNow()); return nil })
	ping := c.ws.PingHandler()
	c.ws.SetPingHandler(func(s string) error { c.lastRead.Store(monoNow()); return ping(s) })
	now := monoNow()
	c.lastRead.Store(now)
	c.lastPing = now
	c.mu.Lock()
	c.pinger = time.AfterFunc(c.keepAlive/2, c.keepAliveTick)
	c.mu.Unlock()
}

func (c *Conn) keepAliveTick() {
	interval := int64(c.keepAlive / 2)
	now := monoNow()
	if c.heard.Swap(false) {
		// A frame came in since the previous tick, at most interval ago:
		// counting it as now can only make the timeout later, never early.
		c.lastRead.Store(now)
	}
	last := c.lastRead.Load()
	c.mu.Lock()
	if phase(c.phase.Load()) != phaseOpen {
		c.mu.Unlock()
		return
	}
	if now-last >= int64(c.keepAlive) {
		// The reader fails with a timeout, which it reports as
		// transport.ErrKeepAlive.
		c.phase.Store(int32(phaseExpired))
		c.mu.Unlock()
		c.setDeadline(aLongTimeAgo)
		return
	}
	c.mu.Unlock()
	if now-c.lastPing >= interval {
		// A ping waits its turn behind the data frames being written and
		// gets the same patience: cut short by a tighter deadline, a
		// partly written ping would break the stream and the connection.
		wd := time.Now().Add(c.keepAlive / 2)
		if c.writeTimeout > 0 {
			wd = time.Now().Add(c.writeTimeout)
		}
		_ = c.ws.WriteControl(websocket.PingMessage, nil, wd)
		c.lastPing = now
	}
	next := min(c.lastPing+interval, last+int64(c.keepAlive)) - now
	c.mu.Lock()
	if phase(c.phase.Load()) == phaseOpen {
		c.pinger.Reset(max(time.Duration(next), time.Millisecond))
	}
	c.mu.Unlock()
}

func (c *Conn) stopKeepAlive() {
	c.mu.Lock()
	if c.pinger != nil {
		c.pinger.Stop()
	}
	c.mu.Unlock()
}
