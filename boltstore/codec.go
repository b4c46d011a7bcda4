package boltstore

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/marmotws/marmot/actors"
	"github.com/marmotws/marmot/protocol"
)

// A room's record on disk, its meta, says where its history stands; its
// entries are kept apart, keyed by offset (see store.go for the layout).
//
//	meta:  version (1 byte) | epoch (uvarint length, bytes) | last | first |
//	       bytes | n dropped | n × (upTo, reason (uvarint length, bytes))
//	entry: At (8 bytes, big-endian Unix nanoseconds) | name (uvarint
//	       length, bytes) | data (the rest)
//
// Every number without a stated size is a uvarint.

const metaVersion = 1

// maxDropped bounds the dropped ranges a meta remembers (as the memory
// store does): an offset older than all of them is reported as overflow.
const maxDropped = 8

// maxEpochLen bounds an epoch read from disk; ours are 16 hex digits.
const maxEpochLen = 64

// meta is where one room's history stands.
type meta struct {
	epoch string
	last  uint64 // the offset of the last message appended; 0: none yet
	first uint64 // the oldest offset kept; last+1 when none is
	bytes uint64 // the kept entries' name and data bytes
	// dropped records which bound dropped which range of offsets, oldest
	// first, merged: offsets up to dropped[0].upTo for dropped[0].reason...
	dropped []dropped
}

type dropped struct {
	upTo   uint64
	reason string
}

// kept is how many entries the history holds.
func (m *meta) kept() uint64 { return m.last + 1 - m.first }

func (m *meta) clone() meta {
	c := *m
	c.dropped = append([]dropped(nil), m.dropped...)
	return c
}

// drop records that offset off was dropped for reason.
func (m *meta) drop(off uint64, reason string) {
	m.first = off + 1
	if n := len(m.dropped); n > 0 && m.dropped[n-1].reason == reason {
		m.dropped[n-1].upTo = off
		return
	}
	if len(m.dropped) == maxDropped {
		m.dropped = append(m.dropped[:0], m.dropped[1:]...)
	}
	m.dropped = append(m.dropped, dropped{upTo: off, reason: reason})
}

// reason says why offset off, below first, is no longer kept.
func (m *meta) reason(off uint64) string {
	for _, d := range m.dropped {
		if off <= d.upTo {
			return d.reason
		}
	}
	return protocol.RecoverOverflow
}

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

func (m *meta) encode() []byte {
	b := make([]byte, 0, 64)
	b = append(b, metaVersion)
	b = appendString(b, m.epoch)
	b = binary.AppendUvarint(b, m.last)
	b = binary.AppendUvarint(b, m.first)
	b = binary.AppendUvarint(b, m.bytes)
	b = binary.AppendUvarint(b, uint64(len(m.dropped)))
	for _, d := range m.dropped {
		b = binary.AppendUvarint(b, d.upTo)
		b = appendString(b, d.reason)
	}
	return b
}

// errShort is a record that ends too soon.
var errShort = errors.New("truncated record")

// reader reads a record's fields; the first error sticks.
type reader struct {
	b   []byte
	err error
}

func (r *reader) uvarint() uint64 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Uvarint(r.b)
	if n <= 0 {
		r.err = errShort
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *reader) string(limit int) string {
	n := r.uvarint()
	if r.err != nil {
		return ""
	}
	if n > uint64(limit) || n > uint64(len(r.b)) {
		r.err = fmt.Errorf("string of %d bytes (limit %d, %d left)", n, limit, len(r.b))
		return ""
	}
	s := string(r.b[:n])
	r.b = r.b[n:]
	return s
}

// decodeMeta reads a meta record; an error means the file is corrupt.
func decodeMeta(b []byte) (meta, error) {
	var m meta
	if len(b) == 0 || b[0] != metaVersion {
		return m, fmt.Errorf("%w: room record version %v", ErrCorrupt, b[:min(len(b), 1)])
	}
	r := reader{b: b[1:]}
	m.epoch = r.string(maxEpochLen)
	m.last = r.uvarint()
	m.first = r.uvarint()
	m.bytes = r.uvarint()
	n := r.uvarint()
	if r.err == nil && n > maxDropped {
		r.err = fmt.Errorf("%d dropped ranges", n)
	}
	for i := uint64(0); i < n && r.err == nil; i++ {
		m.dropped = append(m.dropped, dropped{upTo: r.uvarint(), reason: r.string(64)})
	}
	switch {
	case r.err != nil:
	case len(r.b) != 0:
		r.err = fmt.Errorf("%d bytes after the record", len(r.b))
	case m.epoch == "":
		r.err = errors.New("no epoch")
	case m.first == 0 || m.first > m.last+1 || m.last == ^uint64(0):
		r.err = fmt.Errorf("first offset %d, last %d", m.first, m.last)
	}
	if r.err != nil {
		return meta{}, fmt.Errorf("%w: room record: %w", ErrCorrupt, r.err)
	}
	return m, nil
}

func offsetKey(off uint64) []byte { return binary.BigEndian.AppendUint64(nil, off) }

func encodeEntry(e *actors.HistoryEntry) []byte {
	b := make([]byte, 0, 8+binary.MaxVarintLen64+len(e.Name)+len(e.Data))
	b = binary.BigEndian.AppendUint64(b, uint64(e.At.UnixNano()))
	b = appendString(b, e.Name)
	return append(b, e.Data...)
}

// decodeEntry reads the entry at offset off (copying: bbolt's bytes live
// only as long as the transaction); an error means the file is corrupt.
func decodeEntry(off uint64, b []byte) (actors.HistoryEntry, error) {
	if len(b) < 8 {
		return actors.HistoryEntry{}, fmt.Errorf("%w: entry %d: %w", ErrCorrupt, off, errShort)
	}
	at := time.Unix(0, int64(binary.BigEndian.Uint64(b)))
	r := reader{b: b[8:]}
	name := r.string(len(r.b))
	if r.err != nil {
		return actors.HistoryEntry{}, fmt.Errorf("%w: entry %d: %w", ErrCorrupt, off, r.err)
	}
	return actors.HistoryEntry{Offset: off, Name: name, Data: append([]byte(nil), r.b...), At: at}, nil
}

// entrySize is what an entry counts against HistoryConfig.Bytes, as in
// the memory store.
func entrySize(e *actors.HistoryEntry) uint64 { return uint64(len(e.Name) + len(e.Data)) }
