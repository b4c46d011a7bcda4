package actors

import (
	"time"

	"github.com/asynkron/protoactor-go/actor"
)

// Recovering joins that wait for the room to catch up (with a RoomBroker).
//
// A client whose node died comes back on another node at the offset it
// had reached there. That node's room can be behind it for a while: it
// gets the broker's deliveries a little later than the node that died
// (whose own deliveries were local), and after a node loss the broker's
// new sequencer first takes over the room's history from the survivors
// and has the messages that were in flight sent again. Answering such a
// join at once would tell the client it is ahead (Recovered=false) for
// what is only a delay. So, with a broker, a recovering join of the
// room's epoch from an offset the room has not reached waits, without
// becoming a member, until a delivery brings the room there (it is then
// answered as usual, with the replay of what the client missed), for at
// most CatchUpWait; then it is answered as it would have been at once.

// CatchUpWait bounds how long a recovering join waits for a room with a
// RoomBroker to reach the client's position.
const CatchUpWait = 15 * time.Second

// maxParked bounds the joins that wait in one room; one more is answered
// at once.
const maxParked = 4096

// parkedJoin is a recovering join that waits; sender is who asked (an
// actor's request), answered when the join is.
type parkedJoin struct {
	m      *roomJoin
	sender *actor.PID
	until  time.Time
}

// roomParkTick wakes the room when a waiting join's time is up.
type roomParkTick struct{}

// busy reports whether the room must not end for being idle: it has
// members, joins waiting to become members, or publishes waiting for
// their confirmation.
func (r *roomActor) busy() bool {
	return len(r.members) != 0 || len(r.parked) != 0 || len(r.awaiting) != 0
}

// park keeps a recovering join that the room cannot answer yet for lack
// of a delivery, and reports whether it did.
func (r *roomActor) park(ctx actor.Context, m *roomJoin) bool {
	if r.h.cfg.RoomBroker == nil || !m.recover || m.reqID == 0 || m.epoch != r.epoch || m.from <= r.offset || len(r.parked) >= maxParked {
		return false
	}
	r.parked = append(r.parked, parkedJoin{m: m, sender: ctx.Sender(), until: time.Now().Add(CatchUpWait)})
	r.disarmIdle()
	pid, root := ctx.Self(), ctx.ActorSystem().Root
	time.AfterFunc(CatchUpWait, func() { root.Send(pid, &roomParkTick{}) })
	return true
}

// unpark answers the waiting joins the room has caught up with (or whose
// epoch it left), and those whose time is up.
func (r *roomActor) unpark(ctx actor.Context) {
	now := time.Now()
	var due []parkedJoin
	keep := r.parked[:0]
	for _, p := range r.parked {
		if p.m.epoch == r.epoch && p.m.from > r.offset && now.Before(p.until) {
			keep = append(keep, p)
			continue
		}
		due = append(due, p)
	}
	clear(r.parked[len(keep):])
	r.parked = keep
	for _, p := range due {
		r.admit(ctx, p.m, p.sender)
	}
	if len(r.parked) == 0 {
		r.parked = nil
	}
}

// dropParked fails the waiting joins of a room that stops.
func (r *roomActor) dropParked(ctx actor.Context) {
	for _, p := range r.parked {
		r.answerTo(ctx, p.sender, p.m.c, p.m.reqID, 0, ErrRoomFailed)
	}
	r.parked = nil
}
