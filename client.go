package marmot

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/marmotws/marmot/actors"
	"github.com/marmotws/marmot/protocol"
)

// ClientConfig configures a Client. The zero value of every field means the
// documented default.
type ClientConfig struct {
	// URL is the full ws:// or wss:// endpoint; when set it overrides Host,
	// Port and Path.
	URL string
	// FailoverURLs are more ws:// or wss:// endpoints of the same service
	// (other nodes of a cluster, docs/CLUSTER.md), dialed in turn after
	// URL (or Host, Port and Path): a failed connect attempt or a lost
	// connection moves the client to the next URL, round again after the
	// last; it stays on one that works. The reconnect backoff and
	// MaxReconnectAttempts count attempts over all URLs together, not
	// per URL (so MaxReconnectAttempts below the number of URLs gives up
	// before trying them all). Without RetryFirstConnect, Connect tries
	// every URL once, in turn and without delay, and fails with all their
	// errors joined. A new server does not know the client's session:
	// rooms are re-joined as after any reconnect (with Recovered=false
	// unless that server has the room's history), and what it had sent
	// without an acknowledgement is reported as ErrSessionLost
	// (docs/ROOMS.md). Settings other than the URL (subprotocol,
	// encryption, TLS, token) are the same for every URL.
	FailoverURLs []string
	// Host is the server's host name or IP. Default "localhost".
	Host string
	// Port is the server's port. Default 8080.
	Port int
	// Path is the endpoint path. Default "/websocket".
	Path string
	// Subprotocol selects the wire format: "" for raw frames,
	// "marmot.v1" (binary envelope) or "marmot.json.v1" (JSON envelope).
	// Commands and requests need an envelope.
	Subprotocol string
	// Transport chooses WebSocket, the HTTP fallback (docs/HTTP.md), or
	// (TransportAuto, the default) WebSocket falling back to HTTP when the
	// upgrade is refused or stripped by a proxy. ClientInfo.Transport
	// says which one a connection uses.
	Transport Transport
	// Header is sent with the upgrade request, or the HTTP fallback's
	// open (e.g. Authorization).
	Header http.Header
	// TLSConfig configures wss:// connections: RootCAs to trust a private
	// CA, client certificates. Default: the system's roots. A certificate
	// the client does not trust fails with ErrCertificate, which is not
	// retried. (InsecureSkipVerify turns verification off: for tests.)
	TLSConfig *tls.Config
	// Token, when set, is called for a token on every connect and
	// reconnect, so it can hand out a fresh one (after a 4001
	// CloseTokenExpired, say); it is sent as "Authorization: Bearer
	// TOKEN", or, with TokenInMessage, as the connection's first message
	// (a marmot.auth request; docs/PROTOCOL.md section 7), which is what
	// browsers must do. A 401 or 403 (ErrUnauthorized, ErrForbidden) is
	// not retried.
	Token func(ctx context.Context) (string, error)
	// TokenInMessage sends Token's token as the first message instead of
	// a header. Not with the compat encryption profile.
	TokenInMessage bool
	// ConnectionTimeout bounds each connect attempt, handshake included.
	// Default 30s.
	ConnectionTimeout time.Duration
	// AutoReconnect reconnects after a lost connection (never after
	// Disconnect, nor after close codes that mean "don't come back": 1000,
	// 1002, 1003, 1007, 1008, 1009, 1010 and 4500-4999, whether the server
	// or this client closed with them). Default off.
	AutoReconnect bool
	// RetryFirstConnect makes Connect keep trying when the server cannot be
	// reached yet, with the reconnect backoff (ReconnectStrategy,
	// ReconnectInterval, ...), until it connects, Connect's ctx ends or
	// MaxReconnectAttempts retries have failed; OnReconnectFailed and
	// OnReconnecting report the attempts (the first as attempt 0).
	// Errors that retrying cannot fix (a wrong key, ErrEncryptionMismatch)
	// end it at once. Default off: Connect returns the first attempt's
	// error. Independent of AutoReconnect, which is about connections lost
	// later.
	RetryFirstConnect bool
	// ReconnectStrategy is Fixed (the seed's rsLinear) or Exponential.
	ReconnectStrategy ReconnectStrategy
	// ReconnectInterval is the fixed delay, or the first exponential one.
	// Default 5s.
	ReconnectInterval time.Duration
	// MaxReconnectInterval caps exponential delays. Default
	// ReconnectInterval × 1024.
	MaxReconnectInterval time.Duration
	// ReconnectJitter spreads exponential delays by ± this fraction so a
	// restarted server is not hit by every client at once. Default 0.1;
	// negative disables. Fixed delays are never jittered.
	ReconnectJitter float64
	// MaxReconnectAttempts gives up (state Error, OnError with
	// ErrReconnectExhausted) after this many attempts in a row that did not
	// give a healthy connection (see HealthyAfter). 0: unlimited.
	MaxReconnectAttempts int
	// HealthyAfter is how long a connection must stay up to count as
	// healthy. Only then do the attempt count and the backoff start over:
	// a server that accepts connections and drops them at once is retried
	// with growing delays (ReconnectExponential) until MaxReconnectAttempts
	// ends it, rather than every ReconnectInterval forever. Default the
	// larger of 5s and ReconnectInterval.
	HealthyAfter time.Duration
	// KeepAlive pings the server every KeepAlive/2 and drops the connection
	// when nothing has come from it for KeepAlive (noticed between KeepAlive
	// and 1.5×KeepAlive after it was last heard). Default 30s; negative
	// disables.
	KeepAlive time.Duration
	// WriteTimeout bounds one batch of writes: a batch is given between
	// WriteTimeout/2 and WriteTimeout. Default 10s.
	WriteTimeout time.Duration
	// MaxMessageSize is the largest message accepted. Default 1 MiB.
	MaxMessageSize int64
	// MaxQueueBytes bounds the outbound backlog. Default 4 MiB.
	MaxQueueBytes int64
	// OutboxBytes bounds the client's outbox (docs/ROOMS.md, The client's
	// outbox): with AutoReconnect and an envelope subprotocol, the client
	// asks the server for a session, numbers what it sends (Send,
	// SendCommand, Publish, Request) and keeps it until the server
	// acknowledges it; what is sent while the client reconnects waits
	// there too. After a reconnect it is sent again and the server handles
	// each message once. A send that would go past the bound fails with
	// ErrOutboxFull. Default 1 MiB; negative: no outbox (sends while
	// reconnecting fail with ErrNotConnected). Raw mode has no outbox.
	OutboxBytes int64
	// MaxRestarts and RestartWindow bound ClientActor restarts after
	// callback panics. Defaults 3 and 10s.
	MaxRestarts   int
	RestartWindow time.Duration
	// Logger and LogLevel as for the server.
	Logger   *slog.Logger
	LogLevel slog.Level
	// ActorSystem lets the ClientActor live in an existing actor system.
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

	// Actor, when set, makes your own actor for the client, as
	// ServerConfig.ConnectionActor does for a server's connections: it
	// receives *actor.Started, *Connected on every connection, every inbound
	// *Message, whatever other actors send Client.PID, and *Disconnected, on
	// the ClientActor. A panic restarts it fresh; the connection carries on.
	// OnHandleCommand is not called when it is set; the other events are.
	Actor actor.Producer
	// ActorMiddleware, when set, runs in front of the client's actor (see
	// ServerConfig.ActorMiddleware); nil costs nothing.
	ActorMiddleware []actor.ReceiverMiddleware

	// Compression offers permessage-deflate (RFC 7692); used when the
	// server accepts it. Off by default; off with encryption.
	Compression Compression

	// EncryptionConfig is the seed's AES encryption; off by default. It
	// picks the subprotocol: marmot.v1 (secure) or synopsejson (compat).
	EncryptionConfig
	// ClientEvents are the callbacks.
	ClientEvents
}

// Client is a WebSocket client; its ClientActor owns the connection and the
// reconnect state machine. Its methods are safe for concurrent use.
type Client struct {
	c   *actors.Client
	cfg ClientConfig
}

// NewClient validates cfg and returns a disconnected client; call Connect.
// Call Close when done to release its actor.
func NewClient(cfg ClientConfig) (*Client, error) {
	if err := cfg.normalize(); err != nil {
		return nil, err
	}
	enc, err := cfg.clientEncryption(cfg.Logger)
	if err != nil {
		return nil, err
	}
	if cfg.TokenInMessage && cfg.Token == nil {
		return nil, fmt.Errorf("marmot: TokenInMessage needs a Token callback")
	}
	if cfg.TokenInMessage && enc != nil && enc.Subprotocol() != protocol.SubprotocolBinary {
		return nil, fmt.Errorf("marmot: TokenInMessage does not work with the %s encryption profile", cfg.EncryptionProfile)
	}
	if enc != nil && cfg.Subprotocol != "" && cfg.Subprotocol != enc.Subprotocol() {
		return nil, fmt.Errorf("marmot: Subprotocol %q cannot carry encryption (it uses %q)", cfg.Subprotocol, enc.Subprotocol())
	}
	ac := actors.NewClient(actors.ClientConfig{
		URL:                  cfg.URL,
		FailoverURLs:         cfg.FailoverURLs,
		Subprotocol:          cfg.Subprotocol,
		Transport:            cfg.Transport,
		Header:               cfg.Header,
		ConnectionTimeout:    cfg.ConnectionTimeout,
		AutoReconnect:        cfg.AutoReconnect,
		ReconnectStrategy:    cfg.ReconnectStrategy,
		ReconnectInterval:    cfg.ReconnectInterval,
		MaxReconnectInterval: cfg.MaxReconnectInterval,
		ReconnectJitter:      max(cfg.ReconnectJitter, 0),
		MaxReconnectAttempts: cfg.MaxReconnectAttempts,
		RetryFirstConnect:    cfg.RetryFirstConnect,
		HealthyAfter:         cfg.HealthyAfter,
		KeepAlive:            cfg.KeepAlive,
		WriteTimeout:         cfg.WriteTimeout,
		MaxMessageSize:       cfg.MaxMessageSize,
		MaxQueueBytes:        cfg.MaxQueueBytes,
		Outbox:               max(cfg.OutboxBytes, 0),
		MaxRestarts:          cfg.MaxRestarts,
		RestartWindow:        cfg.RestartWindow,
		Logger:               cfg.Logger,
		ActorSystem:          cfg.ActorSystem,
		TracerProvider:       cfg.TracerProvider,
		MeterProvider:        cfg.MeterProvider,
		Propagator:           cfg.Propagator,
		Encryption:           enc,
		Compression:          cfg.Compression,
		TLSConfig:            cfg.TLSConfig,
		Token:                cfg.Token,
		TokenInMessage:       cfg.TokenInMessage,
		Actor:                cfg.Actor,
		ReceiverMiddleware:   cfg.ActorMiddleware,
		Events:               cfg.ClientEvents,
	})
	return &Client{c: ac, cfg: cfg}, nil
}

func (c *ClientConfig) normalize() error {
	if c.URL == "" {
		host := c.Host
		if host == "" {
			host = DefaultClientHost
		}
		port := c.Port
		if port == 0 {
			port = DefaultClientPort
		}
		if port < 0 || port > 65535 {
			return fmt.Errorf("marmot: invalid Port %d", port)
		}
		path := c.Path
		if path == "" {
			path = DefaultPath
		}
		if path[0] != '/' {
			path = "/" + path
		}
		c.URL = "ws://" + net.JoinHostPort(host, strconv.Itoa(port)) + path
	}
	if err := checkURL("URL", c.URL); err != nil {
		return err
	}
	seen := map[string]bool{c.URL: true}
	for i, f := range c.FailoverURLs {
		name := fmt.Sprintf("FailoverURLs[%d]", i)
		if err := checkURL(name, f); err != nil {
			return err
		}
		if seen[f] {
			return fmt.Errorf("marmot: invalid %s %q: listed twice", name, f)
		}
		seen[f] = true
	}
	if c.Subprotocol != "" {
		if _, ok := protocol.Lookup(c.Subprotocol); !ok {
			return fmt.Errorf("marmot: unknown Subprotocol %q (want %q, %q or empty for raw)", c.Subprotocol, protocol.SubprotocolBinary, protocol.SubprotocolJSON)
		}
	}
	if c.Transport < TransportAuto || c.Transport > TransportHTTP {
		return fmt.Errorf("marmot: unknown Transport %d", int(c.Transport))
	}
	if c.ReconnectStrategy != ReconnectFixed && c.ReconnectStrategy != ReconnectExponential {
		return fmt.Errorf("marmot: unknown ReconnectStrategy %d", int(c.ReconnectStrategy))
	}
	if c.MaxReconnectAttempts < 0 {
		return fmt.Errorf("marmot: MaxReconnectAttempts must be >= 0, got %d", c.MaxReconnectAttempts)
	}
	c.ConnectionTimeout = defaultDuration(c.ConnectionTimeout, DefaultConnectionTimeout)
	c.ReconnectInterval = defaultDuration(c.ReconnectInterval, DefaultReconnectInterval)
	c.HealthyAfter = defaultDuration(c.HealthyAfter, max(DefaultHealthyAfter, c.ReconnectInterval))
	if c.ConnectionTimeout < 0 || c.ReconnectInterval < 0 || c.MaxReconnectInterval < 0 || c.HealthyAfter < 0 {
		return fmt.Errorf("marmot: timeouts and intervals must be positive")
	}
	if c.MaxReconnectInterval == 0 {
		c.MaxReconnectInterval = c.ReconnectInterval * DefaultMaxReconnectFactor
	}
	switch {
	case c.ReconnectStrategy == ReconnectFixed:
		c.ReconnectJitter = 0
	case c.ReconnectJitter == 0:
		c.ReconnectJitter = DefaultReconnectJitter
	case c.ReconnectJitter < 0:
		c.ReconnectJitter = 0
	case c.ReconnectJitter >= 1:
		return fmt.Errorf("marmot: ReconnectJitter must be below 1, got %v", c.ReconnectJitter)
	}
	c.KeepAlive = defaultDuration(c.KeepAlive, DefaultKeepAlive)
	c.WriteTimeout = defaultDuration(c.WriteTimeout, DefaultWriteTimeout)
	c.MaxMessageSize = defaultInt64(c.MaxMessageSize, DefaultMaxMessageSize)
	c.MaxQueueBytes = defaultInt64(c.MaxQueueBytes, DefaultMaxQueueBytes)
	c.OutboxBytes = defaultInt64(c.OutboxBytes, DefaultOutboxBytes)
	c.MaxRestarts = defaultInt(c.MaxRestarts, DefaultMaxRestarts)
	c.RestartWindow = defaultDuration(c.RestartWindow, DefaultRestartWindow)
	c.Logger = levelLogger(c.Logger, c.LogLevel)
	return nil
}

// checkURL says what is wrong with a client's URL, if anything.
func checkURL(name, s string) error {
	u, err := url.Parse(s)
	if err != nil {
		return fmt.Errorf("marmot: invalid %s %q: %w", name, s, err)
	}
	if u.Scheme != "ws" && u.Scheme != "wss" {
		return fmt.Errorf("marmot: invalid %s %q: scheme must be ws or wss", name, s)
	}
	if u.Host == "" {
		return fmt.Errorf("marmot: invalid %s %q: no host", name, s)
	}
	return nil
}

// StateDescription describes the connection state for humans.
func (c *Client) StateDescription() string { return c.State().Description() }

// URL returns the endpoint the client is connected to, or dials next:
// with FailoverURLs, the one of them it is on.
func (c *Client) URL() string { return c.c.URL() }

// Transport names the transport of the current connection: "websocket",
// or "http" for the HTTP fallback (docs/HTTP.md); "" when not connected.
func (c *Client) Transport() string { return c.c.Transport() }

// Config returns the configuration with defaults filled in.
func (c *Client) Config() ClientConfig { return c.cfg }

// PID returns the ClientActor's PID: other actors may send it *Push (to
// send to the server) or whatever the client's Actor understands.
func (c *Client) PID() *actor.PID { return c.c.PID() }

// State returns the current connection state.
func (c *Client) State() ClientState { return c.c.State() }

// Connected reports whether the client is connected (the seed's Connected).
func (c *Client) Connected() bool { return c.c.Connected() }

// Reconnecting reports whether the client is between reconnect attempts.
func (c *Client) Reconnecting() bool { return c.c.Reconnecting() }

// Compressed reports whether the current connection negotiated
// permessage-deflate (ClientConfig.Compression, when the server accepts
// it); false when not connected.
func (c *Client) Compressed() bool { return c.c.Compressed() }

// Stats returns the client's counters.
func (c *Client) Stats() ClientStats { return c.c.Stats() }

// Connect dials the server and returns once connected, or with the
// attempt's error: a failed first attempt does not start reconnecting,
// unless RetryFirstConnect is set, which keeps trying with the reconnect
// backoff until it connects, ctx ends, MaxReconnectAttempts is reached or
// the error is one retrying cannot fix. Each attempt is bounded by ctx and
// ConnectionTimeout. With FailoverURLs, a failed attempt moves on to the
// next URL: at once, each URL once, without RetryFirstConnect (the error
// then joins every URL's); with the backoff, as retries, with it.
func (c *Client) Connect(ctx context.Context) error { return c.c.Connect(ctx) }

// Disconnect closes the connection with 1000 Normal Closure after flushing
// queued messages, and cancels any reconnecting. It never triggers a
// reconnect.
func (c *Client) Disconnect(ctx context.Context) error { return c.c.Disconnect(ctx) }

// Close disconnects and releases the client's actor and goroutines; the
// client cannot be used afterwards.
func (c *Client) Close(ctx context.Context) error { return c.c.Close(ctx) }

// Send queues data for the server: a raw frame (text when valid UTF-8) or a
// data envelope. It fails with ErrNotConnected while disconnected; with the
// outbox (OutboxBytes, AutoReconnect, an envelope subprotocol) a Send while
// the client reconnects waits for the next connection instead.
func (c *Client) Send(data []byte) error { return c.c.Send(data) }

// SendRaw queues a raw frame of the given type (raw mode only).
func (c *Client) SendRaw(t MessageType, data []byte) error { return c.c.SendRaw(t, data) }

// SendCommand queues a named command (envelope subprotocols only).
func (c *Client) SendCommand(name string, payload []byte) error {
	return c.c.SendCommand(name, payload)
}

// SendContext is Send under a "send" producer span parented to ctx's span;
// with an envelope subprotocol the server's process span continues the
// trace.
func (c *Client) SendContext(ctx context.Context, data []byte) error {
	return c.c.SendContext(ctx, data)
}

// SendCommandContext is SendCommand under a "send NAME" producer span
// parented to ctx's span; the server's process span continues the trace.
func (c *Client) SendCommandContext(ctx context.Context, name string, payload []byte) error {
	return c.c.SendCommandContext(ctx, name, payload)
}

// Request sends a named request and waits for the reply or for ctx; a
// server-side error reply comes back as *RemoteError. With the outbox it
// waits across reconnects (bounded by ctx) and is handled once; a reply
// lost with its connection after the server handled it is ErrReplyLost. It may be called from
// the client's own callbacks: it then writes the request itself, and later
// events wait for the reply, so give such a Request a short deadline.
func (c *Client) Request(ctx context.Context, name string, payload []byte) ([]byte, error) {
	return c.c.Request(ctx, name, payload)
}
