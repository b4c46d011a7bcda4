package actors

import (
	"bytes"
	"context"
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/gorilla/websocket"
	"golang.org/x/sync/semaphore"

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

// outFrame is one queued outbound message. prepared is set for broadcasts so
// the frame is encoded once for every recipient.
type outFrame struct {
	typ      int
	data     []byte
	prepared *websocket.PreparedMessage
}

// flushSignal tells the owning actor that its link has queued frames.
type flushSignal struct{}

var theFlushSignal = &flushSignal{}

// closeRequest asks the owning actor to close the socket with a code.
type closeRequest struct {
	code  int
	text  string
	cause error
}

// inbound is one data frame read by the reader goroutine.
type inbound struct {
	l    *link
	typ  int
	data []byte
	ctx  context.Context // the process span, once handling starts

	// Set by the reader goroutine (see readLoop): the decoded message, or
	// the error and the close code it calls for.
	msg      *Message
	code     int
	err      error
	resolved bool // a reply already handed to its waiting Request
}

// TraceContext implements supervisor.Traced, so a handler panic's failure
// span joins the trace of the message that caused it.
func (in *inbound) TraceContext() context.Context {
	if in.ctx == nil {
		return context.Background()
	}
	return in.ctx
}

// linkLost reports that the reader goroutine ended.
type linkLost struct{ err error }

// link is a socket plus its bounded outbound queue. The queue lets any
// goroutine send without blocking on the network while the owning actor stays
// the socket's only writer: senders append under a short lock, the first one
// signals the actor, and the actor writes the whole batch.
type link struct {
	ws           *websocket.Conn
	codec        protocol.Codec // nil in raw mode
	sys          *actor.ActorSystem
	pid          *actor.PID // owning actor; set before the reader starts
	maxQueue     int64
	writeTimeout time.Duration
	keepAlive    time.Duration
	stats        counters
	totals       *counters // aggregate across links; may be nil
	inflight     *semaphore.Weighted
	inflightCap  int64
	ctx          context.Context
	cancel       context.CancelFunc

	wmu          sync.Mutex  // held while writing data frames
	inTurn       atomic.Bool // the owning actor is handling an inbound frame
	mu           sync.Mutex
	queue        []outFrame
	spare        []outFrame
	queued       int64
	flushPending bool
	closing      bool      // no more sends accepted
	handshake    bool      // a close frame has been written
	readerDone   bool      // the reader goroutine has returned
	released     bool      // the owning actor is done with the link
	closeBy      time.Time // read deadline once handshake is set
	pinger       *time.Timer

	localClose *CloseError // set when this side decided to close

	// Encryption: at most one of sess (secure) and compat is set. Only the
	// owning actor seals and opens, so no lock guards them.
	sess        *crypto.Session
	compat      *crypto.CompatCodec
	peerMode    crypto.Mode
	peerKeySize crypto.KeySize
	peerSet     bool
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
		inflight:     semaphore.NewWeighted(cfg.inflight),
		inflightCap:  cfg.inflight,
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
	if l.closing {
		l.mu.Unlock()
		return ErrConnectionClosed
	}
	// One message larger than the bound is still accepted into an empty queue,
	// so the bound limits backlog, not message size (the read limit does that).
	if l.maxQueue > 0 && l.queued > 0 && l.queued+size > l.maxQueue {
		l.closing = true
		l.mu.Unlock()
		l.sys.Root.Send(l.pid, &closeRequest{code: CloseSlowConsumer, text: "slow consumer", cause: ErrSlowConsumer})
		return ErrSlowConsumer
	}
	l.queue = append(l.queue, f)
	l.queued += size
	// No signal while the owning actor is inside a turn: it flushes at the
	// end of the turn (endTurn), which saves a mailbox round trip per reply.
	signal := !l.flushPending && !l.inTurn.Load()
	l.flushPending = true
	l.mu.Unlock()
	if signal {
		l.sys.Root.Send(l.pid, theFlushSignal)
	}
	return nil
}

func rawType(data []byte) int {
	if utf8.Valid(data) {
		return websocket.TextMessage
	}
	return websocket.BinaryMessage
}

func (l *link) sendRaw(t MessageType, data []byte) error {
	if t == 0 {
		return l.send(outFrame{typ: rawType(data), data: data})
	}
	return l.send(outFrame{typ: int(t), data: data})
}

func (l *link) sendEnvelope(e *protocol.Envelope) error {
	if l.codec == nil {
		return ErrRawMode
	}
	buf, err := l.codec.Append(nil, e)
	if err != nil {
		return err
	}
	return l.send(outFrame{typ: l.codec.MessageType(), data: buf})
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
	l.flushPending = false
	l.mu.Unlock()
	if len(batch) == 0 {
		l.spare = batch
		return nil
	}
	if deadline.IsZero() && l.writeTimeout > 0 {
		deadline = time.Now().Add(l.writeTimeout)
	}
	_ = l.ws.SetWriteDeadline(deadline)
	var err error
	var written int64
	for i := range batch {
		f := &batch[i]
		if err == nil {
			wire := f.data
			switch {
			case l.encrypted():
				// Per-connection keys: a broadcast's shared encoding is
				// sealed separately for every recipient.
				var typ int
				if typ, wire, err = l.seal(f); err == nil {
					err = l.ws.WriteMessage(typ, wire)
				}
			case f.prepared != nil:
				err = l.ws.WritePreparedMessage(f.prepared)
			default:
				err = l.ws.WriteMessage(f.typ, f.data)
			}
			if err == nil {
				n := int64(len(wire))
				l.stats.bytesOut.Add(n)
				l.stats.msgsOut.Add(1)
				if l.totals != nil {
					l.totals.bytesOut.Add(n)
					l.totals.msgsOut.Add(1)
				}
				if onSent != nil {
					onSent(wire)
				}
			}
		}
		written += int64(len(f.data))
		*f = outFrame{} // let the GC have the payloads
	}
	l.mu.Lock()
	l.queued -= written
	l.mu.Unlock()
	l.spare = batch[:0]
	if err != nil {
		// A broken socket: stop accepting sends and make the reader finish.
		l.mu.Lock()
		l.closing = true
		l.mu.Unlock()
		_ = l.ws.NetConn().Close()
	}
	return err
}

// drop discards what is still queued and refuses further sends; it returns
// how many frames were left undelivered.
func (l *link) drop() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := len(l.queue)
	l.queue = nil
	l.spare = nil
	l.queued = 0
	l.closing = true
	return n
}

// startClose writes a close frame once and gives the peer closeGrace (or
// until deadline) to answer before the reader drops the socket.
func (l *link) startClose(code int, text string, cause error, deadline time.Time) {
	l.mu.Lock()
	l.closing = true
	if l.handshake {
		l.mu.Unlock()
		return
	}
	l.handshake = true
	if l.localClose == nil {
		l.localClose = &CloseError{Code: code, Text: text, Err: cause}
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
		_ = l.ws.NetConn().Close()
		return
	}
	l.mu.Lock()
	l.closeBy = deadline
	_ = l.ws.SetReadDeadline(deadline)
	l.mu.Unlock()
}

// armReadDeadline gives the peer KeepAlive to send anything, or, once a
// close frame is out, until closeBy to answer it. The lock keeps the reader
// from overwriting the close deadline with a later keep-alive one.
func (l *link) armReadDeadline() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.handshake {
		if !l.closeBy.IsZero() {
			return l.ws.SetReadDeadline(l.closeBy)
		}
		return nil
	}
	if l.keepAlive > 0 {
		return l.ws.SetReadDeadline(time.Now().Add(l.keepAlive))
	}
	return nil
}

func (l *link) closeInfo() *CloseError {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.localClose
}

// startKeepAlive pings every keepAlive/2; the reader's deadline closes a peer
// that stops answering within keepAlive. A timer rather than a goroutine keeps
// idle connections cheap.
func (l *link) startKeepAlive() {
	if l.keepAlive <= 0 {
		return
	}
	l.ws.SetPongHandler(func(string) error { return l.armReadDeadline() })
	interval := l.keepAlive / 2
	var ping func()
	ping = func() {
		l.mu.Lock()
		if l.closing {
			l.mu.Unlock()
			return
		}
		l.mu.Unlock()
		wd := time.Now().Add(interval)
		if l.writeTimeout > 0 && l.writeTimeout < interval {
			wd = time.Now().Add(l.writeTimeout)
		}
		_ = l.ws.WriteControl(websocket.PingMessage, nil, wd)
		l.mu.Lock()
		if !l.closing {
			l.pinger.Reset(interval)
		}
		l.mu.Unlock()
	}
	l.mu.Lock()
	l.pinger = time.AfterFunc(interval, ping)
	l.mu.Unlock()
}

func (l *link) stopKeepAlive() {
	l.mu.Lock()
	if l.pinger != nil {
		l.pinger.Stop()
	}
	l.mu.Unlock()
}

// readLoop runs on the reader goroutine until the socket fails. It holds at
// most inflightCap bytes of unprocessed input: when the actor falls behind,
// the reader stops reading and TCP pushes back on the peer.
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
func (l *link) readLoop(id ClientID, early func(*inbound)) error {
	l.ws.SetCloseHandler(func(int, string) error { return nil })
	defer l.readerExited()
	broken := false // after a bad frame, nothing more is decoded
	for {
		_ = l.armReadDeadline()
		typ, data, err := readMessage(l.ws)
		if err != nil {
			return err
		}
		l.mu.Lock()
		failed := l.localClose != nil && l.localClose.Code != CloseNormal && l.localClose.Code != CloseGoingAway
		l.mu.Unlock()
		if failed {
			continue // after an error close, input is garbage until the peer answers
		}
		w := int64(len(data))
		if w < 1 {
			w = 1
		}
		if w > l.inflightCap {
			w = l.inflightCap
		}
		if err := l.inflight.Acquire(l.ctx, w); err != nil {
			return err
		}
		in := &inbound{l: l, typ: typ, data: data}
		if broken {
			l.processed(in)
			continue
		}
		in.msg, in.code, in.err = decodeInbound(l, in, id)
		if in.err != nil {
			broken = true
		} else if early != nil {
			early(in)
		}
		l.sys.Root.Send(l.pid, in)
	}
}

// readBuffers are scratch space for reading messages of unknown length.
var readBuffers = sync.Pool{New: func() any { return new(bytes.Buffer) }}

// readMessage is gorilla's ReadMessage with one exact-size allocation per
// message: ReadMessage's io.ReadAll starts at 512 bytes and grows by
// doubling, so small messages cost a 512-byte buffer and large ones several
// copies. The result is owned by the caller.
func readMessage(ws *websocket.Conn) (int, []byte, error) {
	typ, r, err := ws.NextReader()
	if err != nil {
		return typ, nil, err
	}
	buf := readBuffers.Get().(*bytes.Buffer)
	buf.Reset()
	_, err = buf.ReadFrom(r)
	data := bytes.Clone(buf.Bytes())
	if data == nil {
		data = []byte{}
	}
	if buf.Cap() <= 64<<10 { // don't keep a huge message's buffer alive
		readBuffers.Put(buf)
	}
	return typ, data, err
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
		_ = l.ws.NetConn().Close()
	}
}

func (l *link) release() {
	l.mu.Lock()
	l.released = true
	closeNow := l.readerDone
	handshake := l.handshake
	l.mu.Unlock()
	if closeNow {
		_ = l.ws.NetConn().Close()
		return
	}
	if !handshake {
		// No close frame went out, so nothing is worth waiting for: make
		// the reader return now.
		_ = l.ws.SetReadDeadline(time.Now())
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
	l.closing = true
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
	l.mu.Lock()
	pending := l.flushPending
	l.mu.Unlock()
	if pending {
		_ = l.flush(time.Time{}, onSent)
	}
}

// processed releases the inflight budget of one inbound frame.
func (l *link) processed(in *inbound) {
	w := int64(len(in.data))
	if w < 1 {
		w = 1
	}
	if w > l.inflightCap {
		w = l.inflightCap
	}
	l.inflight.Release(w)
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
