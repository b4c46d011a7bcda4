package cluster

import (
	"sort"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/marmotws/marmot"
	"github.com/marmotws/marmot/cluster/internal/wire"
)

// Publishes numbered once across a node's loss. A grain numbers an
// (origin, seq) once, which covers a node's own resends; but a client's
// message that node A handled and published just before it was killed
// can be handled again on node B after the client fails over
// (Message.Redelivered), and B's publish is a new one, with B's origin.
// A publish key names the publish on both (marmot.Hub.PublishFor derives
// it from the client's session and the message's number; a client's
// marmot.publish request is keyed so by marmot itself): the grain keeps
// the keys of the room's last maxKeys keyed publishes with their
// offsets, and a publish whose key it has numbered is not numbered again.
// Its node is told (wire.RoomPublishDone) as if it had been: the node
// drops it from its unconfirmed queue and its room answers the publisher
// (confirmed), and every node counts its seq, so the hole rule (after)
// does not hold up the origin's next publish.
//
// The keys travel with the publish, in the deliveries and in the
// history entries, so every node that has the room (or keeps it as a
// replica) keeps the same window, and a grain that takes the room over
// takes the longest state's keys (RoomState.keys): the window survives
// the grain's node.
//
// The same notice, failed, tells a publishing node that a grain of the
// room failed on its publish (poison, grain_failure.go): the publisher is
// answered with marmot.ErrPublishFailed rather than taken for confirmed
// by the node's next confirmation.

// maxKeys bounds the publish keys a room's history keeps (per node and
// in the grain): the oldest are forgotten first. A key is about 20 bytes;
// a room whose publishes are all keyed keeps about 300 KB of them. The
// window only needs to cover the publishes made between a node's last
// session mark and its loss.
const maxKeys = 4096

// publishKeys is a room's window of publish keys, in the order they were
// numbered. The zero value is empty.
type publishKeys struct {
	offsets map[string]uint64
	order   []string // oldest first
}

// note records key as numbered at offset.
func (k *publishKeys) note(key string, offset uint64) {
	if key == "" {
		return
	}
	if k.offsets == nil {
		k.offsets = map[string]uint64{}
	}
	if _, ok := k.offsets[key]; ok {
		return
	}
	if len(k.order) >= maxKeys {
		delete(k.offsets, k.order[0])
		k.order[0] = ""
		k.order = k.order[1:] // append reallocates once the tail is used up
	}
	k.offsets[key] = offset
	k.order = append(k.order, key)
}

// get returns the offset key was numbered at.
func (k *publishKeys) get(key string) (uint64, bool) {
	if key == "" {
		return 0, false
	}
	off, ok := k.offsets[key]
	return off, ok
}

// state is the window as a RoomState's keys.
func (k *publishKeys) state() map[string]uint64 {
	if len(k.offsets) == 0 {
		return nil
	}
	out := make(map[string]uint64, len(k.offsets))
	for key, off := range k.offsets {
		out[key] = off
	}
	return out
}

// install takes a RoomState's keys over, oldest (lowest offset) first.
func (k *publishKeys) install(st map[string]uint64) {
	*k = publishKeys{}
	keys := make([]string, 0, len(st))
	for key := range st {
		keys = append(keys, key)
	}
	sort.Slice(keys, func(i, j int) bool { return st[keys[i]] < st[keys[j]] })
	for _, key := range keys {
		k.note(key, st[key])
	}
}

// merge adds old's keys, oldest first, to k.
func (k *publishKeys) merge(old *publishKeys) {
	for _, key := range old.order {
		k.note(key, old.offsets[key])
	}
}

// repeated reports whether m is a publish the grain numbered already
// under its key; if so it tells the nodes (publishDone) and counts m's
// seq as numbered.
func (g *roomGrain) repeated(ctx actor.SenderContext, m *wire.RoomPublishSeq) bool {
	off, ok := g.hist.keys.get(m.Key)
	if !ok {
		return false
	}
	g.n.log.Debug("marmot cluster: room publish numbered already under its key", "room", g.room, "key", m.Key, "offset", off)
	g.hist.noteSeq(m.Origin, m.Seq)
	g.publishDone(ctx, m, off, false)
	return true
}

// publishDone tells the room's nodes that the grain is done with m
// without a delivery of it: numbered at offset under its key, or failed
// (poison). Only m's node acts on it, but every node counts its seq.
func (g *roomGrain) publishDone(ctx actor.SenderContext, m *wire.RoomPublishSeq, offset uint64, failed bool) {
	d := &wire.RoomPublishDone{Room: m.Room, Origin: m.Origin, Seq: m.Seq, Offset: offset, Failed: failed}
	for node := range g.subs {
		ctx.Send(nodePID(node), d)
	}
}

// publishDone takes a grain's word that it is done with a publish without
// a delivery (on the node actor): for this node's own, the publishes up
// to it leave the unconfirmed queue and the local room answers them, the
// last with marmot.ErrPublishFailed when the grain failed on it.
func (b *roomBroker) publishDone(m *wire.RoomPublishDone) {
	b.mu.Lock()
	r := b.rooms[m.Room]
	if r == nil {
		b.mu.Unlock()
		return
	}
	r.hist.noteSeq(m.Origin, m.Seq)
	own := m.Origin == b.origin && m.Origin != 0
	if own {
		b.confirmed(r, m.Seq)
	}
	local := r.local
	b.mu.Unlock()
	if !own || !local {
		return
	}
	var err error
	if m.Failed {
		err = marmot.ErrPublishFailed
	}
	b.n.srv.ConfirmRoom(m.Room, m.Seq, err)
}
