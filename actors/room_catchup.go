package actors

import (
	"time"

	"github.com/asynkron/protoactor-go/actor"
)

// Joins that wait for the room to catch up (with a RoomBroker).
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
// Joins also wait while the broker does not deliver to the room
// (room_detach.go).

// CatchUpWait bounds how long a recovering join waits for a room with a
// RoomBroker to reach the client's position, and how long joins wait for
// a room whose broker does not deliver to it (Hub.DetachRoom).
const CatchUpWait = 15 * time.Second

// maxParked bounds the joins that wait in one room; one more is answered
// at once.
const maxParked = 4096

// parkedJoin is a join that waits; sender is who asked (an actor's
// request), answered when the join is.
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

// park keeps a client's join that the room cannot answer yet, and reports
// whether it did: a recovering join from ahead of the room (it waits for
// a delivery), or any join while the room's broker does not deliver to it
// (it waits for the broker to subscribe the room again;
// room_detach.go).
func (r *roomActor) park(ctx actor.Context, m *roomJoin) bool {
	if r.h.cfg.RoomBroker == nil || m.reqID == 0 || len(r.parked) >= maxParked {
		return false
	}
	now := time.Now()
	if !r.mustWait(m, now) {
		return false
	}
	until := now.Add(CatchUpWait)
	if d := r.detachedUntil(); !r.ahead(m) && d.Before(until) {
		until = d // only detached: no longer than the detachment lasts
	}
	r.parked = append(r.parked, parkedJoin{m: m, sender: ctx.Sender(), until: until})
	r.disarmIdle()
	if len(r.parked) == 1 || until.Before(r.parkDue) {
		r.armPark(ctx, until, now)
	}
	return true
}

// mustWait reports whether join m cannot be answered yet.
func (r *roomActor) mustWait(m *roomJoin, now time.Time) bool {
	return r.ahead(m) || now.Before(r.detachedUntil())
}

// ahead reports whether m recovers from an offset of the room's epoch
// that the room has not reached.
func (r *roomActor) ahead(m *roomJoin) bool {
	return m.recover && m.epoch == r.epoch && m.from > r.offset
}

// armPark sets the room's one park timer to tick at until. One timer,
// reset rather than made anew (as armConfirm's): a timer per parked join
// left as many pending as joins waited.
func (r *roomActor) armPark(ctx actor.Context, until, now time.Time) {
	r.parkDue = until
	d := until.Sub(now)
	if r.parkTimer != nil {
		r.parkTimer.Reset(d)
		return
	}
	pid, root := ctx.Self(), ctx.ActorSystem().Root
	r.parkTimer = time.AfterFunc(d, func() { root.Send(pid, &roomParkTick{}) })
}

// unpark answers the waiting joins the room can answer now (it caught up
// with them, left their epoch, or its broker delivers to it again), and
// those whose time is up; the timer is set for the next one due.
func (r *roomActor) unpark(ctx actor.Context) {
	now := time.Now()
	var due []parkedJoin
	var next time.Time
	keep := r.parked[:0]
	for _, p := range r.parked {
		if r.mustWait(p.m, now) && now.Before(p.until) {
			keep = append(keep, p)
			if next.IsZero() || p.until.Before(next) {
				next = p.until
			}
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
		return
	}
	r.armPark(ctx, next, now)
}

// dropParked fails the waiting joins of a room that stops.
func (r *roomActor) dropParked(ctx actor.Context) {
	for _, p := range r.parked {
		r.answerTo(ctx, p.sender, p.m.c, p.m.reqID, 0, ErrRoomFailed)
	}
	r.parked = nil
	if r.parkTimer != nil {
		r.parkTimer.Stop()
		r.parkTimer = nil // its tick names this actor's PID
	}
}
