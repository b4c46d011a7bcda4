package marmot

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/marmotws/marmot/actors"
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
	// one order (see RoomBroker). Package cluster sets it. With a
	// broker, RoomHistory's bounds apply to the history the broker keeps
	// (RoomBroker.History), and its Backend must be nil.
	RoomBroker RoomBroker
	// SessionStore, when set, lets clients' sessions follow them to other
	// servers (ClientConfig.FailoverURLs): a client that moves resumes its
	// session and outbox there (see SessionStore). Package cluster sets
	// it. Nil: a session lives on its server only.
	SessionStore SessionStore
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
	if c.RoomBroker != nil && c.RoomHistory.Backend != nil {
		return errors.New("marmot: RoomHistory.Backend cannot be used with a RoomBroker: the broker keeps the history")
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
