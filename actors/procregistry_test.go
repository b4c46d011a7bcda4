package actors

import (
	"net/http/httptest"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/gorilla/websocket"
)

// heapAfterGC is the live heap, collected first.
func heapAfterGC() int64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return int64(m.HeapAlloc)
}

// TestProcessRegistryPlateau registers and removes 300,000 processes one
// at a time, as a long-running server does with its connection actors
// and futures: the heap must come back to within 1 MiB of where it was.
// With protoactor's own registry table (32,768 Go maps, each keeping the
// group it allocated on its first insert) it ends about 9 MiB up.
func TestProcessRegistryPlateau(t *testing.T) {
	sys := NewActorSystem(nil)
	defer sys.Shutdown()
	pr := sys.ProcessRegistry
	before := processCount(sys)
	base := heapAfterGC()
	for range 300_000 {
		pid, ok := pr.Add(sys.DeadLetter, pr.NextId())
		if !ok {
			t.Fatal("id taken")
		}
		pr.Remove(pid)
	}
	grew := heapAfterGC() - base
	t.Logf("heap %+d KiB after 300,000 processes came and went", grew>>10)
	if grew > 1<<20 {
		t.Errorf("heap grew %d KiB with nothing registered; want under 1 MiB", grew>>10)
	}
	if n := processCount(sys); n != before {
		t.Errorf("%d processes registered, want %d", n, before)
	}
	// What the system registered while it was made is still found.
	if p, ok := pr.GetLocal("eventstream"); !ok || p == nil {
		t.Error("the event stream is not in the compacted registry")
	}
	if _, ok := pr.Get(actor.NewPID(pr.Address, "deadletter")); !ok {
		t.Error("dead letters are not in the compacted registry")
	}
}

// TestConnectCyclesLeaveNoProcesses connects clients over loopback, joins
// them to a room (an actor per connection, a future per join), drops
// them, and does it again: after every round the registry must hold what
// it held before the first (no id of a stopped actor or an answered
// future left behind), and the heap must not keep growing from round to
// round.
func TestConnectCyclesLeaveNoProcesses(t *testing.T) {
	connected := make(chan ClientID, 64)
	h := NewHub(HubConfig{RoomIdle: time.Hour, Events: ServerEvents{
		OnClientConnected: func(ci ClientInfo) { connected <- ci.ID },
	}})
	t.Cleanup(func() { shutdownHub(h) })
	hs := httptest.NewServer(h)
	defer hs.Close()
	url := "ws" + strings.TrimPrefix(hs.URL, "http")
	dialer := websocket.Dialer{Subprotocols: []string{"marmot.v1"}, HandshakeTimeout: 10 * time.Second}

	const rounds, perRound = 10, 50
	var base int
	var heap [rounds]int64
	for r := range rounds {
		conns := make([]*websocket.Conn, perRound)
		for i := range conns {
			c, _, err := dialer.Dial(url, nil)
			if err != nil {
				t.Fatal(err)
			}
			conns[i] = c
			select {
			case id := <-connected:
				if err := h.Join(id, "lobby"); err != nil {
					t.Fatal(err)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("OnClientConnected not called")
			}
		}
		if r == 0 {
			// The room and its own actors exist from here on.
			base = processCount(h.sys) - perRound
		}
		for _, c := range conns {
			c.Close()
		}
		waitCond(t, "every connection to end", func() bool { return h.ClientCount() == 0 })
		waitCond(t, "the registry to be back to its baseline", func() bool { return processCount(h.sys) == base })
		heap[r] = heapAfterGC() >> 10
	}
	t.Logf("registry %d processes; heap by round (KiB): %v", base, heap)
	// The first rounds warm pools and buffers; from the third on the heap
	// must hold (a leak of a few KiB a connection would add 100s of KiB).
	if d := heap[rounds-1] - heap[2]; d > 512 {
		t.Errorf("heap grew %d KiB over rounds 3..%d of %d connections each", d, rounds, perRound)
	}
}

// BenchmarkNewActorSystem is what every server, client and node pays for
// its actor system, the registry's compaction included.
func BenchmarkNewActorSystem(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		NewActorSystem(nil).Shutdown()
	}
}

// TestBootProcesses: a new protoactor system registers exactly
// bootProcesses, which compactProcessRegistry moves by name.
func TestBootProcesses(t *testing.T) {
	sys := actor.NewActorSystem()
	defer sys.Shutdown()
	if n := processCount(sys); n != len(bootProcesses) {
		t.Fatalf("a new system registers %d processes, want %d (%v): update bootProcesses", n, len(bootProcesses), bootProcesses)
	}
	for _, id := range bootProcesses {
		if _, ok := sys.ProcessRegistry.GetLocal(id); !ok {
			t.Errorf("%q is not registered", id)
		}
	}
}
