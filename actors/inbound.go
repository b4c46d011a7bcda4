package actors

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"sync"
	"sync/atomic"
	"unicode/utf8"

	"github.com/marmotws/marmot/internal/transport"
	"github.com/marmotws/marmot/protocol"
)

// inbound is one data frame read by the reader. It carries the Message
// handed to the application and the storage of its payload, and comes from
// a pool: an application that releases its messages (Message.Release)
// makes no garbage per message; one that does not pays one allocation for
// the frame and one for the payload.
type inbound struct {
	l    *link
	data []byte
	buf  []byte // storage the payload lives in; kept when in is recycled
	refs int32  // atomic once in is shared; see newInbound
	typ  int32
	// Set by the reader (see readFrames): the decoded message, or the
	// error and the close code it calls for.
	code     int32
	drop     int8 // over the rate under RateLimitDrop (limits.go)
	resolved bool // a reply already handed to its waiting Request
	// recovered is the outcome of a client's automatic re-join, set by the
	// reader from the join's answer for the ClientActor to report.
	recovered *RoomRecovered
	size      int // frame length as received (data may be dropped once opened)
	msg       *Message
	err       error
	m         Message
}

// TraceContext implements supervisor.Traced, so a handler panic's failure
// span joins the trace of the message that caused it (the process span,
// once handling has started).
func (in *inbound) TraceContext() context.Context {
	if in.m.ctx == nil {
		return context.Background()
	}
	return in.m.ctx
}

// maxPooledPayload bounds the storage a recycled inbound keeps, so one huge
// message does not pin its buffer.
const maxPooledPayload = 64 << 10

var inbounds = sync.Pool{New: func() any { return new(inbound) }}

// newInbound takes a frame from the pool with two references: one for the
// reader's pipeline, dropped once the frame is processed, and one for the
// application, dropped by Message.Release. A frame the application never
// releases is never reused; the GC has it.
func newInbound(l *link, typ int) *inbound {
	in := inbounds.Get().(*inbound)
	in.l, in.typ = l, int32(typ)
	in.refs = 2 // not shared yet: the post to the actor publishes it
	return in
}

// store copies b into in's own storage and returns the copy.
func (in *inbound) store(b []byte) []byte {
	in.buf = append(in.buf[:0], b...)
	if in.buf == nil {
		return []byte{}
	}
	return in.buf[:len(b):len(b)]
}

// ref adds a reference for a frame queued with data that may alias the
// payload (Message.Reply), so the payload outlives Release until written.
func (in *inbound) ref() *inbound {
	if in != nil {
		atomic.AddInt32(&in.refs, 1)
	}
	return in
}

// unref drops one reference; the last one recycles in. A reference that
// is never dropped only costs the reuse.
func (in *inbound) unref() {
	if in == nil || atomic.AddInt32(&in.refs, -1) != 0 {
		return
	}
	buf := in.buf[:0]
	if cap(buf) > maxPooledPayload {
		buf = nil
	}
	*in = inbound{}
	in.buf = buf
	inbounds.Put(in)
}

// readBuffers are scratch space for reading messages of unknown length.
var readBuffers = sync.Pool{New: func() any { return new(bytes.Buffer) }}

// directMin is the storage a recycled frame needs for the next message to
// be read straight into it.
const directMin = 512

// readBody reads the rest of the message from r and sets in.size. With
// keep, the message ends up in in.data, in the frame's own storage: read
// straight into it when in came back from the pool with storage (no copy),
// otherwise through a pooled scratch buffer and copied out at its exact
// size (so an application that never releases pays one allocation of the
// right size). Without keep (encrypted frames, opened later) it stays in
// the scratch buffer, returned for the caller to hand back with putScratch.
func (in *inbound) readBody(r io.Reader, keep bool) (scratch *bytes.Buffer, err error) {
	if keep && cap(in.buf) >= directMin {
		buf := in.buf[:0]
		for {
			if len(buf) == cap(buf) {
				// A message that fills the storage exactly ends here:
				// an empty read finds the end without growing.
				if _, err = r.Read(nil); err != nil {
					break
				}
				buf = slices.Grow(buf, len(buf))
			}
			var n int
			n, err = r.Read(buf[len(buf):cap(buf)])
			buf = buf[:len(buf)+n]
			if err != nil {
				break
			}
		}
		in.buf = buf
		in.size = len(buf)
		in.data = buf[:len(buf):len(buf)]
		if err == io.EOF {
			err = nil
		}
		return nil, err
	}
	scratch = readBuffers.Get().(*bytes.Buffer)
	scratch.Reset()
	if _, err = scratch.ReadFrom(r); err != nil {
		return scratch, err
	}
	in.size = scratch.Len()
	if !keep {
		in.data = scratch.Bytes()
		return scratch, nil
	}
	if in.buf != nil && cap(in.buf) < directMin {
		// in was recycled, so the application releases its messages:
		// room for the next ones to be read straight in.
		in.buf = make([]byte, 0, directMin)
	}
	in.data = in.store(scratch.Bytes())
	putScratch(scratch)
	return nil, nil
}

func putScratch(buf *bytes.Buffer) {
	if buf != nil && buf.Cap() <= 64<<10 { // don't keep a huge message's buffer alive
		readBuffers.Put(buf)
	}
}

var envelopes = sync.Pool{New: func() any { return new(protocol.Envelope) }}

// errUnexpectedFrame reports a frame type the negotiated protocol does not carry.
var errUnexpectedFrame = errors.New("marmot: frame type does not match the negotiated subprotocol")

// decodeInbound turns one data frame into a Message, stored in in itself
// (one allocation per inbound frame, not two). On error it also says which
// close code the connection must end with.
func decodeInbound(l *link, in *inbound, id ClientID) (*Message, int, error) {
	data, code, err := l.open(in)
	if err != nil {
		return nil, code, err
	}
	if l.codec == nil {
		// Compat-profile plaintext is the seed's opaque bytes, not text.
		if in.typ == transport.TextMessage && l.compat == nil && !utf8.Valid(data) {
			return nil, CloseInvalidPayload, fmt.Errorf("%w: text frame is not valid UTF-8", protocol.ErrMalformed)
		}
		in.m = Message{ClientID: id, Kind: protocol.KindData, Type: MessageType(in.typ), Payload: data, out: l, in: in}
		return &in.m, 0, nil
	}
	if l.sess == nil && int(in.typ) != l.codec.MessageType() {
		return nil, CloseUnsupportedData, fmt.Errorf("%w: got %s frame on %s", errUnexpectedFrame, MessageType(in.typ), l.codec.Subprotocol())
	}
	// Decode's interface call makes a local Envelope escape; a pooled one
	// keeps it out of every frame's allocation.
	env := envelopes.Get().(*protocol.Envelope)
	defer func() {
		*env = protocol.Envelope{}
		envelopes.Put(env)
	}()
	if err := l.codec.Decode(data, env); err != nil {
		return nil, CloseProtocolError, err
	}
	seq := env.Seq
	if id == 0 { // a client's link: what matters is the server's Ack
		seq = env.Ack
	}
	in.m = Message{
		ClientID: id,
		Kind:     env.Kind,
		Type:     MessageType(in.typ),
		Name:     env.Name,
		Payload:  env.Payload,
		Meta:     env.Meta,
		Room:     env.Room,
		Offset:   env.Offset,
		Epoch:    env.Epoch,
		id:       env.ID,
		seq:      seq,
		code:     env.Code,
		out:      l,
		in:       in,
	}
	return &in.m, 0, nil
}
