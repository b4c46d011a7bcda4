package actors

import (
	"bytes"
	"fmt"

	"github.com/marmotws/marmot/protocol"
)

// isRoomRequest reports whether m is one of the room requests the server
// answers itself (protocol.RequestJoin, RequestLeave, RequestPublish,
// RequestPresence); they never reach the application's handler.
func isRoomRequest(m *Message) bool {
	if m.Kind != protocol.KindRequest {
		return false
	}
	switch m.Name {
	case protocol.RequestJoin, protocol.RequestLeave, protocol.RequestPublish, protocol.RequestPresence:
		return true
	}
	return false
}

// roomRequest carries out a client's room request. The hooks run here, on
// the connection's actor, in the order of the connection's messages; the
// room itself answers once the operation has taken effect (see
// roomActor.answer), so a client that got its join reply receives every
// later message of the room.
func (a *ConnectionActor) roomRequest(m *Message) {
	c := a.c
	h := c.hub
	defer m.Release()
	room, id := m.Room, m.id
	if err := checkRoom(room); err != nil {
		_ = m.ReplyError(RoomCodeBadRequest, err.Error())
		return
	}
	var e *roomEntry
	var msg any
	var err error
	switch m.Name {
	case protocol.RequestJoin:
		if f := h.cfg.Events.OnJoin; f != nil {
			if err := a.hook("OnJoin", func() error { return f(c.info(), room) }); err != nil {
				_ = m.ReplyError(hookCode(err), err.Error())
				return
			}
		}
		e, err = h.roomRef(room, true)
		msg = &roomJoin{c: c, reqID: id, recover: m.Epoch != "", epoch: m.Epoch, from: m.Offset}
	case protocol.RequestLeave:
		e, err = h.roomRef(room, false)
		msg = &roomLeave{c: c, reqID: id}
	case protocol.RequestPublish:
		if f := h.cfg.Events.OnPublish; f != nil {
			if err := a.hook("OnPublish", func() error { return f(c.info(), room, m.Payload) }); err != nil {
				_ = m.ReplyError(hookCode(err), err.Error())
				return
			}
		}
		e, err = h.roomRef(room, h.cfg.RoomBroker != nil) // see Hub.prepPublish
		// The payload lives in the frame's buffer, reused once m is
		// released; the room fans it out later.
		// Keyed by the request's session number: a request handled
		// again after a failover is numbered once (publish_key.go).
		pub := &roomPublish{data: bytes.Clone(m.Payload), from: c, reqID: id, owned: true}
		if s := c.sess; s != nil && m.seq != 0 && err == nil && e != nil && h.cfg.RoomBroker != nil {
			pub.key = m.PublishKey(0) // only a broker uses it
			// Not acknowledged until answered (session_publish.go);
			// s.mu is held while m is handled. The room answers
			// within its confirmation timeout.
			s.holdPublish(m.seq, roomCallTimeout+h.confirmWait())
			pub.sess, pub.seq = s, m.seq
		}
		msg = pub
	case protocol.RequestPresence:
		if !h.presenceOn(room) {
			_ = m.ReplyError(RoomCodeRefused, ErrNoPresence.Error())
			return
		}
		// Under a presence broker the members are on every hub: the
		// room starts here if need be, and takes the broker's state.
		e, err = h.roomRef(room, h.presenceBroker() != nil)
		msg = &roomMembers{c: c, reqID: id}
	}
	switch {
	case err != nil:
		_ = m.ReplyError(RoomCodeFailed, err.Error())
	case e == nil:
		_ = m.Reply(nil) // no such room: nothing to leave, nobody to publish to, no members
	default:
		h.sys.Root.Send(e.pid, msg)
	}
}

// errHookPanic marks a hook that panicked: the request is answered as a
// server failure, not as a refusal.
type errHookPanic struct{ what string }

func (e errHookPanic) Error() string { return "internal error: " + e.what + " failed" }

func hookCode(err error) uint32 {
	if _, ok := err.(errHookPanic); ok {
		return RoomCodeFailed
	}
	return RoomCodeRefused
}

// hook runs an authorization hook. A panic in it refuses the request and
// goes to OnError, like the other non-handler callbacks: a hook is not the
// handler, so it does not restart the connection's actor.
func (a *ConnectionActor) hook(what string, f func() error) (err error) {
	defer func() {
		if r := recover(); r != nil {
			a.c.hub.reportError(a.c.id, fmt.Errorf("%w: %s: %v", ErrHandlerPanic, what, r))
			err = errHookPanic{what: what}
		}
	}()
	return f()
}
