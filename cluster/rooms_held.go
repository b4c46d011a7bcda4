package cluster

import (
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/marmotws/marmot"
	"github.com/marmotws/marmot/cluster/internal/wire"
)

// A confirmed room publish is held by two nodes.
//
// A publish is answered once its node sees its own (origin, seq) come
// back in a delivery (rooms_confirm.go). When the room's grain runs on
// another node, that is enough: the grain's node holds the message (its
// history) and the publisher's node holds it (its broker recorded the
// delivery before the room got it); either may die and the other still
// has it (a new grain takes over the longest history; a grain that lives
// on delivers it to everyone). No acknowledgement is asked for then.
//
// When the grain runs on the publisher's own node, the delivery back is
// local and arrives before any other node has the message: both copies
// are on one node. So the grain hands its own node such a delivery held
// back (heldBack: recorded and fanned out, but not confirmed), and asks
// the room's other holders (the nodes with the room, or its replica) how
// far they hold the room: one RoomHeldQuery per holder per run of such
// publishes (the grain sends itself a flush after the first, so the
// publishes already in its mailbox go out before it), never one per
// message. A query follows the grain's deliveries to that node on the
// same link, so the answer (RoomHeld, the node's position) counts them.
// Once one holder holds an offset, the grain tells its own node the
// highest seq of its own publishes up to there (roomHeld), and the node
// hands it to the local room as a confirmation without a message
// (Server.ConfirmRoom), which answers the publishers.
//
// Bounds: the grain remembers at most maxHeldWaiting of its node's
// publishes not yet held elsewhere, dropping the oldest (their publishers
// are then answered when a later one is held, or time out: never answered
// early); while any wait it asks again every heldRetry (a holder that was
// still taking the room's history when asked, or a query lost with a
// broken stream); the room answers ErrPublishUnconfirmed after
// RequestTimeout, as for any publish not confirmed. In a cluster of one
// node there is no other node to hold anything: publishes are confirmed
// by that node alone, as before.

// maxHeldWaiting bounds a grain's own node's publishes that wait for
// another holder.
const maxHeldWaiting = 4096

// grainHeld is what a grain tracks of its own node's publishes that no
// other node is known to hold yet.
type grainHeld struct {
	offset  uint64      // the highest offset of the grain's epoch another node holds
	waiting []heldWait  // own node's publishes numbered above offset, in order
	asked   uint64      // the highest waiting offset the holders were asked about
	queued  bool        // a heldFlush is in the grain's mailbox
	timer   *time.Timer // heldRetry's, reset rather than made anew
	retry   bool        // the timer is armed
}

// heldWait is one of the grain's own node's publishes, numbered at
// offset, with its publisher seq (the room's ticket on that node).
type heldWait struct{ offset, seq uint64 }

// heldBack is a delivery from a grain to its own node that does not
// confirm the node's publish in it yet (a local message, never on the
// wire).
type heldBack struct{ d *wire.RoomDeliverSeq }

// roomHeld tells the grain's own node that its publishes to room up to
// seq are held by another node too (a local message).
type roomHeld struct {
	room string
	seq  uint64
}

// heldFlush asks the room's holders after a run of own publishes.
type heldFlush struct{}

// heldRetryTick asks them again while publishes wait.
type heldRetryTick struct{}

// heldRetry is how long a grain waits for the answers before it asks the
// holders again (some were not holding the room yet).
func (n *Node) heldRetry() time.Duration { return n.cfg.RequestTimeout / 5 }

// deliver sends a numbered message to every node that has the room, and
// its replica. A publish of the grain's own node goes to that node held
// back until another node holds it.
func (g *roomGrain) deliver(ctx actor.Context, d *wire.RoomDeliverSeq) {
	self := ctx.ActorSystem().Address()
	own := false
	if _, ok := g.subs[self]; ok && d.Origin != 0 && g.n.rb != nil && d.Origin == g.n.rb.origin {
		if len(g.subs) < 2 {
			g.ensureReplica(ctx) // not set up yet (a take-over's stash)
		}
		own = len(g.subs) >= 2 // else a cluster of one: nowhere else to hold it
	}
	g.n.traffic.sent[kindDeliver].Add(int64(len(g.subs)))
	for node := range g.subs {
		if own && node == self {
			ctx.Send(nodePID(node), &heldBack{d: d})
			continue
		}
		ctx.Send(nodePID(node), d)
	}
	if own {
		g.held.wait(ctx, d.Offset, d.Seq)
	}
}

// wait records an own publish to be held elsewhere, and has the holders
// asked once the grain's mailbox gets to the flush.
func (h *grainHeld) wait(ctx actor.Context, offset, seq uint64) {
	if len(h.waiting) >= maxHeldWaiting {
		clear(h.waiting[:1])
		h.waiting = h.waiting[1:]
	}
	h.waiting = append(h.waiting, heldWait{offset: offset, seq: seq})
	if !h.queued {
		h.queued = true
		ctx.Send(ctx.Self(), &heldFlush{})
	}
}

// receiveHeld handles the grain's held messages; it reports whether m was
// one.
func (g *roomGrain) receiveHeld(ctx actor.Context, m any) bool {
	switch m := m.(type) {
	case *heldFlush:
		g.held.queued = false
		g.askHolders(ctx)
	case *heldRetryTick:
		g.held.retry = false
		g.held.asked = 0
		g.askHolders(ctx)
	case *wire.RoomHeld:
		g.holds(ctx, m)
	default:
		return false
	}
	return true
}

// askHolders asks every other holder of the room how far it holds it,
// when own publishes wait that it has not asked about.
func (g *roomGrain) askHolders(ctx actor.Context) {
	h := &g.held
	if len(h.waiting) == 0 {
		return
	}
	if last := h.waiting[len(h.waiting)-1].offset; last > h.asked {
		h.asked = last
		self := ctx.ActorSystem().Address()
		for node := range g.subs {
			if node != self {
				ctx.Request(nodePID(node), &wire.RoomHeldQuery{Room: g.room})
			}
		}
	}
	if !h.retry {
		h.retry = true
		if h.timer == nil {
			self, root := ctx.Self(), ctx.ActorSystem().Root
			h.timer = time.AfterFunc(g.n.heldRetry(), func() { root.Send(self, &heldRetryTick{}) })
		} else {
			h.timer.Reset(g.n.heldRetry())
		}
	}
}

// requery asks the holders again (a replica was added: it holds what
// the others may not have answered for).
func (g *roomGrain) requery(ctx actor.Context) {
	if len(g.held.waiting) > 0 {
		g.held.asked = 0
		g.askHolders(ctx)
	}
}

// holds takes a holder's answer: the own publishes up to its offset are
// held by two nodes, and the grain's node is told.
func (g *roomGrain) holds(ctx actor.Context, m *wire.RoomHeld) {
	h := &g.held
	if m.Epoch != g.hist.epoch || m.Offset <= h.offset {
		return
	}
	h.offset = m.Offset
	k, seq := 0, uint64(0)
	for k < len(h.waiting) && h.waiting[k].offset <= m.Offset {
		seq = h.waiting[k].seq
		k++
	}
	if k == 0 {
		return
	}
	clear(h.waiting[:k])
	h.waiting = h.waiting[k:]
	if len(h.waiting) == 0 {
		h.waiting = nil
	}
	ctx.Send(nodePID(ctx.ActorSystem().Address()), &roomHeld{room: g.room, seq: seq})
}

// stopHeld ends the grain's retry timer (the grain stops or restarts;
// the publishes that wait are answered by their rooms' timeouts).
func (g *roomGrain) stopHeld() {
	if g.held.timer != nil {
		g.held.timer.Stop()
	}
}

// heldPosition answers a grain's RoomHeldQuery (on the node actor).
func (b *roomBroker) heldPosition(room string) *wire.RoomHeld {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := &wire.RoomHeld{Room: room}
	if r := b.rooms[room]; r != nil {
		out.Epoch, out.Offset = r.hist.epoch, r.hist.last
	}
	return out
}

// receiveHeld handles the node actor's held messages; it reports whether
// m was one.
func (a *nodeActor) receiveHeld(ctx actor.Context, m any) bool {
	switch m := m.(type) {
	case *heldBack:
		a.n.traffic.received[kindDeliver].Add(1) // as a RoomDeliverSeq
		a.n.rb.delivered(m.d)                    // its confirmation comes with roomHeld
		d := m.d
		a.n.srv.DeliverRoom(d.Room, &marmot.RoomMessage{Name: d.Name, Data: d.Data, Meta: d.Meta, Epoch: d.Epoch, Offset: d.Offset})
	case *roomHeld:
		a.n.srv.ConfirmRoom(m.room, m.seq, nil)
	case *wire.RoomHeldQuery:
		ctx.Respond(a.n.rb.heldPosition(m.Room))
	default:
		return false
	}
	return true
}
