package actors

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
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

// Transport chooses how a client connects (docs/HTTP.md).
type Transport int

const (
	// TransportAuto connects over WebSocket, and over the HTTP fallback
	// when the server (or a proxy on the way) refuses or strips the
	// upgrade: any HTTP answer but 101, except 503 (the server is full)
	// and an encryption mismatch (the fallback would be refused alike).
	TransportAuto Transport = iota
	// TransportWebSocket connects over WebSocket only.
	TransportWebSocket
	// TransportHTTP connects over the HTTP fallback only.
	TransportHTTP
)

// String returns "auto", "websocket" or "http".
func (t Transport) String() string {
	switch t {
	case TransportAuto:
		return "auto"
	case TransportWebSocket:
		return "websocket"
	case TransportHTTP:
		return "http"
	}
	return fmt.Sprintf("Transport(%d)", int(t))
}

// ParseTransport reads "auto", "websocket" (or "ws") or "http".
func ParseTransport(s string) (Transport, error) {
	switch s {
	case "auto", "":
		return TransportAuto, nil
	case "websocket", "ws":
		return TransportWebSocket, nil
	case "http":
		return TransportHTTP, nil
	}
	return 0, fmt.Errorf("marmot: unknown transport %q (want auto, websocket or http)", s)
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
	// OnRecover runs when the automatic re-join of a room joined with
	// Client.Join has been answered after a reconnect: recovered, missed
	// messages follow (in order, before any live one); otherwise reason
	// says why the gap cannot be filled (see RoomRecovered) and the
	// application should resynchronise. It runs before the room's next
	// message is handled.
	OnRecover func(room string, recovered bool, missed int, reason string)
	// OnPresence runs when another client joins or leaves a room this
	// client is in, if the server turned presence on for the room (see
	// Client.Presence), in the room's order among its messages. A user
	// actor also receives it, as a *RoomPresence.
	OnPresence func(room string, client ClientID, joined bool)
	// OnReconnectFailed runs when a scheduled attempt fails to connect
	// (dial, upgrade or encryption handshake), with the attempt's number
	// and its error (which names the URL dialed); another attempt follows unless MaxReconnectAttempts
	// is reached. With RetryFirstConnect, Connect's own failed attempt is
	// reported as attempt 0 before its retries. An error that retrying
	// cannot fix (a wrong key, a mode mismatch, ErrEncryptionMismatch) is
	// not retried: it goes to OnError and the state becomes StateError.
	OnReconnectFailed func(attempt int, err error)
}

// ClientConfig configures a Client. The root package fills in the seed's
// defaults; here zero disables a limit.
type ClientConfig struct {
	URL string
	// FailoverURLs are dialed in turn after URL: a failed attempt or a
	// lost connection moves the client to the next one (client_failover.go).
	FailoverURLs         []string
	Subprotocol          string // "" for raw mode
	Transport            Transport
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
	// Outbox bounds, in bytes, what the client keeps of the messages it
	// sends (Send, SendCommand, Publish, Request) for a session: those the
	// server has not acknowledged, and those sent while it reconnects.
	// It needs AutoReconnect and an envelope subprotocol; 0: no outbox.
	Outbox         int64
	MaxRestarts    int
	RestartWindow  time.Duration
	Logger         *slog.Logger
	ActorSystem    *actor.ActorSystem
	TracerProvider trace.TracerProvider
	MeterProvider  metric.MeterProvider
	Propagator     propagation.TextMapPropagator
	// Encryption, when set, encrypts every message; it decides the
	// subprotocol (marmot.v1 for the secure profile, synopsejson for compat).
	Encryption *Encryption
	// Compression is permessage-deflate (see Compression); off by default.
	Compression Compression
	// Actor, when set, makes the user's actor the ClientActor feeds (see
	// ClientActor); OnHandleCommand is not called then, the other events
	// are.
	Actor actor.Producer
	// TLSConfig configures wss:// connections (root CAs, client
	// certificates); nil: the system's roots.
	TLSConfig *tls.Config
	// Token, when set, is asked for a token on every connect and
	// reconnect (so it may refresh one), sent as "Authorization: Bearer",
	// or as the first message with TokenInMessage.
	Token          func(ctx context.Context) (string, error)
	TokenInMessage bool
	// ReceiverMiddleware, when set, runs on the ClientActor in front of its
	// Receive (see HubConfig.ReceiverMiddleware).
	ReceiverMiddleware []actor.ReceiverMiddleware
	Events             ClientEvents
}

// ClientStats are the client's counters.
type ClientStats struct {
	BytesReceived    int64
	BytesSent        int64
	MessagesReceived int64
	MessagesSent     int64
	Reconnects       int64 // reconnect attempts made (RetryFirstConnect's retries included)
}
