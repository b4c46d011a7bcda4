package actors

import (
	"context"
	"errors"
	"math/rand/v2"
	"runtime"
	"sync/atomic"
	"testing"
)

// acquire is what the reader does: take, and wait when that did not fit.
func acquire(b *inputBudget, ctx context.Context, n int64) error {
	if b.take(n) {
		return nil
	}
	return b.wait(ctx, n)
}

// waitUntil spins until cond holds; the conditions it waits for are set by
// a goroutine that is already running, so this ends without a clock.
func waitUntil(cond func() bool) {
	for !cond() {
		runtime.Gosched()
	}
}

func TestInputBudgetBlocksUntilReleased(t *testing.T) {
	b := &inputBudget{limit: 100}
	if err := acquire(b, context.Background(), 60); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- acquire(b, context.Background(), 50) }()
	waitUntil(b.waiting.Load)
	select {
	case err := <-done:
		t.Fatalf("acquire of 50 with 60 of 100 taken returned %v", err)
	default:
	}
	b.release(60)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if got := b.used.Load(); got != 50 {
		t.Fatalf("used = %d, want 50", got)
	}
}

func TestInputBudgetCancel(t *testing.T) {
	b := &inputBudget{limit: 10}
	if err := acquire(b, context.Background(), 10); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- acquire(b, ctx, 5) }()
	waitUntil(b.waiting.Load)
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("acquire = %v, want context.Canceled", err)
	}
	b.release(10)
	if got := b.used.Load(); got != 0 {
		t.Fatalf("used = %d after everything was released", got)
	}
}

// TestInputBudgetNeverOverCommits races one acquirer against one releaser
// (a reader and its actor): what is held never exceeds the limit and every
// wait ends.
func TestInputBudgetNeverOverCommits(t *testing.T) {
	const limit = 1000
	b := &inputBudget{limit: limit}
	var held atomic.Int64
	grants := make(chan int64, 64)
	go func() {
		for n := range grants {
			held.Add(-n)
			b.release(n)
		}
	}()
	r := rand.New(rand.NewPCG(5, 6))
	for range 20000 {
		n := 1 + r.Int64N(limit)
		if err := acquire(b, context.Background(), n); err != nil {
			t.Fatal(err)
		}
		if h := held.Add(n); h > limit {
			t.Fatalf("%d held with a limit of %d", h, limit)
		}
		grants <- n
	}
	close(grants)
}
