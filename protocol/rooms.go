package protocol

import (
	"encoding/json"
	"fmt"
)

// The reserved request names of the room operations a client sends. They
// are requests, not new kinds, so that the answer (ok, or a refusal with a
// code and a reason) travels as the ordinary reply or error envelope every
// peer already correlates by ID; a new kind would have needed its own
// answer. Each carries the room in Envelope.Room. The "marmot." prefix of
// request and command names is reserved for the framework: servers answer
// the names below themselves, and applications should not use the prefix.
const (
	// RequestJoin asks the server to add the sender to Room. Answered
	// with an empty reply, or an error whose payload is the reason.
	RequestJoin = "marmot.join"
	// RequestLeave asks the server to remove the sender from Room.
	// Leaving a room one is not in is not an error.
	RequestLeave = "marmot.leave"
	// RequestPublish asks the server to publish Payload to Room's members
	// (the sender included, if it is one). Answered with an empty reply
	// once the room has taken the message, or an error with the reason.
	RequestPublish = "marmot.publish"
)

// Reasons a JoinResult gives for a recovery that failed
// (RecoverResult.Reason). Servers may add others; clients show them.
const (
	// RecoverNoHistory: the room keeps no history.
	RecoverNoHistory = "no history"
	// RecoverEpochChanged: the room's history is not the one the offset
	// belongs to (the room ended and was created again, the store was
	// reset).
	RecoverEpochChanged = "epoch changed"
	// RecoverOverflow: messages after the offset were dropped to keep the
	// history within its count or byte bound.
	RecoverOverflow = "overflow"
	// RecoverExpired: messages after the offset outlived the history's TTL.
	RecoverExpired = "expired"
	// RecoverAhead: the offset is beyond the room's last message.
	RecoverAhead = "offset ahead of room"
)

// JoinResult is the payload of the reply to a RequestJoin, as JSON in both
// envelope formats (see docs/PROTOCOL.md section 6.5): the room's epoch and
// its last offset when the client became a member, and, when the join
// asked to recover (Envelope.Epoch set), the outcome. An empty payload (a
// server from before history) decodes as the zero JoinResult: no epoch,
// nothing to recover from later.
type JoinResult struct {
	Epoch   string         `json:"epoch,omitempty"`
	Offset  uint64         `json:"offset,omitempty"`
	Recover *RecoverResult `json:"recover,omitempty"`
}

// RecoverResult is the outcome of a join that asked to recover. When
// Recovered, the Missed messages after the client's offset follow the
// reply, in order, before any live message. Otherwise nothing is replayed,
// Reason says why, and Missed is how many messages the client missed when
// the server knows (same epoch), -1 when it does not.
type RecoverResult struct {
	Recovered bool   `json:"recovered"`
	Missed    int    `json:"missed"`
	Reason    string `json:"reason,omitempty"`
}

// AppendJoinResult appends r's encoding to dst.
func AppendJoinResult(dst []byte, r *JoinResult) []byte {
	b, _ := json.Marshal(r) // cannot fail: strings, numbers and bools
	return append(dst, b...)
}

// DecodeJoinResult decodes a join reply's payload; an empty one is the
// zero JoinResult.
func DecodeJoinResult(p []byte) (JoinResult, error) {
	var r JoinResult
	if len(p) == 0 {
		return r, nil
	}
	if err := json.Unmarshal(p, &r); err != nil {
		return JoinResult{}, fmt.Errorf("%w: join result: %v", ErrMalformed, err)
	}
	return r, nil
}
