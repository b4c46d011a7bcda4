package cluster

import (
	"time"

	"github.com/marmotws/marmot"
	"github.com/marmotws/marmot/actors"
	"github.com/marmotws/marmot/cluster/internal/wire"
	"github.com/marmotws/marmot/protocol"
)

// roomHist is what a node, or a room's grain, holds of one room: its
// position (epoch and last offset), the history it keeps within the
// server's RoomHistory bounds (none when history is off), and the highest
// publisher seq numbered per origin (the grain's de-duplication of
// publishes sent again; see rooms_grain.go). Every node that has the room
// and the grain keep one; within an epoch each is a prefix of the grain's
// order, since the grain's deliveries to a node go one after another.
// Not safe for concurrent use: the broker guards its own with its mutex,
// and a grain's is its actor's.
type roomHist struct {
	cfg     marmot.HistoryConfig
	epoch   string
	last    uint64
	entries []*wire.HistEntry // oldest first, ending at last when non-empty
	bytes   int
	trimmed string            // why the oldest entries were dropped (a protocol.Recover* reason)
	seqs    map[uint64]uint64 // origin → highest seq numbered
	keys    publishKeys       // the latest publish keys numbered (rooms_publish_key.go)
}

// maxOrigins bounds roomHist.seqs: the origins are node runs (a node that
// restarts is a new one), so it only fills when nodes restart that often
// while the room lives; the lowest are forgotten first.
const maxOrigins = 1024

// maxStateBytes bounds the history one RoomState carries between nodes
// (gRPC takes at most 4 MiB a message): the oldest entries beyond it are
// left out, and whoever takes the state over has a shorter history.
const maxStateBytes = 2 << 20

func newRoomHist(cfg marmot.HistoryConfig) *roomHist {
	return &roomHist{cfg: cfg, seqs: map[uint64]uint64{}}
}

func histSize(e *wire.HistEntry) int { return len(e.Data) + len(e.Name) + 40 }

// add appends the room's next message. A message of another epoch, or one
// after a gap, starts the history over from it (what came before it is
// not kept here); one at or below the position is ignored.
func (h *roomHist) add(e *wire.HistEntry, epoch string) {
	if epoch == h.epoch && e.Offset <= h.last {
		return
	}
	if epoch != h.epoch || e.Offset != h.last+1 {
		h.reset(epoch, e.Offset-1)
		h.trimmed = protocol.RecoverOverflow
	}
	h.last = e.Offset
	h.noteSeq(e.Origin, e.Seq)
	h.keys.note(e.Key, e.Offset)
	if h.cfg.Size <= 0 {
		return
	}
	h.entries = append(h.entries, e)
	h.bytes += histSize(e)
	h.expire(time.Now())
	for len(h.entries) > h.cfg.Size || (h.cfg.Bytes > 0 && h.bytes > h.cfg.Bytes && len(h.entries) > 0) {
		h.dropOldest(protocol.RecoverOverflow)
	}
}

func (h *roomHist) noteSeq(origin, seq uint64) {
	if origin == 0 {
		return
	}
	if seq > h.seqs[origin] {
		if _, ok := h.seqs[origin]; !ok && len(h.seqs) >= maxOrigins {
			var low uint64
			for o, s := range h.seqs {
				if low == 0 || s < h.seqs[low] {
					low = o
				}
			}
			delete(h.seqs, low)
		}
		h.seqs[origin] = seq
	}
}

// numbered reports whether the grain has numbered origin's seq already.
func (h *roomHist) numbered(origin, seq uint64) bool {
	return origin != 0 && seq != 0 && seq <= h.seqs[origin]
}

// after reports whether seq comes after a hole in origin's seqs: the
// grain has numbered origin's publishes and seq is not the next, nor the
// next after confirmed (the highest its node has seen numbered, by any
// grain; 0 on most publishes). An origin it does not know starts anywhere
// (its first publishes may have been numbered by a grain whose history
// nobody kept).
func (h *roomHist) after(origin, seq, confirmed uint64) bool {
	last, ok := h.seqs[origin]
	return origin != 0 && ok && seq > max(last, confirmed)+1
}

// reset empties the history at a new position.
func (h *roomHist) reset(epoch string, last uint64) {
	clear(h.entries)
	h.entries, h.bytes, h.trimmed = h.entries[:0], 0, ""
	h.epoch, h.last = epoch, last
}

func (h *roomHist) dropOldest(reason string) {
	h.bytes -= histSize(h.entries[0])
	h.entries[0] = nil
	h.entries = h.entries[1:]
	h.trimmed = reason
}

func (h *roomHist) expire(now time.Time) {
	if h.cfg.TTL <= 0 {
		return
	}
	for len(h.entries) > 0 && now.Sub(time.Unix(0, h.entries[0].AtUnixNano)) >= h.cfg.TTL {
		h.dropOldest(protocol.RecoverExpired)
	}
}

// since returns the entries after from up to to, or the first index of
// them; ok is false when some are not kept.
func (h *roomHist) since(from, to uint64) ([]*wire.HistEntry, bool) {
	h.expire(time.Now())
	if to > h.last {
		return nil, false
	}
	if from >= to {
		return nil, true
	}
	if len(h.entries) == 0 || h.entries[0].Offset > from+1 {
		return nil, false
	}
	i := int(from + 1 - h.entries[0].Offset)
	j := int(to + 1 - h.entries[0].Offset)
	return h.entries[i:j], true
}

// history is RoomBroker.History over this store.
func (h *roomHist) history(epoch string, from, to uint64) ([]marmot.HistoryEntry, error) {
	if epoch != h.epoch {
		return nil, &actors.HistoryGap{Reason: protocol.RecoverEpochChanged}
	}
	es, ok := h.since(from, to)
	if !ok {
		reason := h.trimmed
		if reason == "" {
			reason = protocol.RecoverOverflow
		}
		return nil, &actors.HistoryGap{Reason: reason}
	}
	out := make([]marmot.HistoryEntry, len(es))
	for i, e := range es {
		out[i] = marmot.HistoryEntry{Offset: e.Offset, Name: e.Name, Data: e.Data, At: time.Unix(0, e.AtUnixNano)}
	}
	return out, nil
}

// state is the store as a RoomState, its history bounded by maxStateBytes.
func (h *roomHist) state(room string) *wire.RoomState {
	st := &wire.RoomState{Room: room, Has: h.epoch != "", Epoch: h.epoch, Offset: h.last, Seqs: make(map[uint64]uint64, len(h.seqs))}
	for o, s := range h.seqs {
		st.Seqs[o] = s
	}
	st.Keys = h.keys.state()
	size, i := 0, len(h.entries)
	for i > 0 && size+histSize(h.entries[i-1]) <= maxStateBytes {
		i--
		size += histSize(h.entries[i])
	}
	st.Entries = append([]*wire.HistEntry(nil), h.entries[i:]...)
	return st
}

// install takes a state over: its position, history and seqs.
func (h *roomHist) install(st *wire.RoomState) {
	h.reset(st.Epoch, st.Offset)
	h.seqs = map[uint64]uint64{}
	for o, s := range st.Seqs {
		h.noteSeq(o, s)
	}
	h.keys.install(st.Keys)
	// Only a run of entries that ends at the position is history.
	es := st.Entries
	for k, e := range es {
		if e == nil || e.Offset != st.Offset-uint64(len(es)-1-k) {
			es = nil
			break
		}
	}
	if len(es) > 0 && h.cfg.Size > 0 {
		h.last = es[0].Offset - 1
		for _, e := range es {
			h.add(e, st.Epoch)
		}
	}
	if st.Offset > 0 && (len(es) == 0 || es[0].Offset > 1) {
		h.trimmed = protocol.RecoverOverflow
	}
	h.last = st.Offset
}
