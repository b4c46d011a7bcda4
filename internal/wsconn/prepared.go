package wsconn

import (
	"sync"
)

// Frame is a data message encoded once for many server connections (a
// broadcast, a room message): the plain frame, made at once, and the
// compressed one (RSV1), made by the first recipient that negotiated
// compression and shared by the others. Either is a complete frame that
// WriteEncoded writes as it is. A Frame is safe for concurrent use.
type Frame struct {
	typ   int
	data  []byte
	plain []byte

	zonce sync.Once
	z     []byte // the compressed frame; nil: compressing did not make it smaller
}

// EncodeFrame returns data as a server data frame of type typ (text or
// binary): what [Conn.WriteEncoded] takes, so a broadcast is encoded once
// for all its recipients. data must not change while the Frame is in use.
func EncodeFrame(typ int, data []byte) *Frame {
	f := make([]byte, 0, maxHeader+len(data))
	return &Frame{typ: typ, data: data, plain: append(appendHeader(f, typ, len(data)), data...)}
}

// Message returns the message the frame carries.
func (f *Frame) Message() (typ int, data []byte) { return f.typ, f.data }

// forConn returns the frame to write on a connection with compression z
// (nil: none): the compressed one when z wants it and compressing pays. It
// is compressed at the level of the first connection that asks (all of a
// server's connections share one).
func (f *Frame) forConn(z *deflater) []byte {
	if !z.wants(len(f.data)) {
		return f.plain
	}
	f.zonce.Do(func() {
		bp := batchBuffers.get()
		defer batchBuffers.put(bp)
		var ok bool
		if *bp, ok = deflate((*bp)[:0], f.data, z.level); ok {
			f.z = append(appendHeader(make([]byte, 0, maxHeader+len(*bp)), f.typ|rsv1, len(*bp)), *bp...)
		}
	})
	if f.z == nil {
		return f.plain
	}
	return f.z
}
