package cluster

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync/atomic"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/asynkron/protoactor-go/cluster"

	"github.com/marmotws/marmot"
	"github.com/marmotws/marmot/actors"
	"github.com/marmotws/marmot/cluster/internal/wire"
)

// Taking a session over (sessions.go has the whole picture): the node a
// client moved to asks the session's home, and when the home is gone,
// the replica that keeps its mark.

// errHomeGone ends the ask of a session's home that left the member list
// while it was asked.
var errHomeGone = errors.New("marmot/cluster: the session's home left the cluster")

// askEnded completes an ask's future early (askHome): the home left the
// member list, or the caller's context ended.
type askEnded struct{ err error }

// handOver answers a SessionHandover from another node, off the node
// actor: the handover waits for the message the session may be handling.
// It answers on sys, the node actor's (its member's) actor system: a
// request can come while the member is starting, before the node has it.
func (st *sessionStore) handOver(m *wire.SessionHandover, to *actor.PID, sys *actor.ActorSystem) {
	go func() {
		last, err := st.n.srv.HandOverSession(m.Id, m.Secret)
		sys.Root.Send(to, &wire.SessionTaken{Found: err == nil, Last: last, Certain: err == nil,
			Home: sys.ID, Stopping: errors.Is(err, marmot.ErrSessionStopping)})
	}()
}

// Take implements marmot.SessionStore: from the session's home when it is
// a member and has it, else from the replica that keeps its mark.
func (st *sessionStore) Take(ctx context.Context, id uint64, secret []byte) (marmot.SessionTaken, error) {
	n := st.n
	if err := n.check(); err != nil {
		return marmot.SessionTaken{}, err
	}
	mb := n.member()
	home := actors.SessionNode(id)
	unless := mb.sys.ID // a session of this run of this node is not taken from a replica
	if home != n.cfg.NodeID {
		unless = ""
		if hm := memberOfNode(mb, home); hm != nil {
			res, err := st.askHome(ctx, mb, hm, &wire.SessionHandover{Id: id, Secret: secret})
			switch {
			case err == nil && res.Found:
				return marmot.SessionTaken{Last: res.Last, Certain: true}, nil
			case err == nil && !res.Stopping:
				// The home is alive and does not have it: only a mark of
				// an earlier run of the home may be taken.
				unless = res.Home
			case ctx.Err() != nil:
				return marmot.SessionTaken{}, ctx.Err()
			}
			// Gone, or not answering within RequestTimeout: lost, as far
			// as this client is concerned.
			n.log.Debug("marmot cluster: session's home did not hand it over; asking its replica",
				"session", id, "home", hm.Id, "err", err, "stopping", err == nil && res.Stopping)
		}
	}
	if n.watch.isolated.Load() {
		// Cut off from the majority, this node cannot tell a lost home
		// from one on the other side, which may still have the session
		// (docs/CLUSTER.md, Sessions under a partition): it takes no
		// replica's mark.
		return marmot.SessionTaken{}, fmt.Errorf("%w: this node is cut off from its cluster", marmot.ErrSessionNotFound)
	}
	req := &wire.SessionTake{Id: id, Secret: secret, UnlessHome: unless}
	var errs []error
	for _, addr := range replicas(id, n.Members(), home) {
		var res *wire.SessionTaken
		var err error
		if addr == mb.sys.Address() {
			res = st.takeHeld(req)
		} else if res, err = st.ask(ctx, addr, req); err != nil {
			errs = append(errs, err)
			continue
		}
		if res.Found {
			return marmot.SessionTaken{Last: res.Last, Certain: res.Certain, Root: res.Root}, nil
		}
	}
	return marmot.SessionTaken{}, errors.Join(append([]error{marmot.ErrSessionNotFound}, errs...)...)
}

// memberOfNode returns the member of mb's member list whose NodeID is
// node, or nil.
func memberOfNode(mb *member, node uint32) *cluster.Member {
	for _, m := range mb.c.MemberList.Members().Members() {
		if memberNodeID(m) == node {
			return m
		}
	}
	return nil
}

// askHome asks home, a session's home, to hand the session over. The ask
// ends with errHomeGone as soon as home leaves mb's member list, and
// with ctx.
//
// Why: a home that was SIGKILLed never answers, and waiting the whole
// RequestTimeout for it put that on every failover after a crash (5 s by
// default, where membership notices the loss within a RefreshTTL or two,
// or the etcd lease). Leaving the member list is the signal that the home
// is gone for this node, and the only one taken: protoactor then blocks
// the home's member ID for good, so nothing of that run reaches this node
// again, and it is the very rule of a take-over that starts after the
// home left (the replica is asked). A lost connection (protoactor's
// EndpointTerminatedEvent) is not that signal: a live home behind a flaky
// link still has the session, and taking the replica's mark, uncertain,
// while the home is alive and answering would hand the session out twice
// and turn exactly once into redelivery. Nor is the replica asked
// meanwhile: a replica gives its mark up when asked, and the home's
// exact answer is the one to use while it may come. Once the home is
// gone, the replica costs one round trip.
func (st *sessionStore) askHome(ctx context.Context, mb *member, home *cluster.Member, m *wire.SessionHandover) (*wire.SessionTaken, error) {
	addr := home.Address()
	st.n.traffic.sent[kindSession].Add(1)
	f := mb.sys.Root.RequestFuture(nodePID(addr), m, st.n.timeout(ctx))
	var ended atomic.Bool // the future is completed, or about to be: send no more
	end := func(err error) {
		if ended.CompareAndSwap(false, true) {
			mb.sys.Root.Send(f.PID(), askEnded{err})
		}
	}
	sub := mb.sys.EventStream.Subscribe(func(evt any) {
		if t, ok := evt.(*cluster.ClusterTopology); ok &&
			!slices.ContainsFunc(t.Members, func(x *cluster.Member) bool { return x.Id == home.Id }) {
			end(errHomeGone)
		}
	})
	stop := context.AfterFunc(ctx, func() { end(ctx.Err()) })
	if !mb.c.MemberList.ContainsMemberID(home.Id) {
		end(errHomeGone) // it left before the subscription
	}
	res, err := f.Result()
	ended.Store(true)
	stop()
	mb.sys.EventStream.Unsubscribe(sub)
	return answer(addr, res, err)
}

// ask sends a session request to the node actor at addr.
func (st *sessionStore) ask(ctx context.Context, addr string, m any) (*wire.SessionTaken, error) {
	st.n.traffic.sent[kindSession].Add(1)
	res, err := st.n.member().sys.Root.RequestFuture(nodePID(addr), m, st.n.timeout(ctx)).Result()
	return answer(addr, res, err)
}

// answer reads a session request's answer.
func answer(addr string, res any, err error) (*wire.SessionTaken, error) {
	if e, ok := res.(askEnded); ok {
		err = e.err
	}
	if err != nil {
		return nil, fmt.Errorf("marmot/cluster: %s: %w", addr, err)
	}
	t, ok := res.(*wire.SessionTaken)
	if !ok {
		return nil, fmt.Errorf("marmot/cluster: %s: unexpected answer %T", addr, res)
	}
	return t, nil
}
