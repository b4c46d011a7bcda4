package actors

import (
	"github.com/asynkron/protoactor-go/actor"
)

// Receive middleware (HubConfig.ReceiverMiddleware,
// ClientConfig.ReceiverMiddleware) sees what marmot's actors receive, before
// they do: fault injection (package chaos/actorfault), tracing, logging.
//
// An inbound frame is shown to the middleware as its decoded *Message, so
// that a predicate can look at its name, payload or room; the actor still
// gets it with its bookkeeping (input budget, frame pool) settled exactly
// once however often the middleware passes it on: not at all (a dropped
// message), once, or twice (a duplicate: the handler sees the same *Message
// again, and a second Reply to a request fails with ErrAlreadyReplied).
// The middleware must call next during its own call, not later.
//
// With no middleware configured nothing of this runs: inbound frames take
// the direct path (connMailbox.direct) as before.

// redelivery is an inbound frame passed on by the middleware: the actor
// handles it without settling its bookkeeping, which withInbound does once.
type redelivery struct{ in *inbound }

// withInbound returns user wrapped for an actor that receives *inbound:
// an outer middleware that shows frames as their *Message and settles them
// once, and an inner one that turns what comes through back into a
// *redelivery. The result is per actor (its state is the frame being
// handled, and an actor handles one message at a time).
func withInbound(t *telemetry, user []actor.ReceiverMiddleware) []actor.ReceiverMiddleware {
	var cur *inbound
	outer := func(next actor.ReceiverFunc) actor.ReceiverFunc {
		return func(c actor.ReceiverContext, env *actor.MessageEnvelope) {
			in, ok := env.Message.(*inbound)
			if !ok || in.msg == nil || in.err != nil {
				next(c, env)
				return
			}
			cur = in
			defer func() {
				cur = nil
				if r := recover(); r != nil {
					// As for a handler's panic (replyOnPanic): a pending
					// request gets an error rather than its deadline.
					if m := in.msg; m.IsRequest() && !m.replied {
						_ = m.ReplyError(500, "internal error: handler failed")
						// Answered, so the client's outbox lets it go:
						// its session number must count as handled, or
						// the next one is a gap for good.
						if a, ok := c.Actor().(*ConnectionActor); ok {
							a.settleUnhandled(m)
						}
					}
					// The supervisor keeps the failed frame (its trace
					// context): it must never be reused.
					in.ref()
					in.l.processed(in)
					panic(r)
				}
				in.l.processed(in)
			}()
			if in.m.ctx == nil && len(in.m.Meta) > 0 {
				// The sender's trace, so that the middleware's spans
				// (an injected fault) join it; handle sets the process
				// span's own context later.
				in.m.ctx = t.extract(in.m.Meta)
			}
			next(c, &actor.MessageEnvelope{Header: env.Header, Message: in.msg, Sender: env.Sender})
		}
	}
	inner := func(next actor.ReceiverFunc) actor.ReceiverFunc {
		return func(c actor.ReceiverContext, env *actor.MessageEnvelope) {
			if m, ok := env.Message.(*Message); ok && cur != nil && m == cur.msg {
				env = &actor.MessageEnvelope{Header: env.Header, Message: &redelivery{in: cur}, Sender: env.Sender}
			}
			next(c, env)
		}
	}
	out := make([]actor.ReceiverMiddleware, 0, len(user)+2)
	out = append(out, outer)
	out = append(out, user...)
	return append(out, inner)
}

// ActorInfo says which of marmot's actors an actor is, for middleware that
// picks its targets (ctx.Actor() in a receive middleware).
type ActorInfo struct {
	// Kind is "connection", "room", "client" (a Client's actor), or ""
	// for an actor that is none of marmot's.
	Kind string
	// Client is a connection actor's ClientID.
	Client ClientID
	// Room is a room actor's room.
	Room string
}

// Identify returns a's ActorInfo.
func Identify(a actor.Actor) ActorInfo {
	switch a := a.(type) {
	case *ConnectionActor:
		return ActorInfo{Kind: "connection", Client: a.c.id}
	case *roomActor:
		return ActorInfo{Kind: "room", Room: a.name}
	case *ClientActor:
		return ActorInfo{Kind: "client"}
	}
	return ActorInfo{}
}

// Operation names what a room actor's message asks for ("join", "leave",
// "publish", "members"), so that middleware can pick, say, the 3rd
// publish of a room: room messages implement
//
//	interface{ Operation() string }
func (*roomJoin) Operation() string    { return "join" }
func (*roomLeave) Operation() string   { return "leave" }
func (*roomPublish) Operation() string { return "publish" }
func (*roomMembers) Operation() string { return "members" }
