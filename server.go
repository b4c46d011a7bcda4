package marmot

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/marmotws/marmot/actors"
	"github.com/marmotws/marmot/jsclient"
	"github.com/marmotws/marmot/protocol"
)

// ServerConfig configures a Server. The zero value of every field means the
// documented default.
type ServerConfig struct {
	// Addr is the listen address for Start. Default ":8080".
	Addr string
	// Path is the WebSocket endpoint Start serves. Default "/websocket".
	// (The seed's WebSocketsURI; the seed never used it.)
	Path string
	// MaxConnections refuses upgrades beyond this many open connections
	// with HTTP 503. Default 1000; negative means unlimited.
	MaxConnections int
	// KeepAlive pings every client every KeepAlive/2; a client from which
	// nothing (data, ping or pong) has come for KeepAlive is closed, noticed
	// between KeepAlive and 1.5×KeepAlive after it was last heard. Default
	// 30s; negative disables pings.
	KeepAlive time.Duration
	// HandlerConcurrency bounds how many OnHandleCommand calls run at once
	// across all connections (the seed's ServerThreadPoolCount). Default 32;
	// negative means unbounded.
	HandlerConcurrency int
	// MaxMessageSize is the largest message accepted; a larger one closes
	// the connection with 1009. Default 1 MiB; negative means unlimited.
	MaxMessageSize int64
	// MaxQueueBytes bounds each connection's outbound backlog; a client that
	// falls further behind is closed with 4008 (slow consumer). Default 4 MiB;
	// negative means unbounded.
	MaxQueueBytes int64
	// WriteTimeout bounds one batch of writes to a socket: a batch is given
	// between WriteTimeout/2 and WriteTimeout (the deadline is moved only
	// when half of it has passed, which saves a timer update per message).
	// Default 10s.
	WriteTimeout time.Duration
	// DisableJSON refuses the marmot.json.v1 subprotocol meant for browsers.
	DisableJSON bool
	// DisableHTTPFallback turns off the HTTP fallback transport
	// (docs/HTTP.md), which serves clients whose WebSocket upgrade is
	// refused or stripped on the same path by POST and long-poll GET; its
	// requests are then answered 404. It is the seed's WebSocketsAjax
	// (default true): WebSocketsAjax=false is DisableHTTPFallback=true.
	DisableHTTPFallback bool
	// CheckOrigin vets the Origin header itself, instead of AllowedOrigins
	// and the same-origin default. A refusal is answered 403.
	CheckOrigin func(r *http.Request) bool
	// AllowedOrigins are Origin patterns let in besides same-origin, with
	// coder/websocket's OriginPatterns semantics: requests without an
	// Origin header (not browsers) and those whose Origin host equals the
	// Host header always pass; otherwise a pattern must match the Origin's
	// host ("example.com", "*.example.com"; path.Match, case-insensitive),
	// or its "scheme://host" when the pattern contains "://". A refused
	// origin is answered 403 with the reason, counted in
	// Stats.OriginRefusals and reported to OnError (ErrOriginRefused).
	AllowedOrigins []string

	// TLSConfig, when set, makes Start serve TLS (wss://). Its
	// certificates, or TLSCertFile and TLSKeyFile, are the server's.
	// Idle TLS connections keep their reader goroutine (they cannot park:
	// see docs/SECURITY.md); a TLS-terminating proxy in front keeps it.
	TLSConfig *tls.Config
	// TLSCertFile and TLSKeyFile are a PEM certificate (chain) and key
	// file for Start to serve TLS with; both or neither.
	TLSCertFile, TLSKeyFile string

	// Authenticate, when set, vets every connection before its upgrade: it
	// sees the request (headers, query, TLS state) and returns who the
	// client is, or an error: one wrapping ErrForbidden is answered 403,
	// any other 401 (with its text never sent to the client), counted in
	// Stats.AuthRefusals and reported to OnError. The Identity is in
	// ClientInfo (and so in OnJoin/OnPublish), on every Message, and its
	// UserID on spans as enduser.id; when it has an ExpiresAt the
	// connection is closed with 4001 (CloseTokenExpired) at that time.
	// Returning ErrNoCredentials with AuthenticateToken set lets the client
	// authenticate with its first message instead. Package jwtauth has a
	// ready-made one.
	Authenticate func(r *http.Request) (*Identity, error)
	// AuthenticateToken verifies the token of a client that authenticates
	// with its first message (a marmot.auth request; docs/PROTOCOL.md
	// section 7), for browsers, which cannot set headers: every client
	// when Authenticate is nil, else those for which it returned
	// ErrNoCredentials. Until then the connection gets no broadcast and no
	// targeted send (ErrNotAuthenticated), its handler nothing, and
	// OnClientConnected runs only once it has authenticated (and
	// OnClientDisconnected only for connections that did); a failure, or
	// no marmot.auth within AuthTimeout, closes it with 4503. It runs on
	// the connection's actor, its ctx bounded by AuthTimeout: keep it
	// quick (verify a signature; do not call out to slow services).
	AuthenticateToken func(ctx context.Context, token string) (*Identity, error)
	// AuthTimeout is how long a client has to send its first-message
	// authentication. Default 10s.
	AuthTimeout time.Duration
	// Limits are per-connection message and byte rates and per-IP
	// connection limits (docs/SECURITY.md); zero fields are off.
	Limits Limits
	// MaxRestarts is how many times a connection's actor may restart within
	// RestartWindow after handler panics; one more closes the connection
	// with 1011. Default 3; negative closes on the first panic.
	MaxRestarts int
	// RestartWindow is the sliding window for MaxRestarts. Default 10s.
	RestartWindow time.Duration
	// Logger receives marmot's logs. Default slog.Default().
	Logger *slog.Logger
	// LogLevel filters Logger (the seed's logging levels). Default Info.
	LogLevel slog.Level
	// ActorSystem lets connection actors live in an existing actor system.
	// Default: the server creates its own.
	ActorSystem *actor.ActorSystem
	// TracerProvider receives marmot's spans (docs/OBSERVABILITY.md).
	// Default: the global one. marmot never installs exporters itself.
	TracerProvider trace.TracerProvider
	// MeterProvider receives marmot's metrics (docs/OBSERVABILITY.md).
	// Default: the global one. protoactor's own actor metrics stay off.
	MeterProvider metric.MeterProvider
	// Propagator carries trace context inside envelopes and the upgrade
	// request. Default: W3C trace context and baggage.
	Propagator propagation.TextMapPropagator

	// ConnectionActor, when set, makes your own actor for every connection:
	// a protoactor actor that keeps the connection's state in its fields.
	// It runs as the connection's actor (ctx.Self() is ClientInfo.PID) and
	// receives, one at a time: *actor.Started, *Connected, every inbound
	// *Message, whatever other actors send its PID (ctx.Respond answers
	// them), *Disconnected (its Reason is never nil) and *actor.Stopped.
	// It answers a message with m.Reply; a *Message stays valid after the
	// turn (until m.Release), so it may be answered later, e.g. in a
	// ctx.ReenterAfter continuation. To send to its own client at any
	// time it sends *Push to ctx.Self() (queued behind the current turn).
	//
	// A panic in it restarts it: the producer makes a fresh instance (fresh
	// state) that receives *Connected again with Restarts counting up, while
	// the socket, ClientID, counters and the user-data slot (ClientInfo.Data)
	// carry on, within MaxRestarts. Messages that arrive meanwhile wait in
	// the mailbox; a fresh instance that must rebuild state before handling
	// them does so while handling *Connected. OnHandleCommand is not called
	// when it is set; the other events are. See examples/chat.
	ConnectionActor actor.Producer

	// RoomIdle is how long an empty room lives on before it ends (see
	// docs/ROOMS.md); Rooms lists it until then. Default 30s. The hooks
	// that vet clients' room requests, OnJoin and OnPublish, are in
	// ServerEvents.
	RoomIdle time.Duration
	// RoomHistory bounds the history each room keeps so that clients that
	// reconnect recover what they missed (docs/ROOMS.md); off unless
	// RoomHistory.Size > 0. In memory (the default Backend) a room's
	// history ends with the room: keep RoomIdle above the outages clients
	// should recover from. On disk (package boltstore) it outlives the
	// room and the server.
	RoomHistory HistoryConfig
	// RoomPresence, when set, turns presence on for the rooms it returns
	// true for: their members receive an event (ClientEvents.OnPresence)
	// when a client joins or leaves, and clients may ask who is in them
	// (Client.Presence). See docs/ROOMS.md.
	RoomPresence func(room string) bool
	// SessionTTL is how long a client's session (ClientConfig.OutboxBytes)
	// outlives its connection, waiting for the client to come back and
	// resume it; then it ends, and a client that comes back later starts
	// a new one (what it had sent unacknowledged is reported to it as
	// ErrSessionLost). Default 2 minutes.
	SessionTTL time.Duration
	// MaxSessions bounds the sessions the server keeps at once, attached
	// or waiting; when full, the waiting one closest to its end makes
	// room. Default 10,000; negative: no sessions (clients then have no
	// outbox: every message is handled as it comes).
	MaxSessions int

	// NodeID, when non-zero, numbers this server's clients from
	// NodeID×1,000,000,000,000 (see ClientID.Node), so that the servers of
	// a cluster, each with its own NodeID, hand out distinct ClientIDs.
	// Package cluster sets it. At most 999,999.
	NodeID uint32
	// RoomBroker, when set, carries rooms across servers: rooms publish
	// through it, and it hands each server the messages of its rooms in
	// one order (see RoomBroker). Package cluster sets it. RoomHistory
	// must be off with a broker (for now).
	RoomBroker RoomBroker
	// Compression turns on permessage-deflate (RFC 7692) for clients that
	// offer it: messages of Compression.Threshold bytes and more (128 by
	// default) go out compressed, a broadcast or room message compressed
	// once for all its recipients. Off by default; off with encryption.
	// docs/PERFORMANCE.md has what it costs and saves.
	Compression Compression

	// ActorMiddleware, when set, runs in front of every connection actor
	// and every room actor: protoactor receive middleware that sees each
	// message before the actor does, inbound frames as their *Message.
	// It is how package chaos/actorfault injects panics, delays, drops,
	// duplicates and stalls (docs/FAULTS.md); nil costs nothing.
	ActorMiddleware []actor.ReceiverMiddleware

	// EncryptionConfig is the seed's AES encryption; off by default.
	EncryptionConfig
	// ServerEvents are the per-connection callbacks.
	ServerEvents
	// OnServerStateChange runs after every server state change.
	OnServerStateChange func(old, new ServerState)
}

// ServerState is the server's lifecycle state.
type ServerState int32

// Server states, as in the seed.
const (
	ServerIdle ServerState = iota
	ServerStarting
	ServerListening
	ServerStopping
	ServerError
)

// String returns a readable name for logs and errors.
func (s ServerState) String() string {
	switch s {
	case ServerIdle:
		return "idle"
	case ServerStarting:
		return "starting"
	case ServerListening:
		return "listening"
	case ServerStopping:
		return "stopping"
	case ServerError:
		return "error"
	}
	return fmt.Sprintf("ServerState(%d)", int32(s))
}

// Server is a WebSocket server. It is an http.Handler, so it can be mounted
// in any mux instead of (or besides) listening itself with Start.
type Server struct {
	cfg ServerConfig
	log *slog.Logger
	enc *actors.Encryption
	tls *tls.Config // nil: plain ws://

	state atomic.Int32
	hub   atomic.Pointer[actors.Hub]
	// final keeps the counters of the last stopped hub, so Stats still
	// reports a finished run after Stop.
	final atomic.Pointer[Stats]

	mu        sync.Mutex // serialises Start and Stop
	extra     []route    // Handle's, mounted by Start
	httpSrv   *http.Server
	ln        net.Listener
	serveDone chan struct{}
}

// NewServer validates cfg, fills in defaults and returns a server that can
// serve requests through ServeHTTP at once; Start also listens on Addr.
func NewServer(cfg ServerConfig) (*Server, error) {
	if err := cfg.normalize(); err != nil {
		return nil, err
	}
	enc, err := cfg.serverEncryption(cfg.Logger)
	if err != nil {
		return nil, err
	}
	tlsCfg, err := cfg.serverTLS()
	if err != nil {
		return nil, err
	}
	s := &Server{cfg: cfg, log: cfg.Logger, enc: enc, tls: tlsCfg}
	s.hub.Store(s.newHub())
	return s, nil
}

func (c *ServerConfig) normalize() error {
	if c.Addr == "" {
		c.Addr = DefaultAddr
	}
	if _, _, err := net.SplitHostPort(c.Addr); err != nil {
		return fmt.Errorf("marmot: invalid Addr %q: %w", c.Addr, err)
	}
	if c.Path == "" {
		c.Path = DefaultPath
	}
	if c.Path[0] != '/' {
		c.Path = "/" + c.Path
	}
	c.MaxConnections = defaultInt(c.MaxConnections, DefaultMaxConnections)
	c.HandlerConcurrency = defaultInt(c.HandlerConcurrency, DefaultHandlerConcurrency)
	c.MaxRestarts = defaultInt(c.MaxRestarts, DefaultMaxRestarts)
	c.KeepAlive = defaultDuration(c.KeepAlive, DefaultKeepAlive)
	c.WriteTimeout = defaultDuration(c.WriteTimeout, DefaultWriteTimeout)
	c.RestartWindow = defaultDuration(c.RestartWindow, DefaultRestartWindow)
	c.MaxMessageSize = defaultInt64(c.MaxMessageSize, DefaultMaxMessageSize)
	c.MaxQueueBytes = defaultInt64(c.MaxQueueBytes, DefaultMaxQueueBytes)
	if c.WriteTimeout < 0 {
		return fmt.Errorf("marmot: WriteTimeout must be positive, got %v", c.WriteTimeout)
	}
	if c.RestartWindow < 0 {
		return fmt.Errorf("marmot: RestartWindow must be positive, got %v", c.RestartWindow)
	}
	if c.NodeID > actors.MaxNodeID {
		return fmt.Errorf("marmot: NodeID %d above %d", c.NodeID, actors.MaxNodeID)
	}
	if c.RoomBroker != nil && c.RoomHistory.Size > 0 {
		return errors.New("marmot: RoomHistory cannot be used with a RoomBroker yet")
	}
	if err := actors.ValidateOriginPatterns(c.AllowedOrigins); err != nil {
		return err
	}
	if err := c.Limits.Validate(); err != nil {
		return err
	}
	c.Logger = levelLogger(c.Logger, c.LogLevel)
	return nil
}

// levelLogger filters base (default slog.Default()) at level.
func levelLogger(base *slog.Logger, level slog.Level) *slog.Logger {
	if base == nil {
		base = slog.Default()
	}
	return slog.New(actors.LevelHandler(base.Handler(), level))
}

func (s *Server) newHub() *actors.Hub {
	c := s.cfg
	subs := protocol.Subprotocols()
	if c.DisableJSON {
		subs = []string{protocol.SubprotocolBinary}
	}
	return actors.NewHub(actors.HubConfig{
		MaxConnections:      c.MaxConnections,
		KeepAlive:           c.KeepAlive,
		WriteTimeout:        c.WriteTimeout,
		HandlerConcurrency:  c.HandlerConcurrency,
		MaxMessageSize:      c.MaxMessageSize,
		MaxQueueBytes:       c.MaxQueueBytes,
		Subprotocols:        subs,
		CheckOrigin:         c.CheckOrigin,
		AllowedOrigins:      c.AllowedOrigins,
		Authenticate:        c.Authenticate,
		AuthenticateToken:   c.AuthenticateToken,
		AuthTimeout:         c.AuthTimeout,
		Limits:              c.Limits,
		MaxRestarts:         c.MaxRestarts,
		RestartWindow:       c.RestartWindow,
		Logger:              c.Logger,
		ActorSystem:         c.ActorSystem,
		TracerProvider:      c.TracerProvider,
		MeterProvider:       c.MeterProvider,
		Propagator:          c.Propagator,
		Name:                c.Addr,
		Encryption:          s.enc,
		ConnectionActor:     c.ConnectionActor,
		RoomIdle:            c.RoomIdle,
		RoomHistory:         c.RoomHistory,
		RoomPresence:        c.RoomPresence,
		Compression:         c.Compression,
		DisableHTTPFallback: c.DisableHTTPFallback,
		SessionTTL:          c.SessionTTL,
		MaxSessions:         c.MaxSessions,
		NodeID:              c.NodeID,
		RoomBroker:          c.RoomBroker,
		ReceiverMiddleware:  c.ActorMiddleware,
		Events:              c.ServerEvents,
	})
}

// State returns the server's lifecycle state.
func (s *Server) State() ServerState { return ServerState(s.state.Load()) }

// StateDescription describes the state for humans, as the seed does.
func (s *Server) StateDescription() string {
	return fmt.Sprintf("Server is %s on %s", s.State(), s.listenAddr())
}

func (s *Server) listenAddr() string {
	if a := s.Addr(); a != nil {
		return a.String()
	}
	return s.cfg.Addr
}

func (s *Server) setState(n ServerState) {
	old := ServerState(s.state.Swap(int32(n)))
	if old == n {
		return
	}
	s.log.Debug("server state", "from", old.String(), "to", n.String())
	if f := s.cfg.OnServerStateChange; f != nil {
		defer func() {
			if r := recover(); r != nil {
				s.log.Error("OnServerStateChange panicked", "panic", fmt.Sprint(r))
			}
		}()
		f(old, n)
	}
}

// Start listens on Addr and serves Path until Stop. It returns once the
// listener is open; use Addr to learn the port when Addr ends in ":0".
func (s *Server) Start(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.httpSrv != nil {
		return errors.New("marmot: server already started")
	}
	s.setState(ServerStarting)
	if s.hub.Load() == nil {
		s.hub.Store(s.newHub())
	}
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", s.cfg.Addr)
	if err != nil {
		err = fmt.Errorf("marmot: listen on %s: %w", s.cfg.Addr, err)
		s.setState(ServerError)
		if f := s.cfg.OnError; f != nil {
			f(0, err)
		}
		return err
	}
	mux := http.NewServeMux()
	mux.Handle(s.cfg.Path, s)
	for _, name := range []string{jsclient.ScriptName, jsclient.TypesName} {
		mux.Handle(strings.TrimSuffix(s.cfg.Path, "/")+"/"+name, s)
	}
	for _, r := range s.extra {
		mux.Handle(r.pattern, r.h)
	}
	if s.tls != nil {
		ln = tls.NewListener(ln, s.tls)
	}
	s.ln = ln
	s.httpSrv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second,
		// net/http's own complaints (TLS handshake errors) go to Logger.
		ErrorLog: slog.NewLogLogger(s.log.Handler(), slog.LevelDebug)}
	s.serveDone = make(chan struct{})
	go func(srv *http.Server, done chan struct{}) {
		defer close(done)
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Error("marmot server stopped serving", "err", err)
		}
	}(s.httpSrv, s.serveDone)
	s.setState(ServerListening)
	s.log.Info("marmot server listening", "addr", ln.Addr().String(), "path", s.cfg.Path)
	return nil
}

type route struct {
	pattern string
	h       http.Handler
}

// Handle adds a handler (for example NewDashboard's) to what Start serves
// besides the endpoint, with http.ServeMux's pattern syntax; it applies
// from the next Start. A pattern that clashes with the endpoint's makes
// Start panic, as ServeMux does.
func (s *Server) Handle(pattern string, h http.Handler) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.extra = append(s.extra, route{pattern, h})
}

// Addr returns the listening address, or nil before Start.
func (s *Server) Addr() net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ln == nil {
		return nil
	}
	return s.ln.Addr()
}

// URL returns the ws:// (wss:// with TLS) URL of the endpoint, or "" before
// Start.
func (s *Server) URL() string {
	a := s.Addr()
	if a == nil {
		return ""
	}
	host, port, _ := net.SplitHostPort(a.String())
	if ip := net.ParseIP(host); ip == nil || ip.IsUnspecified() {
		host = "127.0.0.1"
	}
	scheme := "ws://"
	if s.tls != nil {
		scheme = "wss://"
	}
	return scheme + net.JoinHostPort(host, port) + s.cfg.Path
}

// Stop shuts down gracefully: no new connections, every client's queue is
// flushed and it gets 1001 Going Away, then sockets close. When ctx ends
// first the rest are dropped and ctx's error returned; a handler that
// still has not returned 2 s after that is left to finish on its own (the
// error says how many), so Stop never outlives its deadline by more.
// After Stop the server can Start again (client IDs restart at 1, as in
// the seed).
func (s *Server) Stop(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.setState(ServerStopping)
	var errs []error
	// The hub first, while the listener still serves: HTTP fallback
	// sessions fetch their 1001 close record, and answer it, by requests
	// of their own. New connections meanwhile get 503.
	if h := s.hub.Load(); h != nil {
		if err := h.Shutdown(ctx); err != nil {
			errs = append(errs, err)
		}
		s.hub.Store(nil)
		st := h.Stats()
		s.final.Store(&st)
	}
	if s.httpSrv != nil {
		// Shutdown closes the listener and waits for the requests in
		// flight; hijacked WebSocket connections were the hub's to close.
		if err := s.httpSrv.Shutdown(ctx); err != nil {
			errs = append(errs, err)
		}
	}
	if s.serveDone != nil {
		<-s.serveDone
	}
	s.httpSrv, s.ln, s.serveDone = nil, nil, nil
	s.setState(ServerIdle)
	return errors.Join(errs...)
}

// ServeHTTP upgrades r to a WebSocket connection; after Stop it answers 503.
// A GET of <Path>/marmot.js or <Path>/marmot.d.ts gets the browser client
// (package jsclient); mount the server on "<Path>/" as well as "<Path>" in
// your own mux to serve them.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if name, ok := jsclient.Match(s.cfg.Path, r.URL.Path); ok {
		jsclient.Serve(w, r, name)
		return
	}
	h := s.hub.Load()
	if h == nil {
		http.Error(w, "marmot: server stopped", http.StatusServiceUnavailable)
		return
	}
	h.ServeHTTP(w, r)
}

func (s *Server) current() (*actors.Hub, error) {
	h := s.hub.Load()
	if h == nil {
		return nil, ErrServerStopped
	}
	return h, nil
}

// SendToClient queues data for one client (the seed's SendCommandToClient):
// a raw frame, text when data is valid UTF-8, or a data envelope.
func (s *Server) SendToClient(id ClientID, data []byte) error {
	h, err := s.current()
	if err != nil {
		return err
	}
	return h.SendToClient(id, data)
}

// SendRawToClient queues a raw frame of the given type to a raw-mode client.
func (s *Server) SendRawToClient(id ClientID, t MessageType, data []byte) error {
	h, err := s.current()
	if err != nil {
		return err
	}
	return h.SendRawToClient(id, t, data)
}

// SendCommandToClient queues a named command to an envelope client.
func (s *Server) SendCommandToClient(id ClientID, name string, payload []byte) error {
	h, err := s.current()
	if err != nil {
		return err
	}
	return h.SendCommandToClient(id, name, payload)
}

// SendToClientContext is SendToClient under a "send" span parented to
// ctx's span, whose context travels with the message (envelope clients), so
// the client's process span links to it.
func (s *Server) SendToClientContext(ctx context.Context, id ClientID, data []byte) error {
	h, err := s.current()
	if err != nil {
		return err
	}
	return h.SendToClientContext(ctx, id, data)
}

// SendCommandToClientContext is SendCommandToClient under a "send NAME"
// span parented to ctx's span, whose context travels with the command.
func (s *Server) SendCommandToClientContext(ctx context.Context, id ClientID, name string, payload []byte) error {
	h, err := s.current()
	if err != nil {
		return err
	}
	return h.SendCommandToClientContext(ctx, id, name, payload)
}

// Broadcast queues data for every client (the seed's BroadcastCommand) and
// returns how many accepted it. It is encoded once per wire format.
func (s *Server) Broadcast(data []byte) (int, error) {
	h, err := s.current()
	if err != nil {
		return 0, err
	}
	return h.Broadcast(data)
}

// BroadcastContext is Broadcast with its span parented to ctx's span.
func (s *Server) BroadcastContext(ctx context.Context, data []byte) (int, error) {
	h, err := s.current()
	if err != nil {
		return 0, err
	}
	return h.BroadcastContext(ctx, data)
}

// BroadcastExcept is Broadcast to every client but one.
func (s *Server) BroadcastExcept(except ClientID, data []byte) (int, error) {
	h, err := s.current()
	if err != nil {
		return 0, err
	}
	return h.BroadcastExcept(except, data)
}

// BroadcastCommand queues a named command for every client.
func (s *Server) BroadcastCommand(name string, payload []byte) (int, error) {
	h, err := s.current()
	if err != nil {
		return 0, err
	}
	return h.BroadcastCommand(name, payload)
}

// Disconnect closes one client's connection with code and text.
func (s *Server) Disconnect(id ClientID, code int, text string) error {
	h, err := s.current()
	if err != nil {
		return err
	}
	return h.Disconnect(id, code, text)
}

// ClientCount returns the number of open connections.
func (s *Server) ClientCount() int {
	if h := s.hub.Load(); h != nil {
		return h.ClientCount()
	}
	return 0
}

// ConnectionsRemaining returns how many more connections MaxConnections
// allows, or -1 when unlimited.
func (s *Server) ConnectionsRemaining() int {
	if s.cfg.MaxConnections < 0 {
		return -1
	}
	return max(s.cfg.MaxConnections-s.ClientCount(), 0)
}

// ClientIP returns a client's remote IP address.
func (s *Server) ClientIP(id ClientID) (string, error) {
	h, err := s.current()
	if err != nil {
		return "", err
	}
	return h.ClientIP(id)
}

// Client returns a snapshot of one client.
func (s *Server) Client(id ClientID) (ClientInfo, error) {
	h, err := s.current()
	if err != nil {
		return ClientInfo{}, err
	}
	return h.Client(id)
}

// Clients returns a snapshot of every open connection, ordered by ID.
func (s *Server) Clients() []ClientInfo {
	if h := s.hub.Load(); h != nil {
		return h.Clients()
	}
	return nil
}

// Stats returns the server's counters without blocking senders. After Stop
// it returns the final counters of the run that ended; Start begins a new run
// from zero, as the seed does.
func (s *Server) Stats() Stats {
	if h := s.hub.Load(); h != nil {
		return h.Stats()
	}
	if st := s.final.Load(); st != nil {
		return *st
	}
	return Stats{}
}

// PID returns the ServerActor's PID for actors that want to send it
// *Broadcast, *SendTo, *JoinRoom, *LeaveRoom or *Publish; nil after Stop.
func (s *Server) PID() *actor.PID {
	if h := s.hub.Load(); h != nil {
		return h.PID()
	}
	return nil
}

// NewActorSystem returns a protoactor actor system set up as marmot sets
// up its own (logging through log at Warn and above, no protoactor metrics,
// a short dead-letter throttle so shutdown leaves no goroutine behind), for
// ServerConfig.ActorSystem and ClientConfig.ActorSystem when your own
// actors should live beside marmot's and outlive a server's Stop. Shut it
// down yourself once the server is stopped.
func NewActorSystem(log *slog.Logger) *actor.ActorSystem { return actors.NewActorSystem(log) }

// ActorSystem returns the actor system the connection actors run in
// (ServerConfig.ActorSystem, or the server's own); nil after Stop when the
// server made its own.
func (s *Server) ActorSystem() *actor.ActorSystem {
	if h := s.hub.Load(); h != nil {
		return h.ActorSystem()
	}
	return s.cfg.ActorSystem
}

// Config returns the configuration with defaults filled in.
func (s *Server) Config() ServerConfig { return s.cfg }
