package marmot_test

import (
	"sync"
	"testing"

	"github.com/marmotws/marmot"
	"github.com/marmotws/marmot/chaos"
	"github.com/marmotws/marmot/internal/sessiontest"
)

// TestSessionTakeOverSkipsAnswered: server A is lost with its mark kept at
// 20, after it handled 21 to 30, of which 22 and 23 were requests (room
// publishes) it answered: the client dropped those as answered, and sends
// again 21 and 24-30, unacknowledged (and 31-40, sent into the cut). Server B, taking the session over
// from the mark, handles 21 and then 24, past the numbers A answered, not
// only at the first message after the mark (which closed the connection
// with 1002 for a gap at 24, again at every resume). Every command is
// handled, those A handled flagged Redelivered.
func TestSessionTakeOverSkipsAnswered(t *testing.T) {
	st := newHubsStore()
	a, b := newStoreNode(t, st, 1), newStoreNode(t, st, 2)
	c, p, errs := storeClient(t, a, b)
	marks := make(chan uint64, 64)
	lost := make(chan struct{})
	var once sync.Once
	st.onMark = func(last uint64) {
		st.mu.Lock()
		for id, r := range st.recs {
			r.Last = min(r.Last, 20) // the store keeps no mark past 20
			st.recs[id] = r
		}
		st.mu.Unlock()
		if last < 30 {
			marks <- last
			return
		}
		once.Do(func() {
			_ = p.Set(chaos.Faults{Blackhole: true}) // lost before its acknowledgement
			close(lost)
		})
	}
	sessiontest.Send(t, c, 1, 20)
	for recv(t, marks, "mark 20") != 20 {
	}
	// 21, two publishes (answered at once: no such room), 24-30, in one
	// burst: one acknowledgement, at 30, which A never sends.
	sessiontest.Send(t, c, 21, 21)
	for range 2 {
		if err := c.Publish("nobody", []byte("p")); err != nil {
			t.Fatal(err)
		}
	}
	sessiontest.Send(t, c, 24, 30)
	recv(t, lost, "A lost")
	st.kill(1)
	sessiontest.Send(t, c, 31, 40)
	if _, err := c.Request(ctxTimeout(t), "done", nil); err != nil {
		t.Fatal(err)
	}
	if c.URL() != b.s.URL() {
		t.Fatalf("the client is on %s, not B", c.URL())
	}
	got := map[int]bool{}
	for _, h := range b.handled() {
		got[h.k] = true
		if h.k <= 30 && !h.redelivered {
			t.Fatalf("B handled %d, which A had handled, without Redelivered", h.k)
		}
	}
	for _, h := range a.handled() {
		got[h.k] = true
	}
	for k := 1; k <= 40; k++ {
		if (k == 22 || k == 23) != !got[k] {
			t.Fatalf("command %d handled: %v", k, got[k])
		}
	}
	select {
	case code := <-b.closes:
		if code == marmot.CloseProtocolError {
			t.Fatalf("B closed the client's connection with %d", code)
		}
	default:
	}
	sessiontest.NoSessionLost(t, errs)
}
