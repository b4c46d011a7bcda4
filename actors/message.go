package actors

import (
	"context"
	"fmt"

	"github.com/marmotws/marmot/protocol"
)

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
	// Room is the room a room message was published to (see Hub.Publish);
	// empty for every other message.
	Room string
	// Offset is a room message's position in its room: 1, 2, 3... in the
	// order the room's messages were published (0 when Room is empty).
	Offset uint64
	// Epoch is the room history's epoch a client's join asks to recover
	// from (server side, room requests only; see protocol.JoinResult).
	Epoch string
	// Identity is who the sender authenticated as (server side, when the
	// server authenticates; see ClientInfo.Identity). Its claims are
	// shared by every message of the connection: do not modify them.
	Identity *Identity

	ctx context.Context
	id  uint64
	// seq is the session's number the envelope carries: on the server the
	// client's sequence number (Envelope.Seq), on the client the server's
	// acknowledgement (Envelope.Ack of a marmot.ack). One field, not two,
	// keeps inbound in its allocation size class.
	seq     uint64
	code    uint32
	out     *link
	in      *inbound // the frame m and Payload live in; nil once released
	replied bool
	// Redelivered is set (server side) on a message of a session taken
	// over from a lost server (a cluster node that died) whose number the
	// client had sent there: that server may or may not have handled it
	// before it was lost. Handle it idempotently, or check it against
	// your own records. Never set on a single server, nor on a session
	// that its live server handed over.
	Redelivered bool
	// pubs counts the room publishes made on m's behalf (Hub.PublishFor):
	// the next one's index in its key. In the bools' padding.
	pubs uint16
	// root is the lineage of m's session (session.root; 0 without one):
	// with seq, what names m's publishes across a failover (PublishKey).
	root uint64
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
	if m.IsRequest() {
		if m.replied {
			return ErrAlreadyReplied
		}
		m.replied = true
	}
	return m.out.reply(m, payload)
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

// SetData stores v in the connection's user-data slot: per-connection state
// for callback handlers (a nickname, a session), which later messages of the
// same connection read with Data and ClientInfo shows. It is dropped when the
// connection ends. A user's connection actor keeps its state in its own
// fields instead.
func (m *Message) SetData(v any) {
	if m.out != nil {
		m.out.setData(v)
	}
}

// Data returns the connection's user-data slot (nil until SetData).
func (m *Message) Data() any {
	if m.out == nil {
		return nil
	}
	return m.out.data()
}
