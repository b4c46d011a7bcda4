package actors

import (
	"time"

	"github.com/asynkron/protoactor-go/actor"
)

// The messages marmot's actors exchange with the user's actors. Any actor
// in the same actor system can send them by PID: the ServerActor's
// (Hub.PID) or a connection's (ClientInfo.PID).

// Broadcast asks the ServerActor to send Data to every client (but Except,
// when non-zero), as a command when Name is set.
type Broadcast struct {
	Name   string
	Data   []byte
	Except ClientID
}

// SendTo asks the ServerActor to send Data to one client, as a command when
// Name is set.
type SendTo struct {
	ID   ClientID
	Name string
	Data []byte
}

// Push asks a connection actor (by its ClientInfo.PID) to send Data to its
// client, as a command when Name is set. With a sender (Request or
// RequestFuture) it is answered with an *Ack. Sent to a ClientActor
// (Client.PID), it sends to the server as Send or SendCommand do, through
// the client's outbox when it has one.
type Push struct {
	Name string
	Data []byte
}

// CloseConnection asks a connection actor to close its connection with
// Code and Text.
type CloseConnection struct {
	Code int
	Text string
}

// JoinRoom asks the ServerActor to add client ID to Room (see Hub.Join).
// With a sender it is answered with an *Ack once the client is a member.
type JoinRoom struct {
	ID   ClientID
	Room string
}

// LeaveRoom asks the ServerActor to remove client ID from Room (see
// Hub.Leave). With a sender it is answered with an *Ack.
type LeaveRoom struct {
	ID   ClientID
	Room string
}

// Publish asks the ServerActor to publish Data to Room's members, as a
// command when Name is set (see Hub.Publish). With a sender it is answered
// with an *Ack whose N says how many members it was queued for.
type Publish struct {
	Room string
	Name string
	Data []byte
	// Key, when set, names the publish across nodes (see Hub.PublishKeyed).
	Key string
}

// Ack answers a Broadcast, SendTo, Push, JoinRoom, LeaveRoom or Publish
// that was sent with a sender (Request or RequestFuture); Err is nil on
// success. N is the number of recipients of a Publish.
type Ack struct {
	Err error
	N   int
}

// Connected is the first message a user's connection actor receives after
// *actor.Started, in every incarnation: Info says which connection it
// serves, Restarts how many instances before it failed (0 the first time),
// so that a fresh instance can rebuild what it needs.
type Connected struct {
	Info     ClientInfo
	Restarts int
}

// Disconnected is the last message a user's connection actor receives
// before *actor.Stopped: the connection has ended, and why.
type Disconnected struct {
	Info   ClientInfo
	Reason *CloseError
}

// userContext is the connection actor's context as its user actor sees
// it: the same actor (Self, Send, Respond, Spawn...), with the message the
// user's actor is handed.
type userContext struct {
	actor.Context
	msg any
}

// Message implements actor.Context.
func (u userContext) Message() any { return u.msg }

type shutdownRequest struct{ deadline time.Time }
