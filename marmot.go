// Package marmot is a WebSocket framework for stateful real-time apps built
// as an actor system: every connection is a supervised protoactor-go actor,
// messages can be raw frames or named commands and requests, and failures
// restart the actor without dropping the socket.
//
// A [Server] is an http.Handler: start it on its own with Start, or mount it
// in any mux. A [Client] connects, reconnects with a fixed or exponential
// backoff, and reports every state change.
//
// marmot is the Go counterpart of the Delphi "mORMot2 WebSocket Components":
// every property, statistic, event and method of those components has a Go
// name here; README.md has the table.
//
// # Threading
//
// The events of one connection run one at a time, in order, on that
// connection's actor. Different connections run concurrently, bounded by
// ServerConfig.HandlerConcurrency for OnHandleCommand. A slow callback delays
// only its own connection (and holds one concurrency slot); a panicking one
// restarts only its own connection's actor.
package marmot

import (
	"github.com/marmotws/marmot/actors"
)

// ClientID identifies a connection on a server: sequential from 1, never
// reused while the server runs.
type ClientID = actors.ClientID

// Message is an application message handed to OnHandleCommand.
type Message = actors.Message

// MessageType is a raw-mode frame type.
type MessageType = actors.MessageType

// Raw-mode frame types.
const (
	TextMessage   = actors.TextMessage
	BinaryMessage = actors.BinaryMessage
)

// Compression configures permessage-deflate (RFC 7692) on a server or a
// client: see ServerConfig.Compression and ClientConfig.Compression.
type Compression = actors.Compression

// DefaultCompressionThreshold is Compression.Threshold's default.
const DefaultCompressionThreshold = actors.DefaultCompressionThreshold

// ClientInfo is a snapshot of one server-side connection.
type ClientInfo = actors.ClientInfo

// Stats are the server's counters (the seed's seven and a few more).
type Stats = actors.Stats

// CloseError says how a connection ended.
type CloseError = actors.CloseError

// ClientError ties an error reported to OnError to a connection.
type ClientError = actors.ClientError

// RemoteError is a peer's error reply to a request.
type RemoteError = actors.RemoteError

// ServerEvents are the server's per-connection callbacks.
type ServerEvents = actors.ServerEvents

// ClientEvents are the client's callbacks.
type ClientEvents = actors.ClientEvents

// ClientState is the client's connection state.
type ClientState = actors.ClientState

// Client states.
const (
	StateDisconnected  = actors.StateDisconnected
	StateConnecting    = actors.StateConnecting
	StateConnected     = actors.StateConnected
	StateReconnecting  = actors.StateReconnecting
	StateDisconnecting = actors.StateDisconnecting
	StateError         = actors.StateError
)

// Transport chooses how a client connects: WebSocket, the HTTP fallback
// (docs/HTTP.md), or WebSocket falling back to HTTP.
type Transport = actors.Transport

// Transports.
const (
	TransportAuto      = actors.TransportAuto
	TransportWebSocket = actors.TransportWebSocket
	TransportHTTP      = actors.TransportHTTP
)

// ParseTransport reads "auto", "websocket" or "http" (the CLI's
// --transport).
func ParseTransport(s string) (Transport, error) { return actors.ParseTransport(s) }

// ReconnectStrategy chooses the delay between reconnect attempts.
type ReconnectStrategy = actors.ReconnectStrategy

// Reconnect strategies.
const (
	ReconnectFixed       = actors.ReconnectFixed
	ReconnectExponential = actors.ReconnectExponential
)

// Connected is the first message a ConnectionActor receives (after
// *actor.Started), again after every restart.
type Connected = actors.Connected

// Disconnected is the last message a ConnectionActor receives before
// *actor.Stopped.
type Disconnected = actors.Disconnected

// Push asks a connection's actor (ClientInfo.PID) to send data or a command
// to its client; with a sender it is answered with an *Ack.
type Push = actors.Push

// CloseConnection asks a connection's actor to close its connection.
type CloseConnection = actors.CloseConnection

// Broadcast asks the server's actor (Server.PID) to send to every client.
type Broadcast = actors.Broadcast

// SendTo asks the server's actor to send to one client.
type SendTo = actors.SendTo

// Ack answers Push, Broadcast and SendTo sent with a sender.
type Ack = actors.Ack

// ClientStats are the client's counters.
type ClientStats = actors.ClientStats

// Close codes marmot sends; see docs/PROTOCOL.md.
const (
	CloseNormal          = actors.CloseNormal
	CloseGoingAway       = actors.CloseGoingAway
	CloseProtocolError   = actors.CloseProtocolError
	CloseUnsupportedData = actors.CloseUnsupportedData
	CloseAbnormal        = actors.CloseAbnormal
	CloseInvalidPayload  = actors.CloseInvalidPayload
	CloseMessageTooBig   = actors.CloseMessageTooBig
	CloseInternalError   = actors.CloseInternalError
	CloseSlowConsumer    = actors.CloseSlowConsumer
	CloseSessionMoved    = actors.CloseSessionMoved
)

// Errors, testable with errors.Is.
var (
	ErrMaxConnections     = actors.ErrMaxConnections
	ErrClientNotFound     = actors.ErrClientNotFound
	ErrConnectionClosed   = actors.ErrConnectionClosed
	ErrSlowConsumer       = actors.ErrSlowConsumer
	ErrUndelivered        = actors.ErrUndelivered
	ErrNotRequest         = actors.ErrNotRequest
	ErrAlreadyReplied     = actors.ErrAlreadyReplied
	ErrRawMode            = actors.ErrRawMode
	ErrRoomFailed         = actors.ErrRoomFailed
	ErrKeepAliveTimeout   = actors.ErrKeepAliveTimeout
	ErrHandlerPanic       = actors.ErrHandlerPanic
	ErrMessageTooLarge    = actors.ErrMessageTooLarge
	ErrServerStopped      = actors.ErrServerStopped
	ErrNotConnected       = actors.ErrNotConnected
	ErrReconnectExhausted = actors.ErrReconnectExhausted
	ErrDisconnected       = actors.ErrDisconnected
	ErrClientClosed       = actors.ErrClientClosed
	ErrEmptyCommandName   = actors.ErrEmptyCommandName
	ErrBusy               = actors.ErrBusy
	ErrOutboxFull         = actors.ErrOutboxFull
	ErrSessionLost        = actors.ErrSessionLost
	ErrReplyLost          = actors.ErrReplyLost
)

// ErrEmptyMessage is the old name of ErrEmptyCommandName.
//
// Deprecated: it never meant an empty message; use ErrEmptyCommandName.
var ErrEmptyMessage = actors.ErrEmptyCommandName
