package marmot

import (
	"context"

	"github.com/marmotws/marmot/actors"
	"github.com/marmotws/marmot/protocol"
)

// JoinRoom asks the server's actor (Server.PID) to add a client to a
// room; see Server.Join.
type JoinRoom = actors.JoinRoom

// LeaveRoom asks the server's actor to remove a client from a room; see
// Server.Leave.
type LeaveRoom = actors.LeaveRoom

// Publish asks the server's actor to publish to a room; see
// Server.Publish. Its *Ack says in N how many members it reached.
type Publish = actors.Publish

// RoomError ties a refused or failed room operation to its room; a
// refusal by OnJoin or OnPublish wraps a *RemoteError with the reason.
type RoomError = actors.RoomError

// HistoryConfig bounds each room's history (ServerConfig.RoomHistory).
type HistoryConfig = actors.HistoryConfig

// HistoryStore keeps one room's history; see actors.HistoryStore.
type HistoryStore = actors.HistoryStore

// HistoryBackend opens each room's HistoryStore (HistoryConfig.Backend):
// nil keeps history in memory, boltstore.Store on disk.
type HistoryBackend = actors.HistoryBackend

// HistoryEntry is one message in a room's history.
type HistoryEntry = actors.HistoryEntry

// HistoryGap is why a history cannot return every message asked for
// (HistoryStore.Since, RoomBroker.History); Reason is one of protocol's
// Recover* reasons.
type HistoryGap = actors.HistoryGap

// RoomRecovered is the outcome of a client's automatic re-join of a room
// after a reconnect (ClientEvents.OnRecover; a user actor receives it).
type RoomRecovered = actors.RoomRecovered

// RoomPresence tells a member of a room with presence that another client
// joined or left it (ClientEvents.OnPresence; a user actor receives it).
type RoomPresence = actors.RoomPresence

// RoomMembers asks the server's actor (Server.PID) who is in a room; it
// is answered with a *MemberList.
type RoomMembers = actors.RoomMembers

// MemberList answers RoomMembers: the members' IDs, in increasing order.
type MemberList = actors.MemberList

// ErrNoPresence is the reason a client's Presence is refused for a room
// without presence (ServerConfig.RoomPresence).
var ErrNoPresence = actors.ErrNoPresence

// The reasons a recovery fails (RoomRecovered.Reason).
const (
	RecoverNoHistory    = protocol.RecoverNoHistory
	RecoverEpochChanged = protocol.RecoverEpochChanged
	RecoverOverflow     = protocol.RecoverOverflow
	RecoverExpired      = protocol.RecoverExpired
)

// ErrInvalidRoom reports an empty, over-long (255 bytes) or non-UTF-8 room
// name.
var ErrInvalidRoom = actors.ErrInvalidRoom

// The error codes of refused room requests, as a client's *RemoteError
// carries them.
const (
	RoomCodeBadRequest = actors.RoomCodeBadRequest
	RoomCodeRefused    = actors.RoomCodeRefused
	RoomCodeFailed     = actors.RoomCodeFailed
)

// Join adds a client to room, creating the room on first use, and returns
// once the client is a member. It is not put to OnJoin (the server trusts
// itself). Raw-mode clients cannot join: ErrRawMode.
func (s *Server) Join(id ClientID, room string) error {
	h, err := s.current()
	if err != nil {
		return err
	}
	return h.Join(id, room)
}

// Leave removes a client from room; leaving a room the client is not in
// is not an error.
func (s *Server) Leave(id ClientID, room string) error {
	h, err := s.current()
	if err != nil {
		return err
	}
	return h.Leave(id, room)
}

// Publish sends data to every member of room, with the room's next
// offset, encoded once per wire format, and returns how many members it
// was queued for (0 when the room does not exist).
// With a RoomBroker (a cluster) it returns 0, nil once the room's grain
// has numbered the message (it survives the loss of this node), and
// ErrPublishUnconfirmed (in a *RoomError) when that does not happen within
// the cluster's RequestTimeout: the message may still be delivered, so a
// retry may deliver it twice. The members are on every node, and counted
// nowhere. See PublishContext to bound the wait.
func (s *Server) Publish(room string, data []byte) (int, error) {
	h, err := s.current()
	if err != nil {
		return 0, err
	}
	return h.Publish(room, data)
}

// PublishContext is Publish bounded by ctx as well: it returns ctx's error
// when ctx ends first (in a cluster, before the message was confirmed: it
// may still be delivered). On a single server Publish does not wait for
// anything but the room, and ctx only bounds that.
func (s *Server) PublishContext(ctx context.Context, room string, data []byte) (int, error) {
	h, err := s.current()
	if err != nil {
		return 0, err
	}
	return h.PublishContext(ctx, room, data)
}

// PublishFor publishes data to room on behalf of m, the message being
// handled, as PublishContext bounded by m's context: keyed by
// m.PublishKey, so that when m is handled again on another node after a
// failover (Message.Redelivered) the cluster numbers the message once,
// and answers the repeat as confirmed. Make a handler's publishes for one
// message in the same order each time (the key counts them). On a single
// server it is PublishContext.
func (s *Server) PublishFor(m *Message, room string, data []byte) (int, error) {
	h, err := s.current()
	if err != nil {
		return 0, err
	}
	return h.PublishFor(m, room, data)
}

// PublishKeyed is PublishContext with the publish named by key, at most
// MaxPublishKeyLen bytes: the cluster drops a publish of room whose key
// it has numbered already (within a window of the room's last few
// thousand keyed publishes) and answers it as confirmed. Use it to
// publish once what your own records name (see PublishFor for the
// message being handled).
func (s *Server) PublishKeyed(ctx context.Context, room, key string, data []byte) (int, error) {
	h, err := s.current()
	if err != nil {
		return 0, err
	}
	return h.PublishKeyed(ctx, room, key, data)
}

// MaxPublishKeyLen bounds a publish key (PublishKeyed).
const MaxPublishKeyLen = actors.MaxPublishKeyLen

// ErrInvalidPublishKey reports a publish key longer than
// MaxPublishKeyLen.
var ErrInvalidPublishKey = actors.ErrInvalidPublishKey

// ErrPublishFailed reports a room publish the cluster will never deliver:
// the room's grain failed (panicked) on it. A client's marmot.publish
// request gets error 500 with its text.
var ErrPublishFailed = actors.ErrPublishFailed

// ErrPublishUnconfirmed reports a room publish that the cluster did not
// confirm in time (Server.Publish, a client's Publish reply): its outcome
// is unknown.
var ErrPublishUnconfirmed = actors.ErrPublishUnconfirmed

// PublishCommand is Publish as a command named name.
func (s *Server) PublishCommand(room, name string, payload []byte) (int, error) {
	h, err := s.current()
	if err != nil {
		return 0, err
	}
	return h.PublishCommand(room, name, payload)
}

// Members returns the IDs of room's members, ordered (nil when the room
// does not exist). In a cluster, a room with presence lists every node's
// members, one without presence this server's (see LocalMembers).
func (s *Server) Members(room string) []ClientID {
	h, err := s.current()
	if err != nil {
		return nil
	}
	return h.Members(room)
}

// Rooms returns the names of the live rooms, sorted.
func (s *Server) Rooms() []string {
	h, err := s.current()
	if err != nil {
		return nil
	}
	return h.Rooms()
}

// Join asks the server to add this client to room and waits for the
// answer or ctx. A refusal by the server's OnJoin is a *RoomError wrapping
// a *RemoteError whose Message is the reason. Room messages then arrive in
// OnHandleCommand with m.Room and m.Offset set. After a reconnect the
// client joins again by itself and recovers what it missed
// (ClientEvents.OnRecover tells the outcome), until Leave. With the
// outbox, a Join while the client reconnects waits for that automatic join
// on the next connection (bounded by ctx).
func (c *Client) Join(ctx context.Context, room string) error { return c.c.Join(ctx, room) }

// Leave asks the server to remove this client from room and waits for the
// answer or ctx; with the outbox, a Leave while the client reconnects
// returns at once (the room is not joined again).
func (c *Client) Leave(ctx context.Context, room string) error { return c.c.Leave(ctx, room) }

// Publish queues data for room's members without waiting; a refusal by
// the server's OnPublish goes to OnError as a *RoomError. With the outbox
// it waits there while the client reconnects, and is published once.
func (c *Client) Publish(room string, data []byte) error { return c.c.Publish(room, data) }

// Presence asks the server who is in room and waits for the answer or
// ctx: the members' IDs, in increasing order. Only rooms the server
// turned presence on for (ServerConfig.RoomPresence) answer; others refuse
// with a *RoomError (code 403). Events received after the answer
// (ClientEvents.OnPresence) apply on top of it. Raw mode: ErrRawMode.
func (c *Client) Presence(ctx context.Context, room string) ([]ClientID, error) {
	return c.c.Presence(ctx, room)
}

// RoomBroker carries rooms across servers (ServerConfig.RoomBroker);
// package cluster implements it over a protoactor cluster. See
// actors.RoomBroker.
type RoomBroker = actors.RoomBroker

// RoomPosition is a room's epoch and last offset in a broker's order.
type RoomPosition = actors.RoomPosition

// RoomMessage is one room message on its way through a RoomBroker.
type RoomMessage = actors.RoomMessage

// DeliverRoom hands this server's room a message its RoomBroker ordered;
// the room sends it to its local members with m.Offset. It reports
// whether the room lives on this server. Only a broker calls it.
func (s *Server) DeliverRoom(room string, m *RoomMessage) bool {
	h, err := s.current()
	if err != nil {
		return false
	}
	return h.DeliverRoom(room, m)
}

// ConfirmRoom tells this server's room that its RoomBroker is done with
// the room's publishes up to ticket without delivering them here: a
// publish it dropped as a repeat of one it numbered under the same key
// (PublishKeyed), or, with err (such as ErrPublishFailed), one it will
// never order, whose publisher gets err. It reports whether the room
// lives on this server. Only a broker calls it.
func (s *Server) ConfirmRoom(room string, ticket uint64, err error) bool {
	h, herr := s.current()
	if herr != nil {
		return false
	}
	return h.ConfirmRoom(room, ticket, err)
}
