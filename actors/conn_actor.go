package actors

import (
	"errors"
	"fmt"
	"net"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/marmotws/marmot/protocol"
	"github.com/marmotws/marmot/supervisor"
)

// conn is the part of a connection that survives actor restarts: the
// transport (in link), the ID, the counters and the user's data slot.
type conn struct {
	hub         *Hub
	id          ClientID
	link        *link
	remote      net.Addr
	connectedAt time.Time
	ready       chan struct{}
	mbox        *connMailbox
	incarnation int // ConnectionActor instances started so far (owned by the actor)
	budgetOut   atomic.Bool
	final       *CloseError

	// Admission (screen.go, auth.go): the slots screening took, given back
	// at teardown; whether the first message must authenticate; gated
	// keeps broadcasts from a connection until it has; watch fires at
	// the identity's expiry or the authentication deadline.
	adm         *admission
	authPending bool
	announced   bool // OnClientConnected ran
	gated       atomic.Bool
	watch       *time.Timer

	// The rooms the connection is in, kept so that it leaves them when it
	// ends; the room actors own the membership itself (see roomActor).
	// roomsGone is set once it has left them for good.
	roomMu    sync.Mutex
	rooms     map[string]struct{}
	roomsGone bool

	// sess is the client's session (session.go), set before the first
	// message is read; nil for clients without one.
	sess *session

	// reqs are the server's requests to the client that wait for its
	// answers (request_client.go).
	reqs serverRequests
}

func (c *conn) info() ClientInfo {
	st := &c.link.out.stats
	return ClientInfo{
		ID:               c.id,
		PID:              c.link.pid,
		RemoteAddr:       c.remote,
		Subprotocol:      c.link.t.Subprotocol(),
		Compressed:       c.link.t.Compressed(),
		Transport:        c.link.t.Transport(),
		ConnectedAt:      c.connectedAt,
		BytesReceived:    st.bytesIn.Load(),
		BytesSent:        st.bytesOut.Load(),
		MessagesReceived: st.msgsIn.Load(),
		MessagesSent:     st.msgsOut.Load(),
		Data:             c.link.data(),
		Identity:         c.link.ident.Load(),
	}
}

// ConnectionActor owns one connection: it is its transport's only writer
// and runs the user's callbacks for it, or the user's own actor (see
// HubConfig.ConnectionActor), one message at a time.
//
// A panic in the handler restarts it: protoactor makes a fresh instance
// (and a fresh user actor, with fresh state), while the transport, the
// ClientID and the counters, kept in conn, carry on.
type ConnectionActor struct {
	c    *conn
	user actor.Actor // nil: callbacks only
}

// Receive implements actor.Actor.
func (a *ConnectionActor) Receive(ctx actor.Context) {
	c := a.c
	h := c.hub
	switch m := ctx.Message().(type) {
	case *actor.Started:
		c.incarnation++
		if c.incarnation == 1 {
			a.opened(ctx)
		}
		a.toUser(ctx, m)
		if !c.authPending {
			a.toUser(ctx, &Connected{Info: c.info(), Restarts: c.incarnation - 1})
		}
	case *flushSignal:
		a.flush(time.Time{})
	case *inbound:
		a.handleInbound(ctx, m)
	case *redelivery:
		a.handleFrame(ctx, m.in, false)
	case *Push:
		var err error
		if m.Name != "" {
			err = c.link.sendCommand(m.Name, m.Data)
		} else {
			err = c.link.sendData(m.Data)
		}
		if ctx.Sender() != nil {
			ctx.Respond(&Ack{Err: err})
		}
	case *identityExpired, *authTimedOut:
		a.expired(m)
	case *CloseConnection:
		c.link.close(m.Code, m.Text, nil, time.Time{})
	case *closeRequest:
		if errors.Is(m.cause, ErrSlowConsumer) {
			h.slowCloses.Add(1)
		}
		if m.cause != nil {
			h.reportError(c.id, m.cause)
		}
		c.link.close(m.code, m.text, m.cause, time.Time{})
	case *shutdownRequest:
		a.flush(m.deadline)
		c.link.close(CloseGoingAway, "server shutting down", nil, m.deadline)
	case *linkLost:
		c.final = c.link.closeErrorFrom(m.err)
		if c.final.ByPeer {
			a.answerPeerClose(c.final)
		}
		ctx.Stop(ctx.Self())
	case *actor.Stopping:
		a.toUser(ctx, m)
		if c.budgetOut.Load() {
			c.link.close(CloseInternalError, "restart budget exhausted", supervisor.ErrRestartBudgetExhausted, time.Time{})
		} else {
			c.link.close(CloseGoingAway, "connection actor stopped", nil, time.Time{})
		}
	case *actor.Stopped:
		c.mbox.stopped.Store(true)
		a.teardown(ctx)
		a.toUser(ctx, m)
	default:
		// Restarting, and whatever other actors send the connection.
		a.toUser(ctx, m)
	}
}

// opened runs once per connection, when its first actor starts.
func (a *ConnectionActor) opened(ctx actor.Context) {
	c := a.c
	h := c.hub
	c.link.pid = ctx.Self()
	a.admit()
	draining := h.register(c)
	close(c.ready)
	if draining {
		ctx.Send(ctx.Self(), &shutdownRequest{deadline: time.Now().Add(closeGrace)})
	}
	h.log.Debug("client connected", "client", uint64(c.id), "remote", c.remote.String(), "subprotocol", c.link.t.Subprotocol())
	if !c.authPending {
		a.announce()
	}
}

// announce runs OnClientConnected: at once, or, for a connection that
// authenticates with its first message, once it has (auth.go).
func (a *ConnectionActor) announce() {
	c := a.c
	h := c.hub
	c.announced = true
	if f := h.cfg.Events.OnClientConnected; f != nil {
		h.safeCall(c.id, "OnClientConnected", func() { f(c.info()) })
	}
}

// toUser hands msg to the user's actor, if there is one, as the message of
// the connection actor's own context.
func (a *ConnectionActor) toUser(ctx actor.Context, msg any) {
	if a.user != nil {
		a.user.Receive(userContext{Context: ctx, msg: msg})
	}
}

// receiveDirect handles the per-message traffic straight from the mailbox
// (see connMailbox.direct); the rest goes through Receive. A user's actor
// needs its context, so its messages take the full path.
func (a *ConnectionActor) receiveDirect(msg any) bool {
	switch m := msg.(type) {
	case *inbound:
		if a.c.hub.fullPath {
			return false
		}
		a.handleInbound(nil, m)
	case *flushSignal:
		// Frames queued by other goroutines (broadcasts, targeted sends)
		// usually come in bursts: one yield lets the rest of the burst
		// reach the queue, so that one write carries them all.
		runtime.Gosched()
		a.flush(time.Time{})
	default:
		return false
	}
	return true
}

func (a *ConnectionActor) flush(deadline time.Time) {
	_ = a.c.link.out.flush(deadline, a.c.link.out.onSent)
}

func (a *ConnectionActor) answerPeerClose(ce *CloseError) {
	a.c.link.answerPeerClose(ce, a.c.link.out.onSent)
}

// handleInbound runs one inbound message through the events and the
// handler: OnHandleCommand, or the user's actor (ctx is nil on the direct
// path, which only callbacks take).
func (a *ConnectionActor) handleInbound(ctx actor.Context, in *inbound) { a.handleFrame(ctx, in, true) }

// handleFrame is handleInbound; without settle it leaves the frame's
// bookkeeping to the receive middleware, which settles it once however
// often the frame is handed on (see withInbound).
func (a *ConnectionActor) handleFrame(ctx actor.Context, in *inbound, settle bool) {
	c := a.c
	h := c.hub
	ev := &h.cfg.Events
	l := c.link
	if settle {
		defer l.processed(in)
	}
	l.beginTurn()
	defer l.endTurn(l.out.onSent)
	l.received(in.size)
	if ev.OnDataReceived != nil {
		ev.OnDataReceived(c.id, in.data)
	}
	m, code, err := in.msg, int(in.code), in.err
	if in.resolved { // an answer to Hub.RequestClient, handed over by the reader
		m.Release()
		return
	}
	if err == nil && (m.Kind == protocol.KindReply || m.Kind == protocol.KindError) {
		code, err = CloseProtocolError, fmt.Errorf("%w: unexpected %s envelope: the server sent no request %d", protocol.ErrInvalidEnvelope, m.Kind, m.id)
	}
	if in.drop != dropNone {
		h.rateLimited.Add(1)
		if in.drop == dropReport {
			h.reportError(c.id, err)
		}
		if m != nil {
			m.Release() // never handed to the application
		}
		return
	}
	if err != nil {
		if errors.Is(err, ErrDecryptFailed) {
			h.decrypts.Add(1)
		}
		if errors.Is(err, ErrRateLimited) {
			h.rateLimited.Add(1)
		}
		h.reportError(c.id, err)
		l.close(code, err.Error(), err, time.Time{})
		return
	}
	if c.authPending {
		a.authenticateFirst(ctx, m)
		return
	}
	m.Identity = l.ident.Load()
	if m.seq != 0 {
		s := a.sequenced(m)
		if s == nil {
			return
		}
		defer a.handled(s)
	}
	if isRoomRequest(m) {
		a.roomRequest(m)
		return
	}
	handler := ev.OnHandleCommand
	if a.user != nil {
		handler = func(m *Message) { a.user.Receive(userContext{Context: ctx, msg: m}) }
	}
	handle(h.tel, in, m, false, handler, h.enterHandler, h.exitHandler)
}

func (a *ConnectionActor) teardown(ctx actor.Context) {
	c := a.c
	h := c.hub
	c.stopWatch()
	if n := c.link.release(); n > 0 {
		h.reportError(c.id, fmt.Errorf("%w: %d", ErrUndelivered, n))
	}
	h.unregister(c)
	c.reqs.close(ErrConnectionClosed)
	h.leaveRooms(c)
	h.sessions.detach(c)
	reason := c.final
	if reason == nil {
		reason = c.link.closeErrorFrom(nil)
	}
	h.log.Debug("client disconnected", "client", uint64(c.id), "code", reason.Code, "by_peer", reason.ByPeer)
	info := c.info()
	if c.announced { // not a connection that never authenticated
		a.toUser(ctx, &Disconnected{Info: info, Reason: reason})
		if f := h.cfg.Events.OnClientDisconnected; f != nil {
			h.safeCall(c.id, "OnClientDisconnected", func() { f(info, reason) })
		}
	}
	c.link.setData(nil)
	h.live.Done()
}
