package cluster

import (
	"cmp"
	"hash/fnv"
	"slices"
	"sync"
	"time"

	"github.com/marmotws/marmot"
	"github.com/marmotws/marmot/actors"
	"github.com/marmotws/marmot/cluster/internal/wire"
)

// Sessions that follow their client (docs/CLUSTER.md, "Sessions across
// nodes"). A session lives on the node that granted it, its home, named
// in its ID as a ClientID names its node (actors.SessionNode). The home
// keeps a copy of each session's mark (the last sequence number handled,
// and the hash of its token's secret) on one other node, its replica,
// chosen by rendezvous hashing of the session ID over the other members.
// Marks go to the replica as the session's acknowledgements go out,
// batched with every other session's (markBatch) and without an answer:
// no round trip on the message path.
//
// A client that fails over presents its token to another node, which
// takes the session over (sessionStore.Take):
//
//   - from its home, when the home is a member: the home closes the old
//     connection (4009), waits for the message it may be handling, and
//     hands over its exact mark. Nothing is handled twice.
//   - else from its replica: the home is lost (not a member, or it left
//     the member list while asked: sessions_take.go). What it
//     acknowledged is at or below the mark; what it handled after the
//     mark cannot be known, so the messages the client sends again are
//     handled with Message.Redelivered (at least once, told).
//
// A home that is cut off, not lost, gives its sessions up, or is told to
// end one that was taken from its replica (sessions_partition.go).
//
// Either way the new node makes a session of its own (its own ID, a new
// token) that starts at the mark, and the client's outbox resumes there.

// maxHeldMarks bounds the marks a node keeps for other nodes; past it,
// new ones are not kept (their sessions do not survive their home's
// loss) and a warning is logged.
const maxHeldMarks = 200_000

// maxMarksPerMessage bounds one SessionMarks message (gRPC takes at most
// 4 MiB; a mark is about 50 bytes).
const maxMarksPerMessage = 10_000

// sessionStore is the node's marmot.SessionStore, and the replica of
// other nodes' sessions.
type sessionStore struct {
	n   *Node
	ttl time.Duration

	mu      sync.Mutex
	own     map[uint64]*ownSession // this node's sessions
	dirty   map[uint64]struct{}    // marks not sent yet
	gone    map[string][]uint64    // deletions to send, by replica address
	refresh bool                   // send every mark (the members changed, or a refresh is due)

	flushMu sync.Mutex // one flush at a time: the worker's, or Stop's last
	kick    chan struct{}
	done    chan struct{}

	hmu       sync.Mutex
	held      map[uint64]*heldMark // other nodes' marks kept here
	nextSweep time.Time
	warned    bool
}

// ownSession is what the home knows of its session's copy.
type ownSession struct {
	hash  [32]byte
	last  uint64
	final bool
	root  uint64 // the session's lineage (marmot.SessionRecord.Root)
	at    string // the replica it was last sent to
}

// heldMark is a mark kept for another node, or, once taken, its
// tombstone (sessions_partition.go).
type heldMark struct {
	home    string // the home's member ID
	ttl     time.Duration
	taken   bool // given up to a take-over: the home is told to end it
	hash    [32]byte
	last    uint64
	final   bool
	root    uint64
	expires time.Time
}

func newSessionStore(n *Node, ttl time.Duration) *sessionStore {
	if ttl <= 0 {
		ttl = actors.DefaultSessionTTL
	}
	return &sessionStore{n: n, ttl: ttl, own: map[uint64]*ownSession{}, dirty: map[uint64]struct{}{},
		gone: map[string][]uint64{}, kick: make(chan struct{}, 1), done: make(chan struct{}), held: map[uint64]*heldMark{}}
}

var _ marmot.SessionStore = (*sessionStore)(nil)

// Save implements marmot.SessionStore.
func (st *sessionStore) Save(rec marmot.SessionRecord) {
	st.mu.Lock()
	o := st.own[rec.ID]
	if o == nil {
		o = &ownSession{}
		st.own[rec.ID] = o
	}
	o.hash, o.last, o.final, o.root = rec.SecretHash, max(o.last, rec.Last), rec.Final, rec.Root
	st.dirty[rec.ID] = struct{}{}
	st.mu.Unlock()
	st.wake()
}

// Mark implements marmot.SessionStore.
func (st *sessionStore) Mark(id, last uint64) {
	st.mu.Lock()
	o := st.own[id]
	if o == nil || last <= o.last {
		st.mu.Unlock()
		return
	}
	o.last = last
	st.dirty[id] = struct{}{}
	st.mu.Unlock()
	st.wake()
}

// Delete implements marmot.SessionStore.
func (st *sessionStore) Delete(id uint64) {
	st.mu.Lock()
	o := st.own[id]
	delete(st.own, id)
	delete(st.dirty, id)
	if o != nil && o.at != "" {
		st.gone[o.at] = append(st.gone[o.at], id)
	}
	st.mu.Unlock()
	st.wake()
}

func (st *sessionStore) wake() {
	select {
	case st.kick <- struct{}{}:
	default:
	}
}

// resendAll has every mark sent again, to the replica the member list
// now names (a member joined or left: replicas move).
func (st *sessionStore) resendAll() {
	st.mu.Lock()
	st.refresh = true
	st.mu.Unlock()
	st.wake()
}

// markBatch is how long the worker gathers marks after the first one
// that changed: at most 1/markBatch sends per replica and second, however
// many sessions acknowledge.
const markBatch = 5 * time.Millisecond

// run is the store's worker, from Start to Stop: it sends what changed
// markBatch after the first change (what changes meanwhile goes in the
// same round), and every mark every ttl/3, so that replicas keep the
// marks of live sessions and drop those of a lost home after about ttl.
func (st *sessionStore) run() {
	defer st.n.wg.Done()
	tick := time.NewTicker(st.ttl / 3)
	defer tick.Stop()
	batch := time.NewTimer(markBatch)
	batch.Stop()
	for {
		select {
		case <-st.done:
			batch.Stop()
			return
		case <-tick.C:
			st.resendAll()
		case <-st.kick:
			batch.Reset(markBatch)
			select {
			case <-st.done:
				batch.Stop()
				return
			case <-batch.C:
			}
			st.flush()
		}
	}
}

// flush sends the marks that changed (all of them on a refresh) and the
// deletions to their replicas.
func (st *sessionStore) flush() {
	st.flushMu.Lock()
	defer st.flushMu.Unlock()
	self := st.n.cfg.NodeID
	members := st.n.Members()
	// A replica that left the member list is not told to delete the
	// marks that move away from it: it is lost, or behind a partition,
	// where its mark is what lets the other side take the session over
	// (sessions_partition.go).
	member := map[string]bool{}
	for _, m := range members {
		member[m.Address] = true
	}
	batches := map[string]*wire.SessionMarks{}
	batch := func(addr string) *wire.SessionMarks {
		b := batches[addr]
		if b == nil {
			b = &wire.SessionMarks{Home: st.n.member().sys.ID, TtlNanos: int64(st.ttl)}
			batches[addr] = b
		}
		return b
	}
	st.mu.Lock()
	send := func(id uint64, o *ownSession) {
		addr := ""
		if order := replicas(id, members, self); len(order) > 0 {
			addr = order[0]
		}
		if o.at != "" && o.at != addr && member[o.at] {
			st.gone[o.at] = append(st.gone[o.at], id)
		}
		o.at = addr
		if addr != "" {
			b := batch(addr)
			b.Marks = append(b.Marks, &wire.SessionMark{Id: id, SecretHash: o.hash[:], Last: o.last, Final: o.final, Root: o.root})
		}
	}
	if st.refresh {
		for id, o := range st.own {
			send(id, o)
		}
	} else {
		for id := range st.dirty {
			if o := st.own[id]; o != nil {
				send(id, o)
			}
		}
	}
	st.refresh = false
	clear(st.dirty)
	for addr, ids := range st.gone {
		batch(addr).Deleted = ids
	}
	clear(st.gone)
	st.mu.Unlock()
	for addr, b := range batches {
		for len(b.Marks) > maxMarksPerMessage {
			part := &wire.SessionMarks{Home: b.Home, TtlNanos: b.TtlNanos, Marks: b.Marks[:maxMarksPerMessage]}
			b.Marks = b.Marks[maxMarksPerMessage:]
			st.sendTo(addr, part)
		}
		st.sendTo(addr, b)
	}
}

func (st *sessionStore) sendTo(addr string, m *wire.SessionMarks) {
	st.n.traffic.sent[kindSession].Add(1)
	if addr == st.n.member().sys.Address() {
		if ids := st.hold(m); len(ids) > 0 {
			st.fenced(ids)
		}
		return
	}
	// With the node actor as the sender, which a replica answers with a
	// SessionFence (sessions_partition.go); by its member's address
	// (mb.self was spawned before the remote started: "nonhost").
	mb := st.n.member()
	mb.sys.Root.RequestWithCustomSender(nodePID(addr), m, nodePID(mb.sys.Address()))
}

// replicas returns the members that may keep session id's mark, best
// first: every member but the session's home node, ordered by rendezvous
// hashing (the highest hash of address and ID first), so that every node
// that sees the same members names the same replica.
func replicas(id uint64, members []Member, home uint32) []string {
	type scored struct {
		addr  string
		score uint64
	}
	var s []scored
	for _, m := range members {
		if m.NodeID == home {
			continue
		}
		h := fnv.New64a()
		_, _ = h.Write([]byte(m.Address))
		var b [8]byte
		for i := range b {
			b[i] = byte(id >> (8 * i))
		}
		_, _ = h.Write(b[:])
		s = append(s, scored{m.Address, h.Sum64()})
	}
	slices.SortFunc(s, func(a, b scored) int { return cmp.Compare(b.score, a.score) })
	out := make([]string, len(s))
	for i, x := range s {
		out[i] = x.addr
	}
	return out
}

// hold keeps the marks another node sent (on the node actor), and
// returns the IDs among them whose session was taken over meanwhile:
// the home is to end them (sessions_partition.go).
func (st *sessionStore) hold(m *wire.SessionMarks) (fenced []uint64) {
	now := time.Now()
	expires := now.Add(time.Duration(m.TtlNanos))
	st.n.log.Debug("marmot cluster: session marks held", "home", m.Home, "marks", len(m.Marks), "deleted", len(m.Deleted))
	st.hmu.Lock()
	defer st.hmu.Unlock()
	st.sweep(now)
	for _, id := range m.Deleted {
		if h := st.held[id]; h != nil && (h.home == m.Home || h.taken) {
			delete(st.held, id)
		}
	}
	for _, mk := range m.Marks {
		h := st.held[mk.Id]
		if h != nil && h.taken {
			// Taken over from here while its home, cut off, kept it.
			fenced = append(fenced, mk.Id)
			continue
		}
		if h == nil {
			if len(st.held) >= maxHeldMarks {
				if !st.warned {
					st.warned = true
					st.n.log.Warn("marmot cluster: too many session marks kept for other nodes; new ones are not kept", "max", maxHeldMarks)
				}
				continue
			}
			h = &heldMark{}
			st.held[mk.Id] = h
		}
		if h.home != m.Home {
			// Another run of the home (its IDs start anew at random):
			// the newer mark wins.
			h.home, h.last = m.Home, 0
		}
		copy(h.hash[:], mk.SecretHash)
		h.last, h.final, h.expires, h.ttl = max(h.last, mk.Last), mk.Final, expires, time.Duration(m.TtlNanos)
		h.root = mk.Root
	}
	return fenced
}

// sweep drops the marks whose home stopped refreshing them; hmu is held.
func (st *sessionStore) sweep(now time.Time) {
	if now.Before(st.nextSweep) {
		return
	}
	st.nextSweep = now.Add(st.ttl / 3)
	for id, h := range st.held {
		if now.After(h.expires) {
			delete(st.held, id)
		}
	}
}

// takeHeld gives up the mark m asks for, when its secret matches: once.
func (st *sessionStore) takeHeld(m *wire.SessionTake) *wire.SessionTaken {
	now := time.Now()
	st.hmu.Lock()
	defer st.hmu.Unlock()
	st.sweep(now)
	h := st.held[m.Id]
	if h == nil || h.taken || now.After(h.expires) || (m.UnlessHome != "" && h.home == m.UnlessHome) || !actors.SecretMatches(h.hash, m.Secret) {
		return &wire.SessionTaken{}
	}
	// A tombstone, for a home that still has the session (it was cut
	// off, not lost) and marks it again: it is told to end it.
	h.taken, h.expires = true, now.Add(h.ttl)
	return &wire.SessionTaken{Found: true, Last: h.last, Certain: h.final, Root: h.root}
}
