package actors

import (
	"errors"
	"fmt"
	"maps"
	"slices"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/marmotws/marmot/protocol"
)

// RoomMembers asks the ServerActor (Hub.PID) who is in Room; it is
// answered, to a sender, with a *MemberList (see Hub.Members). Unlike a
// client's presence request it needs no HubConfig.RoomPresence: the
// server's own actors may always look.
type RoomMembers struct {
	Room string
}

// MemberList answers RoomMembers: the IDs of Room's members, in
// increasing order (none when the room does not exist); Err is set when
// the room name is invalid or the room could not be asked.
type MemberList struct {
	Room string
	IDs  []ClientID
	Err  error
}

// ErrNoPresence refuses a client's presence request for a room that
// HubConfig.RoomPresence did not turn presence on for (error code 403).
var ErrNoPresence = errors.New("marmot: presence is off for this room")

// presenceOn reports whether room has presence. RoomPresence is the
// application's: a panic in it counts as off and goes to OnError.
func (h *Hub) presenceOn(room string) (on bool) {
	f := h.cfg.RoomPresence
	if f == nil {
		return false
	}
	defer func() {
		if p := recover(); p != nil {
			h.reportError(0, fmt.Errorf("%w: RoomPresence: %v", ErrHandlerPanic, p))
			on = false
		}
	}()
	return f(room)
}

// memberIDs returns the members' IDs, in increasing order: under a
// presence broker every hub's (see viewIDs), else this hub's.
func (r *roomActor) memberIDs() []ClientID {
	if r.view != nil {
		return r.viewIDs()
	}
	return r.localIDs()
}

// localIDs returns the IDs of the members connected to this hub, in
// increasing order.
func (r *roomActor) localIDs() []ClientID {
	return slices.Sorted(maps.Keys(r.members))
}

// announce tells every member but subject that subject joined or left
// (event is protocol.PresenceJoin or PresenceLeave), when the room has
// presence. Queued in the room's turn, the event takes its place in the
// room's one order among its messages. Under a presence broker the event
// goes to the broker, which orders it and delivers it back to every hub
// (see broker_presence.go).
func (r *roomActor) announce(subject *conn, event string) {
	if !r.presence {
		return
	}
	if r.view != nil {
		r.publishPresence(subject.id, event)
		return
	}
	r.tell(subject.id, event)
}

// tell sends every local member but subject the presence event.
func (r *roomActor) tell(subject ClientID, event string) {
	if len(r.members) == 0 {
		return
	}
	ev := protocol.PresenceEvent{Event: event, Client: uint64(subject)}
	set := preparedSet{name: protocol.CommandPresence, data: protocol.AppendPresenceEvent(nil, &ev), room: r.name}
	_, _ = set.fanOut(func(yield func(*conn) bool) {
		for id, c := range r.members {
			if id != subject && !yield(c) {
				return
			}
		}
	})
}

// answerMembers answers a roomMembers: on the client's link when it is a
// client's presence request, else to the sender with a *MemberList.
func (r *roomActor) answerMembers(ctx actor.Context, m *roomMembers) {
	ids := r.memberIDs()
	if m.local {
		ids = r.localIDs()
	}
	if m.c != nil {
		l := protocol.PresenceList{Members: make([]uint64, len(ids))}
		for i, id := range ids {
			l.Members[i] = uint64(id)
		}
		e := protocol.Envelope{Kind: protocol.KindReply, ID: m.reqID, Payload: protocol.AppendPresenceList(nil, &l)}
		_ = m.c.link.sendEnvelope(&e)
		return
	}
	if ctx.Sender() != nil {
		ctx.Respond(&MemberList{Room: r.name, IDs: ids})
	}
}

// membersOf is the ServerActor's side of *RoomMembers: the room answers
// the sender itself.
func (h *Hub) membersOf(ctx actor.Context, m *RoomMembers) {
	e, err := h.prepMembers(m.Room, h.clusterView(m.Room))
	switch {
	case err != nil || e == nil:
		if ctx.Sender() != nil {
			ctx.Respond(&MemberList{Room: m.Room, Err: err})
		}
	case ctx.Sender() != nil:
		ctx.RequestWithCustomSender(e.pid, &roomMembers{}, ctx.Sender())
	default:
		h.sys.Root.Send(e.pid, &roomMembers{}) // nobody to answer: keep the count right
	}
}

// prepMembers names the room to ask for its members; with create, it
// starts the room when it does not live here (see clusterView).
func (h *Hub) prepMembers(room string, create bool) (*roomEntry, error) {
	if err := checkRoom(room); err != nil {
		return nil, err
	}
	return h.roomRef(room, create)
}

// clusterView reports whether room's members are on every hub, so that
// asking for them starts the room here (which takes the broker's state)
// rather than answering none: a room with presence under a
// PresenceBroker.
func (h *Hub) clusterView(room string) bool {
	return h.presenceBroker() != nil && h.presenceOn(room)
}
