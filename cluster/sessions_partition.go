package cluster

import (
	"maps"
	"slices"
)

// Sessions under a partition (docs/CLUSTER.md, "Sessions under a
// partition"). A node that finds itself cut off from the majority
// (rejoin.go) closes its clients so that they fail over to the majority,
// where the home, not a member there, is lost: the session is taken from
// the mark on its replica. The home cannot learn of that take until the
// partition heals, so it gives its sessions up first (giveUp): each ends
// here, its connection closed with CloseIsolated, and its mark is left on
// the replica (no deletion is sent) for the node the client reaches. The
// old token then resumes nowhere but from that mark, once: not on the
// home during the cut (a client that comes back to it gets a fresh
// session), nor after the heal (the home does not have it, and the
// replica gave it up). What the home handled after its last mark reached
// the replica is handled again, flagged Redelivered, as after a crash.
//
// The other side of the rule is in Take: a node cut off from the
// majority takes no mark from a replica, since the home it cannot reach
// may be alive on the majority's side, with the session.

// giveUp ends every session of this node here, closing their connections
// with code and text, and leaves their marks on their replicas; it
// returns how many it ended.
func (st *sessionStore) giveUp(code int, text string) int {
	st.mu.Lock()
	ids := slices.Collect(maps.Keys(st.own))
	// Forgotten first: the hub's Delete then sends no deletion, and the
	// replica keeps the mark for the node that takes the session over.
	clear(st.own)
	clear(st.dirty)
	st.mu.Unlock()
	k := 0
	for _, id := range ids {
		if st.n.srv.DropSession(id, code, text) {
			k++
		}
	}
	return k
}
