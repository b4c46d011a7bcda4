package actorfault_test

import (
	"testing"
	"time"

	"github.com/marmotws/marmot"
	"github.com/marmotws/marmot/chaos/actorfault"
)

// waitFor checks cond on a short tick until it holds, failing after guard
// (the tick paces the checks; it is not what the test waits for).
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.After(guard)
	tick := time.NewTicker(2 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case <-tick.C:
		case <-deadline:
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// A room message that is dropped, panicked on or duplicated must still be
// counted as arrived: the room, once empty, ends after RoomIdle. (Before
// the fix a dropped or panicked message left the room's in-flight count
// raised and a duplicate drove it below zero: the room never ended.)
func TestRoomFaultLetsRoomEnd(t *testing.T) {
	for _, fault := range []actorfault.Kind{actorfault.Drop, actorfault.Panic, actorfault.Duplicate} {
		t.Run(fault.String(), func(t *testing.T) {
			inj := actorfault.New(actorfault.Options{})
			r := newRig(t, inj, marmot.ServerConfig{RoomIdle: 20 * time.Millisecond})
			ctx := ctxGuard(t)
			if err := r.client.Join(ctx, "lobby"); err != nil {
				t.Fatal(err)
			}
			id, err := inj.Add(actorfault.Rule{Actors: actorfault.Room("lobby"), Match: actorfault.Op("publish"), Times: 1, Fault: fault})
			if err != nil {
				t.Fatal(err)
			}
			if err := r.client.Publish("lobby", []byte("x")); err != nil {
				t.Fatal(err)
			}
			// The connection's actor sends the leave after the publish:
			// the room gets them in that order.
			if err := r.client.Leave(ctx, "lobby"); err != nil {
				t.Fatal(err)
			}
			if n := inj.Fired(id); n != 1 {
				t.Fatalf("the rule fired %d times", n)
			}
			waitFor(t, "the empty room to end", func() bool { return len(r.srv.Rooms()) == 0 })
		})
	}
}
