package actorfault

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/marmotws/marmot/actors"
)

// Kind is what a rule does to the messages it picks.
type Kind int

// The faults.
const (
	// Panic panics in the actor before it sees the message: the
	// supervisor restarts it (a connection keeps its socket), or closes
	// the connection once the restart budget is spent. The message is
	// lost with the failed incarnation.
	Panic Kind = iota + 1
	// Delay makes the actor wait Rule.Delay before it handles the
	// message; what arrives meanwhile waits behind it (order is kept).
	Delay
	// Drop loses the message: the actor never sees it.
	Drop
	// Duplicate hands the actor the message twice in a row.
	Duplicate
	// Stall blocks the actor before the message until Rule.Release is
	// closed (or the rule is removed, or the Injector closed): a handler
	// that hangs.
	Stall
)

func (k Kind) String() string {
	switch k {
	case Panic:
		return "panic"
	case Delay:
		return "delay"
	case Drop:
		return "drop"
	case Duplicate:
		return "duplicate"
	case Stall:
		return "stall"
	}
	return fmt.Sprintf("Kind(%d)", int(k))
}

// ErrBadRule reports a rule Add cannot take.
var ErrBadRule = errors.New("actorfault: bad rule")

// ErrInjected is what an injected panic unwraps to, so that OnError (and
// supervisor.Failure.Err) tell it from a real one with errors.Is.
var ErrInjected = errors.New("chaos: injected fault")

// Rule says which messages of which actors get which fault.
//
// The Nth message: Skip N-1, Times 1. Every message: Skip 0, Times 0.
type Rule struct {
	// Actors picks the actors (see Connection, Room, Client); nil: all
	// of marmot's actors the middleware runs on.
	Actors func(actors.ActorInfo) bool
	// Match picks the messages; nil: application messages (Messages).
	// Lifecycle messages (*actor.Started, Stopping, Stopped, Restarting)
	// never match.
	Match func(msg any) bool
	// Skip lets this many matching messages through before the first
	// fault; Times bounds the faults injected (0: no bound). Both count
	// over every actor the rule picks.
	Skip, Times int
	// Fault is what happens to a picked message.
	Fault Kind
	// Delay is how long a Delay fault waits.
	Delay time.Duration
	// Release ends a Stall fault when closed; nil: only removing the rule
	// or closing the Injector ends it.
	Release <-chan struct{}
	// Context, when set, parents the faults' spans (say, your test's
	// span); by default they join the message's own trace, if it has one.
	Context context.Context
}

func (r *Rule) validate() error {
	switch r.Fault {
	case Panic, Drop, Duplicate, Stall:
	case Delay:
		if r.Delay <= 0 {
			return fmt.Errorf("%w: Delay fault with Delay %v", ErrBadRule, r.Delay)
		}
	default:
		return fmt.Errorf("%w: unknown fault %v", ErrBadRule, r.Fault)
	}
	if r.Skip < 0 || r.Times < 0 {
		return fmt.Errorf("%w: negative Skip (%d) or Times (%d)", ErrBadRule, r.Skip, r.Times)
	}
	return nil
}

// Connection picks the connection actor of client id.
func Connection(id actors.ClientID) func(actors.ActorInfo) bool {
	return func(w actors.ActorInfo) bool { return w.Kind == "connection" && w.Client == id }
}

// Connections picks every connection actor.
func Connections() func(actors.ActorInfo) bool {
	return func(w actors.ActorInfo) bool { return w.Kind == "connection" }
}

// Room picks the actor of the room called name.
func Room(name string) func(actors.ActorInfo) bool {
	return func(w actors.ActorInfo) bool { return w.Kind == "room" && w.Room == name }
}

// Client picks a Client's actor (install the middleware with
// ClientConfig.ActorMiddleware of the clients you mean).
func Client() func(actors.ActorInfo) bool {
	return func(w actors.ActorInfo) bool { return w.Kind == "client" }
}

// Messages matches application messages: every inbound *marmot.Message of
// a connection or client actor, and every operation (join, leave,
// publish, members) of a room actor.
func Messages(msg any) bool {
	switch msg.(type) {
	case *actors.Message, operation:
		return true
	}
	return false
}

// Named matches inbound messages with this command or request name.
func Named(name string) func(any) bool {
	return func(msg any) bool {
		m, ok := msg.(*actors.Message)
		return ok && m.Name == name
	}
}

// Op matches a room actor's operation: "join", "leave", "publish" or
// "members".
func Op(op string) func(any) bool {
	return func(msg any) bool {
		o, ok := msg.(operation)
		return ok && o.Operation() == op
	}
}

// operation is what a room actor's messages implement.
type operation interface{ Operation() string }
