package boltstore

import bolt "go.etcd.io/bbolt"

// CorruptForTest overwrites room's record with bytes that do not decode.
func CorruptForTest(s *Store, room string) error {
	return s.update(func(tx *bolt.Tx) error {
		return tx.Bucket(roomsBucket).Bucket([]byte(room)).Put(metaKey, []byte{metaVersion, 200})
	})
}

// CommitGroupForTest runs fns as one group of writes, as the committer
// does with writes that queued together, and returns each one's outcome.
func CommitGroupForTest(s *Store, fns ...func(*bolt.Tx) error) []error {
	group := make([]*commitReq, len(fns))
	for i, fn := range fns {
		group[i] = &commitReq{fn: fn, err: make(chan error, 1)}
	}
	s.commit(group)
	errs := make([]error, len(fns))
	for i, r := range group {
		errs[i] = <-r.err
	}
	return errs
}

// PutForTest is a write that stores key in a bucket of its own.
func PutForTest(key string) func(*bolt.Tx) error {
	return func(tx *bolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists([]byte("test"))
		if err != nil {
			return err
		}
		return b.Put([]byte(key), []byte{1})
	}
}

// HasForTest reports whether PutForTest(key) was committed.
func HasForTest(s *Store, key string) bool {
	found := false
	_ = s.view(func(tx *bolt.Tx) error {
		if b := tx.Bucket([]byte("test")); b != nil {
			found = b.Get([]byte(key)) != nil
		}
		return nil
	})
	return found
}
