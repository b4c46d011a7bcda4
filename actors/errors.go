package actors

import (
	"errors"
	"fmt"
)

// ClientID identifies one accepted connection. IDs are sequential from 1 and
// never reused while a Hub runs, as in the seed components.
type ClientID uint64

// Close codes marmot sends. The 1xxx codes are RFC 6455's; 4008 is private to
// marmot (RFC 6455 reserves 4000-4999 for applications).
const (
	CloseNormal          = 1000 // the peer or the user closed normally
	CloseGoingAway       = 1001 // the server is shutting down
	CloseProtocolError   = 1002 // malformed or unknown envelope
	CloseUnsupportedData = 1003 // a frame type the negotiated protocol does not carry
	CloseNoStatus        = 1005 // the peer sent a close frame without a code
	CloseAbnormal        = 1006 // the TCP connection ended without a close frame
	CloseInvalidPayload  = 1007 // a text frame with invalid UTF-8
	CloseMessageTooBig   = 1009 // a message over the read limit
	CloseInternalError   = 1011 // the connection's actor exhausted its restart budget
	CloseSlowConsumer    = 4008 // the outbound queue exceeded its byte bound
)

// Sentinel errors. Errors delivered to OnError and returned by methods wrap
// these, so callers can test them with errors.Is.
var (
	ErrMaxConnections   = errors.New("marmot: maximum connections reached")
	ErrClientNotFound   = errors.New("marmot: no such client")
	ErrConnectionClosed = errors.New("marmot: connection closed")
	ErrSlowConsumer     = errors.New("marmot: outbound queue exceeded its bound (slow consumer)")
	ErrUndelivered      = errors.New("marmot: messages left undelivered when the connection closed")
	ErrNotRequest       = errors.New("marmot: message is not a request")
	ErrAlreadyReplied   = errors.New("marmot: request already answered")
	ErrRawMode          = errors.New("marmot: connection is in raw mode (no envelope subprotocol)")
	ErrKeepAliveTimeout = errors.New("marmot: peer stopped answering keep-alive pings")
	ErrHandlerPanic     = errors.New("marmot: handler panicked")
	ErrMessageTooLarge  = errors.New("marmot: message exceeds the size limit")
	ErrServerStopped    = errors.New("marmot: server is not running")
	ErrNotConnected     = errors.New("marmot: client is not connected")
	ErrEmptyCommandName = errors.New("marmot: empty command name")
)

// ErrEmptyMessage is the old name of ErrEmptyCommandName.
//
// Deprecated: it never meant an empty message; use ErrEmptyCommandName.
var ErrEmptyMessage = ErrEmptyCommandName

// RemoteError is the error a peer returned for a request. Client.Request
// returns it; test it with errors.As.
type RemoteError struct {
	Code    uint32
	Message string
}

// Error implements the error interface.
func (e *RemoteError) Error() string {
	return fmt.Sprintf("marmot: remote error %d: %s", e.Code, e.Message)
}

// CloseError is how a connection ended, as seen from this side.
type CloseError struct {
	Code   int    // WebSocket close code (CloseAbnormal when no close frame was exchanged)
	Text   string // close reason text, if any
	ByPeer bool   // true when the peer initiated the close
	Err    error  // the underlying cause, if any (e.g. ErrSlowConsumer, ErrKeepAliveTimeout)
}

// Error implements the error interface.
func (e *CloseError) Error() string {
	who := "local"
	if e.ByPeer {
		who = "peer"
	}
	s := fmt.Sprintf("marmot: connection closed by %s with code %d", who, e.Code)
	if e.Text != "" {
		s += " (" + e.Text + ")"
	}
	if e.Err != nil {
		s += ": " + e.Err.Error()
	}
	return s
}

// Unwrap returns the cause.
func (e *CloseError) Unwrap() error { return e.Err }

// ClientError ties an error to the connection it happened on.
type ClientError struct {
	ClientID ClientID
	Err      error
}

// Error implements the error interface.
func (e *ClientError) Error() string { return fmt.Sprintf("client %d: %v", e.ClientID, e.Err) }

// Unwrap returns the cause.
func (e *ClientError) Unwrap() error { return e.Err }
