package cluster

import (
	"context"
	"maps"
	"slices"
	"time"

	"github.com/marmotws/marmot"
	"github.com/marmotws/marmot/cluster/internal/wire"
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
// That window is closed at the home: before it resumes one of its own
// sessions on a token presented to it, it asks the replica that keeps the
// session's mark whether it gave the mark up (TakenElsewhere; the
// replica's tombstone says so). If it did, the session ends here (closed
// 4009 if still open) and the token resumes nothing. The ask is on the
// resume only, never on the message path: one round trip per resume on
// the home, bounded by the membership's probe wait. A replica that does
// not answer, or that the home no longer lists (lost, or on the other
// side of a cut), cannot say, and the session resumes as before: what is
// left of the window is a home cut off from its replica while the
// majority's nodes still reach it.
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

var _ marmot.SessionChecker = (*sessionStore)(nil)

// TakenElsewhere implements marmot.SessionChecker: it asks the replica
// the session's mark was last sent to whether it gave the mark up to a
// take-over. A session whose mark went to no replica (a node alone), a
// replica that is no longer a member here (lost, or on the other side of
// a cut: it would not answer), or one that does not answer within the
// membership's probe wait (2 × RefreshTTL, as MemberProbe's; at most
// RequestTimeout and ctx) says false: a live replica answers in a round
// trip, and the resume does not wait longer on one that cannot.
func (st *sessionStore) TakenElsewhere(ctx context.Context, id uint64) bool {
	st.mu.Lock()
	at := ""
	if o := st.own[id]; o != nil {
		at = o.at
	}
	st.mu.Unlock()
	mb := st.n.member()
	if at == "" || mb == nil {
		return false
	}
	if at == mb.sys.Address() {
		return st.heldTaken(id) // never the home's own, but for a member that moved
	}
	if !slices.ContainsFunc(st.n.Members(), func(m Member) bool { return m.Address == at }) {
		return false
	}
	st.n.traffic.sent[kindSession].Add(1)
	wait := min(st.n.timeout(ctx), 2*st.n.cfg.RefreshTTL)
	res, err := mb.sys.Root.RequestFuture(nodePID(at), &wire.SessionCheck{Id: id}, wait).Result()
	c, ok := res.(*wire.SessionChecked)
	if err != nil || !ok {
		st.n.log.Debug("marmot cluster: the session's replica did not say whether it was taken over", "replica", at, "err", err)
		return false
	}
	return c.Taken
}

// heldTaken reports whether this node, as a replica, gave session id's
// mark up to a take-over (it keeps the tombstone; on the node actor).
func (st *sessionStore) heldTaken(id uint64) bool {
	st.hmu.Lock()
	defer st.hmu.Unlock()
	h := st.held[id]
	return h != nil && h.taken && time.Now().Before(h.expires)
}
