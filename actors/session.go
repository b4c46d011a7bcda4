package actors

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/marmotws/marmot/protocol"
)

// Session defaults (HubConfig.SessionTTL, HubConfig.MaxSessions).
const (
	DefaultSessionTTL  = 2 * time.Minute
	DefaultMaxSessions = 10000
)

// Acknowledgements are batched: one after ackEvery handled messages, else
// one ackDelay after the first unacknowledged one (docs/PROTOCOL.md 8.3).
const (
	ackEvery = 64
	ackDelay = 20 * time.Millisecond
)

// secretLen is the size of a resume token's secret part, from crypto/rand.
const secretLen = 32

// session is a client's session on the server (docs/PROTOCOL.md section
// 7): the last sequence number handled, what was acknowledged, and the
// connection it is attached to. It outlives its connections: detached, it
// waits SessionTTL for the client to resume it.
type session struct {
	id uint64
	// root names the session's lineage: its own ID, or, for a session
	// taken over from a lost hub, the root of the one it continues, so
	// that a message handled again here keeps the publish keys it had
	// there (publish_key.go).
	root uint64

	// mu is held while a numbered message is checked and handled, so that
	// a message re-sent on a new connection while the old one is still
	// handling it is seen as a duplicate, never handled twice.
	mu       sync.Mutex
	last     uint64 // the last seq handled
	acked    uint64 // the last seq acknowledged
	ackTimer *time.Timer
	// Set on a session taken over from a lost hub (session_store.go): the
	// numbers up to redeliver may have been handled there already, and
	// the first numbered message may skip ahead of last (the lost hub
	// acknowledged, so handled, what lies between).
	redeliver uint64
	skip      bool
	moved     bool // handed over to another hub: nothing more is handled here
	// pending are the numbers of publish requests not answered yet, in
	// order: the acknowledgement stays below them (session_publish.go).
	// Under pmu, which is taken under mu or alone (by the room that
	// answers), never the other way round.
	pmu     sync.Mutex
	pending []heldPublish
	held    atomic.Int32 // len(pending), read without pmu
	// ackSoon is set while an acknowledgement released by an answered
	// publish is on its way (publishAnswered): one timer for a run of
	// answers, not one per answer.
	ackSoon atomic.Bool

	// Under sessions.mu.
	secret  []byte
	conn    *conn       // attached connection; nil while detached
	expiry  *time.Timer // runs while detached
	expires time.Time
}

// sessions is the hub's session registry.
type sessions struct {
	ttl   time.Duration
	max   int          // < 0: sessions off
	store SessionStore // nil: sessions are this hub's alone

	mu     sync.Mutex
	byID   map[uint64]*session
	nextID uint64
	closed bool
	// final keeps, with a store, the sessions left at shutdown for the
	// other hubs that ask for them (HandOverSession) while this one
	// leaves; nil otherwise.
	final map[uint64]finalSession
	// finalKept is closed once close has kept final (not under mu).
	finalKept chan struct{}
}

// finalSession is a session as the hub shut down with it.
type finalSession struct {
	secret []byte
	last   uint64
}

func newSessions(ttl time.Duration, max int) *sessions {
	if ttl <= 0 {
		ttl = DefaultSessionTTL
	}
	if max == 0 {
		max = DefaultMaxSessions
	}
	return &sessions{ttl: ttl, max: max, byID: make(map[uint64]*session), finalKept: make(chan struct{})}
}

// sessionGrant is a session offered in an upgrade's response, taken up
// by attach once the upgrade succeeded (or given back by abort).
type sessionGrant struct {
	s       *session
	secret  []byte // the token's new secret, current from the offer on
	old     []byte // the secret it replaced, restored by abort
	resumed bool
	fresh   bool // made for this upgrade: abort forgets it
}

// offer opens or resumes the session r asks for and sets the response
// headers that tell the client its new resume token (and whether it
// resumed). It returns nil when r asks for none, or when sessions are off
// or full. The token changes with every upgrade: a token is good for one
// resume.
func (ss *sessions) offer(h *Hub, r *http.Request, header http.Header) *sessionGrant {
	ask := r.Header.Get(protocol.HeaderSession)
	if ask == "" || ss.max < 0 {
		return nil
	}
	secret := make([]byte, secretLen)
	_, _ = rand.Read(secret) // crypto/rand.Read never fails (Go 1.24+)
	// A session of another hub is taken over first, and one of this hub
	// checked with the store, without ss.mu: the store may ask other hubs.
	taken := ss.take(r.Context(), ask)
	if taken == nil && ss.store != nil {
		ss.checkLocal(r.Context(), h, ask)
	}
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if ss.closed {
		return nil
	}
	g := &sessionGrant{secret: secret}
	if s := ss.lookup(ask); s != nil {
		g.s, g.resumed, g.old = s, true, s.secret
	} else {
		if len(ss.byID) >= ss.max && !ss.evict() {
			return nil
		}
		ss.nextID++
		g.s = &session{id: ss.nextID, root: ss.nextID}
		g.fresh = true
		ss.byID[g.s.id] = g.s
		if taken != nil {
			g.resumed = true
			g.s.last = taken.Last
			if id, _, ok := parseToken(ask); ok {
				g.s.root = id
			}
			if taken.Root != 0 {
				g.s.root = taken.Root
			}
			if !taken.Certain {
				g.s.skip = true
				g.s.redeliver = max(taken.Last, sentHigh(r))
			}
		}
	}
	// The new token works from now on (the client may use it as soon as
	// it has the 101) and the old one no more: a token resumes once.
	g.s.secret = secret
	header.Set(protocol.HeaderSession, token(g.s.id, secret))
	if g.resumed {
		header.Set(protocol.HeaderSessionResumed, "true")
	}
	return g
}

// token spells a resume token: the session's ID and its secret.
func token(id uint64, secret []byte) string {
	return strconv.FormatUint(id, 36) + "." + tokenEncoding.EncodeToString(secret)
}

// tokenEncoding spells a token's secret; strict, so that it has one
// spelling.
var tokenEncoding = base64.RawURLEncoding.Strict()

// lookup finds the session tok names, comparing secrets in constant time;
// ss.mu is held.
func (ss *sessions) lookup(tok string) *session {
	id, secret, ok := parseToken(tok)
	if !ok {
		return nil
	}
	s := ss.byID[id]
	if s == nil || s.secret == nil || subtle.ConstantTimeCompare(secret, s.secret) != 1 {
		return nil
	}
	return s
}

// evict ends the detached session closest to its expiry to make room; it
// reports false when every session is attached. ss.mu is held.
func (ss *sessions) evict() bool {
	var victim *session
	for _, s := range ss.byID {
		// Detached ones only: a session offered and not attached yet has
		// no expiry and is never taken.
		if s.conn == nil && s.expiry != nil && (victim == nil || s.expires.Before(victim.expires)) {
			victim = s
		}
	}
	if victim == nil {
		return false
	}
	ss.end(victim)
	return true
}

// end forgets s, here and in the store; ss.mu is held.
func (ss *sessions) end(s *session) {
	ss.forget(s)
	if ss.store != nil {
		ss.store.Delete(s.id)
	}
}

// forget forgets s here; ss.mu is held.
func (ss *sessions) forget(s *session) {
	if s.expiry != nil {
		s.expiry.Stop()
		s.expiry = nil
	}
	s.secret = nil
	delete(ss.byID, s.id)
}

// abort gives back a grant whose upgrade failed: a fresh session is
// forgotten, a resumed one keeps its old token.
func (ss *sessions) abort(g *sessionGrant) {
	if g == nil {
		return
	}
	ss.mu.Lock()
	defer ss.mu.Unlock()
	s := g.s
	switch {
	case ss.byID[s.id] != s || string(s.secret) != string(g.secret):
		// Ended, or offered again meanwhile: leave it.
	case g.fresh:
		ss.end(s)
	default:
		s.secret = g.old
	}
}

// attach takes up g for the upgraded connection c: the token's new secret
// becomes current (the old token stops working) and the session's
// previous connection, if still open, is closed. A raw-mode connection
// has no session: g is given back.
func (ss *sessions) attach(h *Hub, g *sessionGrant, c *conn) {
	if g == nil {
		return
	}
	if c.link.codec == nil {
		ss.abort(g)
		return
	}
	s := g.s
	ss.mu.Lock()
	if ss.closed {
		ss.mu.Unlock()
		return
	}
	if ss.byID[s.id] != s {
		// The session ended while the upgrade ran: another hub took it
		// over (HandOverSession) before it was attached here, or,
		// rarely, the detached session this upgrade resumes expired
		// meanwhile. Either way this connection has no session to
		// number against: the client reconnects and learns which.
		ss.mu.Unlock()
		h.sys.Root.Send(c.link.pid, &closeRequest{code: CloseSessionMoved, text: "session taken over or ended during the upgrade"})
		return
	}
	if string(s.secret) != string(g.secret) {
		// Resumed again, by a newer upgrade, before this one got here:
		// the session has moved on.
		ss.mu.Unlock()
		h.sys.Root.Send(c.link.pid, &closeRequest{code: CloseSessionMoved, text: "session resumed on another connection"})
		return
	}
	old := s.conn
	s.conn = c
	if s.expiry != nil {
		s.expiry.Stop()
		s.expiry = nil
	}
	c.sess = s
	ss.mu.Unlock()
	if old != nil {
		h.sys.Root.Send(old.link.pid, &closeRequest{code: CloseSessionMoved, text: "session resumed on another connection"})
	}
	ss.saveSession(s, g.secret)
	if g.resumed {
		// Tell the client at once how far the session got, so that it
		// drops what it re-sends in vain.
		s.mu.Lock()
		last := s.ackable()
		s.acked = last
		s.mu.Unlock()
		if last > 0 {
			_ = c.link.sendEnvelope(&protocol.Envelope{Kind: protocol.KindCommand, Name: protocol.AckCommand, Ack: last})
		}
	}
}

// detach lets c's session wait, detached, for the client to resume it
// (the connection's teardown).
func (ss *sessions) detach(c *conn) {
	s := c.sess
	if s == nil {
		return
	}
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if s.conn != c || s.secret == nil {
		return // resumed elsewhere, or ended
	}
	s.conn = nil
	if ss.closed {
		ss.end(s)
		return
	}
	s.expires = time.Now().Add(ss.ttl)
	s.expiry = time.AfterFunc(ss.ttl, func() {
		ss.mu.Lock()
		defer ss.mu.Unlock()
		if s.conn == nil && ss.byID[s.id] == s {
			ss.end(s)
		}
	})
}

// count returns how many sessions exist, attached or not.
func (ss *sessions) count() int {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	return len(ss.byID)
}

// close ends every session (the hub's shutdown).
func (ss *sessions) close() {
	ss.mu.Lock()
	ss.closed = true
	all := make([]*session, 0, len(ss.byID))
	var secrets [][]byte
	for _, s := range ss.byID {
		all = append(all, s)
		if ss.store != nil {
			secrets = append(secrets, s.secret)
		}
		ss.forget(s)
	}
	ss.mu.Unlock()
	var final map[uint64]finalSession
	if ss.store != nil {
		final = make(map[uint64]finalSession, len(all))
	}
	for i, s := range all {
		s.mu.Lock()
		if s.ackTimer != nil {
			s.ackTimer.Stop()
			s.ackTimer = nil
		}
		last := s.last
		s.mu.Unlock()
		if ss.store != nil && secrets[i] != nil {
			// With a store the session outlives this hub: its clients
			// resume it on another one, which asks this hub while it
			// leaves, or later the store for this final mark.
			final[s.id] = finalSession{secret: secrets[i], last: last}
			ss.store.Save(SessionRecord{ID: s.id, SecretHash: sha256.Sum256(secrets[i]), Last: last, Final: true, Root: s.root})
		}
	}
	if final != nil {
		ss.mu.Lock()
		ss.final = final
		ss.mu.Unlock()
	}
	close(ss.finalKept)
}

// sequenced checks a numbered message m against its connection's session
// before it is handled. It returns the session, locked, when m is to be
// handled (the caller then calls handled); nil when m was dealt with here:
// a duplicate (dropped, a request answered 409) or a protocol violation
// (the connection is closed).
func (a *ConnectionActor) sequenced(m *Message) *session {
	c := a.c
	s := c.sess
	if s == nil {
		a.violation(m, "seq without a session")
		return nil
	}
	s.mu.Lock()
	switch {
	case m.seq == s.last+1:
		s.last = m.seq
		s.skip = m.seq < s.redeliver
		m.Redelivered = m.seq <= s.redeliver
		m.root = s.root
		return s
	case s.skip && m.seq > s.last && !s.moved:
		// A number after a take-over from a lost hub, up to the highest
		// the client sent there: what lies between was acknowledged or
		// answered there, so handled (a request answered leaves the
		// client's outbox before its acknowledgement, so the client may
		// send again one number and skip the next few).
		s.skip = m.seq < s.redeliver
		s.last = m.seq
		m.Redelivered = m.seq <= s.redeliver
		m.root = s.root
		return s
	case m.seq <= s.last:
		if s.moved {
			// Handed over: the client sends it again to its new hub.
			s.mu.Unlock()
			m.Release()
			return nil
		}
		s.mu.Unlock()
		if m.IsRequest() {
			_ = m.ReplyError(protocol.CodeDuplicate, "duplicate: handled on an earlier connection of the session")
		}
		m.Release()
		return nil
	}
	last := s.last
	s.mu.Unlock()
	a.violation(m, "seq "+strconv.FormatUint(m.seq, 10)+" after "+strconv.FormatUint(last, 10)+": a gap")
	return nil
}

// violation closes the connection for a sequence number it cannot take.
func (a *ConnectionActor) violation(m *Message, what string) {
	err := &protocolViolation{what: what}
	a.c.hub.reportError(a.c.id, err)
	a.c.link.close(CloseProtocolError, err.Error(), err, time.Time{})
	m.Release()
}

type protocolViolation struct{ what string }

func (e *protocolViolation) Error() string { return "marmot: session: " + e.what }

func (e *protocolViolation) Unwrap() error { return protocol.ErrInvalidEnvelope }

// settleUnhandled counts numbered request m as handled in its session
// when it failed before the actor's turn reached sequenced (receive
// middleware panicked on it: an injected fault), and was answered with an
// error. The client's outbox drops a request once answered and numbers on
// from it; without this its next message would be a gap, the connection
// closed for it, and every resume would hit the same gap again. A
// message that is not a request is left unsettled: the client re-sends it
// on its next connection.
func (a *ConnectionActor) settleUnhandled(m *Message) {
	s := a.c.sess
	if m.seq == 0 || s == nil {
		return
	}
	s.mu.Lock()
	if m.seq == s.last+1 {
		s.last = m.seq
	}
	s.mu.Unlock()
}

// handled unlocks s after its message was handled, and acknowledges: at
// once after ackEvery messages, else within ackDelay (the timer sends on
// whatever connection the session is attached to by then).
func (a *ConnectionActor) handled(s *session) {
	last := s.ackable()
	now := last >= s.acked+ackEvery
	if now {
		s.acked = last
	} else if s.ackTimer == nil && last > s.acked {
		s.ackTimer = a.c.hub.sessions.ackTimerFor(s)
	}
	s.mu.Unlock()
	if now {
		a.c.hub.sessions.mark(s, last)
		_ = a.c.link.sendEnvelope(&protocol.Envelope{Kind: protocol.KindCommand, Name: protocol.AckCommand, Ack: last})
	}
}

// ackTimerFor arms the delayed acknowledgement of s (s.mu held).
func (ss *sessions) ackTimerFor(s *session) *time.Timer {
	return time.AfterFunc(ackDelay, func() { ss.ackLater(s) })
}

// ackLater is the delayed acknowledgement of s.
func (ss *sessions) ackLater(s *session) {
	ss.mu.Lock()
	c := s.conn
	ss.mu.Unlock()
	s.mu.Lock()
	s.ackTimer = nil
	last := s.ackable()
	send := c != nil && last > s.acked
	if send {
		s.acked = last
	}
	s.mu.Unlock()
	if send {
		ss.mark(s, last)
		_ = c.link.sendEnvelope(&protocol.Envelope{Kind: protocol.KindCommand, Name: protocol.AckCommand, Ack: last})
	}
}
