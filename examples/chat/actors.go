package main

import (
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/marmotws/marmot"
)

// askTimeout bounds every question a member asks the room. The room answers
// at once, so it only fires if the room is gone.
const askTimeout = 5 * time.Second

// The messages members send the room. Each names the member by its
// connection PID, which survives the member's restarts, so the room's
// membership does too.
type (
	join struct {
		pid  *actor.PID
		nick string
	}
	leave struct{ pid *actor.PID }
	say   struct{ nick, text string }
	// who is answered with the members' nicks, sorted ([]string).
	who struct{}
	// whoami is answered with the nick pid joined with ("" if none), so
	// that a restarted member can recover it (string).
	whoami struct{ pid *actor.PID }
)

// room keeps the members and fans the conversation out to them. Being one
// actor, it orders the conversation: it pushes every line to every member
// in the order it handles the says, and a connection writes what it is
// sent in order, so every client sees the same conversation.
type room struct {
	nicks map[string]string     // connection PID's Id → nick
	pids  map[string]*actor.PID // connection PID's Id → PID
}

func newRoom() actor.Actor {
	return &room{nicks: map[string]string{}, pids: map[string]*actor.PID{}}
}

// Receive implements actor.Actor.
func (r *room) Receive(ctx actor.Context) {
	switch m := ctx.Message().(type) {
	case *join:
		// A second nick from the same connection is a rename.
		r.nicks[m.pid.Id], r.pids[m.pid.Id] = m.nick, m.pid
	case *leave:
		delete(r.nicks, m.pid.Id)
		delete(r.pids, m.pid.Id)
	case *say:
		// One Push per member, sharing line: a connection copies what it
		// sends into its own frame, and nobody modifies line.
		line := []byte(m.nick + ": " + m.text)
		for _, pid := range r.pids {
			ctx.Send(pid, &marmot.Push{Name: "said", Data: line})
		}
	case *who:
		nicks := make([]string, 0, len(r.nicks))
		for _, n := range r.nicks {
			nicks = append(nicks, n)
		}
		slices.Sort(nicks)
		ctx.Respond(nicks)
	case *whoami:
		ctx.Respond(r.nicks[m.pid.Id])
	}
}

// member is the actor of one connection: marmot runs it as the connection's
// own actor (ctx.Self() is the connection's PID), one message at a time, so
// its fields need no locks. A panic replaces it with a fresh member: the
// fields are lost, the socket is not.
type member struct {
	room *actor.PID
	log  *slog.Logger

	id   marmot.ClientID
	nick string
	sent int // says since this instance started: a restart resets it
}

// Receive implements actor.Actor.
func (a *member) Receive(ctx actor.Context) {
	switch m := ctx.Message().(type) {
	case *marmot.Connected:
		a.id = m.Info.ID
		if m.Info.Subprotocol == "" {
			// Raw frames carry no command names; closing is a message to
			// our own PID, as it would be from any other actor.
			ctx.Send(ctx.Self(), &marmot.CloseConnection{Code: marmot.CloseProtocolError, Text: "chat speaks marmot.v1 or marmot.json.v1"})
			return
		}
		if m.Restarts > 0 {
			a.recover(ctx, m.Restarts)
		}
	case *marmot.Message:
		a.handle(ctx, m)
	case *marmot.Disconnected:
		// Always: a member that crashed before recovering its nick still
		// holds a seat in the room.
		ctx.Send(a.room, &leave{pid: ctx.Self()})
		a.log.Info("chat: left", "client", a.id, "nick", a.nick, "said_since_start", a.sent, "code", m.Reason.Code)
	}
}

// recover is the fresh member's first act after a crash: the room, which
// knows the connection by its PID, still has the nick.
//
// It blocks on purpose, unlike who: the messages that came in after the
// crash wait in the mailbox and must find the nick restored, and a
// continuation (ReenterAfter) would let them run first.
func (a *member) recover(ctx actor.Context, restarts int) {
	res, err := ctx.RequestFuture(a.room, &whoami{pid: ctx.Self()}, askTimeout).Result()
	if err != nil {
		a.log.Warn("chat: room did not answer whoami", "client", a.id, "err", err)
		return
	}
	a.nick = res.(string)
	if a.nick == "" {
		a.notify(ctx, fmt.Sprintf("restarted (%d); choose a nick", restarts))
		return
	}
	a.notify(ctx, fmt.Sprintf("restarted (%d): welcome back, %s", restarts, a.nick))
}

func (a *member) handle(ctx actor.Context, m *marmot.Message) {
	switch m.Name {
	case "nick":
		nick := strings.TrimSpace(string(m.Payload))
		if nick == "" {
			a.notify(ctx, "nick: a name, please")
			return
		}
		a.nick = nick
		ctx.Send(a.room, &join{pid: ctx.Self(), nick: nick})
	case "say":
		if a.nick == "" {
			a.notify(ctx, "say: choose a nick first")
			return
		}
		a.sent++
		// string() copies: the room must not share the frame's storage.
		ctx.Send(a.room, &say{nick: a.nick, text: string(m.Payload)})
	case "who":
		// Ask without blocking: the member goes on handling its mailbox
		// (pushes from the room, more messages) while the room answers,
		// and the continuation runs on this actor, like a message. m stays
		// valid until Release, which we never call, so the continuation
		// can answer it. (A command rather than a request gets the list
		// back as a "who" command.)
		f := ctx.RequestFuture(a.room, &who{}, askTimeout)
		ctx.ReenterAfter(f, func(res any, err error) {
			if err != nil {
				_ = m.ReplyError(503, "room unavailable: "+err.Error())
				return
			}
			_ = m.Reply([]byte(strings.Join(res.([]string), ", ")))
		})
	case "crash":
		panic(fmt.Sprintf("chat: %q asked to crash", a.nick))
	default:
		if m.IsRequest() {
			_ = m.ReplyError(404, "unknown request "+m.Name)
		} else {
			a.notify(ctx, "unknown command "+m.Name)
		}
	}
}

// notify pushes a notice to this member's own client. Push is a message
// to the connection's PID, that is to ourselves: it is sent once the
// current message is handled.
func (a *member) notify(ctx actor.Context, text string) {
	ctx.Send(ctx.Self(), &marmot.Push{Name: "notice", Data: []byte(text)})
}
