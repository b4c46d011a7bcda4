package actors

import (
	"context"
	"sync"
	"sync/atomic"
)

// inputBudget bounds the bytes a link's reader has read but its actor has
// not processed yet. The reader takes (and waits when that did not fit), the
// actor releases; both are one atomic add unless the reader has to wait. (A general weighted semaphore
// takes a lock on every call, twice per message.)
type inputBudget struct {
	used    atomic.Int64
	limit   int64
	waiting atomic.Bool // the reader is (about to be) blocked in wait
	mu      sync.Mutex
	wake    chan struct{} // closed to wake the waiting reader
}

// take adds n (at most limit) and reports whether it fit; if not, the
// caller must wait, which keeps n added. Only one goroutine (the link's
// reader) takes and waits. Two calls rather than one so that the fast
// path does not even load the context.
func (b *inputBudget) take(n int64) bool { return b.used.Add(n) <= b.limit }

// wait blocks until the n that take added fits, or fails with ctx (then n
// is given back).
func (b *inputBudget) wait(ctx context.Context, n int64) error {
	for {
		b.mu.Lock()
		// waiting is published before used is re-read, and release adds
		// before it reads waiting: one of the two sees the other, so a
		// release cannot slip by unnoticed.
		b.waiting.Store(true)
		if b.used.Load() <= b.limit {
			b.waiting.Store(false)
			b.mu.Unlock()
			return nil
		}
		wake := make(chan struct{})
		b.wake = wake
		b.mu.Unlock()
		select {
		case <-wake:
		case <-ctx.Done():
			b.mu.Lock()
			b.waiting.Store(false)
			b.wake = nil
			b.mu.Unlock()
			b.release(n)
			return ctx.Err()
		}
	}
}

// release gives back n acquired bytes.
func (b *inputBudget) release(n int64) {
	if b.used.Add(-n) > b.limit || !b.waiting.Load() {
		return
	}
	b.mu.Lock()
	if b.wake != nil && b.used.Load() <= b.limit {
		close(b.wake)
		b.wake = nil
		b.waiting.Store(false)
	}
	b.mu.Unlock()
}
