package boltstore

import bolt "go.etcd.io/bbolt"

// CorruptForTest overwrites room's record with bytes that do not decode.
func CorruptForTest(s *Store, room string) error {
	return s.update(func(tx *bolt.Tx) error {
		return tx.Bucket(roomsBucket).Bucket([]byte(room)).Put(metaKey, []byte{metaVersion, 200})
	})
}
