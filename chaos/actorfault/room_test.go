package actorfault_test

import (
	"context"
	"errors"
	"slices"
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

// A room that fails more often than protoactor's restart budget (10 in
// 10 s) is stopped: its members are closed with 1011 (ErrRoomFailed goes
// to OnError), and the next join makes a working room rather than going
// to the dead actor.
func TestRoomOverRestartBudget(t *testing.T) {
	inj := actorfault.New(actorfault.Options{})
	gone := make(chan *marmot.CloseError, 4)
	r := newRig(t, inj, marmot.ServerConfig{RoomIdle: time.Hour, ServerEvents: marmot.ServerEvents{
		OnClientDisconnected: func(_ marmot.ClientInfo, reason *marmot.CloseError) { gone <- reason },
	}})
	ctx := ctxGuard(t)
	member, err := marmot.NewClient(marmot.ClientConfig{URL: r.srv.URL(), Subprotocol: "marmot.v1", Logger: logger()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = member.Close(context.Background()) })
	if err := member.Connect(ctx); err != nil {
		t.Fatal(err)
	}
	if err := member.Join(ctx, "lobby"); err != nil {
		t.Fatal(err)
	}
	const fails = 11 // one over the budget
	if _, err := inj.Add(actorfault.Rule{Actors: actorfault.Room("lobby"), Match: actorfault.Op("publish"), Times: fails, Fault: actorfault.Panic}); err != nil {
		t.Fatal(err)
	}
	for range fails {
		if err := r.client.Publish("lobby", []byte("x")); err != nil {
			t.Fatal(err)
		}
	}
	select {
	case reason := <-gone:
		if reason.Code != marmot.CloseInternalError {
			t.Fatalf("the member was closed with %d, want %d", reason.Code, marmot.CloseInternalError)
		}
	case <-time.After(guard):
		t.Fatal("the failed room's member was not told")
	}
	for found := false; !found; {
		select {
		case err := <-r.errs:
			found = errors.Is(err, marmot.ErrRoomFailed)
		case <-time.After(guard):
			t.Fatal("OnError was not told of the failed room")
		}
	}
	if n := inj.Counts().Panics; n != fails {
		t.Fatalf("%d panics, want %d", n, fails)
	}
	// The next use of the room gets a new, working one.
	if err := r.client.Join(ctx, "lobby"); err != nil {
		t.Fatalf("join after the room failed: %v", err)
	}
	if got := r.srv.Members("lobby"); !slices.Equal(got, []marmot.ClientID{r.id}) {
		t.Fatalf("members %v, want [%d]", got, r.id)
	}
	if n, err := r.srv.Publish("lobby", []byte("after")); err != nil || n != 1 {
		t.Fatalf("publish to the new room: %d members, %v", n, err)
	}
}
