package protocol

// Sessions (docs/PROTOCOL.md section 8): a client that asks for one at the
// upgrade numbers its messages (Envelope.Seq) and the server acknowledges
// them (Envelope.Ack on an AckCommand) and handles each number once, also
// when the client sends it again on a later connection of the session.
const (
	// HeaderSession is the HTTP header of the opening handshake that
	// carries sessions. A client sends "new" to ask for a session, or the
	// resume token it was last given to resume one; the server's 101
	// response carries the session's (new) resume token. A server that
	// does not answer with it grants no session.
	HeaderSession = "Marmot-Session"
	// HeaderSessionResumed is "true" on a 101 response that resumed the
	// session the client's token named. Without it the session is a new
	// one: the token was unknown, expired or already used.
	HeaderSessionResumed = "Marmot-Session-Resumed"
	// HeaderSessionSent, on a resuming upgrade request, is the highest
	// sequence number the client sent on an earlier connection of the
	// session (decimal). A server that takes the session over from a
	// lost server uses it to tell its handler which of the messages sent
	// again may have been handled before (marmot: Message.Redelivered).
	// Optional; older servers ignore it.
	HeaderSessionSent = "Marmot-Session-Sent"
	// SessionNew is the HeaderSession value that asks for a new session.
	SessionNew = "new"
	// AckCommand is the command a server acknowledges with: a command
	// envelope with this name, Ack set and nothing else. Acknowledgements
	// are cumulative: every Seq up to Ack has been handled.
	AckCommand = "marmot.ack"
	// CodeDuplicate is the error code a server answers a duplicate request
	// with: a request whose Seq was handled on an earlier connection of
	// the session, whose reply went out on that connection.
	CodeDuplicate = 409
)
