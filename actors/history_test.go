package actors

import (
	"errors"
	"testing"
	"time"

	"github.com/marmotws/marmot/protocol"
)

func TestMemoryHistory(t *testing.T) {
	t0 := time.Unix(1000, 0)
	h := NewMemoryHistory(HistoryConfig{Size: 3, TTL: time.Minute})
	if h.Epoch() == "" || h.Last() != 0 || NewMemoryHistory(HistoryConfig{Size: 1}).Epoch() == h.Epoch() {
		t.Fatalf("epoch %q, last %d", h.Epoch(), h.Last())
	}
	for i := uint64(1); i <= 5; i++ {
		if err := h.Append(HistoryEntry{Offset: i, Data: []byte{byte(i)}, At: t0}); err != nil {
			t.Fatal(err)
		}
	}
	gap := func(offset uint64, now time.Time, reason string) {
		t.Helper()
		var g *HistoryGap
		if _, err := h.Since(offset, now); !errors.As(err, &g) || g.Reason != reason {
			t.Fatalf("Since(%d): %v, want a %q gap", offset, err, reason)
		}
	}
	// 1 and 2 fell out (Size 3): from 2 on everything is there.
	gap(0, t0, protocol.RecoverOverflow)
	gap(1, t0, protocol.RecoverOverflow)
	es, err := h.Since(2, t0)
	if err != nil || len(es) != 3 || es[0].Offset != 3 || es[2].Offset != 5 {
		t.Fatalf("Since(2) = %v, %v", es, err)
	}
	if es, err := h.Since(5, t0); err != nil || len(es) != 0 {
		t.Fatalf("Since(last) = %v, %v", es, err)
	}
	// A minute on, 3..5 expired; 6 is fresh.
	t1 := t0.Add(time.Minute)
	if err := h.Append(HistoryEntry{Offset: 6, At: t1}); err != nil {
		t.Fatal(err)
	}
	gap(3, t1, protocol.RecoverExpired)
	gap(1, t1, protocol.RecoverOverflow)
	if es, err := h.Since(5, t1); err != nil || len(es) != 1 || es[0].Offset != 6 {
		t.Fatalf("Since(5) = %v, %v", es, err)
	}

	// The byte bound.
	b := NewMemoryHistory(HistoryConfig{Size: 100, Bytes: 4})
	for i := uint64(1); i <= 3; i++ {
		_ = b.Append(HistoryEntry{Offset: i, Name: "n", Data: []byte("x"), At: t0})
	}
	if es, err := b.Since(1, t0); err != nil || len(es) != 2 {
		t.Fatalf("Since(1) within 4 bytes = %v, %v", es, err)
	}
}
