// Package boltstore keeps rooms' history on disk, in one bbolt file
// (go.etcd.io/bbolt), so that a restarted server can still give
// reconnecting clients what they missed (docs/ROOMS.md).
//
// Open the file once per server and hand the Store to the server as
// HistoryConfig.Backend; close it after the server has stopped:
//
//	store, err := boltstore.Open("rooms.db", nil)
//	if err != nil {
//		return err // a bad path, a corrupt file, or one locked by another process
//	}
//	defer store.Close() // after s.Stop
//	s, err := marmot.NewServer(marmot.ServerConfig{
//		RoomHistory: marmot.HistoryConfig{Size: 1000, TTL: time.Hour, Backend: store},
//	})
//
// Each room keeps its epoch and offsets in the file for good, and at most
// the last HistoryConfig.Size messages (and Bytes, and none older than
// TTL): a room created again, after its idle end or after a restart,
// continues where it stood. Entries beyond the bounds are deleted when the
// room appends, when it starts and when a recovery finds them expired; a
// room that is never used again keeps its last entries (within Size and
// Bytes) and a record of a few dozen bytes.
//
// Every append is synced to disk before the room delivers the message,
// unless Options.NoSync is set; appends of several rooms that queue while
// a transaction syncs share the next one (commit.go). A Store serves one
// server at a time.
package boltstore

import (
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"

	"github.com/marmotws/marmot/actors"
)

// ErrLocked reports a file another process (or another Store) holds open:
// bbolt locks its file for one writer.
var ErrLocked = errors.New("boltstore: file is locked by another process")

// ErrCorrupt reports a file that is not a bbolt database, or one whose
// contents do not read as marmot's history.
var ErrCorrupt = errors.New("boltstore: corrupt file")

// DefaultTimeout is how long Open waits for the file's lock when
// Options.Timeout is zero.
const DefaultTimeout = time.Second

// Options tune Open; nil means the defaults.
type Options struct {
	// Timeout is how long Open waits for another process to release the
	// file before failing with ErrLocked. Default DefaultTimeout; negative
	// waits forever.
	Timeout time.Duration
	// NoSync skips the fsync after each append: much faster, and a crash
	// of the process loses nothing, but a crash of the machine may lose
	// the last appends (and clients then recover short of them without
	// being told). Off by default.
	NoSync bool
	// Mode is the file's permissions when Open creates it. Default 0600.
	Mode os.FileMode
}

// Store is a bbolt file of rooms' history. It is a actors.HistoryBackend
// (marmot.HistoryConfig.Backend) and safe for concurrent use by the
// server's rooms.
type Store struct {
	db   *bolt.DB
	path string

	// Writes go through the committer goroutine (commit.go).
	writes    chan *commitReq
	closing   chan struct{}
	loopDone  chan struct{}
	closeOnce sync.Once
	closeErr  error
}

// The file's layout: a bucket "rooms" holding one bucket per room, named
// by the room, each with its meta under "meta" and a bucket "entries" of
// its messages keyed by their offset (8 bytes, big-endian).
var (
	roomsBucket   = []byte("rooms")
	metaKey       = []byte("meta")
	entriesBucket = []byte("entries")
)

// Open opens (creating it when missing) the history file at path. Its
// errors say what is wrong with path: a directory that does not exist or
// cannot be written (errors.Is fs.ErrNotExist / fs.ErrPermission), a file
// that is not a bbolt database (ErrCorrupt), or one locked by another
// process beyond opts.Timeout (ErrLocked).
func Open(path string, opts *Options) (*Store, error) {
	var o Options
	if opts != nil {
		o = *opts
	}
	switch {
	case o.Timeout == 0:
		o.Timeout = DefaultTimeout
	case o.Timeout < 0:
		o.Timeout = 0 // bbolt: wait forever
	}
	if o.Mode == 0 {
		o.Mode = 0o600
	}
	if fi, err := os.Stat(path); err == nil && fi.IsDir() {
		return nil, fmt.Errorf("boltstore: open %s: is a directory", path)
	}
	db, err := openDB(path, o)
	switch {
	case errors.Is(err, berrors.ErrTimeout):
		return nil, fmt.Errorf("%w: %s (waited %v)", ErrLocked, path, o.Timeout)
	case errors.Is(err, berrors.ErrInvalid), errors.Is(err, berrors.ErrChecksum), errors.Is(err, berrors.ErrVersionMismatch):
		return nil, fmt.Errorf("%w: %s: %w", ErrCorrupt, path, err)
	case err != nil:
		return nil, fmt.Errorf("boltstore: open %s: %w", path, err)
	}
	if err := (&Store{db: db}).updateDB(func(tx *bolt.Tx) error {
		_, err := tx.CreateBucketIfNotExists(roomsBucket)
		return err
	}); err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("boltstore: open %s: %w", path, err)
	}
	s := &Store{db: db, path: path, writes: make(chan *commitReq),
		closing: make(chan struct{}), loopDone: make(chan struct{})}
	go s.committer()
	return s, nil
}

// openDB is bolt.Open, with a panic over a damaged file turned into
// ErrCorrupt.
func openDB(path string, o Options) (db *bolt.DB, err error) {
	defer recoverCorrupt(&err)
	return bolt.Open(path, o.Mode, &bolt.Options{Timeout: o.Timeout, NoSync: o.NoSync, NoFreelistSync: true, FreelistType: bolt.FreelistMapType})
}

// Path returns the file's path.
func (s *Store) Path() string { return s.path }

// Close closes the file; call it after the server has stopped. A room
// that appends after it gets an error (its publish fails). Closing again
// returns the first Close's result.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		close(s.closing)
		<-s.loopDone
		s.closeErr = s.db.Close()
	})
	return s.closeErr
}

// Open implements actors.HistoryBackend: it returns room's history as the
// file holds it, trimmed to cfg (which may have changed since), or a new
// one with a fresh epoch.
func (s *Store) Open(room string, cfg actors.HistoryConfig) (actors.HistoryStore, error) {
	r := &roomStore{s: s, name: []byte(room), cfg: cfg}
	err := s.update(func(tx *bolt.Tx) error {
		rb, err := tx.Bucket(roomsBucket).CreateBucketIfNotExists(r.name)
		if err != nil {
			return err
		}
		ents, err := rb.CreateBucketIfNotExists(entriesBucket)
		if err != nil {
			return err
		}
		m := meta{epoch: actors.NewEpoch(), first: 1}
		if b := rb.Get(metaKey); b != nil {
			if m, err = decodeMeta(b); err != nil {
				return err
			}
		}
		if err := r.trim(ents, &m, time.Now()); err != nil {
			return err
		}
		r.m = m
		return rb.Put(metaKey, m.encode())
	})
	if err != nil {
		return nil, fmt.Errorf("boltstore: room %q: %w", room, err)
	}
	return r, nil
}
