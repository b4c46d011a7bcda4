package actors

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	semconv "go.opentelemetry.io/otel/semconv/v1.40.0"
	"go.opentelemetry.io/otel/trace"

	"github.com/marmotws/marmot/crypto"
	"github.com/marmotws/marmot/internal/transport"
	"github.com/marmotws/marmot/protocol"
	"github.com/marmotws/marmot/supervisor"
)

type connectCmd struct {
	ctx   context.Context
	reply chan error
}

type disconnectCmd struct {
	ctx   context.Context
	reply chan error
}

type dialDone struct {
	episode int
	t       transport.Conn
	sess    *crypto.Session
	hdr     http.Header // the 101 response's
	err     error
}

type retryTick struct{ episode int }

type connectExpired struct{ episode int }

type clientLinkLost struct {
	l   *link
	err error
}

// ClientActor runs the client's state machine and is the socket's only
// writer. Its state lives in the Client so a restart keeps the connection.
//
// With ClientConfig.Actor, the user's actor runs inside it, as the
// server's ConnectionActor runs the user's connection actor: it receives
// *actor.Started, *Connected on every connection (and again, fresh, after a
// restart while connected), every inbound *Message, whatever other actors
// send the client's PID, and *Disconnected when a connection ends. A panic
// in it restarts the ClientActor with a fresh user actor; the connection
// and the reconnect state carry on.
type ClientActor struct {
	c    *Client
	sent func([]byte) // OnDataSent as the flushes call it; built once
	user actor.Actor  // nil: callbacks only
}

// Receive implements actor.Actor.
func (a *ClientActor) Receive(ctx actor.Context) {
	c := a.c
	k := &c.core
	switch m := ctx.Message().(type) {
	case *actor.Started:
		k.incarnation++
		a.toUser(ctx, m)
		if l := c.link(); l != nil && k.incarnation > 1 {
			a.toUser(ctx, &Connected{Info: c.info(ctx, l), Restarts: k.incarnation - 1})
		}
	case *Push:
		var err error
		switch {
		case m.Name != "":
			err = c.SendCommand(m.Name, m.Data) // through the outbox, if any
		default:
			err = c.Send(m.Data)
		}
		if ctx.Sender() != nil {
			ctx.Respond(&Ack{Err: err})
		}
	case *connectCmd:
		switch c.State() {
		case StateConnected:
			m.reply <- nil
		case StateConnecting, StateReconnecting:
			k.connWaiters = append(k.connWaiters, m.reply)
		case StateDisconnecting:
			m.reply <- ErrBusy
		default:
			k.episode++
			k.attempt = 0
			k.backoff = nil
			k.lastErr = nil
			k.passErrs = nil
			k.connectCtx = m.ctx
			k.connWaiters = append(k.connWaiters, m.reply)
			if c.cfg.RetryFirstConnect {
				// Retries wait on a timer that ctx knows nothing of.
				episode, self := k.episode, ctx.Self()
				k.stopExpiry = context.AfterFunc(m.ctx, func() { c.sys.Root.Send(self, &connectExpired{episode: episode}) })
			}
			a.setState(StateConnecting)
			a.dial(ctx, m.ctx)
		}
	case *disconnectCmd:
		switch c.State() {
		case StateConnected:
			a.setState(StateDisconnecting)
			k.discWaiters = append(k.discWaiters, m.reply)
			deadline, _ := m.ctx.Deadline()
			l := c.link()
			a.flush(l, deadline)
			l.close(CloseNormal, "client disconnect", ErrDisconnected, deadline)
		case StateConnecting, StateReconnecting:
			a.abandon(ErrDisconnected)
			// The state first: a send that finds it still reconnecting
			// is in the outbox by the time it is dropped.
			a.setState(StateDisconnected)
			c.dropOutbox(ErrDisconnected)
			m.reply <- nil
		case StateDisconnecting:
			k.discWaiters = append(k.discWaiters, m.reply)
		default:
			m.reply <- nil
		}
	case *dialDone:
		a.dialed(ctx, m)
	case *retryTick:
		if m.episode != k.episode {
			break
		}
		k.timer = nil
		switch c.State() {
		case StateReconnecting:
			c.reconnects.Add(1)
			a.dial(ctx, context.Background())
		case StateConnecting: // RetryFirstConnect
			c.reconnects.Add(1)
			a.dial(ctx, k.connectCtx)
		}
	case *connectExpired:
		// Connect's ctx ended while a retry waited (an attempt in flight
		// fails on its own, being bound to ctx).
		if m.episode == k.episode && c.State() == StateConnecting && k.timer != nil {
			k.timer.Stop()
			k.timer = nil
			a.giveUp(fmt.Errorf("marmot: connect to %s: %w after %d attempts (last: %w)", c.endpointsText(), context.Cause(k.connectCtx), k.attempt, k.lastErr))
		}
	case *flushSignal:
		a.flush(c.link(), time.Time{})
	case *inbound:
		a.handleInbound(ctx, m)
	case *redelivery:
		a.handleFrame(ctx, m.in, false)
	case *closeRequest:
		if m.cause != nil {
			c.reportError(m.cause)
		}
		if l := c.link(); l != nil {
			l.close(m.code, m.text, m.cause, time.Time{})
		}
	case *clientLinkLost:
		a.lost(ctx, m)
	case *actor.Stopping:
		a.abandon(ErrClientClosed)
		c.dropOutbox(ErrClientClosed)
		if l := c.link(); l != nil {
			if k.budgetOut.Load() {
				l.close(CloseInternalError, "restart budget exhausted", supervisor.ErrRestartBudgetExhausted, time.Time{})
			} else {
				l.close(CloseGoingAway, "client closed", ErrClientClosed, time.Time{})
			}
		}
		if k.budgetOut.Load() {
			c.closed.Store(true)
			a.setState(StateError)
		}
		a.toUser(ctx, m)
	default:
		// Restarting, Stopped, and whatever other actors send the client.
		a.toUser(ctx, m)
	}
}

// toUser hands msg to the user's actor, if there is one.
func (a *ClientActor) toUser(ctx actor.Context, msg any) {
	if a.user != nil {
		a.user.Receive(userContext{Context: ctx, msg: msg})
	}
}

func (a *ClientActor) setState(s ClientState) {
	c := a.c
	old := ClientState(c.state.Swap(int32(s)))
	if old == s {
		return
	}
	c.log.Debug("client state", "from", old.String(), "to", s.String())
	if f := c.cfg.Events.OnStateChange; f != nil {
		c.safeCall("OnStateChange", func() { f(old, s) })
	}
}

// abandon cancels an in-flight dial or pending retry and answers waiters.
func (a *ClientActor) abandon(err error) {
	k := &a.c.core
	k.episode++
	if k.cancelDial != nil {
		k.cancelDial()
		k.cancelDial = nil
	}
	if k.timer != nil {
		k.timer.Stop()
		k.timer = nil
	}
	a.answerConnect(err)
}

// answerConnect answers the Connect calls waiting for this connection.
func (a *ClientActor) answerConnect(err error) {
	k := &a.c.core
	for _, w := range k.connWaiters {
		w <- err
	}
	k.connWaiters = nil
	if k.stopExpiry != nil {
		k.stopExpiry()
		k.stopExpiry = nil
	}
	k.connectCtx = nil
}

// giveUp ends connecting or reconnecting for good: StateError, and err
// goes to the waiting Connect calls or, when nobody waits (reconnecting),
// to OnError: an error returned to a caller is not reported as well.
func (a *ClientActor) giveUp(err error) {
	// The state first, so that whoever learns of err sees StateError.
	a.setState(StateError)
	a.c.dropOutbox(err)
	if len(a.c.core.connWaiters) == 0 {
		a.c.reportError(err)
	}
	a.answerConnect(err)
}

func (a *ClientActor) dial(ctx actor.Context, parent context.Context) {
	c := a.c
	k := &c.core
	episode := k.episode
	dctx, cancel := context.WithCancel(parent)
	if c.cfg.ConnectionTimeout > 0 {
		dctx, cancel = context.WithTimeout(parent, c.cfg.ConnectionTimeout)
	}
	k.cancelDial = cancel
	self := ctx.Self()
	attrs := []attribute.KeyValue{AttrAttempt.Int(k.attempt), AttrDelay.Int64(k.delay.Milliseconds())}
	target := c.url()
	if u, err := url.Parse(target); err == nil {
		attrs = append(attrs, serverAttrs(u.Host)...)
		attrs = append(attrs, semconv.URLPathKey.String(u.Path))
	}
	if k.attempt > 0 {
		c.tel.reconnects.Add(context.Background(), 1)
	}
	sctx, span := c.tel.tracer.Start(parent, "marmot.connect", trace.WithSpanKind(trace.SpanKindClient), trace.WithAttributes(attrs...))
	header := c.cfg.Header
	traced := trace.SpanContextFromContext(sctx).IsValid()
	if traced || c.cfg.Encryption != nil || c.cfg.Token != nil || c.outboxOn() {
		header = header.Clone()
		if header == nil {
			header = http.Header{}
		}
	}
	if traced {
		c.tel.prop.Inject(sctx, propagation.HeaderCarrier(header))
	}
	if enc := c.cfg.Encryption; enc != nil {
		// marmot.v1 alone does not say the client encrypts.
		header.Set(HeaderEncryption, enc.Profile.String())
		if enc.Profile == crypto.ProfileSecure {
			header.Set(HeaderHandshake, strconv.Itoa(crypto.HandshakeVersion))
		}
	}
	if c.outboxOn() {
		c.sessionHeader(header)
	}
	c.live.Add(1)
	go func() {
		defer c.live.Done()
		token, err := c.token(dctx)
		if err == nil && token != "" && !c.cfg.TokenInMessage {
			header.Set("Authorization", "Bearer "+token)
		}
		var t transport.Conn
		var hdr http.Header
		if err == nil {
			t, err = c.open(dctx, target, header)
		}
		if err == nil {
			hdr = responseHeader(t)
		}
		deadline, ok := dctx.Deadline()
		var sess *crypto.Session
		if enc := c.cfg.Encryption; err == nil && enc != nil && enc.Profile == crypto.ProfileSecure {
			if !ok {
				deadline = enc.handshakeDeadline()
			}
			if sess, err = clientHandshake(t, enc, deadline); err != nil {
				t.Drop()
				t = nil
			}
		}
		if err == nil && token != "" && c.cfg.TokenInMessage {
			if !ok {
				deadline = time.Now().Add(DefaultAuthTimeout)
			}
			if err = authenticateFirst(t, sess, token, deadline); err != nil {
				t.Drop()
				t = nil
			}
		}
		// The attempt's span ends before anyone learns the outcome, so a
		// connected client always finds it finished (and exported).
		if err != nil {
			span.RecordError(err)
			span.SetStatus(codes.Error, err.Error())
		}
		span.End()
		c.sys.Root.Send(self, &dialDone{episode: episode, t: t, sess: sess, hdr: hdr, err: err})
	}()
}

func (a *ClientActor) dialed(ctx actor.Context, m *dialDone) {
	c := a.c
	k := &c.core
	if m.episode != k.episode {
		if m.t != nil {
			m.t.Drop()
		}
		return
	}
	if k.cancelDial != nil {
		k.cancelDial()
		k.cancelDial = nil
	}
	if m.err != nil {
		// A wrong key, an impossible mode or an encryption mismatch
		// stays so: retrying would only hammer the server.
		final := hopeless(m.err)
		retry := c.State() == StateReconnecting ||
			c.State() == StateConnecting && c.cfg.RetryFirstConnect && k.connectCtx.Err() == nil
		k.lastErr = m.err
		err := fmt.Errorf("marmot: connect to %s: %w", c.url(), m.err)
		c.failover() // the next attempt dials the next URL
		if retry && !final {
			if f := c.cfg.Events.OnReconnectFailed; f != nil {
				attempt := k.attempt
				c.safeCall("OnReconnectFailed", func() { f(attempt, err) })
			}
			a.scheduleRetry(ctx)
			return
		}
		if c.State() == StateConnecting && !c.cfg.RetryFirstConnect {
			// Without retries Connect still tries every URL once, at once.
			k.passErrs = append(k.passErrs, err)
			if !final && k.firstPass(len(c.urls)) && k.connectCtx.Err() == nil {
				a.dial(ctx, k.connectCtx)
				return
			}
			err = passError(k.passErrs)
		}
		a.giveUp(err)
		return
	}
	if c.cfg.Subprotocol != "" && m.t.Subprotocol() != c.cfg.Subprotocol {
		m.t.Close(CloseProtocolError, "subprotocol not accepted", time.Now().Add(time.Second))
		m.t.Drop()
		err := fmt.Errorf("marmot: server did not accept subprotocol %q", c.cfg.Subprotocol)
		m.err = err
		a.dialed(ctx, &dialDone{episode: m.episode, err: err})
		return
	}
	l := newLink(m.t, c.sys, linkConfig{
		maxQueue: c.cfg.MaxQueueBytes,
		inflight: max(c.cfg.MaxMessageSize, 1<<20),
		totals:   &c.totals,
	})
	l.pid = ctx.Self()
	l.sess = m.sess
	l.keepRaw = c.cfg.Events.OnDataReceived != nil
	if enc := c.cfg.Encryption; enc != nil && enc.Profile == crypto.ProfileCompat {
		l.compat = enc.Compat
	}
	// On l go first the re-joins of the rooms (before the state says
	// connected, so that a Join racing with the reconnect finds the room
	// re-joined, or being), then the outbox, in order (adopt), then
	// whatever is sent from now on: all under c.mu.
	c.mu.Lock()
	c.current = l
	failed := c.rejoin(l)
	lost := c.adopt(l, m.hdr)
	c.mu.Unlock()
	for _, err := range failed {
		c.reportError(err)
	}
	if lost > 0 {
		c.reportError(fmt.Errorf("%w: %d", ErrSessionLost, lost))
	}
	// The attempt count and the backoff go on until the connection proves
	// healthy (see lost): one that the server drops at once is just
	// another failed attempt.
	k.connectedAt = time.Now()
	c.live.Add(1)
	l.start(0, c.early, func(err error) {
		c.sys.Root.Send(l.pid, &clientLinkLost{l: l, err: err})
		c.live.Done()
	})
	a.setState(StateConnected)
	a.answerConnect(nil)
	if f := c.cfg.Events.OnConnect; f != nil {
		c.safeCall("OnConnect", f)
	}
	a.toUser(ctx, &Connected{Info: c.info(ctx, l), Restarts: k.incarnation - 1})
}

// terminalClose reports close codes after which reconnecting would only
// repeat the failure or contradict the server (following centrifuge's
// convention, 4500-4999 are application codes meaning "do not reconnect").
// They are terminal whichever side closed: a client that closes with 1002
// because it cannot read the server's messages would fail the same way on
// every new connection. A lost connection (1006: network loss, keep-alive
// timeout) is never terminal.
func terminalClose(r *CloseError) bool {
	switch r.Code {
	case CloseNormal, CloseProtocolError, CloseUnsupportedData, CloseInvalidPayload, 1008, CloseMessageTooBig, 1010:
		return true
	}
	return r.Code >= 4500 && r.Code <= 4999
}

func (a *ClientActor) lost(ctx actor.Context, m *clientLinkLost) {
	c := a.c
	k := &c.core
	if m.l != c.link() {
		return
	}
	reason := m.l.closeErrorFrom(m.err)
	reason.atClient = true
	if reason.ByPeer {
		m.l.answerPeerClose(reason, a.onSent())
	}
	wasDisconnecting := c.State() == StateDisconnecting
	reconnecting := !wasDisconnecting && !c.closed.Load() && c.cfg.AutoReconnect && !terminalClose(reason)
	c.mu.Lock()
	kept := reconnecting && c.out.session // the outbox sends its frames again
	c.mu.Unlock()
	if n := m.l.release(); n > 0 && !kept {
		c.reportError(fmt.Errorf("%w: %d", ErrUndelivered, n))
	}
	c.mu.Lock()
	c.current = nil
	c.mu.Unlock()
	ce := &CloseError{Code: reason.Code, Text: reason.Text, ByPeer: reason.ByPeer, Err: ErrConnectionClosed, atClient: true}
	c.failPending(ce, reconnecting)
	if f := c.cfg.Events.OnDisconnect; f != nil {
		c.safeCall("OnDisconnect", func() { f(reason) })
	}
	a.toUser(ctx, &Disconnected{Info: c.info(ctx, m.l), Reason: reason})
	if wasDisconnecting || c.closed.Load() {
		a.setState(StateDisconnected)
		c.dropOutbox(ce) // after the state: see disconnectCmd
		for _, w := range k.discWaiters {
			w <- nil
		}
		k.discWaiters = nil
		return
	}
	if !c.cfg.AutoReconnect || terminalClose(reason) {
		a.setState(StateDisconnected)
		c.dropOutbox(ce)
		return
	}
	k.episode++
	k.lastErr = reason
	if time.Since(k.connectedAt) >= a.healthyAfter() {
		k.attempt = 0
		k.backoff = nil
	}
	c.failover() // the server may be gone: the next attempt dials the next URL
	a.setState(StateReconnecting)
	a.scheduleRetry(ctx)
}

func (a *ClientActor) onSent() func([]byte) {
	if f := a.c.cfg.Events.OnDataSent; f != nil && a.sent == nil {
		a.sent = func(b []byte) { a.c.safeCall("OnDataSent", func() { f(b) }) }
	}
	return a.sent
}

func (a *ClientActor) flush(l *link, deadline time.Time) {
	if l == nil {
		return
	}
	_ = l.out.flush(deadline, a.onSent())
}

func (a *ClientActor) handleInbound(ctx actor.Context, in *inbound) { a.handleFrame(ctx, in, true) }

// handleFrame is handleInbound; without settle it leaves the frame's
// bookkeeping to the receive middleware (see withInbound).
func (a *ClientActor) handleFrame(ctx actor.Context, in *inbound, settle bool) {
	c := a.c
	l := in.l
	if settle {
		defer l.processed(in)
	}
	l.beginTurn()
	defer l.endTurn(a.onSent())
	if l != c.link() {
		return // input from a connection already replaced
	}
	l.received(in.size)
	ev := &c.cfg.Events
	if ev.OnDataReceived != nil {
		c.inCallback.Add(1)
		defer c.inCallback.Add(-1)
		ev.OnDataReceived(in.data)
	}
	m, code, err := in.msg, int(in.code), in.err
	if err != nil {
		c.reportError(err)
		l.close(code, err.Error(), err, time.Time{})
		return
	}
	switch m.Kind {
	case protocol.KindReply, protocol.KindError:
		if r := in.recovered; r != nil {
			if m.Kind == protocol.KindError {
				c.reportError(&RoomError{Room: r.Room, Op: "join", Err: &RemoteError{Code: m.code, Message: string(m.Payload)}})
			}
			if f := ev.OnRecover; f != nil {
				c.safeCall("OnRecover", func() { f(r.Room, r.Recovered, r.Missed, r.Reason) })
			}
			a.toUser(ctx, r)
			return
		}
		if room, ok := c.takePublish(m.id); ok {
			if m.Kind == protocol.KindError {
				c.reportError(&RoomError{Room: room, Op: "publish", Err: &RemoteError{Code: m.code, Message: string(m.Payload)}})
			}
			return
		}
		if !in.resolved {
			c.reportError(fmt.Errorf("marmot: %s for unknown or expired request %d", m.Kind, m.id))
		}
		return
	}
	if m.Room != "" && m.Offset != 0 {
		// Counted here, where it is handed on (input from a replaced
		// connection was dropped above), so that a re-join asks for
		// exactly what the application has not seen.
		c.received(l, m.Room, m.Offset)
	}
	if isPresenceEvent(m) {
		a.presence(ctx, m)
		return
	}
	if isAck(m) {
		return // taken by the reader (Client.early)
	}
	handler := ev.OnHandleCommand
	if a.user != nil {
		handler = func(m *Message) { a.user.Receive(userContext{Context: ctx, msg: m}) }
	}
	handle(c.tel, in, m, true, handler, c.enterCallback, c.exitCallback)
}

func (c *Client) enterCallback() { c.inCallback.Add(1) }
func (c *Client) exitCallback()  { c.inCallback.Add(-1) }

// info describes the client's connection l for the user's actor.
func (c *Client) info(ctx actor.Context, l *link) ClientInfo {
	st := &l.out.stats
	return ClientInfo{
		PID:              ctx.Self(),
		RemoteAddr:       l.t.RemoteAddr(),
		Subprotocol:      l.t.Subprotocol(),
		Compressed:       l.t.Compressed(),
		Transport:        l.t.Transport(),
		ConnectedAt:      c.core.connectedAt,
		BytesReceived:    st.bytesIn.Load(),
		BytesSent:        st.bytesOut.Load(),
		MessagesReceived: st.msgsIn.Load(),
		MessagesSent:     st.msgsOut.Load(),
		Data:             l.data(),
	}
}
