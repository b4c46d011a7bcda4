package actors

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/sethvargo/go-retry"
	"go.opentelemetry.io/otel/codes"
	semconv "go.opentelemetry.io/otel/semconv/v1.40.0"
	"go.opentelemetry.io/otel/trace"

	"github.com/marmotws/marmot/internal/httpconn"
	"github.com/marmotws/marmot/internal/wsconn"
	"github.com/marmotws/marmot/protocol"
	"github.com/marmotws/marmot/supervisor"
)

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
	http   *httpconn.Dialer
	tel    *telemetry
	rep    reporter

	state      atomic.Int32
	inCallback atomic.Int32 // >0 while the ClientActor runs a user callback
	totals     counters
	reconnects atomic.Int64
	closed     atomic.Bool
	urls       []string       // URL, then FailoverURLs (client_failover.go)
	urlAt      atomic.Int32   // the URL dialed next, or connected to
	live       sync.WaitGroup // dial and reader goroutines

	mu      sync.Mutex
	current *link
	nextReq uint64
	pending map[uint64]chan reqResult
	// publishes maps the request ID of each unanswered Publish to its
	// room, so that a refusal can be reported to OnError with the room.
	publishes map[uint64]string
	// rooms are the rooms joined with Join and not left, with where the
	// client stands in each (re-joined after every reconnect); joins maps
	// the request ID of each unanswered join to its room.
	rooms map[string]*roomPos
	joins map[uint64]joinReq
	// codec is the envelope codec of cfg.Subprotocol (nil in raw mode);
	// out keeps what is sent with a session (client_outbox.go).
	codec protocol.Codec
	out   clientOutbox

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
	incarnation int           // ClientActor instances started so far
	lastErr     error         // the last failed attempt's error
	passErrs    []error       // a Connect's failed attempts, one per URL (without RetryFirstConnect)
	connectCtx  context.Context
	stopExpiry  func() bool // stops connectCtx's expiry notice
	connWaiters []chan error
	discWaiters []chan error
	budgetOut   atomic.Bool
}

// NewClient creates a client; it does not connect.
func NewClient(cfg ClientConfig) *Client {
	c := &Client{cfg: cfg, log: cfg.Logger, pending: make(map[uint64]chan reqResult), urls: cfg.endpoints()}
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
	c.codec, _ = protocol.Lookup(c.cfg.Subprotocol)
	c.dialer = wsconn.NewDialer(c.cfg.Subprotocol, cfg.ConnectionTimeout, cfg.TLSConfig, wsconn.Config{
		WriteTimeout: cmp.Or(max(cfg.WriteTimeout, 0), DefaultWriteTimeout),
		KeepAlive:    cfg.KeepAlive,
		ReadLimit:    cfg.MaxMessageSize,
		Compression:  cfg.Compression.transport(cfg.Encryption),
	})
	c.http = httpconn.NewDialer(c.cfg.Subprotocol, cfg.ConnectionTimeout, cmp.Or(max(cfg.WriteTimeout, 0), DefaultWriteTimeout), cfg.TLSConfig)
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
			c.rep.reportLogged(0, fmt.Errorf("%w: %w", ErrHandlerPanic, f.Err()))
		},
	})
	ready := make(chan *actor.PID, 1)
	guard := actor.PropsFromFunc(func(ctx actor.Context) {
		if _, ok := ctx.Message().(*actor.Started); ok {
			props := actor.PropsFromProducer(func() actor.Actor {
				// Every (re)start gets a fresh ClientActor and a fresh user
				// actor; the Client carries what survives.
				a := &ClientActor{c: c}
				if cfg.Actor != nil {
					a.user = cfg.Actor()
				}
				return a
			})
			if len(cfg.ReceiverMiddleware) > 0 {
				props.Configure(actor.WithReceiverMiddleware(withInbound(c.tel, cfg.ReceiverMiddleware)...))
			}
			ready <- ctx.Spawn(props)
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
// With FailoverURLs each failed attempt moves to the next URL; without
// RetryFirstConnect, Connect tries each URL once, at once
// (client_failover.go).
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

// Compressed reports whether the current connection negotiated
// permessage-deflate (see Compression); false when not connected.
func (c *Client) Compressed() bool {
	l := c.link()
	return l != nil && l.t.Compressed()
}

// Transport names the transport of the current connection: "websocket"
// or "http" (the HTTP fallback); "" when not connected.
func (c *Client) Transport() string {
	if l := c.link(); l != nil {
		return l.t.Transport()
	}
	return ""
}

func (c *Client) link() *link {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.current
}

// connected returns the current link, or ErrNotConnected unless the client
// is connected.
func (c *Client) connected() (*link, error) {
	l := c.link()
	if l == nil || c.State() != StateConnected {
		if c.codec == nil && c.cfg.AutoReconnect {
			return nil, errNoRawOutbox
		}
		return nil, ErrNotConnected
	}
	return l, nil
}

// errNoRawOutbox is ErrNotConnected for a raw-mode client that reconnects:
// raw frames have no envelope to number, so they are never kept.
var errNoRawOutbox = fmt.Errorf("%w (raw mode has no outbox: nothing is kept while reconnecting)", ErrNotConnected)

// envelopeLink is connected for what only an envelope carries (requests,
// rooms): ErrRawMode on a raw-mode connection.
func (c *Client) envelopeLink() (*link, error) {
	l, err := c.connected()
	if err == nil && l.codec == nil {
		return nil, ErrRawMode
	}
	return l, err
}

// Send queues data for the server: a raw frame (text when valid UTF-8) or a
// data envelope. It fails with ErrNotConnected while disconnected; with the
// outbox (ClientConfig.Outbox) a data envelope sent while the client
// reconnects waits for the next connection instead.
func (c *Client) Send(data []byte) error {
	if c.codec != nil {
		return c.submit(&protocol.Envelope{Kind: protocol.KindData, Payload: data})
	}
	l, err := c.connected()
	if err != nil {
		return err
	}
	return l.sendData(data)
}

// SendRaw queues a raw frame of the given type (raw mode only).
func (c *Client) SendRaw(t MessageType, data []byte) error {
	l, err := c.connected()
	if err != nil {
		return err
	}
	if l.codec != nil {
		return fmt.Errorf("marmot: connection speaks %s, not raw frames", l.codec.Subprotocol())
	}
	return l.sendRaw(t, data)
}

// SendCommand queues a named command (envelope subprotocols only). Like
// Send, it waits in the outbox while the client reconnects.
func (c *Client) SendCommand(name string, payload []byte) error {
	if name == "" {
		return ErrEmptyCommandName
	}
	if c.codec != nil {
		return c.submit(&protocol.Envelope{Kind: protocol.KindCommand, Name: name, Payload: payload})
	}
	l, err := c.connected()
	if err != nil {
		return err
	}
	return l.sendCommand(name, payload)
}

// SendContext is Send under a "send" producer span parented to ctx's span;
// with an envelope subprotocol the server's process span continues the
// trace.
func (c *Client) SendContext(ctx context.Context, data []byte) error {
	if c.codec != nil {
		return c.submitTraced(ctx, "", data)
	}
	l, err := c.connected()
	if err != nil {
		return err
	}
	return l.sendTraced(ctx, c.tel, "", data)
}

// SendCommandContext is SendCommand under a "send NAME" producer span
// parented to ctx's span; the server's process span continues the trace.
func (c *Client) SendCommandContext(ctx context.Context, name string, payload []byte) error {
	if name == "" {
		return ErrEmptyCommandName
	}
	if c.codec != nil {
		return c.submitTraced(ctx, name, payload)
	}
	l, err := c.connected()
	if err != nil {
		return err
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
//
// With the outbox (ClientConfig.Outbox), a Request made while the client
// reconnects is sent once it has, and one whose connection is lost before
// the reply is sent again on the next: it waits for its reply across
// outages, bounded by ctx. The server handles it once; if it had already
// handled it on the lost connection, the reply is lost with it and Request
// returns ErrReplyLost.
func (c *Client) Request(ctx context.Context, name string, payload []byte) ([]byte, error) {
	if name == "" {
		return nil, ErrEmptyCommandName
	}
	return c.request(ctx, name, "", payload)
}

// request is Request, with the room of a room request. Application
// requests go through the outbox; room requests (room set) belong to the
// connection and are sent on it, or refused while there is none.
func (c *Client) request(ctx context.Context, name, room string, payload []byte) ([]byte, error) {
	queued := room == "" && c.codec != nil
	var l *link
	if !queued {
		var err error
		if l, err = c.envelopeLink(); err != nil {
			return nil, err
		}
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
	e := &protocol.Envelope{Kind: protocol.KindRequest, ID: id, Name: name,
		Room: room, Payload: payload, Meta: c.tel.inject(ctx, nil)}
	var err error
	if queued {
		payload, err = c.awaitQueued(ctx, ch, e)
	} else {
		payload, err = c.awaitReply(ctx, l, ch, e)
	}
	if err != nil {
		span.RecordError(err)
		span.SetStatus(codes.Error, err.Error())
	}
	span.End()
	return payload, err
}

// awaitQueued sends request e through the outbox and waits for its answer
// on ch; a request given up before it was sent is taken out again.
func (c *Client) awaitQueued(ctx context.Context, ch chan reqResult, e *protocol.Envelope) ([]byte, error) {
	if err := c.submit(e); err != nil {
		return nil, err
	}
	defer c.unqueue(e.ID)
	return c.wait(ctx, c.link(), ch) // nil while reconnecting: nothing to flush
}

func (c *Client) awaitReply(ctx context.Context, l *link, ch chan reqResult, e *protocol.Envelope) ([]byte, error) {
	if err := l.sendEnvelope(e); err != nil {
		return nil, err
	}
	return c.wait(ctx, l, ch)
}

// wait waits for a request's answer on ch, or for ctx; l is the
// connection it went out on, if any.
func (c *Client) wait(ctx context.Context, l *link, ch chan reqResult) ([]byte, error) {
	if c.inCallback.Load() > 0 && l != nil {
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
	case protocol.KindData, protocol.KindCommand:
		if isAck(m) {
			c.acked(in.l, m.seq)
		}
		return // room positions advance as the ClientActor hands messages on
	case protocol.KindRequest:
		return // the server's own request (Server.RequestClient): its ID is the server's, not one of ours
	}
	if rec, ok := c.joinAnswered(in.l, m); ok {
		in.recovered = rec
		in.resolved = rec != nil
	}
	lost := c.answered(m.id, m.code)
	switch m.Kind {
	case protocol.KindReply:
		in.resolved = c.resolve(m.id, reqResult{payload: m.Payload}) || c.isPublish(m.id) || in.resolved
	case protocol.KindError:
		var err error = &RemoteError{Code: m.code, Message: string(m.Payload)}
		if lost {
			err = fmt.Errorf("%w (%w)", ErrReplyLost, err)
			if c.isPublish(m.id) {
				// A publish the room had taken: nothing to report.
				c.takePublish(m.id)
				in.resolved = true
				return
			}
		}
		in.resolved = c.resolve(m.id, reqResult{err: err}) || c.isPublish(m.id) || in.resolved
	}
}

// isAck reports whether m is the server's acknowledgement of the session's
// messages (protocol.AckCommand), which the client takes itself.
func isAck(m *Message) bool {
	return m.Kind == protocol.KindCommand && m.seq != 0 && m.Name == protocol.AckCommand
}

// failPending fails what waits for an answer on the connection that was
// just lost. When the client reconnects, what the outbox will send again
// (requests and publishes) keeps waiting, and so do Joins waiting for an
// automatic re-join.
func (c *Client) failPending(err error, reconnecting bool) {
	c.mu.Lock()
	for id := range c.publishes {
		if !reconnecting || !c.held(id) {
			delete(c.publishes, id) // answers on a connection that is gone never come
		}
	}
	clear(c.joins)
	if !reconnecting {
		for _, pos := range c.rooms {
			pos.settle(err)
		}
	}
	for id, ch := range c.pending {
		if reconnecting && c.held(id) {
			continue
		}
		ch <- reqResult{err: err}
		delete(c.pending, id)
		delete(c.out.byReq, id)
	}
	c.mu.Unlock()
}

func (c *Client) reportError(err error) { c.rep.report(0, err) }

func (c *Client) safeCall(what string, f func()) { c.rep.safeCall(0, what, f) }
