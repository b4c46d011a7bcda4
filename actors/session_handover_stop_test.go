package actors

import (
	"context"
	"testing"
	"time"
)

// heldSave is a SessionStore whose Save, called as the hub keeps its
// sessions' final marks (sessions.close), reports to saving and waits
// for release.
type heldSave struct {
	saving  chan SessionRecord
	release chan struct{}
}

func (s heldSave) Save(rec SessionRecord) {
	s.saving <- rec
	<-s.release
}
func (heldSave) Mark(uint64, uint64) {}
func (heldSave) Delete(uint64)       {}
func (heldSave) Take(context.Context, uint64, []byte) (SessionTaken, error) {
	return SessionTaken{}, ErrSessionNotFound
}

// TestHandOverWhileClosing asks a hub with a store for a session while
// it keeps its sessions' final marks (sessions.close, its store's Save
// held): the handover waits for the final mark and hands it over. It
// answered ErrSessionStopping there, which sent the asking node to the
// session's replica before the final mark had reached it: messages
// handled again after a graceful stop, where the handover is exact.
func TestHandOverWhileClosing(t *testing.T) {
	ss := newSessions(time.Minute, 4)
	store := heldSave{saving: make(chan SessionRecord, 1), release: make(chan struct{})}
	ss.store = store
	g, tok := offerFor(ss, "new")
	id, secret, ok := parseToken(tok)
	if g == nil || !ok {
		t.Fatalf("no session (token %q)", tok)
	}
	g.s.last = 9
	h := &Hub{sessions: ss}

	closed := make(chan struct{})
	go func() {
		ss.close()
		close(closed)
	}()
	select {
	case rec := <-store.saving:
		if !rec.Final || rec.Last != 9 {
			t.Fatalf("saved %+v, want the final mark 9", rec)
		}
	case <-time.After(time.Minute):
		t.Fatal("the hub did not save the session's final mark")
	}
	// The store's Save goes on a while after this handover is asked
	// (the handover must wait for it, not answer at once).
	released := time.AfterFunc(100*time.Millisecond, func() { close(store.release) })
	defer released.Stop()
	last, err := h.HandOverSession(id, secret)
	if err != nil || last != 9 {
		t.Fatalf("handed over (%d, %v) while the hub kept its final marks, want (9, nil)", last, err)
	}
	select {
	case <-closed:
	case <-time.After(time.Minute):
		t.Fatal("close did not return")
	}
	if _, err := h.HandOverSession(id, secret); err != ErrSessionNotFound {
		t.Fatalf("second handover: %v, want ErrSessionNotFound", err)
	}
}
