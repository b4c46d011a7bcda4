package protocol

// The reserved request names of the room operations a client sends. They
// are requests, not new kinds, so that the answer (ok, or a refusal with a
// code and a reason) travels as the ordinary reply or error envelope every
// peer already correlates by ID; a new kind would have needed its own
// answer. Each carries the room in Envelope.Room. The "marmot." prefix of
// request and command names is reserved for the framework: servers answer
// the names below themselves, and applications should not use the prefix.
const (
	// RequestJoin asks the server to add the sender to Room. Answered
	// with an empty reply, or an error whose payload is the reason.
	RequestJoin = "marmot.join"
	// RequestLeave asks the server to remove the sender from Room.
	// Leaving a room one is not in is not an error.
	RequestLeave = "marmot.leave"
	// RequestPublish asks the server to publish Payload to Room's members
	// (the sender included, if it is one). Answered with an empty reply
	// once the room has taken the message, or an error with the reason.
	RequestPublish = "marmot.publish"
)
