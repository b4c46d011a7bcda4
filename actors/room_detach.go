package actors

import (
	"time"

	"github.com/asynkron/protoactor-go/actor"
)

// A room whose broker does not deliver to it for a while.
//
// A broker's sequencer can lose a hub as a subscriber of a room: in a
// cluster, the room's grain moves or restarts when the member list
// changes, and a node that rejoins the cluster starts over without any
// subscription. Until the broker subscribes the room again, messages
// ordered meanwhile do not reach this hub, and a client that joins here
// would be told the room's position from before: the first message after
// it would then be a gap, though the client missed nothing it was told
// of. So the broker tells the room (Hub.DetachRoom, by message, never a
// call up into the broker), and the room's clients' joins wait, without
// becoming members, until it tells the room it delivers again
// (Hub.AttachRoom) with the position its next delivery follows: they are
// then answered with that position, and nothing is missing between it
// and the next message. They wait at most CatchUpWait from the
// detachment; after that, joins are answered at once with the room's
// position, as before. Joins that do not ask for an answer (a server's
// own, reqID 0) and rooms without a broker never wait.

// roomDetach tells the room its broker does not deliver to it.
type roomDetach struct{}

// roomAttach tells the room its broker delivers to it again; its next
// delivery follows pos.
type roomAttach struct{ pos RoomPosition }

// DetachRoom tells this hub's room that its RoomBroker does not deliver
// to it (its sequencer lost the subscription) until AttachRoom: the
// room's joins wait for that, at most CatchUpWait. It reports whether the
// room lives here. Only a broker calls it.
func (h *Hub) DetachRoom(room string) bool {
	e, err := h.roomRef(room, false)
	if err != nil || e == nil {
		return false
	}
	h.sys.Root.Send(e.pid, &roomDetach{})
	return true
}

// AttachRoom tells this hub's room that its RoomBroker delivers to it
// again, and that the next delivery follows pos: a room behind pos (in
// another epoch, or at a lower offset) takes pos as its position, since
// what lies between will not be delivered here. The broker must call it
// after handing the room (DeliverRoom) every delivery that comes before
// pos. It reports whether the room lives here. Only a broker calls it.
func (h *Hub) AttachRoom(room string, pos RoomPosition) bool {
	e, err := h.roomRef(room, false)
	if err != nil || e == nil {
		return false
	}
	h.sys.Root.Send(e.pid, &roomAttach{pos: pos})
	return true
}

// detachedUntil is when the room's joins stop waiting for its broker
// (zero while the broker delivers to the room).
func (r *roomActor) detachedUntil() time.Time {
	if r.detached.IsZero() {
		return time.Time{}
	}
	return r.detached.Add(CatchUpWait)
}

// detach is the room's side of Hub.DetachRoom. A detachment that goes on
// keeps its start: joins wait at most CatchUpWait from the first.
func (r *roomActor) detach() {
	if r.detached.IsZero() {
		r.detached = time.Now()
	}
}

// attach is the room's side of Hub.AttachRoom: it takes pos when it is
// behind it, and answers the joins that waited.
func (r *roomActor) attach(ctx actor.Context, pos RoomPosition) {
	r.detached = time.Time{}
	if pos.Epoch != "" && (pos.Epoch != r.epoch || pos.Offset > r.offset) {
		r.epoch, r.offset = pos.Epoch, pos.Offset
	}
	if len(r.parked) > 0 {
		r.unpark(ctx)
	}
}
