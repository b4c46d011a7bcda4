package cluster

import (
	"maps"
	"slices"

	"github.com/marmotws/marmot"
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
// A home that is not cut off from the majority by its own count may still
// be lost to it: dropped from the others' member list while it still
// lists them (its health endpoint unreachable from them, a slow node), or
// kept by Config.KeepClientsWhenIsolated, or with the etcd provider,
// which has no isolation rule. A session taken from its replica then is
// fenced: the replica keeps a tombstone of the mark it gave up (for the
// mark's TTL), and when the home marks the session again (its next mark,
// its refresh every SessionTTL/3, or the resend of every mark when its
// member list changes, as after it rejoined) the replica answers with a
// SessionFence and the home ends the session (fenced). Until that answer
// the old token could still resume on the home: the window is the
// partition itself (the home cannot hear of the take) plus a round trip.
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

// fenced ends the sessions ids here, which a replica says were taken over
// from it: the home was cut off from it, and the client resumed elsewhere.
// Off the caller's goroutine (the node actor's): ending a session waits
// for the message it may be handling.
func (st *sessionStore) fenced(ids []uint64) {
	st.mu.Lock()
	for _, id := range ids {
		// Forgotten first: nothing to delete on the replica, which has
		// only the tombstone.
		delete(st.own, id)
		delete(st.dirty, id)
	}
	st.mu.Unlock()
	go func() {
		k := 0
		for _, id := range ids {
			if st.n.srv.DropSession(id, marmot.CloseSessionMoved, "session taken over by another node") {
				k++
			}
		}
		st.n.log.Warn("marmot cluster: sessions taken over by another node while this node was cut off; ended them here", "sessions", k)
	}()
}
