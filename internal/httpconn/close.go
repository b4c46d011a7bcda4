package httpconn

import "time"

// phase is where a session is in its life.
type phase int

const (
	phaseOpen     phase = iota // messages flow both ways
	phaseClosing               // our close record is queued (ours, or our answer to the peer's)
	phaseFailing               // our close record for an error is queued: input is discarded
	phaseReleased              // the owner is done; the session lingers until its close record is acknowledged
	phaseGone                  // forgotten: every request gets 404
)

// closing is one side's part of the closing handshake, server session and
// client alike (under the owner's mu): where the session is in its life,
// and the close this side started, if any.
type closing struct {
	phase phase
	local struct {
		code int
		text string
		set  bool
	}
}

// start records this side's close with code and text; false when a close
// record of this side's already went out. After a close for an error (not
// 1000 or 1001), input is discarded.
func (s *closing) start(code int, text string) bool {
	if s.phase >= phaseClosing {
		return false
	}
	s.phase = phaseClosing
	if code != 1000 && code != 1001 {
		s.phase = phaseFailing
	}
	s.local.code, s.local.text, s.local.set = code, text, true
	return true
}

// answer records this side's answer to the peer's close and returns the
// code to echo (a close without a status is answered with 1000); false
// when a close record of this side's already went out.
func (s *closing) answer(code int) (int, bool) {
	if s.phase >= phaseClosing {
		return 0, false
	}
	s.phase = phaseClosing
	if code == closeNoStatus || code == 1006 || code == 0 {
		code = 1000
	}
	return code, true
}

// closeDeadline bounds a closing handshake's deadline by CloseGrace.
func closeDeadline(deadline time.Time) time.Time {
	if grace := time.Now().Add(CloseGrace); deadline.IsZero() || deadline.After(grace) {
		return grace
	}
	return deadline
}
