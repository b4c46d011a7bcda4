package actors

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/marmotws/marmot/protocol"
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
	ErrEmptyMessage     = errors.New("marmot: empty command name")
)

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

// MessageType says how a raw-mode message travelled.
type MessageType int

// Raw-mode frame types, numbered like gorilla/websocket's.
const (
	TextMessage   MessageType = 1
	BinaryMessage MessageType = 2
)

// String returns a readable name for logs and errors.
func (t MessageType) String() string {
	switch t {
	case TextMessage:
		return "text"
	case BinaryMessage:
		return "binary"
	}
	return fmt.Sprintf("MessageType(%d)", int(t))
}

// ClientInfo is a snapshot of one server-side connection.
type ClientInfo struct {
	ID               ClientID
	RemoteAddr       net.Addr
	Subprotocol      string // "" for raw mode
	ConnectedAt      time.Time
	BytesReceived    int64
	BytesSent        int64
	MessagesReceived int64
	MessagesSent     int64
}

// IP returns the remote IP address as text, or "" when unknown.
func (c ClientInfo) IP() string {
	if c.RemoteAddr == nil {
		return ""
	}
	if host, _, err := net.SplitHostPort(c.RemoteAddr.String()); err == nil {
		return host
	}
	return c.RemoteAddr.String()
}

// Stats holds the seed's seven server counters.
type Stats struct {
	ClientCount            int   // connections open now
	TotalConnections       int64 // connections accepted since start
	TotalActiveConnections int64 // same as ClientCount, kept for the seed's name
	TotalBytesReceived     int64 // wire payload bytes of data messages received
	TotalBytesSent         int64 // wire payload bytes of data messages sent
	TotalMessagesReceived  int64
	TotalMessagesSent      int64
	// RefusedConnections counts upgrades refused because MaxConnections was reached.
	RefusedConnections int64
	// HandshakeFailures counts connections refused by the encryption
	// requirement or its handshake.
	HandshakeFailures int64
	// DecryptFailures counts encrypted frames that failed to open.
	DecryptFailures int64
	// SlowConsumerCloses counts connections closed because their queue overflowed.
	SlowConsumerCloses int64
	// ActorRestarts counts connection actor restarts after a handler panic.
	ActorRestarts int64
}

// Message is one application message, as handed to OnHandleCommand after
// decoding. m and its Payload belong to the handler and stay valid after it
// returns, unless the handler gives them back with Release.
type Message struct {
	// ClientID is the sender on the server side; 0 on the client side.
	ClientID ClientID
	// Kind is protocol.KindData for raw-mode messages.
	Kind protocol.Kind
	// Type is the frame type a raw-mode message travelled in.
	Type MessageType
	// Name is the command name of a command or request envelope.
	Name string
	// Payload is the application data.
	Payload []byte
	// Meta holds the envelope's string headers (nil in raw mode).
	Meta map[string]string

	ctx     context.Context
	id      uint64
	code    uint32
	out     *link
	in      *inbound // the frame m and Payload live in; nil once released
	replied bool
}

// Release gives m and the storage of its Payload back to marmot, which
// reuses them for later messages: a handler that releases every message
// makes no garbage per message on a busy connection. Releasing is
// optional; an unreleased message is left to the garbage collector.
//
// Call Release last: afterwards neither m nor Payload (nor any slice of
// it, nor the data OnDataReceived saw for this frame) may be used. A
// Reply made before Release is safe, since a reply that is queued rather
// than written at once keeps the payload until it is written; data passed to Send, SendToClient or
// Broadcast is not tracked, so copy it first or do not release. A second
// Release does nothing.
func (m *Message) Release() {
	if in := m.in; in != nil {
		m.in = nil
		in.unref()
	}
}

// Context returns the context of the message's process span, so a handler
// can start child spans or pass it to calls that take a context. It carries
// no deadline.
func (m *Message) Context() context.Context {
	if m.ctx == nil {
		return context.Background()
	}
	return m.ctx
}

// IsRequest reports whether the sender waits for Reply or ReplyError.
func (m *Message) IsRequest() bool { return m.Kind == protocol.KindRequest }

// Reply answers m on the connection it came from: a request gets a reply
// envelope with its correlation ID; any other message gets payload back in the
// same form it arrived (same frame type in raw mode, same kind and name in
// the envelope protocols), which makes an echo one call.
//
// Called by a server handler while nothing else is queued for the
// connection, Reply writes the frame before it returns (an error then says
// the connection failed); otherwise it queues the frame behind the others.
func (m *Message) Reply(payload []byte) error {
	if m.out == nil {
		return ErrConnectionClosed
	}
	l := m.out
	// Usually this is the handler answering during its turn: then the
	// reply is written at once rather than at the end of the turn (see
	// link.writeNow).
	now := l.mbox != nil && l.inTurn.Load() // server links only
	if m.IsRequest() {
		if m.replied {
			return ErrAlreadyReplied
		}
		m.replied = true
		return l.sendEnvelopeNow(&protocol.Envelope{Kind: protocol.KindReply, ID: m.id, Payload: payload}, now)
	}
	if l.codec == nil {
		// payload is usually m.Payload, so a queued reply holds m's frame
		// until written, in case the handler releases m.
		return l.post(outFrame{typ: rawFrameType(m.Type, payload), data: payload}, m.in, now)
	}
	return l.sendEnvelopeNow(&protocol.Envelope{Kind: m.Kind, Name: m.Name, Payload: payload}, now)
}

// ReplyError answers a request with an error; the requester's Request call
// returns a *RemoteError carrying code and text.
func (m *Message) ReplyError(code uint32, text string) error {
	if !m.IsRequest() {
		return ErrNotRequest
	}
	if m.replied {
		return ErrAlreadyReplied
	}
	if m.out == nil {
		return ErrConnectionClosed
	}
	m.replied = true
	return m.out.sendEnvelope(&protocol.Envelope{Kind: protocol.KindError, ID: m.id, Code: code, Payload: []byte(text)})
}

// String summarises the counters in one line, like the seed's GetServerStats.
func (st Stats) String() string {
	return fmt.Sprintf("clients=%d total_connections=%d bytes_in=%d bytes_out=%d msgs_in=%d msgs_out=%d refused=%d",
		st.ClientCount, st.TotalConnections, st.TotalBytesReceived, st.TotalBytesSent,
		st.TotalMessagesReceived, st.TotalMessagesSent, st.RefusedConnections)
}
