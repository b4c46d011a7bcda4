package actors

import (
	"context"
	"errors"
	"testing"
	"time"
)

// TestRoomWaitsForMessageOnItsWay holds a message "on its way" to an empty
// room (counted by roomRef, not yet sent) across several idle timeouts:
// the room must not end while it is, must answer it once sent, and must
// end once it has been idle again.
func TestRoomWaitsForMessageOnItsWay(t *testing.T) {
	h := NewHub(HubConfig{RoomIdle: time.Millisecond})
	t.Cleanup(func() { shutdownHub(h) })
	e, err := h.roomRef("r", true)
	if err != nil || e == nil {
		t.Fatalf("roomRef: %v, %v", e, err)
	}
	// Several idle timeouts pass while the message is held.
	waitCond(t, "idle timeouts", func() bool { return e.idleChecks.Load() >= 3 })
	if got := h.Rooms(); len(got) != 1 {
		t.Fatalf("rooms %v", got)
	}
	if _, err := h.sys.Root.RequestFuture(e.pid, &roomMembers{}, 10*time.Second).Result(); err != nil {
		t.Fatalf("the held message: %v", err)
	}
	waitCond(t, "the room to end once idle", func() bool { return len(h.Rooms()) == 0 })
}

// waitCond checks cond on a short tick until it holds (the tick paces the
// checks; it is not what the test waits for).
func waitCond(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.After(10 * time.Second)
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case <-tick.C:
		case <-deadline:
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// TestRoomStoppedFromOutside stops a live room's actor (as actorfault's
// Stop does, or protoactor's supervisor once the restart budget is spent):
// the room must leave the registry, be reported with ErrRoomFailed, and
// the next use of its name must get a new, working room.
func TestRoomStoppedFromOutside(t *testing.T) {
	errs := make(chan error, 4)
	h := NewHub(HubConfig{RoomIdle: time.Hour, Events: ServerEvents{OnError: func(_ ClientID, err error) {
		select {
		case errs <- err:
		default:
		}
	}}})
	t.Cleanup(func() { shutdownHub(h) })
	e, err := h.roomRef("r", true)
	if err != nil || e == nil {
		t.Fatalf("roomRef: %v, %v", e, err)
	}
	h.sys.Root.Send(e.pid, &roomMembers{})
	if err := h.sys.Root.StopFuture(e.pid).Wait(); err != nil {
		t.Fatal(err)
	}
	if got := h.Rooms(); len(got) != 0 {
		t.Fatalf("the stopped room is still registered: %v", got)
	}
	select {
	case err := <-errs:
		if !errors.Is(err, ErrRoomFailed) {
			t.Fatalf("OnError got %v, want ErrRoomFailed", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("OnError was not told")
	}
	e2, err := h.roomRef("r", true)
	if err != nil || e2 == nil || e2 == e {
		t.Fatalf("roomRef after the stop: %v, %v (old %v)", e2, err, e)
	}
	if _, err := h.sys.Root.RequestFuture(e2.pid, &roomMembers{}, 10*time.Second).Result(); err != nil {
		t.Fatalf("the new room: %v", err)
	}
}

// shutdownHub shuts h down, bounded by a generous deadline.
func shutdownHub(h *Hub) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_ = h.Shutdown(ctx)
}
