package boltstore

import (
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/marmotws/marmot/actors"
	"github.com/marmotws/marmot/protocol"
)

// roomStore is one room's history in the file: an actors.HistoryStore.
// The room's actor is its only user; m mirrors the meta on disk and is
// replaced only once a transaction has committed.
type roomStore struct {
	s    *Store
	name []byte
	cfg  actors.HistoryConfig
	m    meta
}

func (r *roomStore) Epoch() string { return r.m.epoch }
func (r *roomStore) Last() uint64  { return r.m.last }

// buckets returns the room's bucket and its entries.
func (r *roomStore) buckets(tx *bolt.Tx) (*bolt.Bucket, *bolt.Bucket, error) {
	rb := tx.Bucket(roomsBucket).Bucket(r.name)
	if rb == nil {
		return nil, nil, fmt.Errorf("%w: room %q is gone from the file", ErrCorrupt, r.name)
	}
	ents := rb.Bucket(entriesBucket)
	if ents == nil {
		return nil, nil, fmt.Errorf("%w: room %q has no entries", ErrCorrupt, r.name)
	}
	return rb, ents, nil
}

// Append writes e and the room's new meta in one transaction, dropping
// what falls outside the bounds; on error nothing changed.
func (r *roomStore) Append(e actors.HistoryEntry) error {
	if e.Offset != r.m.last+1 {
		return fmt.Errorf("boltstore: room %q: append offset %d after %d", r.name, e.Offset, r.m.last)
	}
	var n meta
	err := r.s.update(func(tx *bolt.Tx) error {
		rb, ents, err := r.buckets(tx)
		if err != nil {
			return err
		}
		if err := ents.Put(offsetKey(e.Offset), encodeEntry(&e)); err != nil {
			return err
		}
		n = r.m.clone()
		n.last = e.Offset
		n.bytes += entrySize(&e)
		if err := r.trim(ents, &n, e.At); err != nil {
			return err
		}
		return rb.Put(metaKey, n.encode())
	})
	if err != nil {
		return fmt.Errorf("boltstore: room %q: append %d: %w", r.name, e.Offset, err)
	}
	r.m = n
	return nil
}

// trim deletes the oldest entries that are older than the TTL at now or
// beyond Size or Bytes, recording why in m.
func (r *roomStore) trim(ents *bolt.Bucket, m *meta, now time.Time) error {
	var del [][]byte
	c := ents.Cursor()
	for k, v := c.Seek(offsetKey(m.first)); k != nil && m.kept() > 0; k, v = c.Next() {
		e, err := decodeEntry(m.first, v)
		if err != nil {
			return err
		}
		if len(k) != 8 || string(k) != string(offsetKey(m.first)) {
			return fmt.Errorf("%w: entry %x where %d was expected", ErrCorrupt, k, m.first)
		}
		var reason string
		switch {
		case r.cfg.TTL > 0 && now.Sub(e.At) >= r.cfg.TTL:
			reason = protocol.RecoverExpired
		case m.kept() > uint64(max(r.cfg.Size, 0)), r.cfg.Bytes > 0 && m.bytes > uint64(r.cfg.Bytes):
			reason = protocol.RecoverOverflow
		}
		if reason == "" {
			break // this one and the rest stay
		}
		del = append(del, k)
		m.bytes -= min(m.bytes, entrySize(&e))
		m.drop(e.Offset, reason)
	}
	if m.kept() == 0 {
		m.bytes = 0
	}
	for _, k := range del {
		if err := ents.Delete(k); err != nil {
			return err
		}
	}
	return nil
}

// Since returns the entries after offset. Entries it finds expired are
// deleted before it returns.
func (r *roomStore) Since(offset uint64, now time.Time) ([]actors.HistoryEntry, error) {
	if offset >= r.m.last {
		return nil, nil
	}
	if offset+1 < r.m.first {
		return nil, &actors.HistoryGap{Reason: r.m.reason(offset + 1)}
	}
	var es []actors.HistoryEntry
	expired := false
	err := r.s.view(func(tx *bolt.Tx) error {
		_, ents, err := r.buckets(tx)
		if err != nil {
			return err
		}
		es = make([]actors.HistoryEntry, 0, r.m.last-offset)
		c := ents.Cursor()
		want := offset + 1
		for k, v := c.Seek(offsetKey(want)); k != nil && want <= r.m.last; k, v = c.Next() {
			if string(k) != string(offsetKey(want)) {
				return fmt.Errorf("%w: entry %x where %d was expected", ErrCorrupt, k, want)
			}
			e, err := decodeEntry(want, v)
			if err != nil {
				return err
			}
			if r.cfg.TTL > 0 && now.Sub(e.At) >= r.cfg.TTL {
				expired = true
				return nil
			}
			es = append(es, e)
			want++
		}
		if want <= r.m.last {
			return fmt.Errorf("%w: entry %d is missing", ErrCorrupt, want)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("boltstore: room %q: %w", r.name, err)
	}
	if expired {
		if err := r.prune(now); err != nil {
			return nil, err
		}
		if offset+1 < r.m.first {
			return nil, &actors.HistoryGap{Reason: r.m.reason(offset + 1)}
		}
		return nil, &actors.HistoryGap{Reason: protocol.RecoverExpired}
	}
	return es, nil
}

// prune deletes the entries beyond the bounds at now.
func (r *roomStore) prune(now time.Time) error {
	var n meta
	err := r.s.update(func(tx *bolt.Tx) error {
		rb, ents, err := r.buckets(tx)
		if err != nil {
			return err
		}
		n = r.m.clone()
		if err := r.trim(ents, &n, now); err != nil {
			return err
		}
		return rb.Put(metaKey, n.encode())
	})
	if err != nil {
		return fmt.Errorf("boltstore: room %q: %w", r.name, err)
	}
	r.m = n
	return nil
}
