package actors

import (
	"crypto/rand"
	"encoding/hex"
	"time"

	"github.com/marmotws/marmot/protocol"
)

// HistoryConfig bounds the history each room keeps of its messages, for
// clients that come back after losing their connection (see
// docs/ROOMS.md). History is off unless Size > 0.
type HistoryConfig struct {
	// Size is how many messages a room keeps at most; 0 turns history off.
	Size int
	// Bytes, when > 0, bounds the kept messages' payload and name bytes.
	Bytes int
	// TTL, when > 0, is how long a message is kept.
	TTL time.Duration
	// Backend opens each room's store. nil: in memory (NewMemoryHistory),
	// where a room's history, epoch and offsets end with the room (after
	// RoomIdle, or with the server). A persistent backend (package
	// boltstore) keeps them across the room's end and the server's
	// restart, so that a room created again continues its epoch and
	// offsets.
	Backend HistoryBackend
}

// HistoryBackend opens the history store of each room, once per run of
// the room (when its actor starts). One server uses a backend at a time.
type HistoryBackend interface {
	// Open returns room's store, bounded by cfg: the history the backend
	// already holds for room (its epoch and offsets continue) or, when it
	// holds none, an empty one with a fresh epoch. An error leaves the
	// room without history for this run: its publishes fail with the
	// error, which is also reported to the server's OnError.
	Open(room string, cfg HistoryConfig) (HistoryStore, error)
}

func (c HistoryConfig) enabled() bool { return c.Size > 0 }

// HistoryEntry is one message in a room's history.
type HistoryEntry struct {
	Offset uint64
	Name   string // the command name; empty for data
	Data   []byte
	At     time.Time // when the room accepted it
}

// HistoryGap is Since's error when it cannot return every message after
// the offset asked for; Reason is one of protocol's Recover* reasons.
type HistoryGap struct{ Reason string }

func (g *HistoryGap) Error() string { return "marmot: history gap: " + g.Reason }

// HistoryStore keeps one room's history. The room's actor is its only
// user, so implementations need not be safe for concurrent use. The
// in-memory store (NewMemoryHistory) is the default; a persistent one
// (HistoryConfig.Backend) lets a restarted server fill gaps: its Epoch and
// Last outlive the process.
type HistoryStore interface {
	// Epoch names the run of history the store holds; it changes
	// whenever history is lost.
	Epoch() string
	// Last is the offset of the last message appended (0 for none); the
	// room numbers its next message Last()+1.
	Last() uint64
	// Append adds the room's next message (e.Offset == Last()+1). It may
	// drop the oldest entries to stay within its bounds. On error nothing
	// is added (Last is unchanged) and the room fails the publish.
	Append(e HistoryEntry) error
	// Since returns every entry after offset, in order, or a *HistoryGap
	// when some of them are no longer kept. offset must not exceed Last.
	Since(offset uint64, now time.Time) ([]HistoryEntry, error)
}

// NewEpoch makes a random epoch, 16 hex digits, for a store that starts a
// new run of history.
func NewEpoch() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// memoryHistory is the in-memory HistoryStore: a queue of entries, oldest
// first, trimmed from the front. Whatever was trimmed is a prefix of the
// offsets; dropped records which bound dropped which range, so that a
// gap can name its reason.
type memoryHistory struct {
	cfg     HistoryConfig
	epoch   string
	last    uint64
	entries []HistoryEntry
	bytes   int
	dropped []droppedRange // merged, oldest first, at most maxDropped
}

type droppedRange struct {
	upTo   uint64 // the last offset dropped for reason
	reason string
}

const maxDropped = 8

// NewMemoryHistory returns an empty in-memory store within cfg's bounds,
// with a fresh random epoch.
func NewMemoryHistory(cfg HistoryConfig) HistoryStore {
	return &memoryHistory{cfg: cfg, epoch: NewEpoch()}
}

func (m *memoryHistory) Epoch() string { return m.epoch }
func (m *memoryHistory) Last() uint64  { return m.last }

func entrySize(e *HistoryEntry) int { return len(e.Data) + len(e.Name) }

func (m *memoryHistory) Append(e HistoryEntry) error {
	m.last = e.Offset
	m.entries = append(m.entries, e)
	m.bytes += entrySize(&e)
	m.expire(e.At)
	for len(m.entries) > m.cfg.Size || (m.cfg.Bytes > 0 && m.bytes > m.cfg.Bytes && len(m.entries) > 0) {
		m.drop(protocol.RecoverOverflow)
	}
	return nil
}

// expire drops the entries older than the TTL.
func (m *memoryHistory) expire(now time.Time) {
	if m.cfg.TTL <= 0 {
		return
	}
	for len(m.entries) > 0 && now.Sub(m.entries[0].At) >= m.cfg.TTL {
		m.drop(protocol.RecoverExpired)
	}
}

func (m *memoryHistory) drop(reason string) {
	e := &m.entries[0]
	m.bytes -= entrySize(e)
	off := e.Offset
	*e = HistoryEntry{}
	m.entries = m.entries[1:]
	if n := len(m.dropped); n > 0 && m.dropped[n-1].reason == reason {
		m.dropped[n-1].upTo = off
		return
	}
	if len(m.dropped) == maxDropped {
		// Forget the oldest range: an offset that old is reported with the
		// next range's reason.
		m.dropped = append(m.dropped[:0], m.dropped[1:]...)
	}
	m.dropped = append(m.dropped, droppedRange{upTo: off, reason: reason})
}

func (m *memoryHistory) Since(offset uint64, now time.Time) ([]HistoryEntry, error) {
	m.expire(now)
	if offset >= m.last {
		return nil, nil
	}
	if len(m.entries) == 0 || m.entries[0].Offset > offset+1 {
		// offset+1 was dropped: by whichever bound dropped its range.
		reason := protocol.RecoverOverflow
		for _, d := range m.dropped {
			if offset+1 <= d.upTo {
				reason = d.reason
				break
			}
		}
		return nil, &HistoryGap{Reason: reason}
	}
	i := int(offset + 1 - m.entries[0].Offset)
	return m.entries[i:], nil
}
