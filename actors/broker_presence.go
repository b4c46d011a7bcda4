package actors

import (
	"maps"
	"slices"

	"github.com/marmotws/marmot/protocol"
)

// PresenceBroker is a RoomBroker that also carries the presence of rooms
// (HubConfig.RoomPresence) across hubs: package cluster is one. With it a
// room with presence does not tell its members of a join or leave itself;
// it hands the change to the broker, which puts it in the room's one
// order among the room's messages and hands it back to every hub that has
// the room, this one included, through Hub.DeliverPresence. Every member,
// on every hub, is thus told of every join and leave in the same order.
//
// Each room keeps a view of every hub's members, by NodeID, built from
// what the broker delivers: it answers Presence and Members with its own
// members as they are now and the other hubs' as of their last delivered
// change. A RoomBroker that is not a PresenceBroker leaves presence per
// hub.
type PresenceBroker interface {
	RoomBroker
	// PublishPresence hands the broker a join (joined) or leave of one
	// of this hub's members. The room calls it in its turn, in order
	// with its Publish calls. It must not wait for the delivery.
	PublishPresence(room string, client ClientID, joined bool) error
	// SyncPresence tells the broker every member this hub has in the
	// room now (the room's answer to Hub.ResyncPresence); the broker
	// replaces what it knew of this hub's members and hands the list to
	// the other hubs as a PresenceUpdate with Sync set. It must not wait.
	SyncPresence(room string, members []ClientID) error
	// PresenceState returns the members of the room the broker knows,
	// by NodeID. The room calls it when it starts (after Subscribe) and
	// after a ResyncPresence; it may block, and should bound how long.
	PresenceState(room string) (map[uint32][]ClientID, error)
}

// PresenceUpdate is a change of one hub's members of a room, as a
// PresenceBroker delivers it (Hub.DeliverPresence): a join or leave of
// Client, or, with Sync, the whole list of Node's members (none: the hub
// is gone), of which the room tells its members the difference.
type PresenceUpdate struct {
	Node    uint32
	Client  ClientID
	Joined  bool
	Sync    bool
	Members []ClientID
}

// roomPresence hands the room a PresenceUpdate; roomResync asks it to
// tell the broker its members again and to take the broker's state.
type (
	roomPresence struct{ u *PresenceUpdate }
	roomResync   struct{}
)

// presenceView is a room's view of every hub's members, by NodeID, as the
// broker delivered their changes. The room's own hub is in it too (its
// changes come back from the broker in the room's order), which tells the
// room which of its own members' changes its members have been told of.
type presenceView struct {
	b     PresenceBroker
	self  uint32
	nodes map[uint32]map[ClientID]struct{}
}

// presenceBroker returns the hub's broker when it carries presence.
func (h *Hub) presenceBroker() PresenceBroker {
	pb, _ := h.cfg.RoomBroker.(PresenceBroker)
	return pb
}

// DeliverPresence gives this hub's room a change of membership its
// PresenceBroker ordered: the room tells its members (those of a room with
// presence) of each join and leave it makes to its view, in the order of
// the calls. It reports whether the room lives here. Only a broker calls
// it.
func (h *Hub) DeliverPresence(room string, u *PresenceUpdate) bool {
	e, err := h.roomRef(room, false)
	if err != nil || e == nil {
		return false
	}
	h.sys.Root.Send(e.pid, &roomPresence{u: u})
	return true
}

// ResyncPresence asks this hub's room, when it has presence, to hand its
// members to the broker again (PresenceBroker.SyncPresence) and to take
// the broker's state: the broker calls it after the room's sequencer moved
// or restarted, which may have lost changes. It reports whether the room
// lives here.
func (h *Hub) ResyncPresence(room string) bool {
	e, err := h.roomRef(room, false)
	if err != nil || e == nil {
		return false
	}
	h.sys.Root.Send(e.pid, &roomResync{})
	return true
}

// LocalMembers returns the members of room that are connected to this
// hub, ordered by ID (nil when the room does not live here). On a single
// hub it is Members.
func (h *Hub) LocalMembers(room string) []ClientID {
	e, _ := h.prepMembers(room, false)
	if e == nil {
		return nil
	}
	res, err := h.sys.Root.RequestFuture(e.pid, &roomMembers{local: true}, roomCallTimeout).Result()
	if err != nil {
		return nil
	}
	return res.(*MemberList).IDs
}

// startPresence makes the view of a room with presence under a presence
// broker, from the broker's state (called once, when the room starts).
func (r *roomActor) startPresence() {
	pb := r.h.presenceBroker()
	if pb == nil || !r.presence {
		return
	}
	r.view = &presenceView{b: pb, self: r.h.cfg.NodeID, nodes: map[uint32]map[ClientID]struct{}{}}
	r.takeState()
}

// takeState asks the broker for every hub's members and applies them as
// syncs: changes delivered later apply on top, so the view ends right
// whatever came first.
func (r *roomActor) takeState() {
	st, err := r.view.b.PresenceState(r.name)
	if err != nil {
		r.h.reportError(0, &RoomError{Room: r.name, Op: "presence", Err: err})
		return
	}
	for _, node := range slices.Sorted(maps.Keys(st)) {
		if node != r.view.self {
			r.applyPresence(&PresenceUpdate{Node: node, Sync: true, Members: st[node]})
		}
	}
}

// resync is the room's side of Hub.ResyncPresence. Its own hub's changes
// that the broker lost (its members were not told) are told now, and the
// broker is given the members as they are.
func (r *roomActor) resync() {
	if r.view == nil {
		return
	}
	local := r.localIDs()
	r.applyPresence(&PresenceUpdate{Node: r.view.self, Sync: true, Members: local})
	if err := r.view.b.SyncPresence(r.name, local); err != nil {
		r.h.reportError(0, &RoomError{Room: r.name, Op: "presence", Err: err})
	}
	r.takeState()
}

// publishPresence hands a local member's join or leave to the broker
// instead of telling the members now: they are told when the broker
// delivers it, in the room's order on every hub.
func (r *roomActor) publishPresence(client ClientID, event string) {
	if err := r.view.b.PublishPresence(r.name, client, event == protocol.PresenceJoin); err != nil {
		r.h.reportError(0, &RoomError{Room: r.name, Op: "presence", Err: err})
	}
}

// applyPresence applies a delivered change to the view and tells the
// local members of every join and leave it makes (a change the view
// already holds is not told twice).
func (r *roomActor) applyPresence(u *PresenceUpdate) {
	v := r.view
	if v == nil {
		return
	}
	set := v.nodes[u.Node]
	if set == nil {
		set = map[ClientID]struct{}{}
		v.nodes[u.Node] = set
	}
	change := func(id ClientID, joined bool) {
		if _, in := set[id]; in == joined {
			return
		}
		ev := protocol.PresenceLeave
		if joined {
			set[id] = struct{}{}
			ev = protocol.PresenceJoin
		} else {
			delete(set, id)
		}
		r.tell(id, ev)
	}
	if !u.Sync {
		change(u.Client, u.Joined)
	} else {
		want := make(map[ClientID]struct{}, len(u.Members))
		for _, id := range u.Members {
			want[id] = struct{}{}
		}
		for _, id := range slices.Sorted(maps.Keys(set)) {
			if _, ok := want[id]; !ok {
				change(id, false)
			}
		}
		for _, id := range u.Members {
			change(id, true)
		}
	}
	if len(set) == 0 {
		delete(v.nodes, u.Node)
	}
}

// viewIDs returns the room's members on every hub: its own as they are
// now, the others' as of their last delivered change; in increasing
// order.
func (r *roomActor) viewIDs() []ClientID {
	ids := r.localIDs()
	for node, set := range r.view.nodes {
		if node == r.view.self {
			continue
		}
		for id := range set {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	return slices.Compact(ids)
}
