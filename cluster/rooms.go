package cluster

import (
	"errors"
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/asynkron/protoactor-go/cluster"
	"github.com/asynkron/protoactor-go/cluster/identitylookup/disthash"

	"github.com/marmotws/marmot"
	"github.com/marmotws/marmot/actors"
	"github.com/marmotws/marmot/cluster/internal/wire"
	"github.com/marmotws/marmot/protocol"
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

// ErrPublishBacklog is why a room publish failed: the node already has
// 50,000 publishes (or 64 MiB of them) to the room that the room's grain
// has not delivered back (it is slow, or is being taken over after a node
// loss).
var ErrPublishBacklog = errors.New("marmot/cluster: too many room publishes not yet confirmed")

// maxUnconfirmed and maxUnconfirmedBytes bound the publishes a node keeps
// per room until it sees them delivered (see brokerRoom).
const (
	maxUnconfirmed      = 50_000
	maxUnconfirmedBytes = 64 << 20
)

// roomBroker is the node's marmot.RoomBroker: the local rooms' way to
// their grains, and the node's history of each room (rooms_history.go).
type roomBroker struct {
	n      *Node
	origin uint64 // this node's run, in its publishes (newOrigin)
	mu     sync.Mutex
	rooms  map[string]*brokerRoom // the rooms that live on this node, and its replicas

	pending *cluster.ClusterTopology // the latest topology not worked on (under mu)
	rdv     *cluster.Rendezvous      // the placement of grains in the latest topology (under mu)
	retry   bool                     // a room waits for a subscription (under mu)
	kick    chan struct{}            // wakes run
	done    chan struct{}            // closed by Stop
}

// brokerRoom is what the node holds of one room.
//
// Publishes are not lost when the grain's node dies: the node numbers its
// own publishes to the room (origin, seq) and keeps each until it comes
// back in a delivery (the node subscribes to every room it publishes to),
// at most maxUnconfirmed. After a change of the member list the room is
// subscribed again, to wherever its grain now is, and the unconfirmed
// publishes are sent again, in order and before any new one (ready is
// false meanwhile: new publishes wait in the same queue); the grain
// numbers an (origin, seq) once.
type brokerRoom struct {
	pid         *actor.PID // the grain, once known
	local       bool       // a local room subscribed (else a replica)
	hist        *roomHist  // the position of the last delivery, and the history
	seq         uint64     // this node's publishes to the room
	unconfirmed []*wire.RoomPublishSeq
	unconfBytes int       // their payload and name bytes
	ready       bool      // publishes go to pid as they come
	progress    time.Time // the last confirmation, or the first publish of an empty queue
}

// stallAfter is how long a room's unconfirmed publishes may go without a
// confirmation before the node sends them again (stalled). protoactor's
// remote delivers at most once: a batch lost on a broken gRPC stream is
// gone, and the grain refuses what comes after a hole in a node's seqs
// (rooms_grain.go), so the node must send again; the grain numbers an
// (origin, seq) once, so sending again is safe.
func (n *Node) stallAfter() time.Duration { return 2 * n.cfg.RequestTimeout }

func newRoomBroker(n *Node) *roomBroker {
	// origin is set by Node.Start (the first member's ID, kept across
	// rejoins: the node's run).
	return &roomBroker{n: n, rooms: map[string]*brokerRoom{}, kick: make(chan struct{}, 1), done: make(chan struct{})}
}

// originRunBits are the low bits of an origin: the run's start time.
const originRunBits = 44

// newOrigin numbers a run of node nodeID (a Node from Start to Stop) in
// its room publishes: the NodeID in the top 20 bits (NodeIDs end at
// 999,999 < 2^20), so that no two nodes share an origin, and the start
// time in Unix milliseconds in the low 44 (2^44 ms is 557 years), so that
// a node restarted under the same NodeID is a new origin: the grain that
// numbered the old run's seqs 1 to n does not take the new run's 1 to n
// for them. A restart takes far more than a millisecond; only a wall
// clock set back by exactly the time between the two starts would repeat
// one. It replaced the run's member ID, a string of about 30 bytes in
// every publish, delivery and history entry and the key of the grain's
// seq map (docs/PERFORMANCE.md, "origin numbering"). Never 0 (none).
func newOrigin(nodeID uint32, start time.Time) uint64 {
	return uint64(nodeID)<<originRunBits | uint64(start.UnixMilli())&(1<<originRunBits-1)
}

var _ marmot.RoomBroker = (*roomBroker)(nil)

func (b *roomBroker) room(name string) *brokerRoom {
	r := b.rooms[name]
	if r == nil {
		r = &brokerRoom{hist: newRoomHist(b.n.histCfg())}
		b.rooms[name] = r
	}
	return r
}

// Subscribe implements marmot.RoomBroker. The grain's answer carries its
// history, which the node keeps from then on: a room that starts on a
// node late (a client that failed over to it) has the room's history.
func (b *roomBroker) Subscribe(room string) (marmot.RoomPosition, error) {
	b.mu.Lock()
	r := b.room(room)
	r.local = true
	epoch, offset := r.hist.epoch, r.hist.last
	b.mu.Unlock()
	st, pid, err := b.subscribe(room, epoch, offset, true)
	if err != nil {
		b.mu.Lock()
		b.retry = true
		b.mu.Unlock()
		b.wake()
		return marmot.RoomPosition{}, err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if r = b.rooms[room]; r == nil {
		return marmot.RoomPosition{}, ErrNotStarted // stopped meanwhile
	}
	b.merge(r, st)
	b.continueSeq(r, st)
	b.ready(r, pid)
	return marmot.RoomPosition{Epoch: st.Epoch, Offset: st.Offset}, nil
}

// merge takes a state the grain sent over into r's history, keeping the
// deliveries that reached the node before the answer did (b.mu held).
func (b *roomBroker) merge(r *brokerRoom, st *wire.RoomState) {
	old := r.hist
	if old.epoch == st.Epoch && old.last >= st.Offset && len(st.Entries) == 0 {
		return
	}
	r.hist = newRoomHist(b.n.histCfg())
	r.hist.install(st)
	if old.epoch == st.Epoch {
		for o, s := range old.seqs {
			r.hist.noteSeq(o, s)
		}
		r.hist.keys.merge(&old.keys)
		for _, e := range old.entries {
			r.hist.add(e, st.Epoch)
		}
		if old.last > r.hist.last {
			r.hist.last = old.last
		}
	}
}

// ready sends r's unconfirmed publishes to its grain, in order, and lets
// the next ones go as they come (b.mu held).
func (b *roomBroker) ready(r *brokerRoom, pid *actor.PID) {
	r.pid = pid
	if mb := b.n.member(); mb != nil {
		for i, p := range r.unconfirmed {
			if i == 0 {
				// The seqs before it were confirmed: no hole for
				// the grain (a copy: p may be in a local mailbox).
				p = &wire.RoomPublishSeq{Room: p.Room, Name: p.Name, Data: p.Data, Meta: p.Meta, Origin: p.Origin, Seq: p.Seq, Confirmed: p.Seq - 1, Key: p.Key}
			}
			mb.sys.Root.Send(pid, p)
		}
	}
	b.n.traffic.sent[kindPublish].Add(int64(len(r.unconfirmed)))
	r.ready = true
}

// errRejoining is why a subscription was not made: the node is replacing
// its member (rejoin.go).
var errRejoining = errors.New("marmot/cluster: the node is rejoining its cluster")

// subscribeAttempts bounds the tries of one subscription; the waits
// between them add up to about 1.5 s.
const subscribeAttempts = 6

// subscribe asks the room's grain, where the current topology places it,
// to deliver the room here. It asks the placement itself rather than
// protoactor's PID cache, which still names a grain that moved away after
// a member joined; a grain found stopping, or no member to place it on, is
// tried again.
func (b *roomBroker) subscribe(room, epoch string, offset uint64, history bool) (*wire.RoomState, *actor.PID, error) {
	if b.n.member() == nil {
		return nil, nil, ErrNotStarted
	}
	var err error
	for attempt := range subscribeAttempts {
		if attempt > 0 {
			// The member list may still be forming (a node that has
			// just started), or the grain stopping: wait a little.
			select {
			case <-b.done:
				return nil, nil, ErrNotStarted
			case <-time.After(time.Duration(25<<attempt) * time.Millisecond):
			}
		}
		// The member now: a rejoin replaces it (rejoin.go).
		mb := b.n.member()
		if mb.left.Load() {
			// Rejoining: see run. Asked through the stopped member,
			// the grain's answer would go to the new one, which has
			// no such request, and the attempt waits out its deadline.
			err = errRejoining
			continue
		}
		msg := &wire.RoomSubscribeSeq{Room: room, Node: mb.sys.Address(), Epoch: epoch, Offset: offset, History: history}
		pid := b.placement(room)
		if pid == nil {
			err = fmt.Errorf("%w: %q", ErrNoRoute, room)
			continue
		}
		var res any
		// A grain that starts first takes the room over (rooms_grain.go),
		// which takes up to a RequestTimeout: wait for it beyond that.
		res, err = mb.sys.Root.RequestFuture(pid, msg, 2*b.n.cfg.RequestTimeout).Result()
		if err != nil {
			b.n.log.Debug("marmot cluster: room subscription", "room", room, "grain", pid, "attempt", attempt, "err", err)
			continue
		}
		st, ok := res.(*wire.RoomState)
		if !ok {
			err = fmt.Errorf("unexpected answer %T", res)
			continue
		}
		return st, pid, nil
	}
	return nil, nil, fmt.Errorf("marmot/cluster: subscribe to room %q: %w", room, err)
}

// placement returns the room's grain, activated where the latest topology
// the node actor has seen places it. protoactor's own lookup (disthash)
// places it by its own copy of the topology, which it updates after the
// node actor hears of a change (the node listens first): right after a
// member died it still asks the dead member, and waits 5 s for nothing.
func (b *roomBroker) placement(room string) *actor.PID {
	b.mu.Lock()
	rdv := b.rdv
	b.mu.Unlock()
	mb := b.n.member()
	if mb == nil || mb.c == nil {
		return nil
	}
	if rdv == nil {
		return mb.c.Get(room, roomKind)
	}
	ci := cluster.NewClusterIdentity(room, roomKind)
	owner := rdv.GetByClusterIdentity(ci)
	if owner == "" {
		return nil
	}
	res, err := mb.sys.Root.RequestFuture(actor.NewPID(owner, disthash.PartitionActivatorActorName),
		&cluster.ActivationRequest{ClusterIdentity: ci}, b.n.cfg.RequestTimeout).Result()
	if err != nil {
		return nil
	}
	if r, ok := res.(*cluster.ActivationResponse); ok {
		return r.Pid
	}
	return nil
}

// Unsubscribe implements marmot.RoomBroker. The node's history of the
// room ends with it (the grain has another node keep it if need be).
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
// actor, so the publishes of one room are numbered in its order. Its
// ticket is the publish's seq, which the delivery that confirms it
// carries back (delivered; rooms_confirm.go).
func (b *roomBroker) Publish(room string, m *marmot.RoomMessage) (uint64, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	r := b.rooms[room]
	if r == nil || !r.local {
		return 0, fmt.Errorf("%w: %q", ErrNoRoute, room)
	}
	size := len(m.Data) + len(m.Name)
	if len(r.unconfirmed) >= maxUnconfirmed || r.unconfBytes+size > maxUnconfirmedBytes {
		return 0, ErrPublishBacklog
	}
	r.unconfBytes += size
	if len(r.unconfirmed) == 0 {
		r.progress = time.Now()
	}
	r.seq++
	p := &wire.RoomPublishSeq{Room: room, Name: m.Name, Data: m.Data, Meta: m.Meta, Origin: b.origin, Seq: r.seq, Key: m.Key}
	r.unconfirmed = append(r.unconfirmed, p)
	if mb := b.n.member(); r.ready && mb != nil {
		b.n.traffic.sent[kindPublish].Add(1)
		mb.sys.Root.Send(r.pid, p)
	} else {
		b.retry = true // the worker subscribes it, if it is not already at it
		b.wake()
	}
	return r.seq, nil
}

// History implements marmot.RoomBroker.
func (b *roomBroker) History(room, epoch string, from, to uint64) ([]marmot.HistoryEntry, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	r := b.rooms[room]
	if r == nil {
		return nil, &actors.HistoryGap{Reason: protocol.RecoverNoHistory}
	}
	return r.hist.history(epoch, from, to)
}

// delivered records a delivery (on the node actor, before the room gets
// it): its position and history, and, for the node's own publish, its
// confirmation, whose seq it returns (the room's RoomMessage.Confirms:
// the local room answers the publishes up to it; 0 for none).
func (b *roomBroker) delivered(d *wire.RoomDeliverSeq) (confirms uint64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	r := b.rooms[d.Room]
	if r == nil {
		return 0
	}
	r.hist.add(&wire.HistEntry{Offset: d.Offset, Name: d.Name, Data: d.Data, AtUnixNano: d.AtUnixNano, Origin: d.Origin, Seq: d.Seq, Key: d.Key}, d.Epoch)
	if d.Origin == b.origin && d.Origin != 0 {
		b.confirmed(r, d.Seq)
		if r.local {
			confirms = d.Seq
		}
	}
	return confirms
}

// confirmed drops r's unconfirmed publishes up to seq (b.mu held): the
// grain has numbered them (or is done with them, rooms_publish_key.go).
func (b *roomBroker) confirmed(r *brokerRoom, seq uint64) {
	k := 0
	for k < len(r.unconfirmed) && r.unconfirmed[k].Seq <= seq {
		r.unconfBytes -= len(r.unconfirmed[k].Data) + len(r.unconfirmed[k].Name)
		r.unconfirmed[k] = nil
		k++
	}
	// Drop the confirmed ones from the front by slicing, not by
	// moving the rest down: the queue can hold thousands while the
	// grain catches up, and a copy per delivery took most of the
	// node actor's time in a burst (docs/PERFORMANCE.md).
	// append reallocates once the tail's capacity is used up, so the
	// array stays within a small multiple of the queue.
	r.unconfirmed = r.unconfirmed[k:]
	if k > 0 {
		r.progress = time.Now()
	}
}

// stalled marks the local rooms whose unconfirmed publishes have had no
// confirmation for stallAfter, so that run subscribes them again and
// sends those publishes again; it reports whether any was.
func (b *roomBroker) stalled(now time.Time) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	found := false
	for name, r := range b.rooms {
		if r.local && r.ready && len(r.unconfirmed) > 0 && now.Sub(r.progress) >= b.n.stallAfter() {
			b.n.log.Warn("marmot cluster: room publishes unconfirmed, sending them again", "room", name, "unconfirmed", len(r.unconfirmed), "first_seq", r.unconfirmed[0].Seq)
			r.ready, r.progress = false, now
			b.retry, found = true, true
		}
	}
	return found
}

// state answers a grain that takes room over (on the node actor).
func (b *roomBroker) state(room string) *wire.RoomState {
	b.mu.Lock()
	defer b.mu.Unlock()
	var st *wire.RoomState
	if r := b.rooms[room]; r != nil {
		st = r.hist.state(room)
		st.Replica = !r.local
	} else {
		st = &wire.RoomState{Room: room}
	}
	if mb := b.n.member(); mb != nil {
		st.Node = mb.sys.Address()
	}
	return st
}

// replicate keeps a room's history for its grain (on the node actor).
func (b *roomBroker) replicate(st *wire.RoomState) {
	if st == nil || st.Room == "" {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.merge(b.room(st.Room), st)
}

// release drops a replica the grain no longer needs (on the node actor).
func (b *roomBroker) release(room string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if r := b.rooms[room]; r != nil && !r.local {
		delete(b.rooms, room)
	}
}

// topologyChanged hands a new topology to the broker's worker (run),
// which subscribes every local room again: a member that joined or left
// moves grains (rendezvous hashing), and a moved grain starts without
// subscribers. The worker runs beside the node actor, which goes on
// delivering meanwhile; only the latest topology waiting is worked on.
func (b *roomBroker) topologyChanged(t *cluster.ClusterTopology) {
	rdv := cluster.NewRendezvous()
	rdv.UpdateMembers(t.Members)
	b.mu.Lock()
	b.pending, b.rdv = t, rdv
	b.mu.Unlock()
	b.wake()
}

func (b *roomBroker) wake() {
	select {
	case b.kick <- struct{}{}:
	default:
	}
}

// run is the broker's worker, from Start to Stop.
func (b *roomBroker) run() {
	defer b.n.wg.Done()
	tick := time.NewTicker(b.n.stallAfter() / 4)
	defer tick.Stop()
	for {
		select {
		case <-b.done:
			return
		case <-b.kick:
		case now := <-tick.C:
			if !b.stalled(now) {
				continue
			}
		}
		b.mu.Lock()
		t, retry := b.pending, b.retry
		b.pending, b.retry = nil, false
		var all []string
		for name, r := range b.rooms {
			if r.local && (t != nil || !r.ready) {
				// New publishes wait until the room is subscribed
				// again and its unconfirmed ones are sent again.
				r.ready = false
				all = append(all, name)
			}
		}
		b.mu.Unlock()
		if t == nil && !retry {
			continue
		}
		if mb := b.n.member(); mb == nil || mb.left.Load() {
			// The node is rejoining (rejoin.go): its new member's first
			// topology comes while it starts, before the node has it,
			// and the old member is stopped. Wait for rejoin's wake once
			// the new member is in place (the rooms stay not ready).
			b.mu.Lock()
			if b.pending == nil {
				b.pending = t
			}
			b.retry = true
			b.mu.Unlock()
			continue
		}
		if t != nil {
			b.n.log.Info("marmot cluster topology", "members", len(t.Members), "joined", len(t.Joined), "left", len(t.Left), "rooms", len(all))
		}
		if !b.resubscribeAll(all) {
			return
		}
		if t != nil {
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
}

// resubscribe subscribes a local room again, reporting the position the
// node holds (a grain behind it goes on from there; one ahead sends what
// the node misses), then sends its unconfirmed publishes again.
func (b *roomBroker) resubscribe(room string) {
	b.mu.Lock()
	r := b.rooms[room]
	if r == nil {
		b.mu.Unlock()
		return
	}
	epoch, offset := r.hist.epoch, r.hist.last
	b.mu.Unlock()
	_, pid, err := b.subscribe(room, epoch, offset, false)
	b.mu.Lock()
	defer b.mu.Unlock()
	if r = b.rooms[room]; r == nil {
		return
	}
	if err != nil {
		b.n.log.Warn("marmot cluster: room subscription after a topology change failed", "room", room, "err", err)
		// Tried again in a second (and at the next publish or change of
		// the member list): the unconfirmed publishes wait for it.
		b.retry = true
		time.AfterFunc(time.Second, b.wake)
		return
	}
	b.ready(r, pid)
}
