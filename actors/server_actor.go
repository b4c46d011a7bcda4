package actors

import (
	"context"
	"fmt"

	"github.com/asynkron/protoactor-go/actor"
)

type spawnConnection struct{ c *conn }

// ServerActor is the registry's actor: it spawns and supervises one
// ConnectionActor per connection and routes Broadcast and SendTo messages
// from other actors, answering each with an *Ack when it has a sender.
// JoinRoom, LeaveRoom and Publish it forwards to the room's actor, which
// answers the sender itself.
type ServerActor struct {
	hub *Hub
}

// Receive implements actor.Actor.
func (s *ServerActor) Receive(ctx actor.Context) {
	switch m := ctx.Message().(type) {
	case *spawnConnection:
		c := m.c
		user := s.hub.cfg.ConnectionActor
		// Every (re)start gets a fresh ConnectionActor, and a fresh user
		// actor from the user's producer; conn carries what survives.
		props := actor.PropsFromProducer(func() actor.Actor {
			a := &ConnectionActor{c: c}
			if user != nil {
				a.user = user()
			}
			return a
		}, actor.WithMailbox(func() actor.Mailbox { return c.mbox }))
		if mw := s.hub.cfg.ReceiverMiddleware; len(mw) > 0 {
			props.Configure(actor.WithReceiverMiddleware(withInbound(s.hub.tel, mw)...))
		}
		ctx.SpawnPrefix(props, fmt.Sprintf("conn-%d-", c.id))
	case *Broadcast:
		_, err := s.hub.broadcast(context.Background(), m.Except, m.Name, m.Data)
		if ctx.Sender() != nil {
			ctx.Respond(&Ack{Err: err})
		}
	case *JoinRoom:
		e, msg, err := s.hub.prepJoin(m.ID, m.Room)
		forwardRoom(ctx, e, msg, err)
	case *LeaveRoom:
		e, msg, err := s.hub.prepLeave(m.ID, m.Room)
		forwardRoom(ctx, e, msg, err)
	case *Publish:
		e, msg, err := s.hub.prepPublish(m.Room, m.Name, m.Key, m.Data)
		forwardRoom(ctx, e, msg, err)
	case *RoomMembers:
		s.hub.membersOf(ctx, m)
	case *SendTo:
		var err error
		if m.Name != "" {
			err = s.hub.SendCommandToClient(m.ID, m.Name, m.Data)
		} else {
			err = s.hub.SendToClient(m.ID, m.Data)
		}
		if ctx.Sender() != nil {
			ctx.Respond(&Ack{Err: err})
		}
	}
}
