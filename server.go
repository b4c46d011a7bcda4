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

	"github.com/marmotws/marmot/actors"
	"github.com/marmotws/marmot/jsclient"
	"github.com/marmotws/marmot/protocol"
)

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
	// stoppedHub is the last stopped hub, which still hands over the
	// sessions it stopped with (HandOverSession) until Start.
	stoppedHub atomic.Pointer[actors.Hub]

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
		SessionStore:        c.SessionStore,
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
	s.stoppedHub.Store(nil)
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
		if s.cfg.SessionStore != nil {
			// HandOverSession, until Start; before the hub is cleared,
			// so that it always finds one of the two.
			s.stoppedHub.Store(h)
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
