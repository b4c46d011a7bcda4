package actors

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"runtime"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/gorilla/websocket"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/propagation"
	semconv "go.opentelemetry.io/otel/semconv/v1.40.0"
	"go.opentelemetry.io/otel/trace"

	"github.com/marmotws/marmot/crypto"
	"github.com/marmotws/marmot/protocol"
	"github.com/marmotws/marmot/supervisor"
)

// ServerEvents are the server's callbacks, all optional. Events of one
// connection run in order on that connection's actor; different connections
// run concurrently. A panic in OnDataReceived or OnHandleCommand restarts the
// connection's actor (the socket, ID and statistics survive); a panic in any
// other callback is recovered and reported to OnError.
type ServerEvents struct {
	// OnClientConnected runs once per connection, before any of its messages.
	OnClientConnected func(info ClientInfo)
	// OnClientDisconnected runs once per connection, after all of its
	// messages; reason says who closed it, with which code, and why.
	OnClientDisconnected func(info ClientInfo, reason *CloseError)
	// OnDataReceived sees every inbound data frame exactly as received, for
	// statistics and logging; later it will see still-encrypted bytes.
	OnDataReceived func(id ClientID, data []byte)
	// OnDataSent sees every outbound frame's payload after it was written.
	// data is only valid during the call (its buffer is reused): copy it
	// to keep it.
	OnDataSent func(id ClientID, data []byte)
	// OnHandleCommand receives every application message after decoding:
	// this is where you process data. Answer requests with m.Reply or
	// m.ReplyError. At most HandlerConcurrency calls run at once.
	OnHandleCommand func(m *Message)
	// OnError reports errors; id is 0 for errors not tied to a connection.
	OnError func(id ClientID, err error)
}

// HubConfig configures a Hub. Zero values disable a limit or take the
// default named on the field; the root package marmot fills in the seed's
// defaults before it gets here.
type HubConfig struct {
	MaxConnections     int           // <= 0: unlimited
	KeepAlive          time.Duration // <= 0: no pings, no read deadline
	WriteTimeout       time.Duration // <= 0: 10s
	HandlerConcurrency int           // <= 0: unlimited
	MaxMessageSize     int64         // <= 0: unlimited
	MaxQueueBytes      int64         // <= 0: unlimited
	Subprotocols       []string      // accepted envelope subprotocols, in preference order
	CheckOrigin        func(r *http.Request) bool
	MaxRestarts        int           // connection actor restarts allowed within RestartWindow (0: 3; < 0: none)
	RestartWindow      time.Duration // 0: 10s
	Logger             *slog.Logger
	ActorSystem        *actor.ActorSystem // nil: the hub creates and owns one
	TracerProvider     trace.TracerProvider
	// MeterProvider receives marmot's metrics (and protoactor's, when the
	// hub creates its actor system). Default: the global one.
	MeterProvider metric.MeterProvider
	// Propagator carries trace context in envelopes. Default: W3C trace
	// context and baggage.
	Propagator propagation.TextMapPropagator
	// Name labels this hub's metrics (marmot.server.name).
	Name string
	// Encryption, when set, is required of every connection: clients must
	// offer its subprotocol and, in the secure profile, pass the handshake.
	Encryption *Encryption
	Events     ServerEvents
}

// Hub accepts WebSocket connections and runs each as a ConnectionActor under
// one ServerActor. It implements http.Handler.
type Hub struct {
	cfg      HubConfig
	log      *slog.Logger
	sys      *actor.ActorSystem
	ownSys   bool
	server   *actor.PID
	upgrader websocket.Upgrader
	handlers chan struct{} // HandlerConcurrency slots
	// enterHandler and exitHandler take and give back a slot; nil when
	// HandlerConcurrency is unlimited.
	enterHandler, exitHandler func()

	nextID   atomic.Uint64
	admitted atomic.Int64

	// The registry is written only from connection actors' lifecycle and read
	// by any sender; an RWMutex keeps sends parallel.
	regMu sync.RWMutex
	conns map[ClientID]*conn
	byPID sync.Map // pid.Id -> *conn, for supervision callbacks

	// closedTotals holds the traffic of closed connections (under regMu);
	// Stats adds the open ones'.
	closedTotals counters
	totalConns   atomic.Int64
	refused      atomic.Int64
	handshakes   atomic.Int64 // failed encryption handshakes
	decrypts     atomic.Int64 // frames that failed to open
	slowCloses   atomic.Int64
	restarts     atomic.Int64

	tel        *telemetry
	metricsReg metric.Registration
	polls      *pollGroup

	lifeMu   sync.Mutex
	stopping bool
	draining atomic.Bool    // set under lifeMu with stopping; read by register
	live     sync.WaitGroup // readers (running or parked) and connection actors
}

// conn is the part of a connection that survives actor restarts.
type conn struct {
	hub         *Hub
	id          ClientID
	link        *link
	remote      net.Addr
	connectedAt time.Time
	ready       chan struct{}
	mbox        *connMailbox
	started     bool
	budgetOut   atomic.Bool
	final       *CloseError
}

func (c *conn) info() ClientInfo {
	return ClientInfo{
		ID:               c.id,
		RemoteAddr:       c.remote,
		Subprotocol:      c.link.ws.Subprotocol(),
		ConnectedAt:      c.connectedAt,
		BytesReceived:    c.link.stats.bytesIn.Load(),
		BytesSent:        c.link.stats.bytesOut.Load(),
		MessagesReceived: c.link.stats.msgsIn.Load(),
		MessagesSent:     c.link.stats.msgsOut.Load(),
	}
}

// NewHub starts the ServerActor and returns a hub ready to serve.
func NewHub(cfg HubConfig) *Hub {
	if cfg.WriteTimeout <= 0 {
		cfg.WriteTimeout = 10 * time.Second
	}
	if cfg.Encryption != nil {
		cfg.Subprotocols = []string{cfg.Encryption.Subprotocol()}
	} else if cfg.Subprotocols == nil {
		cfg.Subprotocols = protocol.Subprotocols()
	}
	h := &Hub{cfg: cfg, log: cfg.Logger, conns: make(map[ClientID]*conn)}
	if h.log == nil {
		h.log = slog.New(slog.DiscardHandler)
	}
	if cfg.HandlerConcurrency > 0 {
		h.handlers = make(chan struct{}, cfg.HandlerConcurrency)
		h.enterHandler = func() { h.handlers <- struct{}{} }
		h.exitHandler = func() { <-h.handlers }
	}
	h.tel = newTelemetry(cfg.TracerProvider, cfg.MeterProvider, cfg.Propagator)
	h.polls = newPollGroup(parkTick)
	h.sys = cfg.ActorSystem
	if h.sys == nil {
		h.sys = NewActorSystem(h.log)
		h.ownSys = true
	}
	h.registerHubMetrics()
	h.upgrader = websocket.Upgrader{
		Subprotocols: cfg.Subprotocols,
		CheckOrigin:  cfg.CheckOrigin,
		// Idle connections stay cheap: gorilla's own read buffer is small
		// (frameConn reads through a pooled 4 KiB buffer while input
		// flows), and write buffers come from a pool only while a message
		// is being written. The write buffer must hold the usual message:
		// gorilla writes a frame that does not fit as two buffers, and
		// through frameConn (not a *net.TCPConn) that is two write
		// syscalls instead of one writev.
		ReadBufferSize:  256,
		WriteBufferSize: 4096,
		WriteBufferPool: &writeBuffers,
		Error: func(w http.ResponseWriter, r *http.Request, status int, reason error) {
			http.Error(w, "marmot: websocket upgrade failed: "+reason.Error(), status)
		},
	}
	strategy := supervisor.New(supervisor.Config{
		MaxRestarts:    cfg.MaxRestarts,
		Window:         cfg.RestartWindow,
		ActorKind:      "connection",
		TracerProvider: cfg.TracerProvider,
		Logger:         h.log,
		Attributes: func(child *actor.PID) []attribute.KeyValue {
			if c := h.connByPID(child); c != nil {
				return []attribute.KeyValue{attribute.Int64("marmot.client.id", int64(c.id))}
			}
			return nil
		},
		OnFailure: h.onFailure,
	})
	props := actor.PropsFromProducer(func() actor.Actor { return &ServerActor{hub: h} }, actor.WithSupervisor(strategy))
	h.server = h.sys.Root.Spawn(props)
	return h
}

// writeBuffers is shared by every hub's connections.
var writeBuffers sync.Pool

// NewActorSystem returns a protoactor system that logs through log at Warn
// and above, so actor-system chatter does not drown the application's logs.
//
// protoactor's WithMetricProviders is deliberately not used: this protoactor
// version records to the global meter whatever provider it is given, and
// registers a never-removed callback per spawned actor (a leak).
func NewActorSystem(log *slog.Logger) *actor.ActorSystem {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	// A short dead-letter throttle interval keeps protoactor's throttle
	// goroutine from outliving a shut-down system by a whole second.
	opts := []actor.ConfigOption{
		actor.WithDeadLetterThrottleInterval(50 * time.Millisecond),
		actor.WithLoggerFactory(func(*actor.ActorSystem) *slog.Logger {
			return slog.New(LevelHandler(log.Handler(), slog.LevelWarn)).With("lib", "protoactor")
		}),
	}
	return actor.NewActorSystem(opts...)
}

// LevelHandler returns h without the records below min.
func LevelHandler(h slog.Handler, min slog.Level) slog.Handler {
	return minLevelHandler{Handler: h, min: min}
}

// minLevelHandler raises a handler's threshold; it must wrap WithAttrs and
// WithGroup too, or a derived logger would lose the filter.
type minLevelHandler struct {
	slog.Handler
	min slog.Level
}

func (m minLevelHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= m.min && m.Handler.Enabled(ctx, l)
}

func (m minLevelHandler) WithAttrs(a []slog.Attr) slog.Handler {
	return minLevelHandler{Handler: m.Handler.WithAttrs(a), min: m.min}
}

func (m minLevelHandler) WithGroup(name string) slog.Handler {
	return minLevelHandler{Handler: m.Handler.WithGroup(name), min: m.min}
}

// PID returns the ServerActor's PID. Other actors may send it *Broadcast
// and *SendTo messages.
func (h *Hub) PID() *actor.PID { return h.server }

// ActorSystem returns the actor system the hub runs in.
func (h *Hub) ActorSystem() *actor.ActorSystem { return h.sys }

func (h *Hub) connByPID(pid *actor.PID) *conn {
	if pid == nil {
		return nil
	}
	if v, ok := h.byPID.Load(pid.Id); ok {
		return v.(*conn)
	}
	return nil
}

func (h *Hub) onFailure(f supervisor.Failure) {
	c := h.connByPID(f.Child)
	var id ClientID
	if c != nil {
		id = c.id
	}
	if f.Directive == actor.RestartDirective {
		h.restarts.Add(1)
	}
	if f.BudgetExhausted && c != nil {
		c.budgetOut.Store(true)
	}
	h.reportError(id, fmt.Errorf("%w: %w", ErrHandlerPanic, f.Err()))
}

func (h *Hub) reportError(id ClientID, err error) {
	h.log.Warn("marmot error", "client", uint64(id), "err", err)
	if h.cfg.Events.OnError == nil {
		return
	}
	defer func() {
		if r := recover(); r != nil {
			h.log.Error("OnError callback panicked", "panic", fmt.Sprint(r))
		}
	}()
	if id != 0 {
		err = &ClientError{ClientID: id, Err: err}
	}
	h.cfg.Events.OnError(id, err)
}

// safeCall runs a callback whose panic must not restart the actor.
func (h *Hub) safeCall(id ClientID, what string, f func()) {
	defer func() {
		if r := recover(); r != nil {
			h.reportError(id, fmt.Errorf("%w: %s: %v", ErrHandlerPanic, what, r))
		}
	}()
	f()
}

// ServeHTTP upgrades the request to a WebSocket connection and serves it
// until it closes. Over MaxConnections it answers 503 without upgrading.
func (h *Hub) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h.lifeMu.Lock()
	if h.stopping {
		h.lifeMu.Unlock()
		http.Error(w, "marmot: server is shutting down", http.StatusServiceUnavailable)
		return
	}
	h.live.Add(1)
	h.lifeMu.Unlock()
	defer h.live.Done()

	// The client's traceparent header, if any, puts the upgrade in its trace.
	// With tracing off, the span and its attributes are not even built
	// (a cost per connect otherwise).
	span := trace.SpanFromContext(context.Background()) // records nothing
	if !h.tel.tracesOff() {
		remote := h.tel.prop.Extract(r.Context(), propagation.HeaderCarrier(r.Header))
		_, span = h.tel.tracer.Start(remote, "marmot.upgrade", trace.WithSpanKind(trace.SpanKindServer),
			trace.WithAttributes(append(append(peerAttrs(remoteAddr(r.RemoteAddr)), serverAttrs(r.Host)...),
				semconv.URLPathKey.String(r.URL.Path))...))
	}
	spanOpen := true
	endSpan := func(reason string, err error) {
		if !spanOpen {
			return
		}
		spanOpen = false
		if reason != "" {
			span.SetAttributes(AttrRefusalReason.String(reason))
			span.SetStatus(codes.Error, reason)
		}
		if err != nil {
			span.RecordError(err)
		}
		span.End()
	}
	defer endSpan("", nil)

	if !h.admit() {
		endSpan("max_connections", nil)
		h.refused.Add(1)
		msg := fmt.Sprintf("marmot: server at capacity (%d connections)", h.cfg.MaxConnections)
		w.Header().Set("Retry-After", "5")
		http.Error(w, msg, http.StatusServiceUnavailable)
		h.reportError(0, fmt.Errorf("%w: refused %s (limit %d)", ErrMaxConnections, r.RemoteAddr, h.cfg.MaxConnections))
		return
	}
	if reason, err := refuseEncryption(w, r, h.cfg.Encryption); err != nil {
		h.admitted.Add(-1)
		h.handshakes.Add(1)
		endSpan(reason, err)
		h.reportError(0, err)
		return
	}
	hw := &hijackFrames{ResponseWriter: w}
	ws, err := h.upgrader.Upgrade(hw, r, nil)
	if err != nil {
		h.admitted.Add(-1)
		endSpan("upgrade_failed", err)
		h.reportError(0, fmt.Errorf("marmot: upgrade from %s failed: %w", r.RemoteAddr, err))
		return
	}
	span.SetAttributes(AttrSubprotocol.String(ws.Subprotocol()), AttrEncrypted.Bool(h.cfg.Encryption != nil))
	var sess *crypto.Session
	if enc := h.cfg.Encryption; enc != nil && enc.Profile == crypto.ProfileSecure {
		if sess, err = serverHandshake(ws, enc); err != nil {
			h.admitted.Add(-1)
			h.handshakes.Add(1)
			endSpan("handshake_failed", err)
			h.reportError(0, fmt.Errorf("marmot: client %s: %w", r.RemoteAddr, err))
			_ = ws.Close()
			return
		}
	}
	c := &conn{
		hub:         h,
		id:          ClientID(h.nextID.Add(1)),
		remote:      ws.RemoteAddr(),
		connectedAt: time.Now(),
		ready:       make(chan struct{}),
		mbox:        newConnMailbox(),
	}
	c.mbox.direct = (&ConnectionActor{c: c}).receiveDirect
	c.link = newLink(ws, h.sys, linkConfig{
		maxQueue:     h.cfg.MaxQueueBytes,
		writeTimeout: h.cfg.WriteTimeout,
		keepAlive:    h.cfg.KeepAlive,
		readLimit:    h.cfg.MaxMessageSize,
		inflight:     max(h.cfg.MaxMessageSize, 1<<20),
	})
	c.link.sess = sess
	c.link.fc = hw.fc
	c.link.enableParking(c.id, h.polls)
	c.link.mbox = c.mbox // before the actor is known to senders
	c.link.keepRaw = h.cfg.Events.OnDataReceived != nil
	if f := h.cfg.Events.OnDataSent; f != nil {
		id := c.id
		c.link.onSent = func(b []byte) { h.safeCall(id, "OnDataSent", func() { f(id, b) }) }
	}
	if enc := h.cfg.Encryption; enc != nil && enc.Profile == crypto.ProfileCompat {
		c.link.compat = enc.Compat
	}
	h.totalConns.Add(1)
	h.live.Add(1) // the connection actor, until Stopped
	h.sys.Root.Send(h.server, &spawnConnection{c: c})
	<-c.ready
	span.SetAttributes(AttrClientID.Int64(int64(c.id)))
	endSpan("", nil)
	h.live.Add(1) // the reader, until it stops for good
	l := c.link
	l.startReader(c.id, nil, func(err error) {
		h.sys.Root.Send(l.pid, &linkLost{err: err})
		h.live.Done()
	})
}

// hijackFrames hands gorilla a frameConn instead of the raw connection, so
// that idle readers can park (see frameconn.go). gorilla v1.5 upgrades
// through the http.Hijacker interface, which this wrapper provides.
type hijackFrames struct {
	http.ResponseWriter
	fc *frameConn
}

func (w *hijackFrames) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	c, brw, err := http.NewResponseController(w.ResponseWriter).Hijack()
	if err != nil {
		return nil, nil, err
	}
	w.fc = newFrameConn(c)
	return w.fc, brw, nil
}

func remoteAddr(s string) net.Addr {
	a, err := net.ResolveTCPAddr("tcp", s)
	if err != nil {
		return nil
	}
	return a
}

func offers(r *http.Request, sub string) bool {
	for _, s := range websocket.Subprotocols(r) {
		if s == sub {
			return true
		}
	}
	return false
}

func (h *Hub) admit() bool {
	for {
		n := h.admitted.Load()
		if h.cfg.MaxConnections > 0 && n >= int64(h.cfg.MaxConnections) {
			return false
		}
		if h.admitted.CompareAndSwap(n, n+1) {
			return true
		}
	}
}

// register adds c to the registry and reports whether the hub is already
// draining. Shutdown sets draining before it snapshots the registry, so a
// connection either is in that snapshot or sees draining here: none is missed.
func (h *Hub) register(c *conn) (draining bool) {
	h.byPID.Store(c.link.pid.Id, c)
	h.regMu.Lock()
	h.conns[c.id] = c
	draining = h.draining.Load()
	h.regMu.Unlock()
	return draining
}

func (h *Hub) unregister(c *conn) {
	h.regMu.Lock()
	delete(h.conns, c.id)
	h.closedTotals.add(&c.link.stats) // final: the actor has stopped
	h.regMu.Unlock()
	h.byPID.Delete(c.link.pid.Id)
	h.admitted.Add(-1)
}

func (h *Hub) lookup(id ClientID) (*conn, error) {
	h.regMu.RLock()
	c := h.conns[id]
	h.regMu.RUnlock()
	if c == nil {
		return nil, fmt.Errorf("%w: %d", ErrClientNotFound, id)
	}
	return c, nil
}

// SendToClient queues data for one client: a raw frame (text when data is
// valid UTF-8, else binary) or a data envelope, depending on what the client
// negotiated.
func (h *Hub) SendToClient(id ClientID, data []byte) error {
	c, err := h.lookup(id)
	if err != nil {
		return err
	}
	return c.link.sendData(data)
}

// SendToClientContext is SendToClient under a "send" producer span
// parented to ctx's span; an envelope client's process span links to it.
func (h *Hub) SendToClientContext(ctx context.Context, id ClientID, data []byte) error {
	c, err := h.lookup(id)
	if err != nil {
		return err
	}
	return c.link.sendTraced(ctx, h.tel, "", data, AttrClientID.Int64(int64(id)))
}

// SendCommandToClientContext is SendCommandToClient under a "send NAME"
// producer span parented to ctx's span; the client's process span links to
// it.
func (h *Hub) SendCommandToClientContext(ctx context.Context, id ClientID, name string, payload []byte) error {
	if name == "" {
		return ErrEmptyMessage
	}
	c, err := h.lookup(id)
	if err != nil {
		return err
	}
	return c.link.sendTraced(ctx, h.tel, name, payload, AttrClientID.Int64(int64(id)))
}

// SendRawToClient queues a raw frame of the given type; it fails with
// ErrRawMode's opposite when the client negotiated an envelope.
func (h *Hub) SendRawToClient(id ClientID, t MessageType, data []byte) error {
	c, err := h.lookup(id)
	if err != nil {
		return err
	}
	if c.link.codec != nil {
		return fmt.Errorf("marmot: client %d speaks %s, not raw frames", id, c.link.codec.Subprotocol())
	}
	return c.link.sendRaw(t, data)
}

// SendCommandToClient queues a named command; the client must have
// negotiated an envelope subprotocol.
func (h *Hub) SendCommandToClient(id ClientID, name string, payload []byte) error {
	c, err := h.lookup(id)
	if err != nil {
		return err
	}
	return c.link.sendCommand(name, payload)
}

// Broadcast queues data for every client and returns how many accepted it.
// The data is encoded once per wire format and shared by all recipients.
func (h *Hub) Broadcast(data []byte) (int, error) {
	return h.broadcast(context.Background(), 0, "", data)
}

// BroadcastContext is Broadcast with the broadcast span parented to ctx's.
func (h *Hub) BroadcastContext(ctx context.Context, data []byte) (int, error) {
	return h.broadcast(ctx, 0, "", data)
}

// BroadcastExcept is Broadcast without the client except (usually the sender).
func (h *Hub) BroadcastExcept(except ClientID, data []byte) (int, error) {
	return h.broadcast(context.Background(), except, "", data)
}

// BroadcastCommand queues a named command for every envelope client; raw
// clients receive the payload alone.
func (h *Hub) BroadcastCommand(name string, payload []byte) (int, error) {
	if name == "" {
		return 0, ErrEmptyMessage
	}
	return h.broadcast(context.Background(), 0, name, payload)
}

// preparedSet lazily encodes a broadcast once per wire format.
type preparedSet struct {
	name  string
	meta  map[string]string
	data  []byte
	raw   *outFrame
	byEnv map[string]*outFrame
}

func (p *preparedSet) frameFor(codec protocol.Codec) (*outFrame, error) {
	if codec == nil {
		if p.raw == nil {
			typ := rawFrameType(0, p.data)
			p.raw = &outFrame{typ: typ, data: p.data, frame: serverFrame(typ, p.data)}
		}
		return p.raw, nil
	}
	if f := p.byEnv[codec.Subprotocol()]; f != nil {
		return f, nil
	}
	env := protocol.Envelope{Kind: protocol.KindData, Payload: p.data, Meta: p.meta}
	if p.name != "" {
		env.Kind, env.Name = protocol.KindCommand, p.name
	}
	buf, err := codec.Append(nil, &env)
	if err != nil {
		return nil, err
	}
	if p.byEnv == nil {
		p.byEnv = make(map[string]*outFrame, 2)
	}
	f := &outFrame{typ: codec.MessageType(), data: buf, frame: serverFrame(codec.MessageType(), buf)}
	p.byEnv[codec.Subprotocol()] = f
	return f, nil
}

func (h *Hub) broadcast(ctx context.Context, except ClientID, name string, data []byte) (n int, err error) {
	ctx, span := h.tel.tracer.Start(ctx, "broadcast", trace.WithSpanKind(trace.SpanKindProducer),
		trace.WithAttributes(sendAttrs("broadcast", name, len(data))...))
	defer func() {
		span.SetAttributes(AttrFanout.Int(n), semconv.MessagingBatchMessageCountKey.Int(n))
		if err != nil {
			span.RecordError(err)
			span.SetStatus(codes.Error, err.Error())
		}
		span.End()
		h.tel.fanout.Record(ctx, int64(n))
	}()
	// Receivers link their process spans to this one through the envelope.
	set := preparedSet{name: name, data: data, meta: h.tel.inject(ctx, nil)}
	h.regMu.RLock()
	defer h.regMu.RUnlock()
	for id, c := range h.conns {
		if id == except {
			continue
		}
		f, err := set.frameFor(c.link.codec)
		if err != nil {
			return n, err
		}
		if c.link.send(*f) == nil {
			n++
		}
	}
	return n, nil
}

// Disconnect closes one client's connection with code and text.
func (h *Hub) Disconnect(id ClientID, code int, text string) error {
	c, err := h.lookup(id)
	if err != nil {
		return err
	}
	h.sys.Root.Send(c.link.pid, &closeRequest{code: code, text: text})
	return nil
}

// ClientCount returns the number of open connections.
func (h *Hub) ClientCount() int {
	h.regMu.RLock()
	defer h.regMu.RUnlock()
	return len(h.conns)
}

// ClientIP returns a client's remote IP address.
func (h *Hub) ClientIP(id ClientID) (string, error) {
	c, err := h.lookup(id)
	if err != nil {
		return "", err
	}
	return c.info().IP(), nil
}

// Client returns a snapshot of one client.
func (h *Hub) Client(id ClientID) (ClientInfo, error) {
	c, err := h.lookup(id)
	if err != nil {
		return ClientInfo{}, err
	}
	return c.info(), nil
}

// Clients returns a snapshot of every open connection, ordered by ID.
func (h *Hub) Clients() []ClientInfo {
	h.regMu.RLock()
	out := make([]ClientInfo, 0, len(h.conns))
	for _, c := range h.conns {
		out = append(out, c.info())
	}
	h.regMu.RUnlock()
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// Stats returns the counters; it reads atomics and never blocks senders.
//
// The traffic totals are summed over the open connections (plus those
// already closed) rather than kept in hub-wide counters: a counter every
// connection bumps per message is one cache line fought over by every core.
func (h *Hub) Stats() Stats {
	h.regMu.RLock()
	n := len(h.conns)
	var t counterValues
	t.addFrom(&h.closedTotals)
	for _, c := range h.conns {
		t.addFrom(&c.link.stats)
	}
	h.regMu.RUnlock()
	return Stats{
		ClientCount:            n,
		TotalConnections:       h.totalConns.Load(),
		TotalActiveConnections: int64(n),
		TotalBytesReceived:     t.bytesIn,
		TotalBytesSent:         t.bytesOut,
		TotalMessagesReceived:  t.msgsIn,
		TotalMessagesSent:      t.msgsOut,
		RefusedConnections:     h.refused.Load(),
		HandshakeFailures:      h.handshakes.Load(),
		DecryptFailures:        h.decrypts.Load(),
		SlowConsumerCloses:     h.slowCloses.Load(),
		ActorRestarts:          h.restarts.Load(),
	}
}

// Shutdown stops accepting connections, flushes every client's queue, closes
// each with 1001 Going Away and waits for them to end. When ctx expires first
// the remaining sockets are dropped; Shutdown still returns only after every
// goroutine it started has ended, with ctx's error.
func (h *Hub) Shutdown(ctx context.Context) error {
	h.lifeMu.Lock()
	if h.stopping {
		h.lifeMu.Unlock()
		return nil
	}
	h.stopping = true
	h.draining.Store(true)
	h.lifeMu.Unlock()

	deadline, ok := ctx.Deadline()
	if !ok {
		deadline = time.Now().Add(30 * time.Second)
	}
	h.regMu.RLock()
	all := make([]*conn, 0, len(h.conns))
	for _, c := range h.conns {
		all = append(all, c)
	}
	h.regMu.RUnlock()
	for _, c := range all {
		h.sys.Root.Send(c.link.pid, &shutdownRequest{deadline: deadline})
	}
	done := make(chan struct{})
	go func() { h.live.Wait(); close(done) }()
	var err error
	select {
	case <-done:
	case <-ctx.Done():
		err = ctx.Err()
		h.regMu.RLock()
		for _, c := range h.conns {
			c.link.closeSocket()
		}
		h.regMu.RUnlock()
		// Readers end with their sockets; an actor stuck in a handler
		// does not. Past the caller's deadline, wait closeGrace for them,
		// then return rather than hang: those actors finish on their own
		// once their handlers return.
		select {
		case <-done:
		case <-time.After(closeGrace):
			h.regMu.RLock()
			busy := len(h.conns)
			h.regMu.RUnlock()
			err = fmt.Errorf("%w: %d connection(s) still inside a handler", err, busy)
		}
	}
	if h.metricsReg != nil {
		_ = h.metricsReg.Unregister()
	}
	select {
	case <-done:
		_ = h.sys.Root.StopFuture(h.server).Wait()
	default:
		h.sys.Root.Stop(h.server) // its stuck children would hold StopFuture
	}
	if h.ownSys {
		h.sys.Shutdown()
	}
	return err
}

type spawnConnection struct{ c *conn }

type shutdownRequest struct{ deadline time.Time }

// Broadcast asks the ServerActor to send Data to every client (but Except,
// when non-zero), as a command when Name is set.
type Broadcast struct {
	Name   string
	Data   []byte
	Except ClientID
}

// SendTo asks the ServerActor to send Data to one client, as a command when
// Name is set.
type SendTo struct {
	ID   ClientID
	Name string
	Data []byte
}

// ServerActor is the registry's actor: it spawns and supervises one
// ConnectionActor per socket and routes Broadcast and SendTo messages from
// other actors, answering each with an *Ack when it has a sender.
type ServerActor struct {
	hub *Hub
}

// Receive implements actor.Actor.
func (s *ServerActor) Receive(ctx actor.Context) {
	switch m := ctx.Message().(type) {
	case *spawnConnection:
		c := m.c
		props := actor.PropsFromProducer(func() actor.Actor { return &ConnectionActor{c: c} },
			actor.WithMailbox(func() actor.Mailbox { return c.mbox }))
		ctx.SpawnPrefix(props, fmt.Sprintf("conn-%d-", c.id))
	case *Broadcast:
		_, err := s.hub.broadcast(context.Background(), m.Except, m.Name, m.Data)
		if ctx.Sender() != nil {
			ctx.Respond(&Ack{Err: err})
		}
	case *SendTo:
		var err error
		if m.Name != "" {
			err = s.hub.SendCommandToClient(m.ID, m.Name, m.Data)
		} else {
			err = s.hub.SendToClient(m.ID, m.Data)
		}
		if ctx.Sender() != nil {
			ctx.Respond(&Ack{Err: err})
		}
	}
}

// Ack answers a Broadcast or SendTo that was sent with a sender (Request or
// RequestFuture); Err is nil on success.
type Ack struct{ Err error }

// ConnectionActor owns one socket: it is the socket's only writer and runs
// the user's callbacks for that connection, one message at a time.
type ConnectionActor struct {
	c *conn
}

// Receive implements actor.Actor.
func (a *ConnectionActor) Receive(ctx actor.Context) {
	c := a.c
	h := c.hub
	ev := &h.cfg.Events
	switch m := ctx.Message().(type) {
	case *actor.Started:
		if c.started {
			return // a restart: the socket and its state carry on
		}
		c.started = true
		c.link.pid = ctx.Self()
		draining := h.register(c)
		close(c.ready)
		c.link.startKeepAlive()
		if draining {
			ctx.Send(ctx.Self(), &shutdownRequest{deadline: time.Now().Add(closeGrace)})
		}
		h.log.Debug("client connected", "client", uint64(c.id), "remote", c.remote.String(), "subprotocol", c.link.ws.Subprotocol())
		if ev.OnClientConnected != nil {
			h.safeCall(c.id, "OnClientConnected", func() { ev.OnClientConnected(c.info()) })
		}
	case *flushSignal:
		a.flush(time.Time{})
	case *inbound:
		a.handleInbound(m)
	case *closeRequest:
		if errors.Is(m.cause, ErrSlowConsumer) {
			h.slowCloses.Add(1)
		}
		if m.cause != nil {
			h.reportError(c.id, m.cause)
		}
		c.link.startClose(m.code, m.text, m.cause, time.Time{})
	case *shutdownRequest:
		a.flush(m.deadline)
		c.link.startClose(CloseGoingAway, "server shutting down", nil, m.deadline)
	case *linkLost:
		c.final = c.link.closeErrorFrom(m.err)
		if c.final.ByPeer {
			a.answerPeerClose(c.final)
		}
		ctx.Stop(ctx.Self())
	case *actor.Stopping:
		if c.budgetOut.Load() {
			c.link.startClose(CloseInternalError, "restart budget exhausted", supervisor.ErrRestartBudgetExhausted, time.Time{})
		} else {
			c.link.startClose(CloseGoingAway, "connection actor stopped", nil, time.Time{})
		}
	case *actor.Stopped:
		c.mbox.stopped.Store(true)
		a.teardown()
	}
}

// receiveDirect handles the per-message traffic straight from the mailbox
// (see connMailbox.direct); the rest goes through Receive.
func (a *ConnectionActor) receiveDirect(msg any) bool {
	switch m := msg.(type) {
	case *inbound:
		a.handleInbound(m)
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

func (a *ConnectionActor) onSent() func([]byte) { return a.c.link.onSent }

func (a *ConnectionActor) flush(deadline time.Time) {
	_ = a.c.link.flush(deadline, a.onSent())
}

func (a *ConnectionActor) answerPeerClose(ce *CloseError) {
	a.c.link.answerPeerClose(ce, a.onSent())
}

func (a *ConnectionActor) handleInbound(in *inbound) {
	c := a.c
	h := c.hub
	ev := &h.cfg.Events
	defer c.link.processed(in)
	c.link.beginTurn()
	defer c.link.endTurn(a.onSent())
	c.link.received(in.size)
	if ev.OnDataReceived != nil {
		ev.OnDataReceived(c.id, in.data)
	}
	m, code, err := in.msg, int(in.code), in.err
	if err == nil && (m.Kind == protocol.KindReply || m.Kind == protocol.KindError) {
		code, err = CloseProtocolError, fmt.Errorf("%w: unexpected %s envelope: the server sent no request", protocol.ErrInvalidEnvelope, m.Kind)
	}
	if err != nil {
		if errors.Is(err, ErrDecryptFailed) {
			h.decrypts.Add(1)
		}
		h.reportError(c.id, err)
		c.link.startClose(code, err.Error(), err, time.Time{})
		return
	}
	handle(h.tel, in, m, false, ev.OnHandleCommand, h.enterHandler, h.exitHandler)
}

func (a *ConnectionActor) teardown() {
	c := a.c
	h := c.hub
	c.link.stopKeepAlive()
	c.link.cancel()
	if n := c.link.drop(); n > 0 {
		h.reportError(c.id, fmt.Errorf("%w: %d", ErrUndelivered, n))
	}
	c.link.release()
	h.unregister(c)
	reason := c.final
	if reason == nil {
		reason = c.link.closeInfo()
	}
	if reason == nil {
		reason = &CloseError{Code: CloseAbnormal}
	}
	h.log.Debug("client disconnected", "client", uint64(c.id), "code", reason.Code, "by_peer", reason.ByPeer)
	if f := h.cfg.Events.OnClientDisconnected; f != nil {
		info := c.info()
		h.safeCall(c.id, "OnClientDisconnected", func() { f(info, reason) })
	}
	h.live.Done()
}
