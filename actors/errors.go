package actors

import (
	"errors"
	"fmt"
	"strings"
)

// ClientID identifies one accepted connection. IDs are sequential from 1 and
// never reused while a Hub runs, as in the seed components. On a node of a
// cluster (HubConfig.NodeID > 0) they count from NodeID×NodeIDStride, so
// that they are unique in the cluster and their decimal form names the
// node: client 7 of node 3 is 3000000000007.
type ClientID uint64

// NodeIDStride separates the ClientIDs of different nodes (see ClientID).
const NodeIDStride = 1_000_000_000_000

// MaxNodeID is the largest HubConfig.NodeID.
const MaxNodeID = 999_999

// Node returns the NodeID of the hub that accepted the client (0 outside
// a cluster).
func (id ClientID) Node() uint32 { return uint32(id / NodeIDStride) }

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
	CloseInternalError   = 1011 // the connection's actor exhausted its restart budget, or a room it was in failed (ErrRoomFailed)
	CloseSlowConsumer    = 4008 // the outbound queue exceeded its byte bound
	CloseSessionMoved    = 4009 // the client's session was resumed on a newer connection
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

// CloseError is how a connection ended, as seen from this side. Test it
// with errors.As; errors.Is sees through it to Err.
type CloseError struct {
	Code   int    // WebSocket close code (CloseAbnormal when no close frame was exchanged)
	Text   string // close reason text, if any
	ByPeer bool   // true when the peer initiated the close (or the connection broke under us)
	Err    error  // the underlying cause, if any (e.g. ErrSlowConsumer, ErrKeepAliveTimeout)

	atClient bool // seen from a Client, so the peer is "the server"
}

// Error implements the error interface. It says what happened: the
// connection was lost without a close frame (1006), the user disconnected,
// the peer closed it, or this side closed it, with the code, the reason
// text and the cause.
func (e *CloseError) Error() string {
	var b strings.Builder
	b.WriteString("marmot: ")
	peer := "the peer"
	if e.atClient {
		peer = "the server"
	}
	text, cause := e.Text, e.Err
	switch {
	case e.Code == CloseAbnormal:
		b.WriteString("connection lost without a close frame (1006)")
	case e.ByPeer && e.Code == CloseNoStatus:
		fmt.Fprintf(&b, "closed by %s without a status code (1005)", peer)
	case e.ByPeer:
		fmt.Fprintf(&b, "closed by %s with code %d", peer, e.Code)
	case errors.Is(e.Err, ErrDisconnected):
		// The user's own Disconnect: the code says it all.
		fmt.Fprintf(&b, "you disconnected (%d)", e.Code)
		text, cause = "", nil
	default:
		fmt.Fprintf(&b, "closed by this side with code %d", e.Code)
	}
	if text != "" && (cause == nil || !strings.HasPrefix(cause.Error(), text)) {
		b.WriteString(" (" + text + ")")
	}
	if cause != nil {
		b.WriteString(": " + cause.Error())
	}
	return b.String()
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
