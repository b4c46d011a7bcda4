package wsconn

import (
	"time"

	"github.com/marmotws/marmot/internal/transport"
)

// BeginWrite implements transport.Conn. Server connections encode data
// frames themselves (frameConn.writeData) and, with batch, collect a run's
// frames into one write syscall; client frames are masked, so gorilla
// writes them one by one.
func (c *Conn) BeginWrite(deadline time.Time, batch bool) {
	if deadline.IsZero() && c.writeTimeout > 0 {
		// Moved only once half of it has passed: an unchanged deadline
		// costs nothing at the socket (frameConn.applyDeadline), so a run
		// gets between WriteTimeout/2 and WriteTimeout. The check reads
		// the cheap monotonic clock; the wall clock only when the
		// deadline moves.
		if now := monoNow(); now >= c.wdMove {
			c.wdeadline = time.Now().Add(c.writeTimeout)
			c.wdMove = now + int64(c.writeTimeout/2)
		}
		deadline = c.wdeadline
	}
	c.wd = deadline
	if c.fc == nil {
		_ = c.ws.SetWriteDeadline(deadline)
		return
	}
	c.batched = batch
	if batch {
		c.fc.beginBatch(deadline)
	}
}

// WriteMessage implements transport.Conn.
func (c *Conn) WriteMessage(typ int, data []byte) error {
	if c.fc != nil {
		return c.fc.writeData(typ, data, c.wd)
	}
	c.clientCompress(len(data))
	return c.ws.WriteMessage(typ, data)
}

// WriteEncoded implements transport.Conn; frame comes from EncodeFrame
// (a *Frame; any other Encoded is written as its message). Client
// connections mask their frames, so they encode data themselves.
func (c *Conn) WriteEncoded(frame transport.Encoded) error {
	if f, ok := frame.(*Frame); ok && c.fc != nil {
		return c.fc.writeFrame(f.forConn(c.z), c.wd)
	}
	return c.WriteMessage(frame.Message())
}

// clientCompress tells gorilla whether to compress a client's next
// message of n bytes (gorilla ignores it when compression is off).
func (c *Conn) clientCompress(n int) {
	if c.z != nil {
		c.ws.EnableWriteCompression(c.z.wants(n))
	}
}

// EndWrite implements transport.Conn.
func (c *Conn) EndWrite() error {
	if !c.batched {
		return nil
	}
	c.batched = false
	return c.fc.endBatch()
}
