package actors

import (
	"slices"
	"time"
)

// A client's marmot.publish request under a RoomBroker that confirms its
// publishes (a cluster) is answered only once the broker has ordered the
// message (room_confirm.go). Its session acknowledgement waits for that
// answer too: acknowledged, the request would leave the client's outbox
// while the message was still only on this hub (in the broker's queue of
// unconfirmed publishes), and a hub lost in that window would lose it for
// good, the client never sending it again. Held back, the acknowledgement
// (and the session's mark, which another hub takes the session over from)
// stays below the request until it is answered: a client whose hub is lost
// sends it again to the next, which handles it again (flagged
// Redelivered) and publishes it under the same publish key, so it is
// numbered once whichever hub got it to the broker (publish_key.go).
//
// The hold is the session's: its acknowledgements are cumulative, so the
// messages after a held publish wait for it as well (a publish is answered
// within the broker's ConfirmTimeout). A client that resumes the session
// on the same hub meanwhile sends them again and they are dropped as
// handled (a request answered 409, as any request whose answer was lost
// with its connection). On a single server nothing is held: the room
// answers at once.

// heldPublish is a publish request the session's acknowledgement waits
// for, until it is answered or its time is up: a room that failed on it
// (a panic) never answers it, and the session must not wait for ever.
type heldPublish struct {
	seq   uint64
	until time.Time
}

// holdPublish keeps the session's acknowledgement below seq, a publish
// request being handled, for at most d (s.mu held, in sequenced's window).
func (s *session) holdPublish(seq uint64, d time.Duration) {
	s.pmu.Lock()
	s.pending = append(s.pending, heldPublish{seq: seq, until: time.Now().Add(d)})
	s.held.Store(int32(len(s.pending)))
	s.pmu.Unlock()
}

// ackable is how far the session may be acknowledged: every number
// handled, up to the first publish still unanswered (s.mu held). A hold
// whose time is up is dropped.
func (s *session) ackable() uint64 {
	if s.held.Load() == 0 { // the common case: one atomic load per message
		return s.last
	}
	s.pmu.Lock()
	defer s.pmu.Unlock()
	now := time.Now()
	for len(s.pending) > 0 && now.After(s.pending[0].until) {
		s.pending = s.pending[1:]
	}
	s.held.Store(int32(len(s.pending)))
	if len(s.pending) > 0 {
		return s.pending[0].seq - 1
	}
	s.pending = nil
	return s.last
}

// publishAnswered lets the session's acknowledgement pass seq, a publish
// request its room has answered; when it was the first held, the
// acknowledgement goes out within ackDelay (one timer for the answers
// within it: a publisher that waits for each answer would arm one per
// publish). It runs on the room's goroutine and takes only s.pmu, never
// s.mu: the session's connection may be handling a message meanwhile
// (s.mu held) whose handler waits for this very room.
func (ss *sessions) publishAnswered(s *session, seq uint64) {
	s.pmu.Lock()
	i := slices.IndexFunc(s.pending, func(p heldPublish) bool { return p.seq == seq })
	if i >= 0 {
		s.pending = slices.Delete(s.pending, i, i+1)
		s.held.Store(int32(len(s.pending)))
	}
	s.pmu.Unlock()
	if i == 0 && s.ackSoon.CompareAndSwap(false, true) {
		time.AfterFunc(ackDelay, func() {
			s.ackSoon.Store(false) // before: an answer after this arms the next
			ss.ackLater(s)
		})
	}
}
