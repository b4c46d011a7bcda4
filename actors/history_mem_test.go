package actors

import (
	"bytes"
	"runtime"
	"testing"
	"time"
)

// BenchmarkMemoryHistoryEntry reports the in-memory store's heap per
// entry of a 64-byte message (payload included), filling a store that
// keeps 10,000; one measurement per iteration (-benchtime=3x).
func BenchmarkMemoryHistoryEntry(b *testing.B) {
	const entries, size = 10000, 64
	payload := make([]byte, size)
	heap := func() uint64 {
		var ms runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&ms)
		return ms.HeapAlloc
	}
	var total float64
	for range b.N {
		before := heap()
		h := NewMemoryHistory(HistoryConfig{Size: entries})
		now := time.Now()
		for i := range entries {
			if err := h.Append(HistoryEntry{Offset: uint64(i + 1), Data: bytes.Clone(payload), At: now}); err != nil {
				b.Fatal(err)
			}
		}
		total += float64(int64(heap())-int64(before)) / entries
		runtime.KeepAlive(h)
	}
	b.ReportMetric(total/float64(b.N), "B/entry")
}
