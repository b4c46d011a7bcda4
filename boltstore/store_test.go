package boltstore_test

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
	"go.uber.org/goleak"

	"github.com/marmotws/marmot/actors"
	"github.com/marmotws/marmot/boltstore"
	"github.com/marmotws/marmot/protocol"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func openStore(t *testing.T, path string) *boltstore.Store {
	t.Helper()
	s, err := boltstore.Open(path, &boltstore.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func openRoom(t *testing.T, s *boltstore.Store, room string, cfg actors.HistoryConfig) actors.HistoryStore {
	t.Helper()
	h, err := s.Open(room, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func appendN(t *testing.T, h actors.HistoryStore, from, to uint64, at time.Time) {
	t.Helper()
	for i := from; i <= to; i++ {
		e := actors.HistoryEntry{Offset: i, Data: []byte(strconv.FormatUint(i, 10)), At: at}
		if i%2 == 0 {
			e.Name = "cmd"
		}
		if err := h.Append(e); err != nil {
			t.Fatal(err)
		}
	}
}

func wantGap(t *testing.T, h actors.HistoryStore, offset uint64, now time.Time, reason string) {
	t.Helper()
	var g *actors.HistoryGap
	if es, err := h.Since(offset, now); !errors.As(err, &g) || g.Reason != reason {
		t.Fatalf("Since(%d) = %d entries, %v; want a %q gap", offset, len(es), err, reason)
	}
}

func wantSince(t *testing.T, h actors.HistoryStore, offset uint64, now time.Time, first, last uint64) {
	t.Helper()
	es, err := h.Since(offset, now)
	if err != nil {
		t.Fatalf("Since(%d): %v", offset, err)
	}
	if uint64(len(es)) != last+1-first {
		t.Fatalf("Since(%d) = %d entries, want %d..%d", offset, len(es), first, last)
	}
	for i, e := range es {
		off := first + uint64(i)
		name := ""
		if off%2 == 0 {
			name = "cmd"
		}
		if e.Offset != off || e.Name != name || string(e.Data) != strconv.FormatUint(off, 10) {
			t.Fatalf("Since(%d)[%d] = %+v, want offset %d", offset, i, e, off)
		}
	}
}

// The same behaviour as the memory store (actors.TestMemoryHistory):
// offsets, the Size, Bytes and TTL bounds and the gap's reasons, and the
// entries' times.
func TestRoomHistory(t *testing.T) {
	s := openStore(t, filepath.Join(t.TempDir(), "h.db"))
	defer s.Close()
	t0 := time.Unix(1000, 0)
	h := openRoom(t, s, "r", actors.HistoryConfig{Size: 3, TTL: time.Minute})
	if h.Epoch() == "" || h.Last() != 0 || openRoom(t, s, "other", actors.HistoryConfig{Size: 1}).Epoch() == h.Epoch() {
		t.Fatalf("epoch %q, last %d", h.Epoch(), h.Last())
	}
	if es, err := h.Since(0, t0); err != nil || len(es) != 0 {
		t.Fatalf("Since on an empty history = %v, %v", es, err)
	}
	appendN(t, h, 1, 5, t0)
	if h.Last() != 5 {
		t.Fatalf("last %d", h.Last())
	}
	// 1 and 2 fell out (Size 3): from 2 on everything is there.
	wantGap(t, h, 0, t0, protocol.RecoverOverflow)
	wantGap(t, h, 1, t0, protocol.RecoverOverflow)
	wantSince(t, h, 2, t0, 3, 5)
	wantSince(t, h, 4, t0, 5, 5)
	if es, err := h.Since(5, t0); err != nil || len(es) != 0 {
		t.Fatalf("Since(last) = %v, %v", es, err)
	}
	es, _ := h.Since(4, t0)
	if !es[0].At.Equal(t0) {
		t.Fatalf("At %v, want %v", es[0].At, t0)
	}
	// A minute on, 3..5 have expired: a recovery finds it out.
	t1 := t0.Add(time.Minute)
	wantGap(t, h, 2, t1, protocol.RecoverExpired)
	wantGap(t, h, 4, t1, protocol.RecoverExpired)
	wantGap(t, h, 1, t1, protocol.RecoverOverflow)
	appendN(t, h, 6, 6, t1)
	wantSince(t, h, 5, t1, 6, 6)
	wantGap(t, h, 3, t1, protocol.RecoverExpired)

	// An append that is not the next offset is refused and changes nothing.
	if err := h.Append(actors.HistoryEntry{Offset: 8, At: t1}); err == nil || h.Last() != 6 {
		t.Fatalf("append out of order: %v, last %d", err, h.Last())
	}

	// The byte bound: names and data count.
	b := openRoom(t, s, "bytes", actors.HistoryConfig{Size: 100, Bytes: 5})
	appendN(t, b, 1, 3, t0) // 1 byte, then 4 ("cmd" and "2"), then 1
	wantGap(t, b, 0, t0, protocol.RecoverOverflow)
	wantSince(t, b, 1, t0, 2, 3)
	appendN(t, b, 4, 4, t0) // 4 more: only 3 and 4 fit
	wantSince(t, b, 2, t0, 3, 4)
	// An entry larger than the bound alone is not kept.
	if err := b.Append(actors.HistoryEntry{Offset: 5, Data: bytes.Repeat([]byte("x"), 6), At: t0}); err != nil {
		t.Fatal(err)
	}
	wantGap(t, b, 4, t0, protocol.RecoverOverflow)
	if es, err := b.Since(5, t0); err != nil || len(es) != 0 {
		t.Fatalf("Since(last) = %v, %v", es, err)
	}
}

// History, epoch and offsets outlive the Store: the file opened again
// gives each room back as it stood, trimmed to the bounds it is opened
// with now.
func TestReopen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "h.db")
	now := time.Now()
	cfg := actors.HistoryConfig{Size: 10, TTL: time.Hour}
	s := openStore(t, path)
	a := openRoom(t, s, "a", cfg)
	appendN(t, a, 1, 12, now)
	b := openRoom(t, s, "b", cfg)
	appendN(t, b, 1, 2, now.Add(-2*time.Hour)) // expired by the time they are read
	epochA, epochB := a.Epoch(), b.Epoch()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	// Closed: appends fail (the room then fails the publish).
	if err := a.Append(actors.HistoryEntry{Offset: 13, At: now}); err == nil {
		t.Fatal("append to a closed store succeeded")
	}

	s = openStore(t, path)
	defer s.Close()
	a = openRoom(t, s, "a", cfg)
	if a.Epoch() != epochA || a.Last() != 12 {
		t.Fatalf("room a reopened at %q/%d, want %q/12", a.Epoch(), a.Last(), epochA)
	}
	wantSince(t, a, 2, now, 3, 12)
	wantGap(t, a, 1, now, protocol.RecoverOverflow)
	appendN(t, a, 13, 13, now)
	wantSince(t, a, 12, now, 13, 13)
	b = openRoom(t, s, "b", cfg)
	if b.Epoch() != epochB || b.Last() != 2 {
		t.Fatalf("room b reopened at %q/%d, want %q/2", b.Epoch(), b.Last(), epochB)
	}
	wantGap(t, b, 0, now, protocol.RecoverExpired) // expired while closed, trimmed at open
	// Smaller bounds than before apply at open.
	a = openRoom(t, s, "a", actors.HistoryConfig{Size: 2})
	wantSince(t, a, 11, now, 12, 13)
	wantGap(t, a, 10, now, protocol.RecoverOverflow)
	// A fresh room in the same file has a fresh epoch.
	if c := openRoom(t, s, "c", cfg); c.Epoch() == epochA || c.Last() != 0 {
		t.Fatalf("new room at %q/%d", c.Epoch(), c.Last())
	}
}

// Open's errors name what is wrong with the path.
func TestOpenErrors(t *testing.T) {
	dir := t.TempDir()
	if _, err := boltstore.Open(filepath.Join(dir, "missing", "h.db"), nil); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("missing directory: %v", err)
	}
	if _, err := boltstore.Open(dir, nil); err == nil {
		t.Fatal("a directory opened")
	}

	junk := filepath.Join(dir, "junk.db")
	if err := os.WriteFile(junk, bytes.Repeat([]byte("not a bolt file "), 1024), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := boltstore.Open(junk, nil); !errors.Is(err, boltstore.ErrCorrupt) {
		t.Fatalf("junk file: %v", err)
	}

	path := filepath.Join(dir, "h.db")
	s := openStore(t, path)
	if _, err := boltstore.Open(path, &boltstore.Options{Timeout: 100 * time.Millisecond}); !errors.Is(err, boltstore.ErrLocked) {
		t.Fatalf("locked file: %v", err)
	}
	// Closed, the file is free again.
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openStore(t, path)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
}

// A file whose room record is damaged is reported as corrupt when the
// room opens, never a panic or a silently empty history.
func TestCorruptRoom(t *testing.T) {
	path := filepath.Join(t.TempDir(), "h.db")
	s := openStore(t, path)
	appendN(t, openRoom(t, s, "r", actors.HistoryConfig{Size: 10}), 1, 3, time.Now())
	if err := boltstore.CorruptForTest(s, "r"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Open("r", actors.HistoryConfig{Size: 10}); !errors.Is(err, boltstore.ErrCorrupt) {
		t.Fatalf("corrupt room: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
}

// BenchmarkAppend: one room's append, as a publish makes it, synced to
// disk and with NoSync; and the memory store's for comparison.
func BenchmarkAppend(b *testing.B) {
	data := bytes.Repeat([]byte("x"), 100)
	cfg := actors.HistoryConfig{Size: 1000}
	run := func(b *testing.B, h actors.HistoryStore) {
		b.ReportAllocs()
		now := time.Now()
		for i := range b.N {
			if err := h.Append(actors.HistoryEntry{Offset: uint64(i) + 1, Data: data, At: now}); err != nil {
				b.Fatal(err)
			}
		}
	}
	for _, noSync := range []bool{false, true} {
		b.Run(fmt.Sprintf("bolt/NoSync=%v", noSync), func(b *testing.B) {
			s, err := boltstore.Open(filepath.Join(b.TempDir(), "h.db"), &boltstore.Options{NoSync: noSync})
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			h, err := s.Open("r", cfg)
			if err != nil {
				b.Fatal(err)
			}
			run(b, h)
		})
	}
	b.Run("memory", func(b *testing.B) { run(b, actors.NewMemoryHistory(cfg)) })
}

// Writes committed as one group: when one fails (or panics), the others
// still commit, each in its own transaction, and only the failing one
// reports an error.
func TestGroupCommit(t *testing.T) {
	s := openStore(t, filepath.Join(t.TempDir(), "h.db"))
	defer s.Close()
	boom := errors.New("boom")
	errs := boltstore.CommitGroupForTest(s,
		boltstore.PutForTest("a"),
		func(*bolt.Tx) error { return boom },
		boltstore.PutForTest("b"),
		func(*bolt.Tx) error { panic("damaged page") },
	)
	if errs[0] != nil || !errors.Is(errs[1], boom) || errs[2] != nil || !errors.Is(errs[3], boltstore.ErrCorrupt) {
		t.Fatalf("outcomes %v", errs)
	}
	if !boltstore.HasForTest(s, "a") || !boltstore.HasForTest(s, "b") {
		t.Fatal("a good write of the group was not committed")
	}
	// A group that succeeds commits all of it.
	if errs := boltstore.CommitGroupForTest(s, boltstore.PutForTest("c"), boltstore.PutForTest("d")); errs[0] != nil || errs[1] != nil {
		t.Fatalf("outcomes %v", errs)
	}
	if !boltstore.HasForTest(s, "c") || !boltstore.HasForTest(s, "d") {
		t.Fatal("the group was not committed")
	}
}

// Rooms appending at the same time (their writes grouped) each keep every
// entry, in order, across a reopen.
func TestConcurrentRooms(t *testing.T) {
	path := filepath.Join(t.TempDir(), "h.db")
	s, err := boltstore.Open(path, nil) // synced: the case grouping is for
	if err != nil {
		t.Fatal(err)
	}
	const rooms, each = 8, 50
	cfg := actors.HistoryConfig{Size: each}
	now := time.Now()
	var wg sync.WaitGroup
	errs := make(chan error, rooms)
	for i := range rooms {
		h := openRoom(t, s, fmt.Sprintf("room-%d", i), cfg)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for off := uint64(1); off <= each; off++ {
				e := actors.HistoryEntry{Offset: off, Data: []byte(strconv.FormatUint(off, 10)), At: now}
				if off%2 == 0 {
					e.Name = "cmd"
				}
				if err := h.Append(e); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openStore(t, path)
	defer s.Close()
	for i := range rooms {
		h := openRoom(t, s, fmt.Sprintf("room-%d", i), cfg)
		if h.Last() != each {
			t.Fatalf("room %d: last %d", i, h.Last())
		}
		wantSince(t, h, 0, now, 1, each)
	}
}

// BenchmarkAppendRooms: rooms appending at the same time, synced; their
// writes share transactions (and syncs).
func BenchmarkAppendRooms(b *testing.B) {
	s, err := boltstore.Open(filepath.Join(b.TempDir(), "h.db"), nil)
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	data := bytes.Repeat([]byte("x"), 100)
	var n atomic.Int64
	b.SetParallelism(16) // 32 rooms on 2 cores
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		h, err := s.Open(fmt.Sprintf("room-%d", n.Add(1)), actors.HistoryConfig{Size: 1000})
		if err != nil {
			b.Error(err)
			return
		}
		now := time.Now()
		for off := uint64(1); pb.Next(); off++ {
			if err := h.Append(actors.HistoryEntry{Offset: off, Data: data, At: now}); err != nil {
				b.Error(err)
				return
			}
		}
	})
}
