package actors

import (
	"maps"

	"github.com/asynkron/protoactor-go/actor"
)

// RoomBroker carries rooms across hubs: package cluster is one, over a
// protoactor cluster. With a broker (HubConfig.RoomBroker) a room no
// longer numbers and fans out its own publishes: it hands each to the
// broker, which puts the publishes of every hub into one order per room,
// numbers them, and hands each message back to every hub that has the
// room, through Hub.DeliverRoom; the room then fans it out to its local
// members with that offset. Without a broker none of this runs.
//
// The room actor calls the broker in its own turns, one call at a time, so
// the publishes of one room on one hub reach the broker in the order they
// were made.
type RoomBroker interface {
	// Subscribe tells the broker that this hub has the room (its actor
	// starts: on the first join or publish here), and returns the room's
	// position in the broker's order. When it returns, every message
	// published after it will be delivered here. It may block (the room
	// waits), and should bound how long.
	Subscribe(room string) (RoomPosition, error)
	// Unsubscribe tells the broker that the room has ended on this hub.
	// It must not block.
	Unsubscribe(room string)
	// Publish hands a message to the broker; it must not wait for the
	// delivery. m is the broker's to keep. It returns the publish's
	// ticket: 0 when the publish is as good as ordered once Publish
	// returns (the room answers the publisher at once), or a number that
	// rises with each publish of the room on this hub, which a later
	// delivery's RoomMessage.Confirms reaches once the broker has ordered
	// the message durably; the room answers the publisher then, or with
	// ErrPublishUnconfirmed after the broker's ConfirmTimeout (a broker
	// may have a method ConfirmTimeout() time.Duration; else
	// DefaultConfirmTimeout). See room_confirm.go.
	Publish(room string, m *RoomMessage) (ticket uint64, err error)
	// History returns the messages of the room's epoch after offset from,
	// up to and including offset to, that this hub's broker keeps (with
	// HubConfig.RoomHistory on, the broker keeps the room's history: it
	// has every message it delivered here, recorded before the delivery),
	// or a *HistoryGap when it cannot return every one of them. It must
	// not block: the room calls it to answer a client that recovers.
	History(room, epoch string, from, to uint64) ([]HistoryEntry, error)
}

// RoomPosition is where a room stands in a broker's order: the epoch
// (the run of the room's sequencer) and the offset of its last message.
type RoomPosition struct {
	Epoch  string
	Offset uint64
}

// RoomMessage is one room message on its way through a RoomBroker. Epoch
// and Offset are set by the broker when it orders the message.
//
// With a RoomBroker the room keeps no history of its own: the broker does
// (RoomBroker.History), where it can keep it on more than one hub.
type RoomMessage struct {
	Name   string
	Data   []byte
	Meta   map[string]string // trace context, as in envelopes
	Epoch  string
	Offset uint64
	// Confirms, on a delivery, tells the room that this hub's publishes
	// to it with a ticket up to Confirms are ordered (0: none by this
	// delivery). A delivery the room drops as a repeat still confirms.
	// A broker that learns only after the delivery that the publishes
	// are held durably confirms them later with Hub.ConfirmRoom.
	Confirms uint64
	// Key, on a publish, names it across hubs (see Hub.PublishFor): a
	// broker drops a publish whose key it has numbered already, and
	// confirms it (Hub.ConfirmRoom). Empty: none.
	Key string
}

// roomDeliver hands a message ordered by the broker to the local room.
type roomDeliver struct{ m *RoomMessage }

// DeliverRoom gives this hub's room a message its RoomBroker ordered: the
// room fans it out to its local members with m.Offset, in the order of the
// calls. It reports whether the room lives here (a room that has ended
// here has nobody to deliver to). Only a broker calls it.
func (h *Hub) DeliverRoom(room string, m *RoomMessage) bool {
	e, err := h.roomRef(room, false)
	if err != nil || e == nil {
		return false
	}
	h.sys.Root.Send(e.pid, &roomDeliver{m: m})
	return true
}

// subscribe is the room's start with a broker: it takes the broker's
// position, so that members that join before the first delivery are told
// the epoch and offset the cluster is at.
func (r *roomActor) subscribe() {
	b := r.h.cfg.RoomBroker
	pos, err := b.Subscribe(r.name)
	if err != nil {
		r.h.reportError(0, &RoomError{Room: r.name, Op: "subscribe", Err: err})
		return
	}
	r.epoch, r.offset = pos.Epoch, pos.Offset
}

// deliver fans out a message the broker ordered.
//
// A delivery does not start the idle wait again, unlike a publish: an
// empty room ends here even while other hubs keep publishing to it.
//
// Within an epoch a broker's offsets only rise, so a delivery at or below
// the room's position is one it has already fanned out, or one from
// before this room subscribed (a transport can hand over late a message
// sent to this node's address while it was down): it is dropped, never
// delivered twice.
func (r *roomActor) deliver(ctx actor.Context, m *RoomMessage) {
	if m.Epoch == r.epoch && m.Offset <= r.offset {
		return
	}
	r.epoch, r.offset = m.Epoch, m.Offset
	set := preparedSet{name: m.Name, data: m.Data, meta: m.Meta, room: r.name, offset: m.Offset}
	_, _ = set.fanOut(maps.Values(r.members))
	if len(r.parked) > 0 {
		r.unpark(ctx)
	}
}

// brokerPublish hands a publish to the broker and answers the publisher:
// at once, or when the broker confirms the publish's ticket (see
// room_confirm.go). The members it reaches are not known here (they are
// on every hub): it reports 0.
func (r *roomActor) brokerPublish(ctx actor.Context, m *roomPublish) {
	data := m.data
	if !m.owned {
		data = append([]byte(nil), data...)
	}
	ticket, err := r.h.cfg.RoomBroker.Publish(r.name, &RoomMessage{Name: m.name, Data: data, Meta: m.meta, Key: m.key})
	if err != nil {
		err = &RoomError{Room: r.name, Op: "publish", Err: err}
		r.h.reportError(0, err)
	}
	if err == nil && ticket != 0 && (m.reqID != 0 || ctx.Sender() != nil) {
		r.await(ctx, ticket, m)
		return
	}
	r.answer(ctx, m.from, m.reqID, 0, err)
	r.answered(m.sess, m.seq)
}
