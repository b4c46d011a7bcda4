package actors

import (
	"context"
	"errors"
	"strconv"
)

// Publish keys: a name for one room publish that outlives the node that
// made it. A client's numbered message (a session's, docs/PROTOCOL.md
// section 7) that a node handled and published just before it died can
// be handled again on the node the client fails over to (flagged
// Message.Redelivered): without a key that second publish is a new one,
// and the room's members get the message twice. With a key, a RoomBroker
// that orders the room (package cluster) drops a publish whose key it has
// already numbered, within a bounded window, and answers it as confirmed.
//
// marmot keys a client's marmot.publish request itself; a handler that
// publishes for the message it handles uses Hub.PublishFor (or
// Server.PublishFor), which derives the key from the message; anything
// else can name its publishes with Hub.PublishKeyed. On a single server
// keys are carried nowhere and cost nothing: nothing is handled twice.

// MaxPublishKeyLen bounds a publish key (PublishKeyed).
const MaxPublishKeyLen = 128

// ErrInvalidPublishKey reports a publish key longer than
// MaxPublishKeyLen.
var ErrInvalidPublishKey = errors.New("marmot: publish key too long")

// PublishKey returns the key of the n-th room publish (from 0) made on
// behalf of m, the message being handled: the same on every node that
// handles m (the first time, and again after a failover, with
// Redelivered set), and no other message's. It is "" when m has none: a
// message that is not numbered in a session (the client has no outbox),
// whose publishes are made once anyway. Keys that marmot makes begin with
// "s"; a key of your own (PublishKeyed) should not.
func (m *Message) PublishKey(n int) string {
	if m.root == 0 || m.seq == 0 {
		return ""
	}
	return sessionKey(m.root, m.seq, uint64(n))
}

// sessionKey spells the key of publish n of a session's message seq.
func sessionKey(root, seq, n uint64) string {
	b := make([]byte, 0, 32)
	b = append(b, 's')
	b = strconv.AppendUint(b, root, 36)
	b = append(b, '.')
	b = strconv.AppendUint(b, seq, 36)
	if n != 0 {
		b = append(b, '.')
		b = strconv.AppendUint(b, n, 36)
	}
	return string(b)
}

// PublishFor publishes data to room on behalf of m, the message being
// handled, as PublishContext does (bounded by m's context, which carries
// its trace), keyed by m.PublishKey: when m is handled again on another
// node after a failover (Message.Redelivered), a RoomBroker that has
// numbered the publish already drops the repeat and answers it as
// confirmed, so the room's members get the message once. Several publishes
// for one message are told apart by their order (the first is key 0, the
// next key 1...), so a handler that publishes for m must make them in the
// same order each time it handles it.
func (h *Hub) PublishFor(m *Message, room string, data []byte) (int, error) {
	var key string
	if h.cfg.RoomBroker != nil { // only a broker uses it
		key = m.PublishKey(int(m.pubs))
	}
	m.pubs++
	return h.publish(m.Context(), room, "", key, data)
}

// PublishKeyed is PublishContext with the publish named by key (see
// PublishFor): a RoomBroker that has numbered a publish of room under the
// same key within its window drops this one and answers it as confirmed.
// An empty key is none. Keys are compared within a room, as opaque
// strings of at most MaxPublishKeyLen bytes (else ErrInvalidPublishKey).
// On a single server the key is not used.
func (h *Hub) PublishKeyed(ctx context.Context, room, key string, data []byte) (int, error) {
	return h.publish(ctx, room, "", key, data)
}
