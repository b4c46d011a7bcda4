package cluster

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/sethvargo/go-retry"

	"github.com/marmotws/marmot/cluster/internal/wire"
)

// The membership watch: a node checks, every few RefreshTTLs, whether the
// cluster has left it out, and whether it is cut off from the majority.
//
// Left out. protoactor removes a member that misses one health check (or
// whose etcd lease lapses) and blocks its member ID for good: a node that
// was only slow, or behind a partition that healed, stays out of the
// others' member lists, and they out of its, until it restarts. The watch
// asks the other nodes it can find (its members, and with automanaged the
// seeds that answer on their health endpoint) for their member lists
// (wire.MemberProbe). This node's side is itself and the nodes that list
// it; when a node that does not list it has a larger member list (on a
// tie, the lower NodeID), this node is the one left out: after two such checks in a row it rejoins, replacing
// its cluster member with a fresh one under a new member ID (member.go).
// Its marmot server and clients stay up; its rooms subscribe again to
// their grains through the new member, as after any change of the member
// list. The nodes of the larger side see a node that joins.
//
// Isolated: a node cut off from the majority of its cluster closes its
// clients' connections once, with CloseIsolated, so that clients with
// FailoverURLs reconnect to a node of the majority (unless
// Config.KeepClientsWhenIsolated). The rules for each provider are in
// isolation.go.

// watchState is the membership watch's state. outChecks is the watch
// goroutine's alone; the counters are read by the metrics.
type watchState struct {
	outChecks int // consecutive checks that found this node left out
	// majority: the node has had a majority (it is not starting alone).
	// Set by the checks and by every member list the node gets
	// (noteMembers): a majority seen only between two checks counts.
	majority atomic.Bool
	isolated atomic.Bool // cut off from the majority (isolation.go)
	rejoins  atomic.Int64
	// unreached counts, per member ID, the checks in a row whose probe
	// it did not answer (etcd; isolation.go).
	unreached map[string]int
}

// rejoinAttempts bounds the tries of one rejoin (a port still taken, a
// provider that fails to start); the waits between them grow from one
// RefreshTTL, doubling, to at most rejoinMaxWait.
const (
	rejoinAttempts = 6
	rejoinMaxWait  = 30 * time.Second
)

// checkEvery is the period of the membership watch.
func (n *Node) checkEvery() time.Duration { return 3 * n.cfg.RefreshTTL }

// watchMembership runs from Start to Stop.
func (n *Node) watchMembership() {
	defer n.wg.Done()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		<-n.rb.done
		cancel()
	}()
	t := time.NewTicker(n.checkEvery())
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		n.checkIsolation()
		if n.member().left.Load() {
			n.rejoin(ctx) // a rejoin that ran out of attempts: another round
			continue
		}
		out, unreached := n.leftOut(ctx)
		if n.cfg.Provider == ProviderEtcd {
			n.checkReach(unreached)
		}
		if out {
			n.watch.outChecks++
		} else {
			n.watch.outChecks = 0
		}
		if n.watch.outChecks >= 2 {
			n.watch.outChecks = 0
			n.rejoin(ctx)
		}
	}
}

// checkIsolation closes the clients once when the node becomes cut off
// from the majority of the nodes it was configured with (automanaged).
func (n *Node) checkIsolation() {
	if n.cfg.Provider != ProviderAutomanaged || len(n.seeds()) == 0 {
		return
	}
	total := 1 + len(n.seeds())
	have := len(n.Members())
	// A node that has not yet seen a majority is starting (the others
	// may not be up yet), not cut off.
	isolated := have < total/2+1
	if !isolated {
		n.watch.majority.Store(true)
	} else if !n.watch.majority.Load() {
		return
	}
	n.setIsolated(isolated, have, total)
}

// noteMembers records that the node has had a majority when a member
// list of have members (a topology, as it comes) holds one. The checks
// run every checkEvery: a node cut off within that time of its start,
// whose member list held the majority only until then, would otherwise
// count as starting alone and never close its clients (automanaged).
func (n *Node) noteMembers(have int) {
	if n.cfg.Provider == ProviderAutomanaged && have >= (1+len(n.seeds()))/2+1 {
		n.watch.majority.Store(true)
	}
}

// leftOut reports whether this node is left out: a node that does not
// list it has a larger side than this node's (itself and the nodes that
// list it), or as large a side with a lower NodeID. It also returns the
// members of its member list that did not answer (isolation.go).
func (n *Node) leftOut(ctx context.Context) (out bool, unreached []string) {
	m := n.member()
	peers := map[string]string{} // member addresses to probe: their member IDs ("" for a seed)
	for _, mb := range m.c.MemberList.Members().Members() {
		if !sameMember(mb.Id, m.id()) {
			peers[mb.Address()] = mb.Id
		}
	}
	if n.cfg.Provider == ProviderAutomanaged {
		for _, addr := range n.liveSeeds(ctx, m.id()) {
			if _, ok := peers[addr]; !ok {
				peers[addr] = ""
			}
		}
	}
	wait := 2 * n.cfg.RefreshTTL
	futures := make(map[string]*actor.Future, len(peers))
	for addr := range peers {
		futures[addr] = m.sys.Root.RequestFuture(nodePID(addr), &wire.MemberProbe{}, wait)
	}
	side := []string{m.id()} // this node and those that list it
	var others []*wire.MemberView
	for addr, f := range futures {
		res, err := f.Result()
		v, ok := res.(*wire.MemberView)
		switch {
		case err != nil || !ok || v.Self == "":
			if id := peers[addr]; id != "" {
				unreached = append(unreached, id)
			}
		case containsMember(v.Members, m.id()):
			side = append(side, v.Self)
		default:
			others = append(others, v)
		}
	}
	for _, v := range others {
		if outranks(v.Members, side) {
			n.log.Warn("marmot cluster: another node's member list leaves this node out",
				"member", m.id(), "node", v.Self, "their_members", len(v.Members), "our_side", len(side))
			out = true
			break
		}
	}
	return out, unreached
}

// liveSeeds asks the seeds' automanaged health endpoints who they are
// and returns the member addresses of those that answer and are not this
// member.
func (n *Node) liveSeeds(ctx context.Context, self string) []string {
	seeds := n.seeds()
	out := make(chan string, len(seeds))
	hc := &http.Client{Timeout: 2 * n.cfg.RefreshTTL}
	for _, s := range seeds {
		go func() {
			addr := ""
			defer func() { out <- addr }()
			req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+healthAddr(s)+"/_health", nil)
			if err != nil {
				return
			}
			res, err := hc.Do(req)
			if err != nil {
				return
			}
			defer res.Body.Close()
			// protoactor's automanaged NodeModel, as its health endpoint
			// serves it.
			var nm struct {
				ID          string `json:"id"`
				Address     string `json:"address"`
				Port        int    `json:"port"`
				ClusterName string `json:"cluster_name"`
			}
			if res.StatusCode != http.StatusOK || json.NewDecoder(http.MaxBytesReader(nil, res.Body, 64<<10)).Decode(&nm) != nil {
				return
			}
			if nm.ClusterName == n.cfg.Name && nm.ID != self && nm.Address != "" {
				addr = net.JoinHostPort(nm.Address, strconv.Itoa(nm.Port))
			}
		}()
	}
	var addrs []string
	for range seeds {
		if a := <-out; a != "" {
			addrs = append(addrs, a)
		}
	}
	return addrs
}

// rejoin replaces the node's cluster member with a fresh one, under a
// new member ID, with bounded retries.
func (n *Node) rejoin(ctx context.Context) {
	old := n.member()
	n.rb.detachAll() // the rooms' joins wait for the new member's subscriptions
	n.log.Warn("marmot cluster: rejoining the cluster with a new member ID", "member", old.id())
	old.leave(false, n.cfg.RequestTimeout)
	b := retry.WithMaxRetries(rejoinAttempts-1, retry.WithCappedDuration(rejoinMaxWait, retry.NewExponential(n.cfg.RefreshTTL)))
	attempt := 0
	err := retry.Do(ctx, b, func(context.Context) error {
		attempt++
		m, err := n.newMember()
		if err != nil {
			n.log.Warn("marmot cluster: rejoin attempt failed", "attempt", attempt, "err", err)
			return retry.RetryableError(err)
		}
		n.mem.Store(m)
		// The rooms wait for it (the broker's worker does not use
		// the stopped member): subscribe them now.
		n.rb.wake()
		return nil
	})
	if err != nil {
		// The old member stays in place, stopped: the next check tries
		// another round.
		n.log.Error("marmot cluster: could not rejoin the cluster", "attempts", attempt, "err", err)
		return
	}
	n.watch.rejoins.Add(1)
	n.log.Warn("marmot cluster: rejoined the cluster", "member", n.member().id(), "attempts", attempt)
}

// view is the member's member list, as MemberProbe's answer.
func (m *member) view() *wire.MemberView {
	if m == nil || m.c == nil {
		return &wire.MemberView{}
	}
	ms := m.c.MemberList.Members().Members()
	v := &wire.MemberView{Self: m.id(), Members: make([]string, 0, len(ms))}
	for _, mb := range ms {
		v.Members = append(v.Members, mb.Id)
	}
	return v
}

// sameMember reports whether a member ID of the member list (which the
// etcd provider prefixes with "<cluster>@") is the actor system ID id.
func sameMember(memberID, id string) bool {
	return memberID == id || strings.HasSuffix(memberID, "@"+id)
}

func containsMember(ids []string, id string) bool {
	for _, m := range ids {
		if sameMember(m, id) {
			return true
		}
	}
	return false
}

// outranks reports whether the member list theirs is the larger side
// against mine: more members, or as many and the lower NodeID.
// (Member IDs may carry the etcd provider's "<cluster>@" prefix.)
func outranks(theirs, mine []string) bool {
	if len(theirs) != len(mine) {
		return len(theirs) > len(mine)
	}
	return minNodeID(theirs) < minNodeID(mine)
}

func minNodeID(ids []string) uint32 {
	low := uint32(1<<32 - 1)
	for _, id := range ids {
		low = min(low, nodeIDOf(id))
	}
	return low
}
