package boltstore

import (
	"fmt"

	bolt "go.etcd.io/bbolt"
)

// Group commit. bbolt has one writer at a time and syncs the file once per
// transaction, and a sync costs milliseconds; one transaction per append
// would bound the appends of all rooms together to a few hundred a second.
// So writes go through one goroutine, which runs the writes that queued
// while the previous transaction was syncing in one transaction: a lone
// room waits for no timer (unlike bolt.DB.Batch), and many rooms share the
// syncs.

// maxGroup bounds the writes in one transaction.
const maxGroup = 256

// commitReq is one write waiting for its transaction.
type commitReq struct {
	fn  func(*bolt.Tx) error
	err chan error // buffered: the committer never waits for the writer
}

// committer runs the Store's writes until closing is closed.
func (s *Store) committer() {
	defer close(s.loopDone)
	group := make([]*commitReq, 0, maxGroup)
	for {
		select {
		case r := <-s.writes:
			group = append(group[:0], r)
		case <-s.closing:
			return
		}
	more:
		for len(group) < maxGroup {
			select {
			case r := <-s.writes:
				group = append(group, r)
			default:
				break more
			}
		}
		s.commit(group)
		clear(group)
	}
}

// commit runs group's writes in one transaction. When one of them fails,
// the transaction is rolled back and each write runs again in its own, so
// that one room's failure fails only its write (a write's function only
// reads the state it is given, so running it again is safe).
func (s *Store) commit(group []*commitReq) {
	if len(group) > 1 {
		err := s.updateDB(func(tx *bolt.Tx) error {
			for _, r := range group {
				if err := r.fn(tx); err != nil {
					return err
				}
			}
			return nil
		})
		if err == nil {
			for _, r := range group {
				r.err <- nil
			}
			return
		}
	}
	for _, r := range group {
		r.err <- s.updateDB(r.fn)
	}
}

// update runs fn in a write transaction, grouped with others' (see
// committer), and returns its outcome.
func (s *Store) update(fn func(*bolt.Tx) error) error {
	r := &commitReq{fn: fn, err: make(chan error, 1)}
	select {
	case s.writes <- r:
		return <-r.err
	case <-s.closing:
		return fmt.Errorf("boltstore: %s: %w", s.path, bolt.ErrDatabaseNotOpen)
	}
}

// updateDB and view run a bbolt transaction, turning a panic of bbolt's
// on a damaged page into ErrCorrupt rather than letting it take the
// room's actor or the committer down (bbolt rolls the transaction back as
// the panic unwinds).
func (s *Store) updateDB(fn func(*bolt.Tx) error) (err error) {
	defer recoverCorrupt(&err)
	return s.db.Update(fn)
}

func (s *Store) view(fn func(*bolt.Tx) error) (err error) {
	defer recoverCorrupt(&err)
	return s.db.View(fn)
}

func recoverCorrupt(err *error) {
	if p := recover(); p != nil {
		*err = fmt.Errorf("%w: %v", ErrCorrupt, p)
	}
}
