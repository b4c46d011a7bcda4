package cluster

import (
	"github.com/marmotws/marmot"
	"github.com/marmotws/marmot/cluster/internal/wire"
)

// A node's rooms while their grains do not count the node as a
// subscriber: after a change of the member list (the grain may have
// moved, and a new one has no subscribers) until the room is subscribed
// again, and from a rejoin's start (the node's old member is gone, and
// the others dropped it) until the new member has subscribed it. A client
// that joined the room meanwhile would be told the node's position from
// before, and without history see a gap at the next message: the broker
// tells the room it is detached (Server.DetachRoom), whose joins then
// wait, and, once the subscription landed, attached (Server.AttachRoom)
// with the position its next delivery follows, which they are answered
// with.
//
// Both go through the node actor (but a rejoin's detachment, whose old
// node actor has stopped): the grain's deliveries sent before its answer
// to the subscription are in that actor's mailbox when the answer comes
// (one stream from the grain's node, read in order; or the grain's own
// turn when it is local), so the room gets every one of them before it
// is attached, and a detachment after a later change of the member list
// comes after the attachment before it.

// roomLink is the broker's word to a local room, on the node actor: pos
// nil is a detachment, else the attachment at pos.
type roomLink struct {
	room string
	pos  *marmot.RoomPosition
}

// tell hands the word to the room (on the node actor).
func (l *roomLink) tell(srv *marmot.Server) {
	if l.pos == nil {
		srv.DetachRoom(l.room)
		return
	}
	srv.AttachRoom(l.room, *l.pos)
}

// detach tells rooms, through mb's node actor, that they are not
// subscribed (the member list changed).
func (b *roomBroker) detach(mb *member, rooms []string) {
	for _, room := range rooms {
		mb.sys.Root.Send(mb.self, &roomLink{room: room})
	}
}

// detachAll tells every local room that it is not subscribed: the node
// rejoins, its old member stopped (so not through its node actor).
func (b *roomBroker) detachAll() {
	b.mu.Lock()
	var rooms []string
	for name, r := range b.rooms {
		if r.local {
			r.ready = false
			rooms = append(rooms, name)
		}
	}
	b.retry = true // the worker subscribes them once the new member is in place
	b.mu.Unlock()
	for _, room := range rooms {
		b.n.srv.DetachRoom(room)
	}
}

// attach tells a room, through the node actor, that its subscription
// landed: the node reported epoch and offset, the grain answered st. When
// the grain sends what the node misses (with history, in the same epoch)
// the room's next delivery follows the node's own position; else it
// follows the grain's.
func (b *roomBroker) attach(room, epoch string, offset uint64, st *wire.RoomState) {
	mb := b.n.member()
	if mb == nil || mb.left.Load() {
		return // rejoining: the new member subscribes the room again
	}
	pos := marmot.RoomPosition{Epoch: st.Epoch, Offset: st.Offset}
	if b.n.histCfg().Size > 0 && st.Epoch == epoch && st.Offset > offset {
		pos = marmot.RoomPosition{Epoch: epoch, Offset: offset} // the grain catches the node up
	}
	mb.sys.Root.Send(mb.self, &roomLink{room: room, pos: &pos})
}
