package actors

import (
	"errors"
	"time"

	"github.com/asynkron/protoactor-go/actor"
)

// A room under a RoomBroker whose Publish returns a ticket answers the
// publisher (a client's marmot.publish request, or the Hub's call) only
// once the broker confirms the publish: a later delivery's
// RoomMessage.Confirms reaches the ticket. The confirmation travels the
// delivery's way (broker → Hub.DeliverRoom → room), so the room is told,
// never called back. A publish the broker does not confirm within its
// ConfirmTimeout (DefaultConfirmTimeout without one) is answered with
// ErrPublishUnconfirmed. Without a ticket (a single server, or a broker
// that confirms nothing) the publish is answered at once, as before.

// ErrPublishUnconfirmed reports a room publish that its RoomBroker did not
// confirm in time (a cluster whose room's grain is being taken over after
// a node loss, or out of reach). Its outcome is unknown: the broker may
// still order it, so a publisher that retries may publish it twice.
var ErrPublishUnconfirmed = errors.New("marmot: room publish not confirmed in time")

// ErrPublishFailed reports a room publish that its RoomBroker will never
// order: the room's sequencer failed on it (in a cluster, the room's
// grain panicked while numbering it, and drops it since). It was not
// delivered to anyone; publishing it again fails the same way.
var ErrPublishFailed = errors.New("marmot: room publish failed: the room's sequencer failed on it")

// DefaultConfirmTimeout bounds a room's wait for its broker's confirmation
// when the broker does not say (see RoomBroker).
const DefaultConfirmTimeout = 5 * time.Second

// confirmTimeouter is implemented by a RoomBroker that bounds the wait for
// its confirmations itself.
type confirmTimeouter interface{ ConfirmTimeout() time.Duration }

// awaitedPublish is a publish whose answer waits for the broker.
type awaitedPublish struct {
	ticket uint64
	from   *conn
	reqID  uint64
	sender *actor.PID
	until  time.Time
	sess   *session // its session's acknowledgement waits (session_publish.go)
	seq    uint64
}

// roomConfirmTick wakes the room when an awaited publish's time is up.
type roomConfirmTick struct{}

func (r *roomActor) confirmTimeout() time.Duration {
	if b, ok := r.h.cfg.RoomBroker.(confirmTimeouter); ok {
		if d := b.ConfirmTimeout(); d > 0 {
			return d
		}
	}
	return DefaultConfirmTimeout
}

// await keeps a publish's answer until its ticket is confirmed. Tickets
// rise with each publish, so the queue is in ticket and deadline order.
// It is bounded by the broker's own bound on unconfirmed publishes.
func (r *roomActor) await(ctx actor.Context, ticket uint64, m *roomPublish) {
	d := r.confirmTimeout()
	r.awaiting = append(r.awaiting, awaitedPublish{ticket: ticket, from: m.from, reqID: m.reqID, sender: ctx.Sender(), until: time.Now().Add(d), sess: m.sess, seq: m.seq})
	if len(r.awaiting) == 1 {
		r.armConfirm(ctx, d)
	}
}

// armConfirm sets the room's one confirmation timer to tick in d. One
// timer, reset rather than made anew: a publisher that waits for each
// answer empties the queue with every confirmation, and a timer per
// publish would leave thousands pending, each re-arming while the queue
// is not empty when it fires. A tick that comes early (its head was
// confirmed meanwhile) finds nothing due and re-arms for the new head.
func (r *roomActor) armConfirm(ctx actor.Context, d time.Duration) {
	if r.confirmTimer != nil {
		r.confirmTimer.Reset(d)
		return
	}
	pid, root := ctx.Self(), ctx.ActorSystem().Root
	r.confirmTimer = time.AfterFunc(d, func() { root.Send(pid, &roomConfirmTick{}) })
}

// confirm answers the awaited publishes up to ticket through.
func (r *roomActor) confirm(ctx actor.Context, through uint64) {
	k := 0
	for k < len(r.awaiting) && r.awaiting[k].ticket <= through {
		a := r.awaiting[k]
		r.answerTo(ctx, a.sender, a.from, a.reqID, 0, nil)
		r.answered(a.sess, a.seq)
		k++
	}
	r.dropAwaited(k)
}

// roomSettle is a broker's word on one publish outside a delivery
// (Hub.ConfirmRoom).
type roomSettle struct {
	ticket uint64
	err    error
}

// ConfirmRoom tells this hub's room that the broker is done with its
// publishes up to ticket without a delivery of them here: a publish it
// dropped as one it had numbered already (its key's, see PublishFor), or
// one it will never number (err, such as ErrPublishFailed, answers
// ticket itself; the ones before it are confirmed). It reports whether
// the room lives here. Only a broker calls it.
func (h *Hub) ConfirmRoom(room string, ticket uint64, err error) bool {
	e, rerr := h.roomRef(room, false)
	if rerr != nil || e == nil {
		return false
	}
	h.sys.Root.Send(e.pid, &roomSettle{ticket: ticket, err: err})
	return true
}

// settle answers the awaited publishes up to ticket: confirmed, but
// ticket itself with err when err is set.
func (r *roomActor) settle(ctx actor.Context, ticket uint64, err error) {
	if err == nil {
		r.confirm(ctx, ticket)
		return
	}
	r.confirm(ctx, ticket-1)
	if len(r.awaiting) > 0 && r.awaiting[0].ticket == ticket {
		a := r.awaiting[0]
		r.answerTo(ctx, a.sender, a.from, a.reqID, 0, &RoomError{Room: r.name, Op: "publish", Err: err})
		r.answered(a.sess, a.seq)
		r.dropAwaited(1)
	}
}

// expire answers the awaited publishes whose time is up (all of them when
// all is set: the room stops) with ErrPublishUnconfirmed.
func (r *roomActor) expire(ctx actor.Context, all bool) {
	now := time.Now()
	k := 0
	for k < len(r.awaiting) && (all || !now.Before(r.awaiting[k].until)) {
		a := r.awaiting[k]
		r.answerTo(ctx, a.sender, a.from, a.reqID, 0, &RoomError{Room: r.name, Op: "publish", Err: ErrPublishUnconfirmed})
		r.answered(a.sess, a.seq)
		k++
	}
	r.dropAwaited(k)
	switch {
	case all && r.confirmTimer != nil:
		r.confirmTimer.Stop()
		r.confirmTimer = nil // its tick names this actor's PID
	case len(r.awaiting) > 0 && !all:
		r.armConfirm(ctx, r.awaiting[0].until.Sub(now))
	}
}

// answered lets the session of an answered publish request acknowledge
// it (session_publish.go).
func (r *roomActor) answered(s *session, seq uint64) {
	if s != nil {
		r.h.sessions.publishAnswered(s, seq)
	}
}

func (r *roomActor) dropAwaited(k int) {
	if k == 0 {
		return
	}
	clear(r.awaiting[:k])
	r.awaiting = r.awaiting[k:]
	if len(r.awaiting) == 0 {
		r.awaiting = nil
	}
}
