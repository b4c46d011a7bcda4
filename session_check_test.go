package marmot_test

import (
	"context"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/marmotws/marmot"
	"github.com/marmotws/marmot/protocol"
)

// checkingStore is a hubsStore that is also a SessionChecker: the
// sessions in taken were taken over elsewhere; checks counts the asks.
type checkingStore struct {
	*hubsStore
	mu     sync.Mutex
	taken  map[uint64]bool
	checks int
}

func (st *checkingStore) TakenElsewhere(_ context.Context, id uint64) bool {
	st.mu.Lock()
	defer st.mu.Unlock()
	st.checks++
	return st.taken[id]
}

// TestSessionCheckedBeforeResume: a server whose store is a
// SessionChecker asks it before resuming one of its own sessions. A
// session the store says was taken over elsewhere ends here (its open
// connection closed with 4009, the store told to forget it) and its token
// resumes nothing; one it does not is resumed as usual. A token that does
// not match the session's secret asks nothing.
func TestSessionCheckedBeforeResume(t *testing.T) {
	st := &checkingStore{hubsStore: newHubsStore(), taken: map[uint64]bool{}}
	s := startServer(t, marmot.ServerConfig{NodeID: 1, SessionStore: st})
	st.hubsStore.mu.Lock()
	st.servers[1] = s // asked by Take for a token of its own that it no longer has
	st.hubsStore.mu.Unlock()

	_, t1, _ := upgrade(t, s.URL(), protocol.SessionNew)
	_, t2, resumed := upgrade(t, s.URL(), t1)
	if !resumed {
		t.Fatal("a session the store did not say was taken was not resumed")
	}
	forged := []byte(t2)
	forged[len(forged)-2] ^= 1
	if _, _, resumed := upgrade(t, s.URL(), string(forged)); resumed {
		t.Fatal("a forged token resumed")
	}
	st.mu.Lock()
	if st.checks != 1 {
		t.Fatalf("%d checks, want 1 (the resume; a forged token asks nothing)", st.checks)
	}
	st.mu.Unlock()

	ws, t3, resumed := upgrade(t, s.URL(), t2)
	if !resumed {
		t.Fatal("not resumed")
	}
	id := sessionID(t, t3)
	st.mu.Lock()
	st.taken[id] = true
	st.mu.Unlock()
	// A copy of the token, presented while the session's connection is
	// open: the session ends, that connection is closed.
	if _, _, resumed := upgrade(t, s.URL(), t3); resumed {
		t.Fatal("a session taken over elsewhere was resumed")
	}
	if ce := readClose(t, ws); ce.Code != marmot.CloseSessionMoved {
		t.Fatalf("the session's connection closed with %d, want %d", ce.Code, marmot.CloseSessionMoved)
	}
	st.hubsStore.mu.Lock()
	_, kept := st.recs[id]
	st.hubsStore.mu.Unlock()
	if kept {
		t.Fatal("the store still has the session that ended")
	}
	if _, _, resumed := upgrade(t, s.URL(), t3); resumed {
		t.Fatal("the token resumed the session after it ended")
	}
}

// sessionID reads the session ID of a resume token.
func sessionID(t *testing.T, tok string) uint64 {
	t.Helper()
	idPart, _, _ := strings.Cut(tok, ".")
	id, err := strconv.ParseUint(idPart, 36, 64)
	if err != nil {
		t.Fatalf("token %q: %v", tok, err)
	}
	return id
}
