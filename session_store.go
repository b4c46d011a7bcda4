package marmot

import "github.com/marmotws/marmot/actors"

// SessionStore lets clients' sessions follow them to other servers
// (ServerConfig.SessionStore); package cluster implements it over a
// protoactor cluster. See actors.SessionStore.
type SessionStore = actors.SessionStore

// SessionChecker is the optional part of a SessionStore that the server
// asks before it resumes one of its own sessions: whether another server
// took it over meanwhile (a cluster's home cut off from the node that
// keeps its copy). See actors.SessionChecker.
type SessionChecker = actors.SessionChecker

// SessionRecord is what a SessionStore keeps of a session: its ID, the
// hash of its token's secret and its mark.
type SessionRecord = actors.SessionRecord

// SessionTaken is a session a SessionStore handed over.
type SessionTaken = actors.SessionTaken

// Errors of sessions across servers, testable with errors.Is.
var (
	// ErrSessionNotFound: no server has the session under that token.
	ErrSessionNotFound = actors.ErrSessionNotFound
	// ErrSessionStopping: the session's server is shutting down.
	ErrSessionStopping = actors.ErrSessionStopping
)

// HandOverSession gives session id, whose resume token's secret is secret,
// to another server (a SessionStore's Take, on the server that has it):
// its connection, if open, is closed with 4009 (CloseSessionMoved), and
// once none of its messages is being handled the session ends here; it
// returns the last sequence number handled. Only a SessionStore calls it.
//
// A server that has stopped still hands over the sessions it stopped with
// (when it has a SessionStore), until it starts again.
func (s *Server) HandOverSession(id uint64, secret []byte) (uint64, error) {
	h := s.hub.Load()
	if h == nil {
		h = s.stoppedHub.Load()
	}
	if h == nil {
		return 0, actors.ErrSessionStopping
	}
	return h.HandOverSession(id, secret)
}

// DropSession ends session id on this server without handing it over
// (its connection, if open, is closed with code and text): a SessionStore
// calls it when another server took the session over from its saved mark
// while this one could not be asked. It reports whether the server had
// the session. Only a SessionStore calls it.
func (s *Server) DropSession(id uint64, code int, text string) bool {
	h := s.hub.Load()
	if h == nil {
		h = s.stoppedHub.Load()
	}
	if h == nil {
		return false
	}
	return h.DropSession(id, code, text)
}
