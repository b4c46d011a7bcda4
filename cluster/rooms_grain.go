package cluster

import (
	"hash/fnv"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/asynkron/protoactor-go/cluster"
	"github.com/asynkron/protoactor-go/eventstream"

	"github.com/marmotws/marmot/actors"
	"github.com/marmotws/marmot/cluster/internal/wire"
	"github.com/marmotws/marmot/protocol"
)

// roomGrain is one room's sequencer (see rooms.go), with the room's
// history (docs/CLUSTER.md, "Room history across nodes").
//
// An activation first takes the room over: it asks every member for what
// it holds of the room (RoomStateQuery, answered by the node actors from
// their brokers, or a live grain of the room before it: rooms_takeover.go)
// and, once all have answered or twice RequestTimeout has passed (asking
// again meanwhile), goes on from the longest history it got: the same epoch, the next
// offset, and the publishers' seqs it numbered, so that a publish sent
// again after the old grain's node died is numbered once. Within an epoch
// every node's history is a prefix of the old grain's (its deliveries to
// a node go one after another), so the longest is the old grain's as far
// as any survivor got. When no member holds the room, a new epoch starts
// (clients that recover are told Recovered=false). Whatever arrives while
// it takes over waits (stash) and is handled after, in its order.
//
// Every numbered message is then held by at least two nodes: the nodes
// that have the room keep its history (their brokers), and when they are
// fewer than two, counting the grain's own node, the grain has one more
// node keep it as a replica (RoomReplicate; the first other member in an
// order hashed from the room's name), which gets the deliveries too. A
// publish of the grain's own node is confirmed only once another node
// holds it (rooms_held.go).
type roomGrain struct {
	n     *Node
	room  string
	phase grainPhase
	hist  *roomHist
	// subs are the nodes the grain delivers to, by address: true for a
	// replica (a node that keeps the history without having the room).
	subs map[string]bool

	// while it takes over:
	waiting map[string]struct{} // members that have not answered
	tries   int                 // questions asked of them (rooms_takeover.go)
	states  []*wire.RoomState   // their answers
	stash   []stashed           // messages to handle after
	topo    *eventstream.Subscription

	presence grainPresence // every node's members, in rooms with presence (presence.go)
	held     grainHeld     // own node's publishes another node must hold (rooms_held.go)
}

type grainPhase int

const (
	grainTakingOver grainPhase = iota
	grainReady
)

// stashed is a message that came while the grain took the room over.
type stashed struct {
	msg    any
	sender *actor.PID
}

// maxStash bounds what waits during a take-over; a publish beyond it is
// dropped (its publisher's broker sends it again at the next change of
// the member list), a subscription is not answered (its node tries again).
const maxStash = 100_000

func newRoomGrain(n *Node) *roomGrain {
	return &roomGrain{n: n, hist: newRoomHist(n.histCfg()), subs: map[string]bool{}, presence: grainPresence{}}
}

// Receive implements actor.Actor.
func (g *roomGrain) Receive(ctx actor.Context) {
	switch m := ctx.Message().(type) {
	case *actor.Started:
		g.n.grains.started(ctx.Self(), g) // after a restart: the failed one's state (grain_failure.go)
		self, root := ctx.Self(), ctx.ActorSystem().Root
		g.topo = ctx.ActorSystem().EventStream.Subscribe(func(evt any) {
			if t, ok := evt.(*cluster.ClusterTopology); ok && len(t.Left) > 0 {
				root.Send(self, t)
			}
		})
	case *cluster.ClusterInit:
		g.room = m.Identity.Identity
		g.n.roomGrains.add(g.room, ctx.Self()) // for a later grain's take-over (rooms_takeover.go)
		g.takeOver(ctx)
	case *wire.RoomState:
		if g.phase != grainTakingOver {
			return
		}
		delete(g.waiting, m.Node)
		g.states = append(g.states, m)
		if len(g.waiting) == 0 {
			g.takenOver(ctx)
		}
	case *grainTakeOverTick:
		g.takeOverTick(ctx) // rooms_takeover.go
	case *grainHandOff:
		g.handOff(ctx, m)
	case *wire.RoomSubscribeSeq, *wire.RoomPublishSeq, *wire.RoomUnsubscribe, *wire.RoomPresenceChange, *wire.RoomPresenceSync:
		if g.phase == grainTakingOver {
			if len(g.stash) < maxStash {
				g.stash = append(g.stash, stashed{msg: m, sender: ctx.Sender()})
			}
			return
		}
		g.handle(ctx, m, ctx.Sender())
	case *cluster.ClusterTopology:
		// A node that left is no subscriber any more; when it comes back
		// its rooms subscribe again.
		for _, mb := range m.Left {
			delete(g.subs, mb.Address())
			if g.phase == grainTakingOver {
				delete(g.waiting, mb.Address())
			}
		}
		g.presence.dropNodes(m.Left)
		if g.phase == grainTakingOver {
			if len(g.waiting) == 0 {
				g.takenOver(ctx)
			}
			return
		}
		g.ensureReplica(ctx)
	case *actor.Restarting, *actor.Stopping:
		if g.topo != nil {
			ctx.ActorSystem().EventStream.Unsubscribe(g.topo)
		}
		g.stopHeld()
		if _, ok := m.(*actor.Stopping); ok {
			g.n.roomGrains.remove(g.room, ctx.Self())
			g.n.grains.stopped(ctx, g)
		}
	default:
		if !g.receiveHeld(ctx, m) {
			g.receivePresence(ctx, m) // a presence request is answered at once
		}
	}
}

// takeOver asks every member what it holds of the room.
func (g *roomGrain) takeOver(ctx actor.Context) {
	g.waiting = map[string]struct{}{}
	// The grain's own member (not n.member(): a grain can start while its
	// member is starting, before the node has it).
	if c := grainCluster(ctx.ActorSystem()); c != nil {
		for _, mb := range c.MemberList.Members().Members() {
			g.waiting[mb.Address()] = struct{}{}
		}
	}
	g.n.log.Debug("marmot cluster: room take-over", "room", g.room, "members", len(g.waiting))
	if len(g.waiting) == 0 {
		g.takenOver(ctx)
		return
	}
	g.askMembers(ctx) // again until they answer (rooms_takeover.go)
}

// takenOver goes on from the longest history the members hold, then
// handles what waited.
func (g *roomGrain) takenOver(ctx actor.Context) {
	best := longestState(g.states)
	if best != nil {
		g.hist.install(best)
	} else {
		g.hist.reset(actors.NewEpoch(), 0)
	}
	g.phase = grainReady
	// The nodes that hold the room are its subscribers (they also
	// subscribe again themselves after a change of the member list); a
	// node behind in the epoch is sent what it misses.
	for _, st := range g.states {
		if !st.Has || st.Node == "" {
			continue
		}
		g.subs[st.Node] = st.Replica
		if st.Epoch == g.hist.epoch && st.Offset < g.hist.last {
			g.catchUp(ctx, st.Node, st.Offset)
		}
	}
	g.n.log.Info("marmot cluster: room taken over", "node", g.n.cfg.NodeID, "room", g.room, "epoch", g.hist.epoch, "offset", g.hist.last, "answers", len(g.states), "asked", g.tries, "stashed", len(g.stash), "states", statesSummary(g.states))
	g.states, g.waiting = nil, nil
	stash := g.stash
	g.stash = nil
	for _, s := range stash {
		g.handle(ctx, s.msg, s.sender)
	}
	g.ensureReplica(ctx)
}

// longestState picks the state with the highest offset (of those that
// hold the room); of equal offsets, the one with the most history.
func longestState(states []*wire.RoomState) *wire.RoomState {
	var best *wire.RoomState
	for _, st := range states {
		if !st.Has || st.Epoch == "" {
			continue
		}
		if best == nil || st.Offset > best.Offset || (st.Offset == best.Offset && len(st.Entries) > len(best.Entries)) {
			best = st
		}
	}
	return best
}

// handle is the grain's work once it holds the room.
func (g *roomGrain) handle(ctx actor.Context, msg any, sender *actor.PID) {
	switch m := msg.(type) {
	case *wire.RoomSubscribeSeq:
		g.room = m.Room
		if m.Epoch == g.hist.epoch && m.Offset > g.hist.last {
			// A node ahead of the grain (it did not answer the take-over
			// in time): go on from its position, so that nothing is
			// numbered twice at one offset.
			g.n.log.Warn("marmot cluster: room subscriber ahead of its grain", "room", g.room, "node", m.Node, "offset", m.Offset, "grain", g.hist.last)
			g.hist.reset(m.Epoch, m.Offset)
			g.hist.trimmed = protocol.RecoverOverflow
		}
		g.subs[m.Node] = false
		st := &wire.RoomState{Room: g.room, Has: true, Epoch: g.hist.epoch, Offset: g.hist.last}
		if m.History {
			// A room starting on the node: its history, and the seqs
			// numbered (the node's own go on from its, rooms_confirm.go).
			hs := g.hist.state(g.room)
			st.Entries, st.Seqs = hs.Entries, hs.Seqs
		}
		if sender != nil {
			ctx.Send(sender, st)
		}
		if !m.History && m.Epoch == g.hist.epoch && m.Offset < g.hist.last {
			g.catchUp(ctx, m.Node, m.Offset)
		}
		g.ensureReplica(ctx)
	case *wire.RoomUnsubscribe:
		delete(g.subs, m.Node)
		if g.liveSubs() == 0 {
			g.stop(ctx)
			return
		}
		g.ensureReplica(ctx)
	case *wire.RoomPublishSeq:
		g.n.traffic.received[kindPublish].Add(1)
		g.room = m.Room
		if g.hist.numbered(m.Origin, m.Seq) {
			return // sent again after a change of the member list, or a stall
		}
		if g.hist.after(m.Origin, m.Seq, m.Confirmed) {
			// A hole in this origin's seqs: protoactor's remote lost
			// the ones before (a broken stream). Numbering it would put
			// it before them; its node sends them all again, in order,
			// once it sees no confirmation (stallAfter, rooms.go).
			return
		}
		if g.repeated(ctx, m) {
			return // numbered already under its key (rooms_publish_key.go)
		}
		e := &wire.HistEntry{Offset: g.hist.last + 1, Name: m.Name, Data: m.Data, AtUnixNano: time.Now().UnixNano(), Origin: m.Origin, Seq: m.Seq, Key: m.Key}
		g.hist.add(e, g.hist.epoch)
		d := &wire.RoomDeliverSeq{Room: g.room, Epoch: g.hist.epoch, Offset: e.Offset, Name: m.Name, Data: m.Data, Meta: m.Meta, Origin: m.Origin, Seq: m.Seq, AtUnixNano: e.AtUnixNano, Key: m.Key}
		g.deliver(ctx, d) // rooms_held.go
	default:
		g.receivePresence(ctx, m) // a change kept back during a take-over
	}
}

// catchUp sends node the messages after from that the grain keeps, as
// deliveries ahead of the next ones.
func (g *roomGrain) catchUp(ctx actor.Context, node string, from uint64) {
	es, ok := g.hist.since(from, g.hist.last)
	if !ok {
		es = g.hist.entries // a gap the node's members will see in the offsets
	}
	for _, e := range es {
		ctx.Send(nodePID(node), &wire.RoomDeliverSeq{Room: g.room, Epoch: g.hist.epoch, Offset: e.Offset, Name: e.Name, Data: e.Data, Origin: e.Origin, Seq: e.Seq, AtUnixNano: e.AtUnixNano, Key: e.Key})
	}
}

// liveSubs counts the nodes that have the room (not the replicas).
func (g *roomGrain) liveSubs() int {
	k := 0
	for _, replica := range g.subs {
		if !replica {
			k++
		}
	}
	return k
}

// ensureReplica has one more node keep the room's history when fewer than
// two nodes hold it (the grain's own counts as one: it keeps the history
// too, but not beyond its node's life).
func (g *roomGrain) ensureReplica(ctx actor.Context) {
	c := grainCluster(ctx.ActorSystem()) // the grain's own member's
	if c == nil || g.liveSubs() == 0 {
		return
	}
	self := ctx.ActorSystem().Address()
	holders := map[string]struct{}{self: {}}
	for node := range g.subs {
		holders[node] = struct{}{}
	}
	if len(holders) >= 2 {
		return
	}
	var pick string
	var best uint64
	for _, mb := range c.MemberList.Members().Members() {
		addr := mb.Address()
		if addr == self {
			continue
		}
		h := fnv.New64a()
		_, _ = h.Write([]byte(g.room))
		_, _ = h.Write([]byte(addr))
		if s := h.Sum64(); pick == "" || s > best {
			pick, best = addr, s
		}
	}
	if pick == "" {
		return // a cluster of one: nowhere else to keep it
	}
	g.subs[pick] = true
	ctx.Send(nodePID(pick), &wire.RoomReplicate{State: g.hist.state(g.room)})
	g.requery(ctx) // it holds what waits (rooms_held.go)
}

// stop ends the grain when no node has the room any more; its replicas
// are released.
func (g *roomGrain) stop(ctx actor.Context) {
	for node, replica := range g.subs {
		if replica {
			ctx.Send(nodePID(node), &wire.RoomRelease{Room: g.room})
		}
	}
	ctx.Stop(ctx.Self())
}

// grainCluster is the cluster of the member a grain runs in, or nil for a
// system without one (protoactor's GetCluster panics then). A grain uses
// its own member's cluster, not Node.member(): it can start while that
// member is starting, before the node has it.
func grainCluster(sys *actor.ActorSystem) (c *cluster.Cluster) {
	defer func() {
		if recover() != nil {
			c = nil
		}
	}()
	return cluster.GetCluster(sys)
}
