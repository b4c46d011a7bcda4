package cluster

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"go.opentelemetry.io/otel/trace"

	"github.com/marmotws/marmot/cluster/internal/wire"
	"github.com/marmotws/marmot/supervisor"
)

// Room grains that fail. A grain's parent is protoactor's placement actor
// (disthash), which supervises it with protoactor's default strategy:
// restart, and stop on the 11th failure within 10 s. marmot cannot set
// that parent's strategy, so a middleware in front of every room grain
// reports each failure as marmot's supervisor does for its own actors
// (a "marmot.actor.failure" span, actor kind "room_grain", with the same
// budget, so its directive is the one protoactor applies), then lets the
// panic go on to protoactor.
//
// A restarted grain would start empty: no subscribers, a new epoch, and
// deliver nothing until the nodes subscribe again. So the failing grain's
// subscribers and position are handed to its next incarnation (same PID,
// same node): the room goes on with the same epoch and offsets, and only
// the message that failed is lost: the node that published it sends it
// again (it is not confirmed), and this node's grains of the room drop it
// (poison), rather than fail on it again. A grain that protoactor stops instead
// (the budget spent) tells its subscribers (wire.RoomResubscribe), and
// each node subscribes the room again, which starts a fresh grain that
// takes on the nodes' position.

// Budget of protoactor's default strategy, which supervises grains.
const (
	grainMaxRestarts = 10
	grainWindow      = 10 * time.Second
)

// grainSupervision is the node's record of its failing grains, by grain
// PID ID (kept for the grain's life).
type grainSupervision struct {
	strategy actor.SupervisorStrategy
	mu       sync.Mutex
	stats    map[string]*actor.RestartStatistics
	carry    map[string]grainCarry // what the restarted grain takes on
	stopping map[string]bool       // stopped by protoactor after failing
	// poison is, per room, the highest publisher seq per origin of a
	// message a grain of the room failed on: the publishing node keeps it
	// unconfirmed and sends it again (after a change of the member list,
	// or to the fresh grain after a stop), and it must not make the next
	// grain fail too, for ever, holding up every message behind it. Kept
	// while the room has a grain on this node.
	poison map[string]map[uint64]uint64
	// poisonRooms is len(poison), read without the lock: a grain's
	// publish path costs one atomic load while no room has poison.
	poisonRooms atomic.Int32
}

// grainCarry is a room grain's state that survives its restart: the room,
// its history (epoch, offsets, what was numbered) and subscribers, and
// the members of each node (presence).
type grainCarry struct {
	room     string
	phase    grainPhase
	hist     *roomHist
	subs     map[string]bool
	presence grainPresence
}

func newGrainSupervision(n *Node, tp trace.TracerProvider) *grainSupervision {
	return &grainSupervision{
		strategy: supervisor.New(supervisor.Config{
			MaxRestarts: grainMaxRestarts, Window: grainWindow,
			ActorKind: "room_grain", TracerProvider: tp, Logger: n.log,
		}),
		stats: map[string]*actor.RestartStatistics{}, carry: map[string]grainCarry{}, stopping: map[string]bool{},
		poison: map[string]map[uint64]uint64{},
	}
}

// middleware runs in front of every room grain (outermost).
func (s *grainSupervision) middleware(next actor.ReceiverFunc) actor.ReceiverFunc {
	return func(c actor.ReceiverContext, env *actor.MessageEnvelope) {
		switch m := env.Message.(type) {
		case *actor.Stopped:
			s.forget(c.Self().Id)
		case *wire.RoomPublishSeq:
			if s.poisoned(m.Room, m.Origin, m.Seq) {
				// A grain of the room failed on it: not numbered, but
				// counted as its origin's seq, so that the origin's next
				// publish is not taken for one after a hole (which the
				// grain refuses, rooms_grain.go) and the room goes on.
				if g, ok := c.Actor().(*roomGrain); ok {
					g.poisonedPublish(c, m)
				}
				return
			}
		}
		defer func() {
			if r := recover(); r != nil {
				s.failed(c, env, r)
				panic(r) // protoactor's supervision restarts (or stops) the grain
			}
		}()
		next(c, env)
	}
}

// failed reports a grain's failure and prepares what follows it.
func (s *grainSupervision) failed(c actor.ReceiverContext, env *actor.MessageEnvelope, reason any) {
	id := c.Self().Id
	s.mu.Lock()
	rs := s.stats[id]
	if rs == nil {
		rs = actor.NewRestartStatistics()
		s.stats[id] = rs
	}
	s.mu.Unlock()
	if m, ok := env.Message.(*wire.RoomPublishSeq); ok && m.Origin != 0 && m.Seq != 0 {
		s.mu.Lock()
		p := s.poison[m.Room]
		if p == nil {
			p = map[uint64]uint64{}
			s.poison[m.Room] = p
			s.poisonRooms.Store(int32(len(s.poison)))
		}
		p[m.Origin] = max(p[m.Origin], m.Seq)
		s.mu.Unlock()
	}
	if m, ok := env.Message.(*wire.RoomPublishSeq); ok {
		if g, ok := c.Actor().(*roomGrain); ok {
			g.poisonedPublish(c, m) // its publisher is answered now
		}
	}
	var d directive
	s.strategy.HandleFailure(c.ActorSystem(), &d, c.Self(), rs, reason, env)
	g, ok := c.Actor().(*roomGrain)
	if !ok {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if d.d == actor.RestartDirective {
		s.carry[id] = grainCarry{room: g.room, phase: g.phase, hist: g.hist, subs: g.subs, presence: g.presence}
	} else {
		s.stopping[id] = true
	}
}

// started hands a restarted grain its predecessor's state.
func (s *grainSupervision) started(self *actor.PID, g *roomGrain) {
	if s == nil { // a grain outside a node (tests)
		return
	}
	s.mu.Lock()
	c, ok := s.carry[self.Id]
	delete(s.carry, self.Id)
	s.mu.Unlock()
	if ok {
		g.room, g.phase, g.hist, g.subs, g.presence = c.room, c.phase, c.hist, c.subs, c.presence
	}
}

// stopped tells the subscribers of a grain that protoactor stopped after
// it failed to subscribe again.
func (s *grainSupervision) stopped(ctx actor.Context, g *roomGrain) {
	if s == nil {
		return
	}
	s.mu.Lock()
	failed := s.stopping[ctx.Self().Id]
	if !failed {
		delete(s.poison, g.room) // the room's grain ended on its own
		s.poisonRooms.Store(int32(len(s.poison)))
	}
	s.mu.Unlock()
	if !failed || g.room == "" {
		return
	}
	for node := range g.subs {
		ctx.Send(nodePID(node), &wire.RoomResubscribe{Room: g.room})
	}
}

// poisonedPublish counts a publish a grain of the room failed on as its
// origin's seq, so that the origin's next publish is not taken for one
// after a hole (which the grain refuses, rooms_grain.go) and the room goes
// on, and tells its node, whose publisher gets marmot.ErrPublishFailed
// (rooms_publish_key.go); unless it was numbered before it failed (a
// resend, or a failure after the numbering).
func (g *roomGrain) poisonedPublish(c actor.ReceiverContext, m *wire.RoomPublishSeq) {
	if m.Origin == 0 || m.Seq == 0 || g.hist.numbered(m.Origin, m.Seq) {
		return
	}
	g.hist.noteSeq(m.Origin, m.Seq)
	var send actor.SenderContext = c.ActorSystem().Root
	if sc, ok := c.(actor.SenderContext); ok {
		send = sc
	}
	g.publishDone(send, m, 0, true)
}

// poisoned reports whether a grain of room failed on the publish
// (origin, seq), or on a later one of origin: the middleware drops it
// before the grain (never numbered; the publishing node's next publish
// that is numbered confirms it).
func (s *grainSupervision) poisoned(room string, origin, seq uint64) bool {
	if s == nil || origin == 0 || s.poisonRooms.Load() == 0 {
		return false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return seq <= s.poison[room][origin]
}

func (s *grainSupervision) forget(id string) {
	s.mu.Lock()
	delete(s.stats, id)
	delete(s.carry, id)
	delete(s.stopping, id)
	s.mu.Unlock()
}

// directive is the actor.Supervisor the strategy reports to: it only
// records the directive, which protoactor's own supervision applies.
type directive struct{ d actor.Directive }

func (d *directive) Children() []*actor.PID        { return nil }
func (d *directive) EscalateFailure(any, any)      { d.d = actor.EscalateDirective }
func (d *directive) RestartChildren(...*actor.PID) { d.d = actor.RestartDirective }
func (d *directive) StopChildren(...*actor.PID)    { d.d = actor.StopDirective }
func (d *directive) ResumeChildren(...*actor.PID)  { d.d = actor.ResumeDirective }

// grainStopped has the broker's worker subscribe room again: its grain
// stopped after failing (on the node actor). The room's publishes wait,
// and its unconfirmed ones are sent again, as after a change of the
// member list.
func (b *roomBroker) grainStopped(room string) {
	b.mu.Lock()
	if r := b.rooms[room]; r != nil && r.local {
		r.ready = false
		b.retry = true
	}
	b.mu.Unlock()
	b.wake()
}
