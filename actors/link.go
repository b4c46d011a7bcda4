package actors

import (
	"context"
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/marmotws/marmot/crypto"
	"github.com/marmotws/marmot/internal/transport"
	"github.com/marmotws/marmot/protocol"
)

// closeGrace bounds how long a closing side waits for the peer to answer
// its close frame (see wsconn.CloseGrace).
const closeGrace = 2 * time.Second

// link joins one transport to the actor that owns it: the server's
// ConnectionActor or the client's ClientActor, which share this one
// implementation. Inbound, it is the transport's Receiver: it reads each
// message into a pooled frame, bounds the input in flight, decrypts and
// decodes it, and posts it to the actor (inbound.go). Outbound, it is the
// connection's outbox (outbox.go). It also keeps the connection's counters.
type link struct {
	// Fields are grouped by when they are touched, the per-message ones
	// first.

	// The reader, per message.
	t      transport.Conn
	codec  protocol.Codec // nil in raw mode
	sess   *crypto.Session
	compat *crypto.CompatCodec
	// mbox is the owning actor's mailbox on the server, where frames and
	// flush signals go straight in (and the reader runs an idle actor
	// itself); nil on the client: a plain Send to pid.
	mbox     *connMailbox
	readID   ClientID
	inflight inputBudget
	broken   bool         // after a bad frame, nothing more is decoded
	limit    *connLimiter // inbound rate (server); nil: unlimited
	keepRaw  bool         // OnDataReceived wants inbound frames as received
	replyNow bool         // a reply in the actor's turn is written at once (server)
	// early may settle a decoded message on the reader goroutine (the
	// client hands replies to their Request calls there, so a callback
	// that calls Request does not wait on its own busy actor).
	early func(*inbound)

	out outbox

	// The rest: setup and the end.
	sys    *actor.ActorSystem
	pid    *actor.PID // owning actor; set before the transport starts
	ctx    context.Context
	cancel context.CancelFunc
	onDone func(error) // the transport's reader stopped for good
	cause  error       // why this side closed (under out.mu)
	user   atomic.Pointer[userSlot]
	// ident is who the peer authenticated as (server side; auth.go).
	ident atomic.Pointer[Identity]

	// Encryption: at most one of sess (secure) and compat is set, above.
	// Only the owning actor seals and the reader opens.
	peerMu      sync.Mutex
	peerMode    crypto.Mode
	peerKeySize crypto.KeySize
	peerSet     bool
}

type linkConfig struct {
	maxQueue int64
	inflight int64
	totals   *counters
}

func newLink(t transport.Conn, sys *actor.ActorSystem, cfg linkConfig) *link {
	codec, _ := protocol.Lookup(t.Subprotocol())
	ctx, cancel := context.WithCancel(context.Background())
	if cfg.inflight <= 0 {
		cfg.inflight = 1 << 20
	}
	l := &link{
		t:        t,
		codec:    codec,
		sys:      sys,
		inflight: inputBudget{limit: cfg.inflight},
		ctx:      ctx,
		cancel:   cancel,
	}
	l.out.l = l
	l.out.maxQueue = cfg.maxQueue
	l.out.totals = cfg.totals
	return l
}

// start starts the transport; onDone runs once, on the transport's reader
// goroutine, when it stops for good.
func (l *link) start(id ClientID, early func(*inbound), onDone func(error)) {
	l.readID, l.early, l.onDone = id, early, onDone
	l.t.Start(l)
}

// Done implements transport.Receiver.
func (l *link) Done(err error) { l.onDone(err) }

// close closes the connection from this side: no more sends, a close
// frame with code, and the peer given until deadline (at most closeGrace)
// to answer. cause is kept for the CloseError the connection ends with.
func (l *link) close(code int, text string, cause error, deadline time.Time) {
	l.out.mu.Lock()
	l.out.closing.Store(true)
	if l.cause == nil {
		l.cause = cause
	}
	l.out.mu.Unlock()
	l.t.Close(code, text, deadline)
}

// answerPeerClose flushes what is queued and echoes the peer's close code,
// completing the closing handshake the peer started.
func (l *link) answerPeerClose(ce *CloseError, onSent func([]byte)) {
	l.out.mu.Lock()
	l.out.closing.Store(true)
	l.out.mu.Unlock()
	deadline := time.Now().Add(closeGrace)
	_ = l.out.flush(deadline, onSent)
	l.t.AnswerClose(ce.Code, deadline)
}

// release ends the owner's use of the link: queued frames are dropped (it
// returns how many), sends refused, and the transport released.
func (l *link) release() int {
	l.cancel()
	n := l.out.drop()
	l.t.Release()
	return n
}

// closeErrorFrom turns the transport's final error into how the
// connection ended.
func (l *link) closeErrorFrom(err error) *CloseError {
	if code, text, ok := l.t.LocalClose(); ok {
		l.out.mu.Lock()
		cause := l.cause
		l.out.mu.Unlock()
		return &CloseError{Code: code, Text: text, Err: cause}
	}
	if err == nil {
		return &CloseError{Code: CloseAbnormal}
	}
	var pc *transport.PeerClose
	var ne net.Error
	switch {
	case errors.As(err, &pc):
		return &CloseError{Code: pc.Code, Text: pc.Text, ByPeer: true}
	case errors.Is(err, transport.ErrReadLimit):
		return &CloseError{Code: CloseMessageTooBig, Text: "message too big", Err: ErrMessageTooLarge}
	case errors.Is(err, transport.ErrKeepAlive):
		return &CloseError{Code: CloseAbnormal, Err: ErrKeepAliveTimeout}
	case errors.As(err, &ne) && ne.Timeout():
		return &CloseError{Code: CloseAbnormal, Err: err}
	}
	return &CloseError{Code: CloseAbnormal, ByPeer: true, Err: err}
}

// received counts one inbound data message.
func (l *link) received(n int) {
	l.out.stats.bytesIn.Add(int64(n))
	l.out.stats.msgsIn.Add(1)
	if t := l.out.totals; t != nil {
		t.bytesIn.Add(int64(n))
		t.msgsIn.Add(1)
	}
}

// Message implements transport.Receiver: one inbound message, on the
// transport's reader goroutine. It holds at most inflight.limit bytes of
// unprocessed input: when the actor falls behind, the reader waits here and
// TCP pushes back on the peer.
//
// Decryption and decoding happen here too, off the actor: the session's
// Open must run on one goroutine in frame order, which the reader is; the
// actor is left with the callbacks.
func (l *link) Message(typ int, r io.Reader) error {
	// keep: the frame as received is the frame's own storage (see
	// readBody). Ciphertext is only needed until it is opened, so it stays
	// in the scratch buffer, unless OnDataReceived wants it.
	keep := l.sess == nil && l.compat == nil || l.keepRaw
	in := newInbound(l, typ)
	scratch, err := in.readBody(r, keep)
	if err != nil {
		putScratch(scratch)
		return err
	}
	if w := l.weight(in); !l.inflight.take(w) {
		if err := l.inflight.wait(l.ctx, w); err != nil {
			putScratch(scratch)
			return err
		}
	}
	if l.broken {
		putScratch(scratch)
		l.processed(in)
		return nil
	}
	var code int
	in.msg, code, in.err = decodeInbound(l, in, l.readID)
	in.code = int32(code)
	if scratch != nil {
		in.data = nil
		putScratch(scratch)
	}
	if in.err == nil && l.limit != nil {
		// Checked after decoding: a secure session must open every
		// frame in order, dropped ones included. Over the rate the actor
		// counts it and closes the connection (1008) or drops it.
		l.limit.check(in, time.Now())
	}
	if in.err != nil {
		l.broken = in.drop == dropNone
	} else if l.early != nil {
		l.early(in)
	}
	l.post(in)
	return nil
}

// post hands an inbound frame to the owning actor.
func (l *link) post(in *inbound) {
	if l.mbox != nil {
		l.mbox.postInline(in)
	} else {
		l.sys.Root.Send(l.pid, in)
	}
}

// keepReading lets the transport's reader go on while the actor's turn
// waits for a later inbound message of this connection (a handler's
// request to its own client, Hub.RequestClient). An idle actor runs on
// the reader's goroutine (connMailbox.postInline), so without this the
// answer would be read only after the turn ended. When the turn runs
// there, the transport starts a new reader (transport.Conn.Handoff),
// which reads on, hands answers to their waiting requests (early) and
// queues every other frame in the mailbox, in order, for after the turn,
// bounded by the connection's input budget (inflight); the old goroutine
// finishes the turn and the mailbox's queue, then leaves the transport.
// The per-message path does not change (connMailbox.leave reads the
// status before its compare-and-swap, which a store replaced): this costs
// one compare-and-swap per request, and a goroutine only when the reader
// was running the actor. When the turn runs elsewhere, the reader is free
// already.
func (l *link) keepReading() {
	if l.mbox != nil {
		l.mbox.handOff(l.handoff)
	}
}

// handoff asks the transport to move its reader (see keepReading).
func (l *link) handoff() { l.t.Handoff() }

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

// beginTurn and endTurn bracket the actor's handling of one inbound frame;
// endTurn writes whatever the turn queued (typically the reply) at once.
func (l *link) beginTurn() { l.out.inTurn.Store(true) }

func (l *link) endTurn(onSent func([]byte)) { l.out.endTurn(onSent) }

// userSlot holds the connection's user data (Message.SetData).
type userSlot struct{ v any }

func (l *link) setData(v any) {
	if v == nil {
		l.user.Store(nil)
		return
	}
	l.user.Store(&userSlot{v})
}

func (l *link) data() any {
	if s := l.user.Load(); s != nil {
		return s.v
	}
	return nil
}

// linkLost reports that the transport stopped for good.
type linkLost struct {
	l   *link
	err error
}
