package actors

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/marmotws/marmot/internal/httpconn"
	"github.com/marmotws/marmot/internal/netpoll"
	"github.com/marmotws/marmot/internal/wsconn"
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
	// OnDataReceived sees every inbound data frame exactly as received
	// (still encrypted, when the connection encrypts), for statistics and
	// logging, before OnHandleCommand.
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
	// OnJoin vets a client's request to join a room (Client.Join): return
	// an error to refuse it, and its text reaches the client as the
	// reason. It runs on the connection's actor, in order with the
	// connection's messages. Hub.Join is not put to it.
	OnJoin func(info ClientInfo, room string) error
	// OnPublish vets a client's publish to a room (Client.Publish), as
	// OnJoin does joins. payload is only valid during the call. Hub.Publish
	// is not put to it.
	OnPublish func(info ClientInfo, room string, payload []byte) error
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
	// CheckOrigin, when set, vets the Origin header instead of
	// AllowedOrigins and the same-origin default.
	CheckOrigin func(r *http.Request) bool
	// AllowedOrigins are the Origin patterns let in besides same-origin
	// (see AuthorizeOrigin). A refused origin is answered 403.
	AllowedOrigins []string
	// Authenticate vets every new connection before its upgrade (see
	// ServerConfig.Authenticate); nil lets everyone in anonymously.
	Authenticate func(r *http.Request) (*Identity, error)
	// AuthenticateToken verifies the token of a first-message
	// authentication (see ServerConfig.AuthenticateToken).
	AuthenticateToken func(ctx context.Context, token string) (*Identity, error)
	// AuthTimeout bounds the wait for the first-message authentication
	// (<= 0: DefaultAuthTimeout).
	AuthTimeout time.Duration
	// Limits are the per-connection and per-IP rate limits; zero: none.
	Limits         Limits
	MaxRestarts    int           // connection actor restarts allowed within RestartWindow (0: 3; < 0: none)
	RestartWindow  time.Duration // 0: 10s
	Logger         *slog.Logger
	ActorSystem    *actor.ActorSystem // nil: the hub creates and owns one
	TracerProvider trace.TracerProvider
	// MeterProvider receives marmot's metrics. Default: the global one.
	// (protoactor's own actor metrics stay off: see NewActorSystem.)
	MeterProvider metric.MeterProvider
	// Propagator carries trace context in envelopes. Default: W3C trace
	// context and baggage.
	Propagator propagation.TextMapPropagator
	// Name labels this hub's metrics (marmot.server.name).
	Name string
	// Encryption, when set, is required of every connection: clients must
	// offer its subprotocol and, in the secure profile, pass the handshake.
	Encryption *Encryption
	// ConnectionActor, when set, makes the user's actor for every
	// connection (and again, fresh, after every restart): it receives
	// *Connected, every inbound *Message, whatever other actors send the
	// connection's PID, and *Disconnected, as the connection actor's own
	// messages (see ConnectionActor). OnHandleCommand is not called then;
	// the other events are.
	ConnectionActor actor.Producer
	// RoomIdle is how long an empty room lives on before its actor stops
	// (<= 0: DefaultRoomIdle). A message published to it meanwhile starts
	// the wait again.
	RoomIdle time.Duration
	// RoomHistory bounds the history each room keeps for members that
	// reconnect (off unless Size > 0). In memory (a nil Backend) a room's
	// history ends with the room: keep RoomIdle above the outages clients
	// should recover from; a persistent Backend keeps it.
	RoomHistory HistoryConfig
	// RoomPresence, when set, says which rooms have presence (see
	// docs/ROOMS.md): their members are sent an event when a client
	// joins or leaves, and clients may ask who is in them. It is asked
	// once when a room starts, and for each client's presence request.
	RoomPresence func(room string) bool
	// NodeID, when non-zero, makes this hub's ClientIDs count from
	// NodeID×NodeIDStride (see ClientID), unique among the nodes of a
	// cluster that each have their own NodeID. At most MaxNodeID.
	NodeID uint32
	// RoomBroker, when set, carries rooms across hubs (see RoomBroker):
	// rooms publish through it instead of numbering their messages
	// themselves, and it keeps their history (RoomHistory's bounds; no
	// Backend with a broker).
	RoomBroker RoomBroker
	// Compression is permessage-deflate (see Compression); off by default.
	Compression Compression
	// DisableHTTPFallback turns the HTTP fallback transport off
	// (docs/HTTP.md): its requests are answered 404.
	DisableHTTPFallback bool
	// SessionTTL is how long a client's session outlives its connection,
	// waiting for the client to resume it (docs/ROOMS.md, The client's
	// outbox); <= 0: DefaultSessionTTL.
	SessionTTL time.Duration
	// MaxSessions bounds the sessions kept at once, attached or waiting
	// (0: DefaultMaxSessions; < 0: no sessions, clients get none).
	MaxSessions int
	// SessionStore, when set, lets sessions follow their clients to other
	// hubs (see SessionStore; package cluster sets it). Nil: sessions are
	// this hub's alone.
	SessionStore SessionStore
	// ReceiverMiddleware, when set, runs on every connection actor and
	// every room actor in front of its Receive (protoactor receive
	// middleware: fault injection, tracing, logging; see middleware.go for
	// how inbound frames look to it). Nil costs nothing: frames then take
	// the direct path.
	ReceiverMiddleware []actor.ReceiverMiddleware
	Events             ServerEvents
}

// Hub accepts WebSocket connections and runs each as a ConnectionActor under
// one ServerActor. It implements http.Handler.
type Hub struct {
	cfg HubConfig
	log *slog.Logger
	// fullPath sends inbound frames through protoactor's actor context
	// (for the user's connection actor, or receive middleware) rather
	// than the mailbox's direct path.
	fullPath     bool
	sys          *actor.ActorSystem
	ownSys       bool
	server       *actor.PID
	acceptor     *wsconn.Acceptor
	httpSessions *httpconn.Server // nil: the HTTP fallback is off
	handlers     chan struct{}    // HandlerConcurrency slots
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
	// Screening's and the limits' counters (screen.go, limits.go).
	originRefusals atomic.Int64
	ipRefusals     atomic.Int64
	authRefusals   atomic.Int64
	expiredCloses  atomic.Int64
	rateLimited    atomic.Int64
	ips            *ipTable     // nil: no per-IP limit
	decrypts       atomic.Int64 // frames that failed to open
	slowCloses     atomic.Int64
	restarts       atomic.Int64

	// The live rooms by name (see roomRef); roomsClosed is set by Shutdown.
	roomMu      sync.Mutex
	rooms       map[string]*roomEntry
	roomsClosed bool

	sessions *sessions // clients' sessions (session.go)

	tel        *telemetry
	rep        reporter
	metricsReg metric.Registration

	lifeMu   sync.Mutex
	stopping bool
	draining atomic.Bool    // set under lifeMu with stopping; read by register
	live     sync.WaitGroup // readers (running or parked) and connection actors
}

// NewHub starts the ServerActor and returns a hub ready to serve.
func NewHub(cfg HubConfig) *Hub {
	if cfg.WriteTimeout <= 0 {
		cfg.WriteTimeout = DefaultWriteTimeout
	}
	if cfg.Encryption != nil {
		cfg.Subprotocols = []string{cfg.Encryption.Subprotocol()}
	} else if cfg.Subprotocols == nil {
		cfg.Subprotocols = protocol.Subprotocols()
	}
	h := &Hub{cfg: cfg, log: cfg.Logger, conns: make(map[ClientID]*conn), rooms: make(map[string]*roomEntry),
		sessions: newSessions(cfg.SessionTTL, cfg.MaxSessions)}
	h.nextID.Store(uint64(cfg.NodeID) * NodeIDStride)
	h.sessions.store = cfg.SessionStore
	h.sessions.nextID = sessionIDs(cfg.NodeID)
	h.fullPath = cfg.ConnectionActor != nil || len(cfg.ReceiverMiddleware) > 0
	if h.log == nil {
		h.log = slog.New(slog.DiscardHandler)
	}
	if cfg.HandlerConcurrency > 0 {
		h.handlers = make(chan struct{}, cfg.HandlerConcurrency)
		h.enterHandler = func() { h.handlers <- struct{}{} }
		h.exitHandler = func() { <-h.handlers }
	}
	h.tel = newTelemetry(cfg.TracerProvider, cfg.MeterProvider, cfg.Propagator, AttrSide.String("server"), AttrServerName.String(cfg.Name))
	h.rep = reporter{log: h.log, tel: h.tel, onError: cfg.Events.OnError}
	h.sys = cfg.ActorSystem
	if h.sys == nil {
		h.sys = NewActorSystem(h.log)
		h.ownSys = true
	}
	h.registerHubMetrics()
	h.ips = newIPTable(cfg.Limits.ConnectionsPerSecondPerIP, cfg.Limits.ConnectionBurstPerIP, cfg.Limits.MaxConnectionsPerIP)
	// Origins are checked by screen, before the upgrade.
	acceptAll := func(*http.Request) bool { return true }
	h.acceptor = wsconn.NewAcceptor(cfg.Subprotocols, acceptAll,
		func(w http.ResponseWriter, r *http.Request, status int, reason error) {
			http.Error(w, "marmot: websocket upgrade failed: "+reason.Error(), status)
		},
		wsconn.Config{WriteTimeout: cfg.WriteTimeout, KeepAlive: cfg.KeepAlive, ReadLimit: cfg.MaxMessageSize, ParkTick: parkTick,
			Compression: cfg.Compression.transport(cfg.Encryption)})
	if !cfg.DisableHTTPFallback {
		idle := cfg.KeepAlive
		if idle <= 0 {
			idle = httpconn.DefaultIdleTimeout
		}
		h.httpSessions = httpconn.NewServer(cfg.Subprotocols, acceptAll, httpconn.Config{
			WriteTimeout: cfg.WriteTimeout, IdleTimeout: idle, ReadLimit: cfg.MaxMessageSize, MaxQueueBytes: cfg.MaxQueueBytes,
		})
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

// DefaultWriteTimeout is the WriteTimeout a zero HubConfig or ClientConfig
// gets.
const DefaultWriteTimeout = 10 * time.Second

// parkTick is how often idle readers are looked for (see netpoll); tests
// shorten it.
var parkTick = netpoll.DefaultTick

// NewActorSystem returns a protoactor system that logs through log at Warn
// and above, so actor-system chatter does not drown the application's logs.
//
// protoactor's WithMetricProviders is deliberately not used: this protoactor
// version records to the global meter whatever provider it is given, and
// registers a never-removed callback per spawned actor (a leak).
//
// Its process registry has 512 maps rather than protoactor's 32,768, whose
// emptied maps kept ~9 MiB of heap in a long-running server (see
// registryBuckets).
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
	sys := actor.NewActorSystem(opts...)
	compactProcessRegistry(sys) // see registryBuckets
	return sys
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

// PID returns the ServerActor's PID. Other actors may send it *Broadcast,
// *SendTo, *JoinRoom, *LeaveRoom and *Publish messages.
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
	// The supervisor has logged the failure (Config.Logger).
	h.rep.reportLogged(id, fmt.Errorf("%w: %w", ErrHandlerPanic, f.Err()))
}

func (h *Hub) reportError(id ClientID, err error) { h.rep.report(id, err) }

// safeCall runs a callback whose panic must not restart the actor.
func (h *Hub) safeCall(id ClientID, what string, f func()) { h.rep.safeCall(id, what, f) }
