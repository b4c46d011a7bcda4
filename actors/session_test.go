package actors

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/marmotws/marmot/protocol"
)

// offerFor offers ss the session header ask and returns the grant and the
// token it answered with.
func offerFor(ss *sessions, ask string) (*sessionGrant, string) {
	r := httptest.NewRequest(http.MethodGet, "/", nil)
	r.Header.Set(protocol.HeaderSession, ask)
	h := http.Header{}
	g := ss.offer(nil, r, h) // no store: the hub is not used
	return g, h.Get(protocol.HeaderSession)
}

// FuzzSessionToken feeds the resume-token parsers (they read the
// Marmot-Session header of every upgrade) arbitrary tokens: none may
// panic, only the one token the server issued names its session, and a
// token that parses has one spelling.
func FuzzSessionToken(f *testing.F) {
	ss := newSessions(time.Minute, 4)
	_, real := offerFor(ss, protocol.SessionNew)
	f.Add(real)
	f.Add(strings.ToUpper(real))
	f.Add(real + "=")
	f.Add("0" + real)
	f.Add(protocol.SessionNew)
	f.Add("")
	f.Add("1.")
	f.Add(".")
	f.Add(strings.Repeat("z", 200) + ".a")
	f.Fuzz(func(t *testing.T, tok string) {
		ss.mu.Lock()
		s := ss.lookup(tok)
		ss.mu.Unlock()
		if s != nil && tok != real {
			t.Fatalf("token %q resumes the session of %q", tok, real)
		}
		// The parser another hub's take-over uses (session_store.go):
		// one spelling per token, too.
		if id, secret, ok := parseToken(tok); ok && token(id, secret) != tok {
			t.Fatalf("token %q parsed as %d and a secret that spell %q", tok, id, token(id, secret))
		}
	})
}

func TestSessionsAbortAndEvict(t *testing.T) {
	ss := newSessions(time.Hour, 2)
	defer ss.close()

	// A fresh session whose upgrade failed is forgotten.
	g, _ := offerFor(ss, protocol.SessionNew)
	ss.abort(g)
	if n := ss.count(); n != 0 {
		t.Fatalf("%d sessions after an aborted offer", n)
	}

	// A resume whose upgrade failed leaves the old token working.
	g1, t1 := offerFor(ss, protocol.SessionNew)
	g2, t2 := offerFor(ss, t1)
	if !g2.resumed || g2.s != g1.s || t2 == t1 {
		t.Fatalf("resume: %+v, token %q", g2, t2)
	}
	ss.abort(g2)
	if g3, _ := offerFor(ss, t1); g3 == nil || !g3.resumed {
		t.Fatal("the old token no longer resumes after an aborted resume")
	}

	// Full: an offered (not yet attached) session is never evicted, a
	// detached one is.
	g4, _ := offerFor(ss, protocol.SessionNew)
	if g4 == nil {
		t.Fatal("second session refused")
	}
	if g, _ := offerFor(ss, protocol.SessionNew); g != nil {
		t.Fatal("a third session over the bound, evicting one being offered")
	}
	ss.mu.Lock()
	g4.s.expires = time.Now()
	g4.s.expiry = time.AfterFunc(time.Hour, func() {})
	ss.mu.Unlock()
	if g, _ := offerFor(ss, protocol.SessionNew); g == nil {
		t.Fatal("a detached session was not evicted to make room")
	}
	if ss.byID[g4.s.id] != nil {
		t.Fatal("the detached session is still there")
	}
}
