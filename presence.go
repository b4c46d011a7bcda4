package marmot

import "github.com/marmotws/marmot/actors"

// PresenceBroker is a RoomBroker that also carries rooms' presence across
// servers: joins and leaves reach every server's members in the room's
// one order, and Presence and Members list every server's members.
// Package cluster implements it. See actors.PresenceBroker.
type PresenceBroker = actors.PresenceBroker

// PresenceUpdate is a change of one server's members of a room, as a
// PresenceBroker delivers it (Server.DeliverPresence).
type PresenceUpdate = actors.PresenceUpdate

// DeliverPresence hands this server's room a change of membership its
// PresenceBroker ordered; the room tells its members of every join and
// leave it makes. It reports whether the room lives on this server. Only
// a broker calls it.
func (s *Server) DeliverPresence(room string, u *PresenceUpdate) bool {
	h, err := s.current()
	if err != nil {
		return false
	}
	return h.DeliverPresence(room, u)
}

// ResyncPresence asks this server's room to hand its members to the
// PresenceBroker again and to take the broker's state (after the broker
// lost track: its sequencer moved). It reports whether the room lives on
// this server. Only a broker calls it.
func (s *Server) ResyncPresence(room string) bool {
	h, err := s.current()
	if err != nil {
		return false
	}
	return h.ResyncPresence(room)
}

// LocalMembers returns the IDs of room's members connected to this
// server, ordered (nil when the room does not live here). On a single
// server it is Members; in a cluster, Members of a room with presence
// lists every node's members, and cluster.Node.RoomMembers those of any
// room.
func (s *Server) LocalMembers(room string) []ClientID {
	h, err := s.current()
	if err != nil {
		return nil
	}
	return h.LocalMembers(room)
}
