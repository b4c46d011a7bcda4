package actors

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/sethvargo/go-retry"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/propagation"
	semconv "go.opentelemetry.io/otel/semconv/v1.40.0"
	"go.opentelemetry.io/otel/trace"

	"github.com/marmotws/marmot/crypto"
	"github.com/marmotws/marmot/internal/transport"
	"github.com/marmotws/marmot/internal/wsconn"
	"github.com/marmotws/marmot/protocol"
	"github.com/marmotws/marmot/supervisor"
)

// ClientState is the client's connection state.
type ClientState int32

// The client states of the seed components.
const (
	StateDisconnected ClientState = iota
	StateConnecting
	StateConnected
	StateReconnecting
	StateDisconnecting
	StateError
)

// String returns a readable name for logs and errors.
func (s ClientState) String() string {
	switch s {
	case StateDisconnected:
		return "disconnected"
	case StateConnecting:
		return "connecting"
	case StateConnected:
		return "connected"
	case StateReconnecting:
		return "reconnecting"
	case StateDisconnecting:
		return "disconnecting"
	case StateError:
		return "error"
	}
	return fmt.Sprintf("ClientState(%d)", int32(s))
}

// Description returns a sentence for status bars and logs.
func (s ClientState) Description() string {
	switch s {
	case StateDisconnected:
		return "Disconnected from server"
	case StateConnecting:
		return "Connecting to server..."
	case StateConnected:
		return "Connected to server"
	case StateReconnecting:
		return "Reconnecting to server..."
	case StateDisconnecting:
		return "Disconnecting from server..."
	case StateError:
		return "Connection error"
	}
	return "Unknown state"
}

// ReconnectStrategy chooses the delay between reconnect attempts.
type ReconnectStrategy int

const (
	// ReconnectFixed waits ReconnectInterval before every attempt (the seed's rsLinear).
	ReconnectFixed ReconnectStrategy = iota
	// ReconnectExponential waits ReconnectInterval × 2^(n-1), capped at
	// MaxReconnectInterval, with ±ReconnectJitter (the seed's rsExponential
	// as documented; the seed's own code never backs off).
	ReconnectExponential
)

// String returns a readable name for logs and errors.
func (r ReconnectStrategy) String() string {
	switch r {
	case ReconnectFixed:
		return "fixed"
	case ReconnectExponential:
		return "exponential"
	}
	return fmt.Sprintf("ReconnectStrategy(%d)", int(r))
}

// DefaultHealthyAfter is the least time a connection must stay up to count
// as healthy (see ClientConfig.HealthyAfter).
const DefaultHealthyAfter = 5 * time.Second

// Client errors.
var (
	ErrReconnectExhausted = errors.New("marmot: reconnect attempts exhausted")
	ErrDisconnected       = errors.New("marmot: disconnected by the user")
	ErrClientClosed       = errors.New("marmot: client closed")
	ErrBusy               = errors.New("marmot: a disconnect is in progress")
)

// ClientEvents are the client's callbacks, all optional. They run one at a
// time, in order, on the ClientActor (OnError may also run on its
// supervisor, while the actor is suspended), so a slow callback delays every
// later event and the client's writes. A panic in OnDataReceived or
// OnHandleCommand restarts the actor (the connection survives); panics
// elsewhere go to OnError, and a panic in OnError is logged.
type ClientEvents struct {
	// OnConnect runs each time a connection is established: after the first
	// Connect and again after every successful reconnect, so put
	// per-connection setup (subscriptions, a login request) here. The state
	// is already StateConnected, and Request may be called from it.
	OnConnect func()
	// OnDisconnect runs once for each established connection when it ends,
	// whatever the cause (Disconnect, a close by the server, a lost
	// network, a keep-alive timeout), before any reconnect is scheduled.
	// reason says who closed it, with which code and why. Failed connect
	// attempts do not call it (see OnReconnectFailed and OnError).
	OnDisconnect func(reason *CloseError)
	// OnDataReceived sees every inbound WebSocket message exactly as
	// received (still encrypted when encryption is on), replies included,
	// before it is decoded. data is only valid during the call: copy it to
	// keep it.
	OnDataReceived func(data []byte)
	// OnDataSent sees every outbound message's payload after it was
	// written. data is only valid during the call (its buffer is reused).
	OnDataSent func(data []byte)
	// OnHandleCommand receives every application message the server pushes
	// (data, commands and requests; replies go to their Request call
	// instead). Answer a server's request with m.Reply or m.ReplyError.
	OnHandleCommand func(m *Message)
	// OnError reports errors as they happen, including those a method
	// call also returns: a failed connect (ErrEncryptionMismatch when the
	// server refused this client's encryption), a callback panic
	// (ErrHandlerPanic), undecodable input, undelivered messages
	// (ErrUndelivered), giving up after MaxReconnectAttempts
	// (ErrReconnectExhausted). Test them with errors.Is.
	OnError func(err error)
	// OnStateChange runs on every state change, old to new, before the
	// event that goes with it (OnConnect after the change to
	// StateConnected, for instance).
	OnStateChange func(old, new ClientState)
	// OnReconnecting runs when a reconnect attempt is scheduled: attempt
	// counts from 1 and delay is the wait before the attempt is made. The
	// count and the backoff start over only after a connection has stayed
	// up for HealthyAfter: one that the server drops sooner counts as a
	// failed attempt (without OnReconnectFailed, as it did connect). With
	// RetryFirstConnect it also reports the retries of Connect (the state
	// stays StateConnecting then).
	OnReconnecting func(attempt int, delay time.Duration)
	// OnReconnectFailed runs when a scheduled attempt fails to connect
	// (dial, upgrade or encryption handshake), with the attempt's number
	// and its error; another attempt follows unless MaxReconnectAttempts
	// is reached. With RetryFirstConnect, Connect's own failed attempt is
	// reported as attempt 0 before its retries. An error that retrying
	// cannot fix (a wrong key, a mode mismatch, ErrEncryptionMismatch) is
	// not retried: it goes to OnError and the state becomes StateError.
	OnReconnectFailed func(attempt int, err error)
}

// ClientConfig configures a Client. The root package fills in the seed's
// defaults; here zero disables a limit.
type ClientConfig struct {
	URL                  string
	Subprotocol          string // "" for raw mode
	Header               http.Header
	ConnectionTimeout    time.Duration
	AutoReconnect        bool
	ReconnectStrategy    ReconnectStrategy
	ReconnectInterval    time.Duration
	MaxReconnectInterval time.Duration
	ReconnectJitter      float64       // fraction, e.g. 0.1 for ±10%
	MaxReconnectAttempts int           // 0: unlimited
	RetryFirstConnect    bool          // Connect retries with the reconnect backoff until ctx ends
	HealthyAfter         time.Duration // up this long, a connection resets attempts and backoff; 0: max(DefaultHealthyAfter, ReconnectInterval)
	KeepAlive            time.Duration
	WriteTimeout         time.Duration
	MaxMessageSize       int64
	MaxQueueBytes        int64
	MaxRestarts          int
	RestartWindow        time.Duration
	Logger               *slog.Logger
	ActorSystem          *actor.ActorSystem
	TracerProvider       trace.TracerProvider
	MeterProvider        metric.MeterProvider
	Propagator           propagation.TextMapPropagator
	// Encryption, when set, encrypts every message; it decides the
	// subprotocol (marmot.v1 for the secure profile, synopsejson for compat).
	Encryption *Encryption
	Events     ClientEvents
}

// ClientStats are the client's counters.
type ClientStats struct {
	BytesReceived    int64
	BytesSent        int64
	MessagesReceived int64
	MessagesSent     int64
	Reconnects       int64 // reconnect attempts made (RetryFirstConnect's retries included)
}

// Client is a WebSocket client whose ClientActor owns the connection and its
// reconnect state machine.
type Client struct {
	cfg    ClientConfig
	log    *slog.Logger
	sys    *actor.ActorSystem
	ownSys bool
	guard  *actor.PID
	pid    *actor.PID
	dialer *wsconn.Dialer
	tel    *telemetry
	rep    reporter

	state      atomic.Int32
	inCallback atomic.Int32 // >0 while the ClientActor runs a user callback
	totals     counters
	reconnects atomic.Int64
	closed     atomic.Bool
	live       sync.WaitGroup // dial and reader goroutines

	mu      sync.Mutex
	current *link
	nextReq uint64
	pending map[uint64]chan reqResult

	// core is the ClientActor's state; it lives here so it survives restarts.
	core clientCore
}

type reqResult struct {
	payload []byte
	err     error
}

type clientCore struct {
	episode     int
	attempt     int
	backoff     retry.Backoff
	cancelDial  context.CancelFunc
	timer       *time.Timer
	delay       time.Duration // before the current reconnect attempt
	connectedAt time.Time     // when the current connection opened
	lastErr     error         // the last failed attempt's error
	connectCtx  context.Context
	stopExpiry  func() bool // stops connectCtx's expiry notice
	connWaiters []chan error
	discWaiters []chan error
	budgetOut   atomic.Bool
}

// NewClient creates a client; it does not connect.
func NewClient(cfg ClientConfig) *Client {
	c := &Client{cfg: cfg, log: cfg.Logger, pending: make(map[uint64]chan reqResult)}
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	c.tel = newTelemetry(cfg.TracerProvider, cfg.MeterProvider, cfg.Propagator, AttrSide.String("client"))
	c.rep = reporter{log: c.log, tel: c.tel, enter: c.enterCallback, exit: c.exitCallback}
	if f := cfg.Events.OnError; f != nil {
		c.rep.onError = func(_ ClientID, err error) { f(err) }
	}
	c.sys = cfg.ActorSystem
	if c.sys == nil {
		c.sys = NewActorSystem(c.log)
		c.ownSys = true
	}
	if cfg.Encryption != nil {
		c.cfg.Subprotocol = cfg.Encryption.Subprotocol()
	}
	c.dialer = wsconn.NewDialer(c.cfg.Subprotocol, cfg.ConnectionTimeout, wsconn.Config{
		WriteTimeout: cfg.WriteTimeout,
		KeepAlive:    cfg.KeepAlive,
		ReadLimit:    cfg.MaxMessageSize,
	})
	strategy := supervisor.New(supervisor.Config{
		MaxRestarts:    cfg.MaxRestarts,
		Window:         cfg.RestartWindow,
		ActorKind:      "client",
		TracerProvider: cfg.TracerProvider,
		Logger:         c.log,
		OnFailure: func(f supervisor.Failure) {
			if f.BudgetExhausted {
				c.core.budgetOut.Store(true)
			}
			c.reportError(fmt.Errorf("%w: %w", ErrHandlerPanic, f.Err()))
		},
	})
	ready := make(chan *actor.PID, 1)
	guard := actor.PropsFromFunc(func(ctx actor.Context) {
		if _, ok := ctx.Message().(*actor.Started); ok {
			ready <- ctx.Spawn(actor.PropsFromProducer(func() actor.Actor { return &ClientActor{c: c} }))
		}
	}, actor.WithSupervisor(strategy))
	c.guard = c.sys.Root.Spawn(guard)
	c.pid = <-ready
	return c
}

// PID returns the ClientActor's PID.
func (c *Client) PID() *actor.PID { return c.pid }

// State returns the current connection state.
func (c *Client) State() ClientState { return ClientState(c.state.Load()) }

// Connected reports whether the client is connected.
func (c *Client) Connected() bool { return c.State() == StateConnected }

// Reconnecting reports whether the client is between reconnect attempts.
func (c *Client) Reconnecting() bool { return c.State() == StateReconnecting }

// Stats returns the client's counters.
func (c *Client) Stats() ClientStats {
	return ClientStats{
		BytesReceived:    c.totals.bytesIn.Load(),
		BytesSent:        c.totals.bytesOut.Load(),
		MessagesReceived: c.totals.msgsIn.Load(),
		MessagesSent:     c.totals.msgsOut.Load(),
		Reconnects:       c.reconnects.Load(),
	}
}

// Connect dials the server and returns once connected, or with the
// attempt's error: a failed first attempt does not start reconnecting,
// unless RetryFirstConnect is set. Then Connect keeps trying with the
// reconnect backoff (reported by OnReconnectFailed and OnReconnecting) until
// it connects, ctx ends, MaxReconnectAttempts is reached or the error is
// one that retrying cannot fix. Each attempt is bounded by ctx and by
// ConnectionTimeout; when ctx ends the client stops trying (StateError).
func (c *Client) Connect(ctx context.Context) error {
	if c.closed.Load() {
		return ErrClientClosed
	}
	reply := make(chan error, 1)
	c.sys.Root.Send(c.pid, &connectCmd{ctx: ctx, reply: reply})
	return waitReply(ctx, reply, nil)
}

// waitReply waits for the ClientActor's answer; onCancel runs when ctx ends
// first.
func waitReply(ctx context.Context, reply chan error, onCancel func()) error {
	select {
	case err := <-reply:
		return err
	case <-ctx.Done():
		if onCancel != nil {
			onCancel()
		}
		return ctx.Err()
	}
}

// Disconnect closes the connection with 1000 Normal Closure after flushing
// queued messages, and cancels any reconnecting. It never triggers a
// reconnect.
func (c *Client) Disconnect(ctx context.Context) error {
	if c.closed.Load() {
		return nil
	}
	reply := make(chan error, 1)
	c.sys.Root.Send(c.pid, &disconnectCmd{ctx: ctx, reply: reply})
	return waitReply(ctx, reply, func() {
		c.mu.Lock()
		if l := c.current; l != nil {
			l.t.Drop()
		}
		c.mu.Unlock()
	})
}

// Close disconnects and releases the client's actors and goroutines. The
// client cannot be used afterwards.
func (c *Client) Close(ctx context.Context) error {
	if c.closed.Load() {
		return nil
	}
	err := c.Disconnect(ctx)
	c.closed.Store(true)
	_ = c.sys.Root.StopFuture(c.guard).Wait()
	c.live.Wait()
	if c.ownSys {
		c.sys.Shutdown()
	}
	return err
}

func (c *Client) link() *link {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.current
}

// Send queues data for the server: a raw frame (text when valid UTF-8) or a
// data envelope. It fails with ErrNotConnected while disconnected.
func (c *Client) Send(data []byte) error {
	l := c.link()
	if l == nil || c.State() != StateConnected {
		return ErrNotConnected
	}
	return l.sendData(data)
}

// SendRaw queues a raw frame of the given type (raw mode only).
func (c *Client) SendRaw(t MessageType, data []byte) error {
	l := c.link()
	if l == nil || c.State() != StateConnected {
		return ErrNotConnected
	}
	if l.codec != nil {
		return fmt.Errorf("marmot: connection speaks %s, not raw frames", l.codec.Subprotocol())
	}
	return l.sendRaw(t, data)
}

// SendCommand queues a named command (envelope subprotocols only).
func (c *Client) SendCommand(name string, payload []byte) error {
	l := c.link()
	if l == nil || c.State() != StateConnected {
		return ErrNotConnected
	}
	return l.sendCommand(name, payload)
}

// SendContext is Send under a "send" producer span parented to ctx's span;
// with an envelope subprotocol the server's process span continues the
// trace.
func (c *Client) SendContext(ctx context.Context, data []byte) error {
	l := c.link()
	if l == nil || c.State() != StateConnected {
		return ErrNotConnected
	}
	return l.sendTraced(ctx, c.tel, "", data)
}

// SendCommandContext is SendCommand under a "send NAME" producer span
// parented to ctx's span; the server's process span continues the trace.
func (c *Client) SendCommandContext(ctx context.Context, name string, payload []byte) error {
	if name == "" {
		return ErrEmptyCommandName
	}
	l := c.link()
	if l == nil || c.State() != StateConnected {
		return ErrNotConnected
	}
	return l.sendTraced(ctx, c.tel, name, payload)
}

// Request sends a named request and waits for the reply or for ctx. A
// server-side error reply comes back as *RemoteError. The reply is handed
// over by the reader as soon as it is read, so Request can return before
// OnHandleCommand has run for messages that arrived just ahead of it.
//
// Request may be called from the client's own callbacks (OnConnect,
// OnHandleCommand, ...): it then writes the request itself, since the
// ClientActor that would is the one waiting. Every later event waits
// meanwhile, and the reply can be read only while the messages that arrive
// ahead of it fit the input budget (MaxMessageSize, at least 1 MiB), as
// they wait for the busy actor: give such a Request a short deadline.
func (c *Client) Request(ctx context.Context, name string, payload []byte) ([]byte, error) {
	if name == "" {
		return nil, ErrEmptyCommandName
	}
	l := c.link()
	if l == nil || c.State() != StateConnected {
		return nil, ErrNotConnected
	}
	if l.codec == nil {
		return nil, ErrRawMode
	}
	ch := make(chan reqResult, 1)
	c.mu.Lock()
	c.nextReq++
	id := c.nextReq
	c.pending[id] = ch
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		delete(c.pending, id)
		c.mu.Unlock()
	}()
	ctx, span := c.tel.tracer.Start(ctx, "send "+name, trace.WithSpanKind(trace.SpanKindClient), trace.WithAttributes(
		semconv.MessagingSystemKey.String(MessagingSystem),
		semconv.MessagingOperationTypeSend,
		semconv.MessagingOperationNameKey.String("request"),
		semconv.MessagingDestinationNameKey.String(name),
		semconv.MessagingMessageIDKey.String(strconv.FormatUint(id, 10)),
		semconv.MessagingMessageBodySizeKey.Int(len(payload)),
	))
	payload, err := c.awaitReply(ctx, l, ch, &protocol.Envelope{Kind: protocol.KindRequest, ID: id, Name: name,
		Payload: payload, Meta: c.tel.inject(ctx, nil)})
	if err != nil {
		span.RecordError(err)
		span.SetStatus(codes.Error, err.Error())
	}
	span.End()
	return payload, err
}

func (c *Client) awaitReply(ctx context.Context, l *link, ch chan reqResult, e *protocol.Envelope) ([]byte, error) {
	if err := l.sendEnvelope(e); err != nil {
		return nil, err
	}
	if c.inCallback.Load() > 0 {
		// Most likely called from a callback: the actor that would write
		// the request is the one waiting for it, so write it here.
		_ = l.out.flush(time.Time{}, (&ClientActor{c: c}).onSent())
	}
	select {
	case r := <-ch:
		return r.payload, r.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func (c *Client) resolve(id uint64, r reqResult) bool {
	c.mu.Lock()
	ch := c.pending[id]
	delete(c.pending, id)
	c.mu.Unlock()
	if ch == nil {
		return false
	}
	ch <- r
	return true
}

// early runs on the reader goroutine and hands replies to their Request
// calls directly; the actor still sees the frame for statistics and events.
func (c *Client) early(in *inbound) {
	m := in.msg
	switch m.Kind {
	case protocol.KindReply:
		in.resolved = c.resolve(m.id, reqResult{payload: m.Payload})
	case protocol.KindError:
		in.resolved = c.resolve(m.id, reqResult{err: &RemoteError{Code: m.code, Message: string(m.Payload)}})
	}
}

func (c *Client) failPending(err error) {
	c.mu.Lock()
	for id, ch := range c.pending {
		ch <- reqResult{err: err}
		delete(c.pending, id)
	}
	c.mu.Unlock()
}

func (c *Client) reportError(err error) { c.rep.report(0, err) }

func (c *Client) safeCall(what string, f func()) { c.rep.safeCall(0, what, f) }

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
type ClientActor struct {
	c    *Client
	sent func([]byte) // OnDataSent as the flushes call it; built once
}

// Receive implements actor.Actor.
func (a *ClientActor) Receive(ctx actor.Context) {
	c := a.c
	k := &c.core
	switch m := ctx.Message().(type) {
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
			a.setState(StateDisconnected)
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
			a.giveUp(fmt.Errorf("marmot: connect to %s: %w after %d attempts (last: %w)", c.cfg.URL, context.Cause(k.connectCtx), k.attempt, k.lastErr))
		}
	case *flushSignal:
		a.flush(c.link(), time.Time{})
	case *inbound:
		a.handleInbound(m)
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

// giveUp ends connecting or reconnecting for good: StateError, OnError and
// the waiting Connect calls get err.
func (a *ClientActor) giveUp(err error) {
	// The state first, so that whoever OnError tells sees StateError.
	a.setState(StateError)
	a.c.reportError(err)
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
	if u, err := url.Parse(c.cfg.URL); err == nil {
		attrs = append(attrs, serverAttrs(u.Host)...)
		attrs = append(attrs, semconv.URLPathKey.String(u.Path))
	}
	if k.attempt > 0 {
		c.tel.reconnects.Add(context.Background(), 1)
	}
	sctx, span := c.tel.tracer.Start(parent, "marmot.connect", trace.WithSpanKind(trace.SpanKindClient), trace.WithAttributes(attrs...))
	header := c.cfg.Header
	traced := trace.SpanContextFromContext(sctx).IsValid()
	if traced || c.cfg.Encryption != nil {
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
	}
	c.live.Add(1)
	go func() {
		defer c.live.Done()
		ws, err := c.dialer.Dial(dctx, c.cfg.URL, header)
		var refused *wsconn.RefusedError
		if errors.As(err, &refused) {
			if mismatch := encryptionRefusal(refused.Response, refused.Body, c.cfg.Encryption); mismatch != nil {
				err = fmt.Errorf("%w (HTTP %s)", mismatch, refused.Response.Status)
			}
		}
		var t transport.Conn
		if err == nil {
			t = ws
		}
		var sess *crypto.Session
		if enc := c.cfg.Encryption; err == nil && enc != nil && enc.Profile == crypto.ProfileSecure {
			deadline, ok := dctx.Deadline()
			if !ok {
				deadline = enc.handshakeDeadline()
			}
			if sess, err = clientHandshake(t, enc, deadline); err != nil {
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
		c.sys.Root.Send(self, &dialDone{episode: episode, t: t, sess: sess, err: err})
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
		hopeless := errors.Is(m.err, crypto.ErrWrongKey) || errors.Is(m.err, crypto.ErrModeMismatch) ||
			errors.Is(m.err, ErrEncryptionMismatch)
		retry := c.State() == StateReconnecting ||
			c.State() == StateConnecting && c.cfg.RetryFirstConnect && k.connectCtx.Err() == nil
		k.lastErr = m.err
		if retry && !hopeless {
			if f := c.cfg.Events.OnReconnectFailed; f != nil {
				attempt := k.attempt
				c.safeCall("OnReconnectFailed", func() { f(attempt, m.err) })
			}
			a.scheduleRetry(ctx)
			return
		}
		a.giveUp(fmt.Errorf("marmot: connect to %s: %w", c.cfg.URL, m.err))
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
	c.mu.Lock()
	c.current = l
	c.mu.Unlock()
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
	if n := m.l.release(); n > 0 {
		c.reportError(fmt.Errorf("%w: %d", ErrUndelivered, n))
	}
	c.mu.Lock()
	c.current = nil
	c.mu.Unlock()
	c.failPending(&CloseError{Code: reason.Code, Text: reason.Text, ByPeer: reason.ByPeer, Err: ErrConnectionClosed, atClient: true})
	wasDisconnecting := c.State() == StateDisconnecting
	if f := c.cfg.Events.OnDisconnect; f != nil {
		c.safeCall("OnDisconnect", func() { f(reason) })
	}
	if wasDisconnecting || c.closed.Load() {
		a.setState(StateDisconnected)
		for _, w := range k.discWaiters {
			w <- nil
		}
		k.discWaiters = nil
		return
	}
	if !c.cfg.AutoReconnect || terminalClose(reason) {
		a.setState(StateDisconnected)
		return
	}
	k.episode++
	k.lastErr = reason
	if time.Since(k.connectedAt) >= a.healthyAfter() {
		k.attempt = 0
		k.backoff = nil
	}
	a.setState(StateReconnecting)
	a.scheduleRetry(ctx)
}

// healthyAfter is how long a connection must last for the next reconnect
// to start over from the first attempt and the first delay.
func (a *ClientActor) healthyAfter() time.Duration {
	cfg := &a.c.cfg
	if cfg.HealthyAfter > 0 {
		return cfg.HealthyAfter
	}
	return max(DefaultHealthyAfter, cfg.ReconnectInterval)
}

func (a *ClientActor) newBackoff() retry.Backoff {
	cfg := a.c.cfg
	interval := cfg.ReconnectInterval
	if interval <= 0 {
		interval = time.Second
	}
	var b retry.Backoff
	if cfg.ReconnectStrategy == ReconnectExponential {
		b = retry.NewExponential(interval)
		if cfg.MaxReconnectInterval > 0 {
			b = retry.WithCappedDuration(cfg.MaxReconnectInterval, b)
		}
	} else {
		b = retry.NewConstant(interval)
	}
	if cfg.ReconnectJitter > 0 {
		b = retry.WithJitterPercent(uint64(cfg.ReconnectJitter*100), b)
	}
	return b
}

func (a *ClientActor) scheduleRetry(ctx actor.Context) {
	c := a.c
	k := &c.core
	if c.cfg.MaxReconnectAttempts > 0 && k.attempt >= c.cfg.MaxReconnectAttempts {
		err := fmt.Errorf("%w after %d attempts", ErrReconnectExhausted, k.attempt)
		if k.lastErr != nil {
			err = fmt.Errorf("%w (last: %w)", err, k.lastErr)
		}
		a.giveUp(err)
		return
	}
	if k.backoff == nil {
		k.backoff = a.newBackoff()
	}
	delay, _ := k.backoff.Next()
	k.attempt++
	k.delay = delay
	if f := c.cfg.Events.OnReconnecting; f != nil {
		attempt := k.attempt
		c.safeCall("OnReconnecting", func() { f(attempt, delay) })
	}
	episode := k.episode
	self := ctx.Self()
	k.timer = time.AfterFunc(delay, func() { c.sys.Root.Send(self, &retryTick{episode: episode}) })
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

func (a *ClientActor) handleInbound(in *inbound) {
	c := a.c
	l := in.l
	defer l.processed(in)
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
		if !in.resolved {
			c.reportError(fmt.Errorf("marmot: %s for unknown or expired request %d", m.Kind, m.id))
		}
		return
	}
	handle(c.tel, in, m, true, ev.OnHandleCommand, c.enterCallback, c.exitCallback)
}

func (c *Client) enterCallback() { c.inCallback.Add(1) }
func (c *Client) exitCallback()  { c.inCallback.Add(-1) }
