package protocol

import (
	"encoding/json"
	"fmt"
)

// Presence: who is in a room, and join/leave events, for the rooms whose
// server turned presence on (see docs/PROTOCOL.md section 6.6). Both use
// the one reserved name, with the room in Envelope.Room:
//
//   - a client's request named RequestPresence asks who is in the room; the
//     reply's payload is a PresenceList;
//   - a server's command named CommandPresence (no offset) tells a member
//     that a client joined or left the room; its payload is a
//     PresenceEvent. It travels in the room's order among the room's
//     messages.
const (
	RequestPresence = "marmot.presence"
	CommandPresence = "marmot.presence"
)

// The events of a PresenceEvent.
const (
	PresenceJoin  = "join"
	PresenceLeave = "leave"
)

// PresenceEvent is the payload of a CommandPresence, as JSON in both
// envelope formats: Client (a server-assigned connection ID, never 0)
// joined or left the room.
type PresenceEvent struct {
	Event  string `json:"event"`
	Client uint64 `json:"client"`
}

// PresenceList is the payload of the reply to a RequestPresence, as JSON
// in both envelope formats: the members' IDs, in increasing order. An
// empty payload (a room that does not exist) decodes as no members.
type PresenceList struct {
	Members []uint64 `json:"members"`
}

// AppendPresenceEvent appends e's encoding to dst.
func AppendPresenceEvent(dst []byte, e *PresenceEvent) []byte {
	b, _ := json.Marshal(e) // cannot fail: a string and a number
	return append(dst, b...)
}

// DecodePresenceEvent decodes a presence event's payload. The event must
// be PresenceJoin or PresenceLeave and the client non-zero; members it does
// not know are ignored, so a later server may add some.
func DecodePresenceEvent(p []byte) (PresenceEvent, error) {
	var e PresenceEvent
	if err := json.Unmarshal(p, &e); err != nil {
		return PresenceEvent{}, fmt.Errorf("%w: presence event: %v", ErrMalformed, err)
	}
	if e.Event != PresenceJoin && e.Event != PresenceLeave {
		return PresenceEvent{}, fmt.Errorf("%w: presence event %q", ErrMalformed, e.Event)
	}
	if e.Client == 0 {
		return PresenceEvent{}, fmt.Errorf("%w: presence event without a client", ErrMalformed)
	}
	return e, nil
}

// AppendPresenceList appends l's encoding to dst; a nil list encodes as
// an empty one.
func AppendPresenceList(dst []byte, l *PresenceList) []byte {
	v := *l
	if v.Members == nil {
		v.Members = []uint64{}
	}
	b, _ := json.Marshal(&v) // cannot fail: numbers
	return append(dst, b...)
}

// DecodePresenceList decodes a presence reply's payload; an empty one is
// the empty list.
func DecodePresenceList(p []byte) (PresenceList, error) {
	var l PresenceList
	if len(p) == 0 {
		return l, nil
	}
	if err := json.Unmarshal(p, &l); err != nil {
		return PresenceList{}, fmt.Errorf("%w: presence list: %v", ErrMalformed, err)
	}
	return l, nil
}
