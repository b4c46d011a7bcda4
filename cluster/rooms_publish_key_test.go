package cluster

import (
	"log/slog"
	"strconv"
	"testing"

	"github.com/marmotws/marmot"
	"github.com/marmotws/marmot/cluster/internal/wire"
)

// TestPublishKeys: a room's history remembers the keys of its last
// maxKeys keyed publishes, with their offsets, with or without history
// entries; the window travels in a RoomState and is taken over, oldest
// first, by a grain that installs it (so the first forgotten after it are
// still the oldest).
func TestPublishKeys(t *testing.T) {
	for _, size := range []int{0, 100} {
		h := newRoomHist(marmot.HistoryConfig{Size: size})
		for k := uint64(1); k <= maxKeys+10; k++ {
			e := entry(k, originA, k)
			if k%2 == 0 {
				e.Key = "s1." + strconv.FormatUint(k, 36)
			}
			h.add(e, "e")
		}
		if off, ok := h.keys.get("s1." + strconv.FormatUint(maxKeys, 36)); !ok || off != maxKeys {
			t.Fatalf("size %d: key of #%d: %d, %v", size, maxKeys, off, ok)
		}
		if _, ok := h.keys.get(""); ok {
			t.Fatalf("size %d: the empty key is a key", size)
		}
		if n := len(h.keys.order); n != (maxKeys+10)/2 || len(h.keys.offsets) != n {
			t.Fatalf("size %d: %d keys (%d in the map), want %d", size, n, len(h.keys.offsets), (maxKeys+10)/2)
		}
		// Taken over by a grain on another node.
		g := newRoomHist(marmot.HistoryConfig{Size: size})
		g.install(h.state("r"))
		if off, ok := g.keys.get("s1.2"); !ok || off != 2 {
			t.Fatalf("size %d: taken over: key of #2: %d, %v", size, off, ok)
		}
		// Bounded: the oldest go first, in offset order.
		for k := uint64(maxKeys + 11); k <= 3*maxKeys; k++ {
			e := entry(k, originA, k)
			e.Key = "s2." + strconv.FormatUint(k, 36)
			g.add(e, "e")
		}
		if len(g.keys.order) != maxKeys || len(g.keys.offsets) != maxKeys {
			t.Fatalf("size %d: %d keys kept (%d in the map), want %d", size, len(g.keys.order), len(g.keys.offsets), maxKeys)
		}
		if _, ok := g.keys.get("s1.2"); ok {
			t.Fatalf("size %d: the oldest key outlived the window", size)
		}
		if _, ok := g.keys.get("s2." + strconv.FormatUint(3*maxKeys, 36)); !ok {
			t.Fatalf("size %d: the newest key is not kept", size)
		}
	}
}

// TestBrokerPublishDone: a grain's word that a publish of this node's was
// numbered under its key before (or failed) takes it, and those before it,
// out of the unconfirmed queue, and counts its seq for the node's state
// (another node's only counts its seq).
func TestBrokerPublishDone(t *testing.T) {
	n := &Node{log: slog.New(slog.DiscardHandler)}
	b := newRoomBroker(n)
	b.origin = originA
	r := b.room("r")
	for k := range 3 {
		if _, err := b.Publish("r", &marmot.RoomMessage{Data: []byte{1}, Key: "k" + strconv.Itoa(k)}); err == nil {
			t.Fatal("published to a room that is not local")
		}
	}
	r.local = true
	for k := range 3 {
		if _, err := b.Publish("r", &marmot.RoomMessage{Data: []byte{1}, Key: "k" + strconv.Itoa(k)}); err != nil {
			t.Fatal(err)
		}
	}
	if r.unconfirmed[1].Key != "k1" {
		t.Fatalf("the key did not reach the publish: %+v", r.unconfirmed[1])
	}
	r.local = false // no room to tell (n has no server)
	b.publishDone(&wire.RoomPublishDone{Room: "r", Origin: originB, Seq: 7})
	if len(r.unconfirmed) != 3 || r.hist.seqs[originB] != 7 {
		t.Fatalf("another node's: %d unconfirmed, its seq %d", len(r.unconfirmed), r.hist.seqs[originB])
	}
	b.publishDone(&wire.RoomPublishDone{Room: "r", Origin: originA, Seq: 2, Offset: 9})
	if len(r.unconfirmed) != 1 || r.unconfirmed[0].Seq != 3 || r.hist.seqs[originA] != 2 {
		t.Fatalf("after seq 2 was done: %d unconfirmed, seq %d counted", len(r.unconfirmed), r.hist.seqs[originA])
	}
}
