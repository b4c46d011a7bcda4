package actors

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/gorilla/websocket"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/marmotws/marmot/crypto"
	"github.com/marmotws/marmot/protocol"
)

// closeGrace bounds how long a closing side waits for the peer to answer its
// close frame before dropping the TCP connection. Waiting at all matters:
// closing a socket with unread input makes Linux send RST, and the peer may
// then lose the close frame it has not read yet.
const closeGrace = 2 * time.Second

// counters are the seed's traffic statistics; atomics so Stats never locks
// the hot path.
type counters struct {
	bytesIn, bytesOut, msgsIn, msgsOut atomic.Int64
}

// counterValues is a snapshot of counters.
type counterValues struct{ bytesIn, bytesOut, msgsIn, msgsOut int64 }

func (v *counterValues) addFrom(c *counters) {
	v.bytesIn += c.bytesIn.Load()
	v.bytesOut += c.bytesOut.Load()
	v.msgsIn += c.msgsIn.Load()
	v.msgsOut += c.msgsOut.Load()
}

// add folds another connection's final counters into c.
func (c *counters) add(o *counters) {
	c.bytesIn.Add(o.bytesIn.Load())
	c.bytesOut.Add(o.bytesOut.Load())
	c.msgsIn.Add(o.msgsIn.Load())
	c.msgsOut.Add(o.msgsOut.Load())
}

// outFrame is one queued outbound message. frame is set for broadcasts: the
// data frame encoded once for every recipient (see serverFrame).
type outFrame struct {
	typ    int
	data   []byte
	frame  []byte
	pooled *[]byte  // data's storage, from envBuffers; back there once written
	hold   *inbound // data may be a received payload: a reference to it until written
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

// flushSignal tells the owning actor that its link has queued frames.
type flushSignal struct{}

var theFlushSignal = &flushSignal{}

// closeRequest asks the owning actor to close the socket with a code.
type closeRequest struct {
	code  int
	text  string
	cause error
}

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
	resolved bool // a reply already handed to its waiting Request
	size     int  // frame length as received (data may be dropped once opened)
	msg      *Message
	err      error
	m        Message
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

// linkLost reports that the reader stopped for good.
type linkLost struct{ err error }

// link is a socket plus its bounded outbound queue. The queue lets any
// goroutine send without blocking on the network while the owning actor stays
// the socket's only writer: senders append under a short lock, the first one
// signals the actor, and the actor writes the whole batch.
type link struct {
	// Fields are grouped by when they are touched, the per-message ones
	// first and packed into five cache lines: on a busy server the
	// connection's goroutine often resumes on the other core, where every
	// line it touches is a cache miss.

	// The reader, per message. Its loop state survives parking (see
	// frameConn).
	ws     *websocket.Conn
	fc     *frameConn     // server links only
	codec  protocol.Codec // nil in raw mode
	sess   *crypto.Session
	compat *crypto.CompatCodec
	// mbox is the owning actor's mailbox on the server, where frames and
	// flush signals go straight in (and the reader runs an idle actor
	// itself); nil on the client: a plain Send.
	mbox     *connMailbox
	readID   ClientID
	inflight inputBudget
	heard    atomic.Bool  // a frame was read since the last keep-alive tick (see touch)
	lastRead atomic.Int64 // monoNow when the peer was last heard from
	// failed is set with a localClose for an error (not 1000 or 1001):
	// the reader then discards input until the peer answers.
	failed  atomic.Bool
	broken  bool // after a bad frame, nothing more is decoded
	keepRaw bool // OnDataReceived wants inbound frames as received
	pollState

	// The actor and senders, per message.
	inTurn       atomic.Bool // the owning actor is handling an inbound frame
	flushPending atomic.Bool // frames wait for a flush; written under mu
	closing      atomic.Bool // no more sends accepted (set under mu)
	mu           sync.Mutex
	queue        []outFrame
	queued       atomic.Int64 // bytes queued, not yet written
	maxQueue     int64
	wmu          sync.Mutex // held while writing data frames
	writeTimeout time.Duration
	wdMove       int64 // monoNow after which wdeadline moves (under wmu)
	// onSent is the server's OnDataSent for this connection (nil when
	// unset), built once when it is accepted; the client passes its own
	// to flush.
	onSent    func([]byte)
	early     func(*inbound)
	totals    *counters // aggregate across links; may be nil
	stats     counters
	wdeadline time.Time // the WriteTimeout deadline in force (under wmu)
	spare     []outFrame

	// The rest: setup, keep-alive, closing.
	sys        *actor.ActorSystem
	pid        *actor.PID // owning actor; set before the reader starts
	keepAlive  time.Duration
	ctx        context.Context
	cancel     context.CancelFunc
	handshake  bool      // a close frame has been written
	readerDone bool      // the reader has stopped for good
	released   bool      // the owning actor is done with the link
	expired    bool      // the peer was silent for keepAlive
	deadline   time.Time // the read deadline the link wants (zero: none)
	pinger     *time.Timer
	lastPing   int64       // monoNow of the last ping; keep-alive timer only
	onLost     func(error) // called once when the reader stops for good
	pollID     uint64
	localClose *CloseError // set when this side decided to close

	// Encryption: at most one of sess (secure) and compat is set, above.
	// Only the owning actor seals and opens, so no lock guards them.
	peerMode    crypto.Mode
	peerKeySize crypto.KeySize
	peerSet     bool

	// Up to 512 bytes: objects of that size class start on a cache line,
	// so the groups above fall on the lines they were packed for.
	_ [32]byte
}

type linkConfig struct {
	maxQueue     int64
	writeTimeout time.Duration
	keepAlive    time.Duration
	readLimit    int64
	inflight     int64
	totals       *counters
}

func newLink(ws *websocket.Conn, sys *actor.ActorSystem, cfg linkConfig) *link {
	codec, _ := protocol.Lookup(ws.Subprotocol())
	ctx, cancel := context.WithCancel(context.Background())
	if cfg.inflight <= 0 {
		cfg.inflight = 1 << 20
	}
	l := &link{
		ws:           ws,
		codec:        codec,
		sys:          sys,
		maxQueue:     cfg.maxQueue,
		writeTimeout: cfg.writeTimeout,
		keepAlive:    cfg.keepAlive,
		totals:       cfg.totals,
		inflight:     inputBudget{limit: cfg.inflight},
		ctx:          ctx,
		cancel:       cancel,
	}
	if cfg.readLimit > 0 {
		ws.SetReadLimit(cfg.readLimit)
	}
	return l
}

// send queues one frame. It never blocks on the network. A queue over its
// byte bound closes the connection with CloseSlowConsumer rather than
// dropping the frame silently or growing without limit.
func (l *link) send(f outFrame) error {
	size := int64(len(f.data))
	l.mu.Lock()
	if l.closing.Load() {
		l.mu.Unlock()
		return ErrConnectionClosed
	}
	// One message larger than the bound is still accepted into an empty queue,
	// so the bound limits backlog, not message size (the read limit does that).
	if q := l.queued.Load(); l.maxQueue > 0 && q > 0 && q+size > l.maxQueue {
		l.closing.Store(true)
		l.mu.Unlock()
		l.sys.Root.Send(l.pid, &closeRequest{code: CloseSlowConsumer, text: "slow consumer", cause: ErrSlowConsumer})
		return ErrSlowConsumer
	}
	l.queue = append(l.queue, f)
	l.queued.Add(size)
	// No signal while the owning actor is inside a turn: it flushes at the
	// end of the turn (endTurn), which saves a mailbox round trip per reply.
	// flushPending is set before inTurn is read, and endTurn clears
	// inTurn before it reads flushPending: one of the two sees the other.
	signal := !l.flushPending.Swap(true) && !l.inTurn.Load()
	l.mu.Unlock()
	if signal {
		if l.mbox != nil {
			l.mbox.PostUserMessage(theFlushSignal)
		} else {
			l.sys.Root.Send(l.pid, theFlushSignal)
		}
	}
	return nil
}

// rawFrameType is t as a gorilla frame type; 0 picks text for valid UTF-8.
func rawFrameType(t MessageType, data []byte) int {
	switch {
	case t != 0:
		return int(t)
	case utf8.Valid(data):
		return websocket.TextMessage
	}
	return websocket.BinaryMessage
}

// post sends f: with now, written at once when the link is idle (see
// writeNow), else queued. A queued f keeps a reference to hold (the
// received frame its data may belong to, see Message.Release) until it is
// written; a written one needs none.
func (l *link) post(f outFrame, hold *inbound, now bool) error {
	if now {
		if done, err := l.writeNow(f); done {
			return err
		}
	}
	f.hold = hold.ref()
	if err := l.send(f); err != nil {
		envBuffers.put(f.pooled)
		f.hold.unref()
		return err
	}
	return nil
}

func (l *link) sendRaw(t MessageType, data []byte) error {
	return l.post(outFrame{typ: rawFrameType(t, data), data: data}, nil, false)
}

func (l *link) sendEnvelope(e *protocol.Envelope) error { return l.sendEnvelopeNow(e, false) }

// sendEnvelopeNow is sendEnvelope; with now, the frame is written at once
// when the link is idle (see post).
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
	return l.post(outFrame{typ: l.codec.MessageType(), data: buf, pooled: bp}, nil, now)
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
		return ErrEmptyMessage
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
// sees each frame's wire payload after it was written.
func (l *link) flush(deadline time.Time, onSent func([]byte)) error {
	// wmu makes flushes exclusive. The owning actor is the writer; the one
	// exception is a client callback that waits on its own request (see
	// Client.Request), which flushes from inside the busy actor.
	l.wmu.Lock()
	defer l.wmu.Unlock()
	l.mu.Lock()
	batch := l.queue
	l.queue = l.spare[:0]
	l.flushPending.Store(false)
	l.mu.Unlock()
	if len(batch) == 0 {
		l.spare = batch
		return nil
	}
	written, err := l.writeFrames(batch, deadline, onSent)
	l.queued.Add(-written)
	l.spare = batch[:0]
	return err
}

// writeNow writes f at once, on the caller's goroutine, when nothing is
// queued ahead of it and no flush is under way; otherwise it reports false
// and the caller queues f. A reply from the handler that does not wait for
// the end of the turn saves the queue's bookkeeping (and its locked
// instructions) on the hottest path, the request-reply round trip. Frames
// stay in order: a flush holds wmu while it writes, and the queue is empty.
func (l *link) writeNow(f outFrame) (bool, error) {
	if !l.wmu.TryLock() {
		return false, nil
	}
	defer l.wmu.Unlock()
	// Without mu: the queue is empty unless flushPending is set (send sets
	// it with every append, and only flush, excluded by wmu, clears it),
	// and a send racing with this check has no order to keep with f.
	if l.closing.Load() || l.flushPending.Load() {
		return false, nil
	}
	one := [1]outFrame{f}
	if _, err := l.writeFrames(one[:], time.Time{}, l.onSent); err != nil {
		return true, fmt.Errorf("%w: %w", ErrConnectionClosed, err)
	}
	return true, nil
}

// writeFrames writes batch (under wmu) and reports the queue bytes it
// accounted for. On error the link stops taking sends and the socket closes.
func (l *link) writeFrames(batch []outFrame, deadline time.Time, onSent func([]byte)) (written int64, err error) {
	if deadline.IsZero() && l.writeTimeout > 0 {
		// Moved only once half of it has passed: gorilla applies the
		// deadline to the socket before every frame, and an unchanged one
		// costs nothing there (frameConn.SetWriteDeadline), so a batch
		// gets between WriteTimeout/2 and WriteTimeout.
		// The check reads the cheap monotonic clock; the wall clock only
		// when the deadline moves.
		if now := monoNow(); now >= l.wdMove {
			l.wdeadline = time.Now().Add(l.writeTimeout)
			l.wdMove = now + int64(l.writeTimeout/2)
		}
		deadline = l.wdeadline
	}
	if l.fc == nil {
		_ = l.ws.SetWriteDeadline(deadline)
	}
	// Several frames go out in one write syscall (frameConn collects
	// them); OnDataSent then runs once that write succeeded.
	coalesce := len(batch) > 1 && l.fc != nil
	if coalesce {
		l.fc.beginBatch(deadline)
	}
	var outBytes, outMsgs int64
	var wires [][]byte // written frames awaiting onSent while coalescing
	// count adds written frames to the counters before OnDataSent sees
	// them, so that a callback reading Stats finds its frame counted.
	count := func(bytes, msgs int64) {
		l.stats.bytesOut.Add(bytes)
		l.stats.msgsOut.Add(msgs)
		if l.totals != nil {
			l.totals.bytesOut.Add(bytes)
			l.totals.msgsOut.Add(msgs)
		}
	}
	// A sealed frame has been written (or copied into the batch) when
	// writeMessage returns, so one buffer serves the whole flush, unless
	// onSent still has to see them after the batch is written.
	var sealBuf *[]byte
	if l.encrypted() && (onSent == nil || !coalesce) {
		sealBuf = sealBuffers.get()
		defer sealBuffers.put(sealBuf)
	}
	for i := range batch {
		f := &batch[i]
		if err == nil {
			wire := f.data
			switch {
			case l.encrypted():
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
					err = l.writeMessage(typ, wire, deadline)
				}
			case f.frame != nil && l.fc != nil:
				err = l.fc.writeFrame(f.frame, deadline)
			default:
				err = l.writeMessage(f.typ, f.data, deadline)
			}
			if err == nil {
				outBytes += int64(len(wire))
				outMsgs++
				switch {
				case onSent == nil:
				case coalesce:
					wires = append(wires, wire)
				default:
					count(outBytes, outMsgs)
					outBytes, outMsgs = 0, 0
					onSent(wire)
				}
			}
		}
		// gorilla has copied the frame by now; a frame OnDataSent will
		// still see after the batch is left to the GC instead.
		if !(coalesce && onSent != nil) {
			envBuffers.put(f.pooled)
			f.hold.unref()
		}
		written += int64(len(f.data))
		*f = outFrame{} // let the GC have the payloads
	}
	if coalesce {
		if werr := l.fc.endBatch(); werr != nil && err == nil {
			err, outBytes, outMsgs, wires = werr, 0, 0, nil
		}
	}
	count(outBytes, outMsgs)
	for _, w := range wires {
		onSent(w)
	}
	if err != nil {
		// A broken socket: stop accepting sends and make the reader finish.
		l.mu.Lock()
		l.closing.Store(true)
		l.mu.Unlock()
		l.closeSocket()
	}
	return written, err
}

// writeMessage writes one data message: on a server link encoded by
// frameConn (see writeData), on a client link by gorilla, which masks it
// (writeFrames gave gorilla the deadline).
func (l *link) writeMessage(typ int, data []byte, deadline time.Time) error {
	if l.fc != nil {
		return l.fc.writeData(typ, data, deadline)
	}
	return l.ws.WriteMessage(typ, data)
}

// drop discards what is still queued and refuses further sends; it returns
// how many frames were left undelivered.
func (l *link) drop() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := len(l.queue)
	l.queue = nil
	l.spare = nil
	l.queued.Store(0)
	l.closing.Store(true)
	return n
}

// startClose writes a close frame once and gives the peer closeGrace (or
// until deadline) to answer before the reader drops the socket.
func (l *link) startClose(code int, text string, cause error, deadline time.Time) {
	l.mu.Lock()
	l.closing.Store(true)
	if l.handshake {
		l.mu.Unlock()
		return
	}
	l.handshake = true
	if l.localClose == nil {
		l.localClose = &CloseError{Code: code, Text: text, Err: cause}
		l.failed.Store(code != CloseNormal && code != CloseGoingAway)
	}
	l.mu.Unlock()
	if len(text) > 120 { // control frames carry at most 125 bytes
		text = text[:120]
	}
	if grace := time.Now().Add(closeGrace); deadline.IsZero() || deadline.After(grace) {
		deadline = grace
	}
	wd := deadline
	if l.writeTimeout > 0 && time.Until(wd) > l.writeTimeout {
		wd = time.Now().Add(l.writeTimeout)
	}
	if err := l.ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(code, text), wd); err != nil {
		l.closeSocket()
		return
	}
	l.setDeadline(deadline)
}

// closeSocket drops the TCP connection. A parked reader is woken to see
// it: a closed descriptor leaves the epoll set without an event, and a
// reader that never runs again would never report the link lost.
func (l *link) closeSocket() {
	_ = l.ws.NetConn().Close()
	l.wake()
}

// setDeadline makes the reader give up at t, waking it if it is parked so
// that it can: parked, nothing would notice the deadline.
func (l *link) setDeadline(t time.Time) {
	l.mu.Lock()
	l.deadline = t
	_ = l.ws.SetReadDeadline(t)
	l.mu.Unlock()
	l.wake()
}

func (l *link) closeInfo() *CloseError {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.localClose
}

// touch records input for keep-alive: a flag, not a timestamp, since a
// clock read per message costs more than keep-alive needs (the tick turns
// the flag into lastRead), and stored only when unset, since an atomic store
// is a locked instruction and a load is not.
func (l *link) touch() {
	if !l.heard.Load() {
		l.heard.Store(true)
	}
}

// clockBase anchors monoNow, a cheap monotonic clock for keep-alive.
var clockBase = time.Now()

func monoNow() int64 { return int64(time.Since(clockBase)) }

// startKeepAlive pings every keepAlive/2 and ends the connection when the
// peer has sent nothing (data, pong or ping) for keepAlive (data frames are
// noticed at the next tick, so up to keepAlive/2 later). A timer rather
// than a per-message read deadline: it costs nothing per message, keeps
// idle connections cheap, and still notices a dead peer whose reader is
// parked.
func (l *link) startKeepAlive() {
	if l.keepAlive <= 0 {
		return
	}
	l.ws.SetPongHandler(func(string) error { l.lastRead.Store(monoNow()); return nil })
	ping := l.ws.PingHandler()
	l.ws.SetPingHandler(func(s string) error { l.lastRead.Store(monoNow()); return ping(s) })
	now := monoNow()
	l.lastRead.Store(now)
	l.lastPing = now
	l.mu.Lock()
	l.pinger = time.AfterFunc(l.keepAlive/2, l.keepAliveTick)
	l.mu.Unlock()
}

func (l *link) keepAliveTick() {
	interval := int64(l.keepAlive / 2)
	now := monoNow()
	if l.heard.Swap(false) {
		// A frame came in since the previous tick, at most interval ago:
		// counting it as now can only make the timeout later, never early.
		l.lastRead.Store(now)
	}
	last := l.lastRead.Load()
	l.mu.Lock()
	if l.closing.Load() || l.expired {
		l.mu.Unlock()
		return
	}
	if now-last >= int64(l.keepAlive) {
		// The reader fails with a timeout, which it reports as
		// ErrKeepAliveTimeout.
		l.expired = true
		l.mu.Unlock()
		l.setDeadline(aLongTimeAgo)
		return
	}
	l.mu.Unlock()
	if now-l.lastPing >= interval {
		// A ping waits its turn behind the data frames being written and
		// gets the same patience: cut short by a tighter deadline, a
		// partly written ping would break the stream and the connection.
		wd := time.Now().Add(l.keepAlive / 2)
		if l.writeTimeout > 0 {
			wd = time.Now().Add(l.writeTimeout)
		}
		_ = l.ws.WriteControl(websocket.PingMessage, nil, wd)
		l.lastPing = now
	}
	next := min(l.lastPing+interval, last+int64(l.keepAlive)) - now
	l.mu.Lock()
	if !l.closing.Load() {
		l.pinger.Reset(max(time.Duration(next), time.Millisecond))
	}
	l.mu.Unlock()
}

func (l *link) stopKeepAlive() {
	l.mu.Lock()
	if l.pinger != nil {
		l.pinger.Stop()
	}
	l.mu.Unlock()
}

// enableParking lets a server link's reader park when idle. It must run
// before the owning actor starts, since the actor may wake the reader.
func (l *link) enableParking(id ClientID, polls *pollGroup) {
	if l.fc == nil || l.fc.rc == nil || id == 0 {
		return
	}
	if p := polls.join(uint64(id), l); p != nil {
		l.pollID, l.poll = uint64(id), p
		l.fc.link = l
	}
}

// startReader starts reading on a goroutine of its own. onLost is called
// once, on the reader's goroutine, when the socket fails or closes.
func (l *link) startReader(id ClientID, early func(*inbound), onLost func(error)) {
	l.readID, l.early, l.onLost = id, early, onLost
	go l.runReader()
}

// runReader reads until the socket fails or the reader parks.
func (l *link) runReader() {
	parked, err := l.readFrames()
	if parked {
		return
	}
	if l.poll != nil {
		l.poll.group.leave(l.poll, l.pollID)
	}
	if l.fc != nil {
		l.fc.dropStage()
	}
	l.readerExited()
	if l.onLost != nil {
		l.onLost(err)
	}
}

// wake resumes a parked reader on a new goroutine.
func (l *link) wake() {
	if l.poll != nil && l.rstate.CompareAndSwap(readerParked, readerRunning) {
		go l.runReader()
	}
}

// interruptWait ends an idle reader's wait so that it parks (see
// frameConn.waitRead), unless the link is on its way out.
func (l *link) interruptWait() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closing.Load() || l.released || l.expired {
		return
	}
	if l.rstate.CompareAndSwap(readerWaiting, readerParking) {
		_ = l.fc.Conn.SetReadDeadline(aLongTimeAgo)
	}
}

// park ends the reader goroutine after frameConn handed it parkFrame, with
// an epoll registration to resume it. It reports false when the reader must
// go on instead (the link is closing, or epoll refused).
func (l *link) park() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closing.Load() || l.released || l.expired {
		l.rstate.Store(readerRunning)
		return false
	}
	l.rstate.Store(readerParked)
	hook := l.poll.group.onPark
	held := hook != nil && l.fc.stageBuf != nil // before arm: a woken reader owns fc then
	if err := l.poll.arm(l.fc.rc, l.pollID, &l.pollAdded); err != nil {
		// Stay a plain blocking reader; unless someone already woke us.
		return !l.rstate.CompareAndSwap(readerParked, readerRunning)
	}
	if hook != nil {
		hook(l.pollID, held)
	}
	return true
}

// readFrames reads on the current reader goroutine until the socket fails
// (parked false) or the reader parks (parked true). It holds at most
// inflight.limit bytes of unprocessed input: when the actor falls behind, the
// reader stops reading and TCP pushes back on the peer.
//
// The peer's close frame is not answered here (gorilla's default would
// answer at once, cutting off replies still queued): the owning actor
// flushes the queue first, then echoes the close (see answerPeerClose).
//
// Decryption and decoding happen here too, off the actor: the session's
// Open must run on one goroutine in frame order, which the reader is; the
// actor is left with the callbacks; and early may settle a message at once
// (the client hands replies to Request here, so a callback that calls
// Request does not wait on its own busy actor).
func (l *link) readFrames() (parked bool, err error) {
	l.ws.SetCloseHandler(func(int, string) error { return nil })
	// keep: the frame as received is the frame's own storage (see
	// readBody). Ciphertext is only needed until it is opened, so it stays
	// in the scratch buffer, unless OnDataReceived wants it.
	keep := l.sess == nil && l.compat == nil || l.keepRaw
	for {
		typ, r, err := l.ws.NextReader()
		if err != nil {
			return false, err
		}
		if l.fc != nil && l.fc.takeInjected() {
			if l.park() {
				return true, nil
			}
			continue
		}
		l.touch()
		if l.failed.Load() {
			continue // after an error close, input is garbage until the peer answers (NextReader skips it)
		}
		in := newInbound(l, typ)
		scratch, err := in.readBody(r, keep)
		if err != nil {
			putScratch(scratch)
			return false, err
		}
		if w := l.weight(in); !l.inflight.take(w) {
			if err := l.inflight.wait(l.ctx, w); err != nil {
				putScratch(scratch)
				return false, err
			}
		}
		if l.broken {
			putScratch(scratch)
			l.processed(in)
			continue
		}
		var code int
		in.msg, code, in.err = decodeInbound(l, in, l.readID)
		in.code = int32(code)
		if scratch != nil {
			in.data = nil
			putScratch(scratch)
		}
		if in.err != nil {
			l.broken = true
		} else if l.early != nil {
			l.early(in)
		}
		if l.mbox != nil {
			l.mbox.postInline(in)
		} else {
			l.sys.Root.Send(l.pid, in)
		}
	}
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

// readerExited and release together close the socket exactly once, after
// both the reader has stopped and the actor has finished with the link, so
// neither a pending close handshake nor a final flush is cut short.
func (l *link) readerExited() {
	l.mu.Lock()
	l.readerDone = true
	closeNow := l.released
	l.mu.Unlock()
	if closeNow {
		l.closeSocket()
	}
}

func (l *link) release() {
	l.mu.Lock()
	l.released = true
	closeNow := l.readerDone
	handshake := l.handshake
	l.mu.Unlock()
	if closeNow {
		l.closeSocket()
		return
	}
	if !handshake {
		// No close frame went out, so nothing is worth waiting for: make
		// the reader return now.
		l.setDeadline(aLongTimeAgo)
	}
}

// answerPeerClose flushes what is queued and echoes the peer's close code,
// completing the closing handshake the peer started.
func (l *link) answerPeerClose(ce *CloseError, onSent func([]byte)) {
	l.mu.Lock()
	if l.handshake {
		l.mu.Unlock()
		return
	}
	l.handshake = true
	l.closing.Store(true)
	l.mu.Unlock()
	deadline := time.Now().Add(closeGrace)
	_ = l.flush(deadline, onSent)
	code := ce.Code
	if code == CloseNoStatus || code == CloseAbnormal || code == 0 {
		code = CloseNormal
	}
	_ = l.ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(code, ""), deadline)
}

// beginTurn and endTurn bracket the actor's handling of one inbound frame;
// endTurn writes whatever the turn queued (typically the reply) at once.
// inTurn is cleared before flushPending is read, so a sender that saw
// inTurn set is always covered by this flush.
func (l *link) beginTurn() { l.inTurn.Store(true) }

func (l *link) endTurn(onSent func([]byte)) {
	l.inTurn.Store(false)
	if l.flushPending.Load() {
		_ = l.flush(time.Time{}, onSent)
	}
}

// weight is what one inbound frame counts against the inflight budget.
func (l *link) weight(in *inbound) int64 {
	return min(max(int64(in.size), 1), l.inflight.limit)
}

// processed releases the inflight budget of one inbound frame and the
// pipeline's reference to it.
func (l *link) processed(in *inbound) {
	l.inflight.release(l.weight(in))
	in.unref()
}

// received counts one inbound data frame.
func (l *link) received(n int) {
	l.stats.bytesIn.Add(int64(n))
	l.stats.msgsIn.Add(1)
	if l.totals != nil {
		l.totals.bytesIn.Add(int64(n))
		l.totals.msgsIn.Add(1)
	}
}

// closeErrorFrom turns the reader's final error into how the connection ended.
func (l *link) closeErrorFrom(err error) *CloseError {
	if local := l.closeInfo(); local != nil {
		return local
	}
	var ce *websocket.CloseError
	if errors.As(err, &ce) {
		return &CloseError{Code: ce.Code, Text: ce.Text, ByPeer: true}
	}
	if errors.Is(err, websocket.ErrReadLimit) {
		return &CloseError{Code: CloseMessageTooBig, Text: "message too big", Err: ErrMessageTooLarge}
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return &CloseError{Code: CloseAbnormal, Err: ErrKeepAliveTimeout}
	}
	return &CloseError{Code: CloseAbnormal, ByPeer: true, Err: err}
}
