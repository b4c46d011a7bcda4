package actors

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/marmotws/marmot/internal/transport"
	"github.com/marmotws/marmot/internal/wsconn"
	"github.com/marmotws/marmot/protocol"
)

// outFrame is one queued outbound message. frame is set for broadcasts: the
// message encoded once for every recipient (see wsconn.EncodeFrame).
type outFrame struct {
	typ    int
	data   []byte
	frame  *wsconn.Frame
	pooled *[]byte  // data's storage, from envBuffers; back there once written
	hold   *inbound // data may be a received payload: a reference to it until written
}

// outbox is a connection's bounded outbound queue. It lets any goroutine
// send without blocking on the network while the owning actor stays the
// transport's writer: senders append under a short lock, the first one
// signals the actor, and the actor writes the whole batch. One exception
// keeps the request-reply path short: the handler's own reply, with nothing
// queued ahead of it, is written at once (writeNow).
type outbox struct {
	inTurn       atomic.Bool // the owning actor is handling an inbound frame
	flushPending atomic.Bool // frames wait for a flush; written under mu
	closing      atomic.Bool // no more sends accepted (set under mu)
	mu           sync.Mutex
	queue        []outFrame
	queued       atomic.Int64 // bytes queued, not yet written
	maxQueue     int64
	wmu          sync.Mutex // held while writing; makes flushes exclusive
	spare        []outFrame
	// onSent is the server's OnDataSent for this connection (nil when
	// unset), built once when it is accepted; the client passes its own
	// to flush.
	onSent func([]byte)
	totals *counters // aggregate across connections; may be nil
	stats  counters
	l      *link
}

// bytePool hands out reusable byte slices. Slices that grew past 64 KiB
// are left to the GC, so one huge message does not pin its buffer.
type bytePool struct{ p sync.Pool }

func newBytePool(size int) *bytePool {
	bp := &bytePool{}
	bp.p.New = func() any { b := make([]byte, 0, size); return &b }
	return bp
}

func (bp *bytePool) get() *[]byte { return bp.p.Get().(*[]byte) }

func (bp *bytePool) put(b *[]byte) {
	if b != nil && cap(*b) <= 64<<10 {
		*b = (*b)[:0]
		bp.p.Put(b)
	}
}

var (
	envBuffers  = newBytePool(512)  // encoded envelopes, from send until flush
	sealBuffers = newBytePool(4096) // a flush's sealed frames
)

// flushSignal tells the owning actor that its outbox has queued frames.
type flushSignal struct{}

var theFlushSignal = &flushSignal{}

// closeRequest asks the owning actor to close the connection with a code.
type closeRequest struct {
	code  int
	text  string
	cause error
}

// send queues one frame. It never blocks on the network. A queue over its
// byte bound closes the connection with CloseSlowConsumer rather than
// dropping the frame silently or growing without limit.
func (o *outbox) send(f outFrame) error {
	size := int64(len(f.data))
	o.mu.Lock()
	if o.closing.Load() {
		o.mu.Unlock()
		return ErrConnectionClosed
	}
	// One message larger than the bound is still accepted into an empty queue,
	// so the bound limits backlog, not message size (the read limit does that).
	if q := o.queued.Load(); o.maxQueue > 0 && q > 0 && q+size > o.maxQueue {
		o.closing.Store(true)
		o.mu.Unlock()
		o.l.sys.Root.Send(o.l.pid, &closeRequest{code: CloseSlowConsumer, text: "slow consumer", cause: ErrSlowConsumer})
		return ErrSlowConsumer
	}
	o.queue = append(o.queue, f)
	o.queued.Add(size)
	// No signal while the owning actor is inside a turn: it flushes at the
	// end of the turn (endTurn), which saves a mailbox round trip per reply.
	// flushPending is set before inTurn is read, and endTurn clears
	// inTurn before it reads flushPending: one of the two sees the other.
	signal := !o.flushPending.Swap(true) && !o.inTurn.Load()
	o.mu.Unlock()
	if signal {
		if mb := o.l.mbox; mb != nil {
			mb.PostUserMessage(theFlushSignal)
		} else {
			o.l.sys.Root.Send(o.l.pid, theFlushSignal)
		}
	}
	return nil
}

// rawFrameType is t as a transport message type; 0 picks text for valid
// UTF-8.
func rawFrameType(t MessageType, data []byte) int {
	switch {
	case t != 0:
		return int(t)
	case utf8.Valid(data):
		return transport.TextMessage
	}
	return transport.BinaryMessage
}

// post sends f: with now, written at once when the outbox is idle (see
// writeNow), else queued. A queued f keeps a reference to hold (the
// received frame its data may belong to, see Message.Release) until it is
// written; a written one needs none.
func (o *outbox) post(f outFrame, hold *inbound, now bool) error {
	if now {
		if done, err := o.writeNow(f); done {
			return err
		}
	}
	f.hold = hold.ref()
	if err := o.send(f); err != nil {
		envBuffers.put(f.pooled)
		f.hold.unref()
		return err
	}
	return nil
}

// reply answers m (see Message.Reply). A server handler's reply during its
// turn is written at once rather than at the end of the turn (see
// outbox.writeNow); the client's actor always queues, since a callback may
// be waiting on its own request (see Client.Request).
func (l *link) reply(m *Message, payload []byte) error {
	now := l.replyNow && l.out.inTurn.Load()
	if m.IsRequest() {
		return l.sendEnvelopeNow(&protocol.Envelope{Kind: protocol.KindReply, ID: m.id, Payload: payload}, now)
	}
	if l.codec == nil {
		// payload is usually m.Payload, so a queued reply holds m's frame
		// until written, in case the handler releases m.
		return l.out.post(outFrame{typ: rawFrameType(m.Type, payload), data: payload}, m.in, now)
	}
	return l.sendEnvelopeNow(&protocol.Envelope{Kind: m.Kind, Name: m.Name, Payload: payload}, now)
}

func (l *link) sendRaw(t MessageType, data []byte) error {
	return l.out.post(outFrame{typ: rawFrameType(t, data), data: data}, nil, false)
}

func (l *link) sendEnvelope(e *protocol.Envelope) error { return l.sendEnvelopeNow(e, false) }

// sendEnvelopeNow is sendEnvelope; with now, the frame is written at once
// when the outbox is idle (see post).
func (l *link) sendEnvelopeNow(e *protocol.Envelope, now bool) error {
	if l.codec == nil {
		return ErrRawMode
	}
	bp := envBuffers.get()
	buf, err := l.codec.Append((*bp)[:0], e)
	if err != nil {
		envBuffers.put(bp)
		return err
	}
	*bp = buf
	return l.out.post(outFrame{typ: l.codec.MessageType(), data: buf, pooled: bp}, nil, now)
}

// sendAwaited sends e, whose sender then waits for the peer's answer
// (Hub.RequestClient): it goes out now, not at the end of the actor's
// turn, since the turn may be the one waiting. Written at once when the
// outbox is idle; else queued and, during a turn, flushed here (the
// outbox's write lock keeps the flush exclusive and the frames in order).
func (l *link) sendAwaited(e *protocol.Envelope) error {
	if err := l.sendEnvelopeNow(e, true); err != nil {
		return err
	}
	if l.out.inTurn.Load() {
		_ = l.out.flush(time.Time{}, l.out.onSent)
	}
	return nil
}

// sendData sends application data in whatever form the connection speaks:
// a raw frame (text when valid UTF-8) or a data envelope.
func (l *link) sendData(data []byte) error {
	if l.codec == nil {
		return l.sendRaw(0, data)
	}
	return l.sendEnvelope(&protocol.Envelope{Kind: protocol.KindData, Payload: data})
}

func (l *link) sendCommand(name string, payload []byte) error {
	if name == "" {
		return ErrEmptyCommandName
	}
	if l.codec == nil {
		return ErrRawMode
	}
	return l.sendEnvelope(&protocol.Envelope{Kind: protocol.KindCommand, Name: name, Payload: payload})
}

// sendTraced is sendData (name empty) or sendCommand under a producer span
// parented to ctx's span. The span's context travels in the envelope's
// metadata, so the receiver's process span joins the trace; a raw frame has
// no metadata, so there the trace stops at this span. attrs describe the
// destination.
func (l *link) sendTraced(ctx context.Context, tel *telemetry, name string, data []byte, attrs ...attribute.KeyValue) (err error) {
	spanName := "send"
	if name != "" {
		spanName = "send " + name
	}
	ctx, span := tel.tracer.Start(ctx, spanName, trace.WithSpanKind(trace.SpanKindProducer),
		trace.WithAttributes(sendAttrs("send", name, len(data), attrs...)...))
	defer func() {
		if err != nil {
			span.RecordError(err)
			span.SetStatus(codes.Error, err.Error())
		}
		span.End()
	}()
	switch {
	case name == "" && l.codec == nil:
		return l.sendRaw(0, data)
	case name == "":
		return l.sendEnvelope(&protocol.Envelope{Kind: protocol.KindData, Payload: data, Meta: tel.inject(ctx, nil)})
	case l.codec == nil:
		return ErrRawMode
	}
	return l.sendEnvelope(&protocol.Envelope{Kind: protocol.KindCommand, Name: name, Payload: data, Meta: tel.inject(ctx, nil)})
}

// flush writes every queued frame; only the owning actor calls it. onSent
// sees each frame's wire payload after it was written and counted.
func (o *outbox) flush(deadline time.Time, onSent func([]byte)) error {
	// wmu makes flushes exclusive. The owning actor is the writer; the one
	// exception is a client callback that waits on its own request (see
	// Client.Request), which flushes from inside the busy actor.
	o.wmu.Lock()
	defer o.wmu.Unlock()
	o.mu.Lock()
	batch := o.queue
	o.queue = o.spare[:0]
	o.flushPending.Store(false)
	o.mu.Unlock()
	if len(batch) == 0 {
		o.spare = batch
		return nil
	}
	written, err := o.write(batch, deadline, onSent)
	o.queued.Add(-written)
	o.spare = batch[:0]
	return err
}

// endTurn ends the actor's turn: inTurn is cleared before flushPending is
// read, so a sender that saw inTurn set is always covered by this flush.
func (o *outbox) endTurn(onSent func([]byte)) {
	o.inTurn.Store(false)
	if o.flushPending.Load() {
		_ = o.flush(time.Time{}, onSent)
	}
}

// writeNow writes f at once, on the caller's goroutine, when nothing is
// queued ahead of it and no flush is under way; otherwise it reports false
// and the caller queues f. A reply from the handler that does not wait for
// the end of the turn saves the queue's bookkeeping (and its locked
// instructions) on the hottest path, the request-reply round trip. Frames
// stay in order: a flush holds wmu while it writes, and the queue is empty.
func (o *outbox) writeNow(f outFrame) (bool, error) {
	if !o.wmu.TryLock() {
		return false, nil
	}
	defer o.wmu.Unlock()
	// Without mu: the queue is empty unless flushPending is set (send sets
	// it with every append, and only flush, excluded by wmu, clears it),
	// and a send racing with this check has no order to keep with f.
	if o.closing.Load() || o.flushPending.Load() {
		return false, nil
	}
	one := [1]outFrame{f}
	if _, err := o.write(one[:], time.Time{}, o.onSent); err != nil {
		return true, fmt.Errorf("%w: %w", ErrConnectionClosed, err)
	}
	return true, nil
}

// write writes batch to the transport (under wmu) and reports the queue
// bytes it accounted for. Counters are added before onSent sees any frame,
// so OnDataSent always finds its message counted. On error the outbox stops
// taking sends and the transport is dropped.
func (o *outbox) write(batch []outFrame, deadline time.Time, onSent func([]byte)) (written int64, err error) {
	l := o.l
	t := l.t
	// Several frames may go out in one write syscall; OnDataSent then runs
	// once that write succeeded.
	t.BeginWrite(deadline, len(batch) > 1)
	var outBytes, outMsgs int64
	// Written frames awaiting onSent; the usual flush of a few frames
	// needs no allocation for them.
	var wireSpace [8][]byte
	wires := wireSpace[:0]
	// A sealed frame has been written (or copied into the batch) when
	// WriteMessage returns, so one buffer serves the whole flush, unless
	// onSent still has to see several of them after it (a single frame's
	// wire stays valid until the buffer goes back, after onSent).
	var sealBuf *[]byte
	encrypted := l.encrypted()
	if encrypted && (onSent == nil || len(batch) == 1) {
		sealBuf = sealBuffers.get()
		defer sealBuffers.put(sealBuf)
	}
	for i := range batch {
		f := &batch[i]
		if err == nil {
			wire := f.data
			switch {
			case encrypted:
				// Per-connection keys: a broadcast's shared encoding is
				// sealed separately for every recipient.
				var typ int
				var dst []byte
				if sealBuf != nil {
					dst = *sealBuf
				}
				if typ, wire, err = l.seal(f, dst); err == nil {
					if sealBuf != nil {
						*sealBuf = wire
					}
					err = t.WriteMessage(typ, wire)
				}
			case f.frame != nil:
				err = t.WriteEncoded(f.frame)
			default:
				err = t.WriteMessage(f.typ, f.data)
			}
			if err == nil {
				outBytes += int64(len(wire))
				outMsgs++
				if onSent != nil {
					wires = append(wires, wire)
				}
			}
		}
		// The transport has copied the frame by now; a frame OnDataSent
		// will still see is left to the GC instead.
		if onSent == nil {
			envBuffers.put(f.pooled)
			f.hold.unref()
		}
		written += int64(len(f.data))
		*f = outFrame{} // let the GC have the payloads
	}
	if werr := t.EndWrite(); werr != nil && err == nil {
		err, outBytes, outMsgs, wires = werr, 0, 0, nil
	}
	o.stats.bytesOut.Add(outBytes)
	o.stats.msgsOut.Add(outMsgs)
	if o.totals != nil {
		o.totals.bytesOut.Add(outBytes)
		o.totals.msgsOut.Add(outMsgs)
	}
	for _, w := range wires {
		onSent(w)
	}
	if err != nil {
		// A broken socket: stop accepting sends and make the reader finish.
		o.mu.Lock()
		o.closing.Store(true)
		o.mu.Unlock()
		t.Drop()
	}
	return written, err
}

// drop discards what is still queued and refuses further sends; it returns
// how many frames were left undelivered.
func (o *outbox) drop() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	n := len(o.queue)
	o.queue = nil
	o.spare = nil
	o.queued.Store(0)
	o.closing.Store(true)
	return n
}
