package cluster

import (
	"context"
	"fmt"
	"maps"
	"slices"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/asynkron/protoactor-go/cluster"
	"google.golang.org/protobuf/proto"

	"github.com/marmotws/marmot"
	"github.com/marmotws/marmot/cluster/internal/wire"
)

// Presence across nodes. A room with presence (ServerConfig.RoomPresence)
// hands every join and leave of a local member to the room's grain, on
// the same path as its publishes, and the grain sends it on to every
// node with the room, the sender included, among the room's messages:
// every member on every node is told of every change in the grain's one
// order. Each change is one small message; whole member lists cross only
// when a room starts on a node (RoomPresenceRequest) and after the grain
// moved (RoomPresenceSync), never per change.
//
// The grain keeps every node's members of the room (by NodeID), which is
// what a starting room asks for. A node that leaves the cluster is
// dropped from it by the grain, and every other node drops the node's
// members from its rooms itself (reporting them as left to its members,
// once), so the leaves are told even when the grain was on the lost node.

var _ marmot.PresenceBroker = (*roomBroker)(nil)

// grain returns the PID of the room's grain: the one the room's last
// subscription found, else where the topology places it now.
func (b *roomBroker) grain(room string) (*actor.PID, error) {
	b.mu.Lock()
	r := b.rooms[room]
	var pid *actor.PID
	if r != nil {
		pid = r.pid
	}
	b.mu.Unlock()
	if pid != nil {
		return pid, nil
	}
	if b.n.member() == nil {
		return nil, ErrNotStarted
	}
	if pid = b.placement(room); pid == nil {
		return nil, fmt.Errorf("%w: %q", ErrNoRoute, room)
	}
	b.mu.Lock()
	if r := b.rooms[room]; r != nil {
		r.pid = pid
	}
	b.mu.Unlock()
	return pid, nil
}

// PublishPresence implements marmot.PresenceBroker.
func (b *roomBroker) PublishPresence(room string, client marmot.ClientID, joined bool) error {
	pid, err := b.grain(room)
	if err != nil {
		return err
	}
	b.n.traffic.sent[kindPublish].Add(1)
	b.n.member().sys.Root.Send(pid, &wire.RoomPresenceChange{Room: room, Node: b.n.cfg.NodeID, Client: uint64(client), Joined: joined})
	return nil
}

// SyncPresence implements marmot.PresenceBroker.
func (b *roomBroker) SyncPresence(room string, members []marmot.ClientID) error {
	pid, err := b.grain(room)
	if err != nil {
		return err
	}
	b.n.traffic.sent[kindPublish].Add(1)
	b.n.member().sys.Root.Send(pid, &wire.RoomPresenceSync{Room: room, Node: b.n.cfg.NodeID, Members: ids64(members)})
	return nil
}

// PresenceState implements marmot.PresenceBroker: the grain's members of
// every node that is still a member of the cluster.
func (b *roomBroker) PresenceState(room string) (map[uint32][]marmot.ClientID, error) {
	pid, err := b.grain(room)
	if err != nil {
		return nil, err
	}
	b.n.traffic.sent[kindQuery].Add(1)
	res, err := b.n.member().sys.Root.RequestFuture(pid, &wire.RoomPresenceRequest{Room: room}, b.n.cfg.RequestTimeout).Result()
	if err != nil {
		return nil, fmt.Errorf("marmot/cluster: presence of room %q: %w", room, err)
	}
	st, ok := res.(*wire.RoomPresenceState)
	if !ok {
		return nil, fmt.Errorf("marmot/cluster: presence of room %q: unexpected answer %T", room, res)
	}
	live := map[uint32]bool{}
	for _, m := range b.n.Members() {
		live[m.NodeID] = true
	}
	out := make(map[uint32][]marmot.ClientID, len(st.Nodes))
	for _, s := range st.Nodes {
		if live[s.Node] {
			out[s.Node] = clientIDs(s.Members)
		}
	}
	return out, nil
}

// grainPresence is the grain's side: every node's members of the room.
type grainPresence map[uint32]map[uint64]struct{}

// receivePresence handles the grain's presence messages; it reports
// whether m was one.
func (g *roomGrain) receivePresence(ctx actor.Context, m any) bool {
	switch m := m.(type) {
	case *wire.RoomPresenceChange:
		g.n.traffic.received[kindPublish].Add(1)
		g.room = m.Room
		set := g.presence.node(m.Node)
		if m.Joined {
			set[m.Client] = struct{}{}
		} else {
			delete(set, m.Client)
		}
		g.presence.trim(m.Node)
		g.sendAll(ctx, m)
	case *wire.RoomPresenceSync:
		g.n.traffic.received[kindPublish].Add(1)
		g.room = m.Room
		set := g.presence.node(m.Node)
		clear(set)
		for _, id := range m.Members {
			set[id] = struct{}{}
		}
		g.presence.trim(m.Node)
		g.sendAll(ctx, m)
	case *wire.RoomPresenceRequest:
		g.n.traffic.received[kindQuery].Add(1)
		st := &wire.RoomPresenceState{}
		for _, node := range slices.Sorted(maps.Keys(g.presence)) {
			st.Nodes = append(st.Nodes, &wire.RoomPresenceSync{Room: m.Room, Node: node, Members: slices.Sorted(maps.Keys(g.presence[node]))})
		}
		ctx.Respond(st)
	default:
		return false
	}
	return true
}

// sendAll sends m to every subscribed node, in the grain's order.
func (g *roomGrain) sendAll(ctx actor.Context, m proto.Message) {
	g.n.traffic.sent[kindDeliver].Add(int64(len(g.subs)))
	for node := range g.subs {
		ctx.Send(nodePID(node), m)
	}
}

// dropNodes forgets the members of the nodes that left the cluster.
func (p grainPresence) dropNodes(left []*cluster.Member) {
	for _, mb := range left {
		delete(p, memberNodeID(mb))
	}
}

func (p grainPresence) node(id uint32) map[uint64]struct{} {
	set := p[id]
	if set == nil {
		set = map[uint64]struct{}{}
		p[id] = set
	}
	return set
}

func (p grainPresence) trim(id uint32) {
	if len(p[id]) == 0 {
		delete(p, id)
	}
}

// nodePresence is the node actor's side: presence messages from the
// grains, handed to the local rooms unless they concern a node that left
// the cluster (a late message would bring its members back). It reports
// whether m was one.
func (a *nodeActor) receivePresence(ctx actor.Context, m any) bool {
	srv := a.n.srv
	switch m := m.(type) {
	case *wire.RoomPresenceChange:
		a.n.traffic.received[kindDeliver].Add(1)
		if !a.gone[m.Node] {
			srv.DeliverPresence(m.Room, &marmot.PresenceUpdate{Node: m.Node, Client: marmot.ClientID(m.Client), Joined: m.Joined})
		}
	case *wire.RoomPresenceSync:
		a.n.traffic.received[kindDeliver].Add(1)
		if !a.gone[m.Node] {
			srv.DeliverPresence(m.Room, &marmot.PresenceUpdate{Node: m.Node, Sync: true, Members: clientIDs(m.Members)})
		}
	case *wire.RoomMembersRequest:
		a.n.traffic.received[kindQuery].Add(1)
		ctx.Respond(&wire.RoomMembers{Ids: ids64(srv.LocalMembers(m.Room))})
	case *wire.RequestTo:
		a.n.traffic.received[kindSend].Add(1)
		a.n.requestClient(ctx, m)
	default:
		return false
	}
	return true
}

// topologyPresence follows the member list: the members of every node
// that left are dropped from every local room (each reported left to the
// room's members, once), and the node's later presence messages are
// ignored until it joins again.
func (a *nodeActor) topologyPresence(t *cluster.ClusterTopology) {
	if a.gone == nil {
		a.gone = map[uint32]bool{}
	}
	for _, mb := range t.Left {
		id := memberNodeID(mb)
		if id == a.n.cfg.NodeID || a.gone[id] {
			continue
		}
		a.gone[id] = true
		for _, room := range a.n.rb.roomNames() {
			a.n.srv.DeliverPresence(room, &marmot.PresenceUpdate{Node: id, Sync: true})
		}
	}
	// Last: a restarted node can leave (its old member) and be back (its
	// new one, same NodeID) in one topology.
	for _, mb := range t.Members {
		delete(a.gone, memberNodeID(mb))
	}
}

// roomNames returns the rooms that live on this node.
func (b *roomBroker) roomNames() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return slices.Sorted(maps.Keys(b.rooms))
}

// RoomMembers returns the members of room on every node, ordered by ID,
// for any room (with presence or not). A node that does not answer within
// the RequestTimeout (or ctx) is named in the error; the others' members
// are returned.
func (n *Node) RoomMembers(ctx context.Context, room string) ([]marmot.ClientID, error) {
	var out []marmot.ClientID
	err := n.each(ctx, kindQuery, &wire.RoomMembersRequest{Room: room}, func(_ Member, res proto.Message) error {
		ms, ok := res.(*wire.RoomMembers)
		if !ok {
			return fmt.Errorf("unexpected answer %T", res)
		}
		out = append(out, clientIDs(ms.Ids)...)
		return nil
	})
	slices.Sort(out)
	return out, err
}

func ids64(ids []marmot.ClientID) []uint64 {
	out := make([]uint64, len(ids))
	for i, id := range ids {
		out[i] = uint64(id)
	}
	return out
}

func clientIDs(ids []uint64) []marmot.ClientID {
	out := make([]marmot.ClientID, len(ids))
	for i, id := range ids {
		out[i] = marmot.ClientID(id)
	}
	return out
}
