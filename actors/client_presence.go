package actors

import (
	"context"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/marmotws/marmot/protocol"
)

// RoomPresence tells a member of a room with presence (the server's
// HubConfig.RoomPresence) that another client joined or left it
// (ClientEvents.OnPresence; a user actor receives it as a message). It
// arrives in the room's order among the room's messages.
type RoomPresence struct {
	Room   string
	Client ClientID // the server's ID of the client's connection
	Joined bool     // false: it left (or its connection ended)
}

// Presence asks the server who is in room and waits for the answer or
// for ctx: the members' IDs, in increasing order (none when the room does
// not exist). Only rooms the server turned presence on for answer; others
// refuse with a *RoomError wrapping a *RemoteError with code 403. The
// answer comes in the room's order: presence events received after it
// apply on top of the list. Raw-mode connections have no rooms
// (ErrRawMode).
func (c *Client) Presence(ctx context.Context, room string) ([]ClientID, error) {
	if err := checkRoom(room); err != nil {
		return nil, err
	}
	p, err := c.request(ctx, protocol.RequestPresence, room, nil)
	if err != nil {
		if _, remote := err.(*RemoteError); remote {
			return nil, &RoomError{Room: room, Op: "presence", Err: err}
		}
		return nil, err
	}
	l, err := protocol.DecodePresenceList(p)
	if err != nil {
		return nil, &RoomError{Room: room, Op: "presence", Err: err}
	}
	ids := make([]ClientID, len(l.Members))
	for i, id := range l.Members {
		ids[i] = ClientID(id)
	}
	return ids, nil
}

// isPresenceEvent reports whether m is a room's presence event, which the
// ClientActor reports itself instead of handing it to the handler.
func isPresenceEvent(m *Message) bool {
	return m.Kind == protocol.KindCommand && m.Name == protocol.CommandPresence && m.Room != ""
}

// presence reports the presence event m to OnPresence, or to the user's
// actor as a *RoomPresence; an undecodable one goes to OnError.
func (a *ClientActor) presence(ctx actor.Context, m *Message) {
	c := a.c
	defer m.Release()
	ev, err := protocol.DecodePresenceEvent(m.Payload)
	if err != nil {
		c.reportError(&RoomError{Room: m.Room, Op: "presence", Err: err})
		return
	}
	p := &RoomPresence{Room: m.Room, Client: ClientID(ev.Client), Joined: ev.Event == protocol.PresenceJoin}
	if f := c.cfg.Events.OnPresence; f != nil {
		c.safeCall("OnPresence", func() { f(p.Room, p.Client, p.Joined) })
	}
	a.toUser(ctx, p)
}
