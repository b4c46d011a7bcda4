package actors

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"

	"github.com/marmotws/marmot/protocol"
)

// Sessions beyond one hub. A hub keeps its clients' sessions in its own
// memory (session.go); with HubConfig.SessionStore a session also follows
// its client to another hub: a client that fails over presents its resume
// token to the new hub, which does not have the session and asks the store
// to take it over (Take) from wherever it is. Package cluster is the store
// of a protoactor cluster: it asks the session's hub, named in the
// session's ID, to hand the session over (HandOverSession), or, when that
// hub is lost, a copy of the session's mark that the hub kept on another
// node (Save and Mark). Without a store nothing here runs and the hub's
// sessions are exactly its own.

// ErrSessionNotFound reports a session that no hub or store has under the
// token it was asked for: unknown, expired, already resumed, or a token
// whose secret does not match.
var ErrSessionNotFound = errors.New("marmot: session not found")

// ErrSessionStopping reports a session asked of a hub that is shutting
// down: its store has the session's last mark (SessionRecord.Final).
var ErrSessionStopping = errors.New("marmot: session's hub is shutting down")

// SessionStore keeps clients' sessions findable by other hubs, so that a
// client that moves to another hub (ClientConfig.FailoverURLs) resumes its
// session there. The hub calls Save, Mark and Delete on its own
// goroutines; none of them may block (a store batches them). Take blocks,
// bounded by its context: it runs in the upgrade request of the client
// that resumes.
type SessionStore interface {
	// Save records a session of this hub where other hubs can find it:
	// its ID, the hash of its current secret and its mark. It is called
	// when a client takes the session up on this hub (with every new
	// token), and with Final set for every session left when the hub
	// shuts down.
	Save(rec SessionRecord)
	// Mark moves the mark of a saved session on: every sequence number up
	// to last was handled here. It is called as the session's
	// acknowledgements go out (batched, docs/PROTOCOL.md 8.3), never per
	// message.
	Mark(id, last uint64)
	// Delete forgets a session that ended here (expired, evicted, handed
	// over to another hub).
	Delete(id uint64)
	// Take hands the session id over to this hub, when secret is its
	// token's: from its hub when that one is alive (exact, Certain), else
	// from the mark saved for it (the hub is lost: messages handled after
	// the mark cannot be known). It returns ErrSessionNotFound when
	// nobody has the session under that secret.
	Take(ctx context.Context, id uint64, secret []byte) (SessionTaken, error)
}

// SessionChecker is implemented by a SessionStore that may hand one of
// this hub's sessions to another hub without this hub hearing of it at
// once: package cluster's takes a session from the copy of its mark on
// another node when this hub is lost to that node's side (a partition),
// and this hub learns of it only later. Before the hub resumes one of its
// own sessions on a token presented to it, it asks TakenElsewhere; true
// means the session now lives on another hub: it ends here, as with
// DropSession, and the token resumes nothing (the client gets a fresh
// session). It blocks, bounded by ctx; a store that cannot tell says
// false.
type SessionChecker interface {
	TakenElsewhere(ctx context.Context, id uint64) bool
}

// SessionRecord is what a SessionStore keeps of a session.
type SessionRecord struct {
	ID uint64
	// SecretHash is the SHA-256 of the current token's secret: a copy
	// that cannot be presented as a token.
	SecretHash [32]byte
	// Last is the session's mark: the last sequence number handled.
	Last uint64
	// Final is set when the hub shut down with the session: Last is then
	// exact.
	Final bool
	// Root names the session's lineage (its first ID, kept across
	// take-overs from a lost hub): the hub that takes the session over
	// from this record keys the publishes of the messages it handles
	// again as this hub did (Message.PublishKey). 0: the ID.
	Root uint64
}

// SessionTaken is a session handed over by SessionStore.Take.
type SessionTaken struct {
	// Last is the last sequence number handled.
	Last uint64
	// Certain is set when Last is exact (the session's hub handed it
	// over, or shut down cleanly). Otherwise the hub was lost after Last
	// and may have handled later numbers: those the client sends again
	// are handled here with Message.Redelivered set.
	Certain bool
	// Root is the session's SessionRecord.Root (0: the ID it was taken
	// under).
	Root uint64
}

// SecretMatches reports, in constant time, whether secret is the one
// whose hash is hash (a SessionRecord's).
func SecretMatches(hash [32]byte, secret []byte) bool {
	h := sha256.Sum256(secret)
	return subtle.ConstantTimeCompare(h[:], hash[:]) == 1
}

// sessionIDs returns where a hub's session IDs start. On a node of a
// cluster they are NodeID×NodeIDStride plus a random start below 2³⁹ (so
// that a restarted node does not hand out the IDs of its previous run,
// whose marks other nodes may still keep); alone, 0.
func sessionIDs(node uint32) uint64 {
	if node == 0 {
		return 0
	}
	return uint64(node)*NodeIDStride + rand.Uint64N(1<<39)
}

// SessionNode returns the NodeID of the hub that issued session id (0
// outside a cluster), as ClientID.Node does for clients.
func SessionNode(id uint64) uint32 { return uint32(id / NodeIDStride) }

// parseToken splits a resume token into its session ID and secret; ok is
// false for anything but the one spelling the hub issues.
func parseToken(tok string) (id uint64, secret []byte, ok bool) {
	idPart, secretPart, found := strings.Cut(tok, ".")
	if !found || len(tok) > 128 {
		return 0, nil, false
	}
	id, err := strconv.ParseUint(idPart, 36, 64)
	if err != nil || strconv.FormatUint(id, 36) != idPart {
		return 0, nil, false // one spelling per token
	}
	// The length first: the decoder skips CR and LF, which would give
	// a token a second spelling.
	if len(secretPart) != tokenEncoding.EncodedLen(secretLen) {
		return 0, nil, false
	}
	secret, err = tokenEncoding.DecodeString(secretPart)
	if err != nil || len(secret) != secretLen {
		return 0, nil, false
	}
	return id, secret, true
}

// take asks the store for the session tok names when this hub does not
// have it; nil when there is no store, the token is not one, or nobody has
// it. It runs before ss.mu is taken: the store may ask other hubs.
func (ss *sessions) take(ctx context.Context, tok string) *SessionTaken {
	if ss.store == nil || tok == protocol.SessionNew {
		return nil
	}
	id, secret, ok := parseToken(tok)
	if !ok {
		return nil
	}
	ss.mu.Lock()
	_, local := ss.byID[id]
	ss.mu.Unlock()
	if local {
		return nil // ours: resumed, or refused, by lookup (after checkLocal)
	}
	t, err := ss.store.Take(ctx, id, secret)
	if err != nil {
		return nil
	}
	return &t
}

// checkLocal asks the store, when it is a SessionChecker, whether the
// session of this hub that tok names (with its secret: a forged token
// asks nothing) was taken over by another hub, and if so ends it here,
// closing its connection if still open, so that lookup finds nothing. It
// runs before ss.mu is taken: the store may ask another hub.
func (ss *sessions) checkLocal(ctx context.Context, h *Hub, tok string) {
	sc, ok := ss.store.(SessionChecker)
	if !ok || tok == protocol.SessionNew {
		return
	}
	ss.mu.Lock()
	s := ss.lookup(tok)
	ss.mu.Unlock()
	if s == nil || !sc.TakenElsewhere(ctx, s.id) {
		return
	}
	if h.DropSession(s.id, CloseSessionMoved, "session resumed on another server") {
		h.reportError(0, fmt.Errorf("marmot: session %d was taken over by another server; it ended here and its token resumes nothing", s.id))
	}
}

// sentHigh is the highest sequence number the client says it sent on an
// earlier connection of its session (protocol.HeaderSessionSent; 0 when
// it does not say).
func sentHigh(r *http.Request) uint64 {
	v, err := strconv.ParseUint(r.Header.Get(protocol.HeaderSessionSent), 10, 64)
	if err != nil {
		return 0
	}
	return v
}

// HandOverSession gives session id, whose token's secret is secret, to
// another hub (a SessionStore's Take, on the hub that has the session): the
// session's connection, if still open, is closed with CloseSessionMoved;
// once no message of it is being handled, the session ends here and its
// last handled sequence number is returned. A message that reaches the
// old connection afterwards is not handled: the client sends it again to
// its new hub. A hub that has shut down (with a store) still hands over
// the sessions it was left with, from their final marks; one asked while
// it shuts its sessions down waits for those marks. It returns
// ErrSessionNotFound when this hub has no such session,
// ErrSessionStopping when it shut down without a store.
func (h *Hub) HandOverSession(id uint64, secret []byte) (last uint64, err error) {
	ss := h.sessions
	ss.mu.Lock()
	if ss.closed && ss.final == nil && ss.store != nil {
		// The hub is keeping its sessions' final marks right now
		// (sessions.close): wait for them. ErrSessionStopping would
		// send the asker to the session's replica, whose mark is not
		// the final one yet: at least once, where the handover of a
		// hub that shuts down is exact.
		ss.mu.Unlock()
		<-ss.finalKept
		ss.mu.Lock()
	}
	if ss.closed {
		defer ss.mu.Unlock()
		if f, ok := ss.final[id]; ok && subtle.ConstantTimeCompare(secret, f.secret) == 1 {
			delete(ss.final, id)
			return f.last, nil
		}
		if ss.final == nil {
			return 0, ErrSessionStopping // the final marks are not kept yet
		}
		return 0, ErrSessionNotFound
	}
	s := ss.byID[id]
	if s == nil || s.secret == nil || subtle.ConstantTimeCompare(secret, s.secret) != 1 {
		ss.mu.Unlock()
		return 0, ErrSessionNotFound
	}
	return h.releaseSession(s, CloseSessionMoved, "session resumed on another server"), nil
}

// DropSession ends session id here without handing it over: a
// SessionStore calls it when another hub took the session over from its
// saved mark while this hub could not be asked (cut off from its
// cluster), so that the session is not resumed here too. Its connection,
// if open, is closed with code and text; a message that reaches it
// afterwards is not handled (the client sends it again to the hub that
// has the session now). It reports whether this hub had the session.
func (h *Hub) DropSession(id uint64, code int, text string) bool {
	ss := h.sessions
	ss.mu.Lock()
	if ss.closed {
		_, ok := ss.final[id]
		delete(ss.final, id)
		ss.mu.Unlock()
		return ok
	}
	s := ss.byID[id]
	if s == nil || s.secret == nil {
		ss.mu.Unlock()
		return false
	}
	h.releaseSession(s, code, text)
	return true
}

// releaseSession ends s here for good (HandOverSession, DropSession), closing
// its connection with code, and returns its last handled sequence
// number; ss.mu is held, and released.
func (h *Hub) releaseSession(s *session, code int, text string) (last uint64) {
	ss := h.sessions
	old := s.conn
	s.conn = nil
	ss.end(s)
	ss.mu.Unlock()
	if old != nil {
		h.sys.Root.Send(old.link.pid, &closeRequest{code: code, text: text})
	}
	// s.mu is held while a message is handled: once it is ours, nothing
	// of the session runs here any more, and moved keeps it so.
	s.mu.Lock()
	last = s.last
	// No number follows the largest: every message of the old connection
	// is now one to drop (sequenced).
	s.last, s.moved = math.MaxUint64, true
	if s.ackTimer != nil {
		s.ackTimer.Stop()
		s.ackTimer = nil
	}
	s.mu.Unlock()
	return last
}

// saveSession records s with the store, under its new secret (attach).
func (ss *sessions) saveSession(s *session, secret []byte) {
	if ss.store == nil {
		return
	}
	s.mu.Lock()
	last := s.last
	s.mu.Unlock()
	ss.store.Save(SessionRecord{ID: s.id, SecretHash: sha256.Sum256(secret), Last: last, Root: s.root})
}

// mark moves the stored mark of s on, as its acknowledgement goes out.
func (ss *sessions) mark(s *session, last uint64) {
	if ss.store != nil {
		ss.store.Mark(s.id, last)
	}
}
