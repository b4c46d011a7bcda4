package cluster

import (
	"errors"
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/asynkron/protoactor-go/cluster"
	"github.com/asynkron/protoactor-go/eventstream"

	"github.com/marmotws/marmot"
	"github.com/marmotws/marmot/actors"
	"github.com/marmotws/marmot/cluster/internal/wire"
)

// Rooms across nodes. A room is a grain of kind roomKind whose identity is
// the room's name; disthash places it on one member (rendezvous hashing).
// The grain is the room's sequencer: it numbers every publish, from any
// node, and sends the numbered message to every node that has the room
// (a subscriber: a node whose local room actor lives). A node's messages
// to the grain go one after another from its local room actor, and the
// grain's to a node go one after another to that node's actor, so each
// publisher's order is kept and every member sees the grain's order.
//
// Why grains rather than protoactor's cluster pub-sub: a room needs one
// sequencer that numbers its messages (offsets are marmot's contract), and
// fan-out by node rather than by member (each node fans out to its own
// members, encoded once per wire format). A pub-sub topic is itself a grain
// that delivers by subscriber through a batching producer, with a
// subscriber store that is lost when the topic moves; it would add a hop
// and still not number the messages.

// ErrNoRoute is why a room message could not be handed to its grain: no
// member could be asked to host it (the cluster has no members yet, or is
// changing).
var ErrNoRoute = errors.New("marmot/cluster: no member hosts the room")

// roomGrain is one room's sequencer.
type roomGrain struct {
	n         *Node
	room      string
	epoch     string
	offset    uint64
	published bool                // a message was numbered in this run
	subs      map[string]struct{} // the subscribed nodes, by address
	topo      *eventstream.Subscription
}

func newRoomGrain(n *Node) *roomGrain {
	return &roomGrain{n: n, epoch: actors.NewEpoch(), subs: map[string]struct{}{}}
}

// Receive implements actor.Actor.
func (g *roomGrain) Receive(ctx actor.Context) {
	switch m := ctx.Message().(type) {
	case *actor.Started:
		g.n.grains.started(ctx.Self(), g) // after a restart: the failed one's state
		self, root := ctx.Self(), ctx.ActorSystem().Root
		g.topo = ctx.ActorSystem().EventStream.Subscribe(func(evt any) {
			if t, ok := evt.(*cluster.ClusterTopology); ok && len(t.Left) > 0 {
				root.Send(self, t)
			}
		})
	case *wire.RoomSubscribe:
		g.room = m.Room
		// A grain that has numbered nothing yet takes on the position a
		// subscriber saw last: after the room's grain moved (a member
		// joined or left), the room goes on with its epoch and offsets.
		if !g.published && m.Epoch != "" && (m.Epoch != g.epoch || m.Offset > g.offset) && m.Offset >= g.offset {
			g.epoch, g.offset = m.Epoch, m.Offset
		}
		g.subs[m.Node] = struct{}{}
		ctx.Respond(&wire.RoomPosition{Epoch: g.epoch, Offset: g.offset})
	case *wire.RoomUnsubscribe:
		delete(g.subs, m.Node)
		if len(g.subs) == 0 {
			ctx.Stop(ctx.Self())
		}
	case *wire.RoomPublish:
		g.n.traffic.received[kindPublish].Add(1)
		g.n.traffic.sent[kindDeliver].Add(int64(len(g.subs)))
		g.room = m.Room
		g.offset++
		g.published = true
		d := &wire.RoomDeliver{Room: m.Room, Epoch: g.epoch, Offset: g.offset, Name: m.Name, Data: m.Data, Meta: m.Meta}
		for node := range g.subs {
			ctx.Send(nodePID(node), d)
		}
	case *cluster.ClusterTopology:
		// A node that left is no subscriber any more; when it comes back
		// its rooms subscribe again.
		for _, mb := range m.Left {
			delete(g.subs, mb.Address())
		}
	case *actor.Restarting, *actor.Stopping:
		if g.topo != nil {
			ctx.ActorSystem().EventStream.Unsubscribe(g.topo)
		}
		if _, ok := m.(*actor.Stopping); ok {
			g.n.grains.stopped(ctx, g)
		}
	}
}

// roomBroker is the node's marmot.RoomBroker: the local rooms' way to
// their grains.
type roomBroker struct {
	n     *Node
	mu    sync.Mutex
	rooms map[string]*brokerRoom // the rooms that live on this node

	pending *cluster.ClusterTopology // the latest topology not worked on (under mu)
	again   map[string]struct{}      // rooms whose grain stopped after failing (under mu; grain_failure.go)
	kick    chan struct{}            // wakes run
	done    chan struct{}            // closed by Stop
}

// brokerRoom is what the node knows of one of its rooms' grains.
type brokerRoom struct {
	pid    *actor.PID // the grain, once known
	epoch  string     // the position of the last delivery
	offset uint64
}

func newRoomBroker(n *Node) *roomBroker {
	return &roomBroker{n: n, rooms: map[string]*brokerRoom{}, again: map[string]struct{}{}, kick: make(chan struct{}, 1), done: make(chan struct{})}
}

var _ marmot.RoomBroker = (*roomBroker)(nil)

// Subscribe implements marmot.RoomBroker.
func (b *roomBroker) Subscribe(room string) (marmot.RoomPosition, error) {
	b.mu.Lock()
	r := b.rooms[room]
	if r == nil {
		r = &brokerRoom{}
		b.rooms[room] = r
	}
	epoch, offset := r.epoch, r.offset
	b.mu.Unlock()
	return b.subscribe(room, epoch, offset)
}

// subscribeAttempts bounds the tries of one subscription; the waits
// between them add up to about 1.5 s.
const subscribeAttempts = 6

// subscribe asks the room's grain, where the current topology places it,
// to deliver the room here. It asks the placement itself rather than
// protoactor's PID cache, which still names a grain that moved away after
// a member joined; a grain found stopping, or no member to place it on, is
// tried again.
func (b *roomBroker) subscribe(room, epoch string, offset uint64) (marmot.RoomPosition, error) {
	if b.n.member() == nil {
		return marmot.RoomPosition{}, ErrNotStarted
	}
	var err error
	for attempt := range subscribeAttempts {
		if attempt > 0 {
			// The member list may still be forming (a node that has
			// just started), or the grain stopping: wait a little.
			select {
			case <-b.done:
				return marmot.RoomPosition{}, ErrNotStarted
			case <-time.After(time.Duration(25<<attempt) * time.Millisecond):
			}
		}
		// The member now: a rejoin replaces it (rejoin.go).
		mb := b.n.member()
		msg := &wire.RoomSubscribe{Room: room, Node: mb.sys.Address(), Epoch: epoch, Offset: offset}
		pid := mb.c.Get(room, roomKind)
		if pid == nil {
			err = fmt.Errorf("%w: %q", ErrNoRoute, room)
			continue
		}
		var res any
		res, err = mb.sys.Root.RequestFuture(pid, msg, b.n.cfg.RequestTimeout).Result()
		if err != nil {
			continue
		}
		pos, ok := res.(*wire.RoomPosition)
		if !ok {
			err = fmt.Errorf("unexpected answer %T", res)
			continue
		}
		b.mu.Lock()
		if r := b.rooms[room]; r != nil {
			r.pid = pid
		}
		b.mu.Unlock()
		return marmot.RoomPosition{Epoch: pos.Epoch, Offset: pos.Offset}, nil
	}
	return marmot.RoomPosition{}, fmt.Errorf("marmot/cluster: subscribe to room %q: %w", room, err)
}

// Unsubscribe implements marmot.RoomBroker.
func (b *roomBroker) Unsubscribe(room string) {
	b.mu.Lock()
	r := b.rooms[room]
	delete(b.rooms, room)
	b.mu.Unlock()
	if mb := b.n.member(); r != nil && r.pid != nil && mb != nil {
		mb.sys.Root.Send(r.pid, &wire.RoomUnsubscribe{Room: room, Node: mb.sys.Address()})
	}
}

// Publish implements marmot.RoomBroker. It runs on the room's local
// actor, so the sends of one room leave in its order.
func (b *roomBroker) Publish(room string, m *marmot.RoomMessage) error {
	b.mu.Lock()
	r := b.rooms[room]
	var pid *actor.PID
	if r != nil {
		pid = r.pid
	}
	b.mu.Unlock()
	mb := b.n.member()
	if mb == nil {
		return ErrNotStarted
	}
	if pid == nil {
		if pid = mb.c.Get(room, roomKind); pid == nil {
			return fmt.Errorf("%w: %q", ErrNoRoute, room)
		}
		b.mu.Lock()
		if r := b.rooms[room]; r != nil {
			r.pid = pid
		}
		b.mu.Unlock()
	}
	b.n.traffic.sent[kindPublish].Add(1)
	mb.sys.Root.Send(pid, &wire.RoomPublish{Room: room, Name: m.Name, Data: m.Data, Meta: m.Meta})
	return nil
}

// delivered records the position of a delivery (on the node actor).
func (b *roomBroker) delivered(d *wire.RoomDeliver) {
	b.mu.Lock()
	if r := b.rooms[d.Room]; r != nil {
		r.epoch, r.offset = d.Epoch, d.Offset
	}
	b.mu.Unlock()
}

// topologyChanged hands a new topology to the broker's worker (run),
// which subscribes every local room again: a member that joined or left
// moves grains (rendezvous hashing), and a moved grain starts without
// subscribers. The worker runs beside the node actor, which goes on
// delivering meanwhile; only the latest topology waiting is worked on.
func (b *roomBroker) topologyChanged(t *cluster.ClusterTopology) {
	b.mu.Lock()
	b.pending = t
	b.mu.Unlock()
	select {
	case b.kick <- struct{}{}:
	default:
	}
}

// run is the broker's worker, from Start to Stop.
func (b *roomBroker) run() {
	defer b.n.wg.Done()
	for {
		select {
		case <-b.done:
			return
		case <-b.kick:
		}
		b.subscribeAgain()
		b.mu.Lock()
		t := b.pending
		b.pending = nil
		type pos struct {
			room, epoch string
			offset      uint64
		}
		all := make([]pos, 0, len(b.rooms))
		for name, r := range b.rooms {
			r.pid = nil
			all = append(all, pos{name, r.epoch, r.offset})
		}
		b.mu.Unlock()
		if t == nil {
			continue
		}
		b.n.log.Info("marmot cluster topology", "members", len(t.Members), "joined", len(t.Joined), "left", len(t.Left), "rooms", len(all))
		for _, p := range all {
			select {
			case <-b.done:
				return
			default:
			}
			if _, err := b.subscribe(p.room, p.epoch, p.offset); err != nil {
				b.n.log.Warn("marmot cluster: room subscription after a topology change failed", "room", p.room, "err", err)
			}
		}
		if f := b.n.cfg.OnMembersChange; f != nil {
			ms := make([]Member, 0, len(t.Members))
			for _, m := range t.Members {
				ms = append(ms, Member{NodeID: memberNodeID(m), Address: m.Address()})
			}
			sort.Slice(ms, func(i, j int) bool { return ms[i].NodeID < ms[j].NodeID })
			f(ms)
		}
	}
}
