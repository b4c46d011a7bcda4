package cluster

import (
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/asynkron/protoactor-go/cluster"
	"github.com/asynkron/protoactor-go/cluster/clusterproviders/etcd"
	"github.com/asynkron/protoactor-go/cluster/identitylookup/disthash"
	"github.com/asynkron/protoactor-go/eventstream"
	"github.com/asynkron/protoactor-go/remote"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/marmotws/marmot"
)

// member is the node's protoactor cluster member: an actor system of its
// own (apart from the marmot server's), its remote and cluster, the node
// actor and the room grains it hosts. A node has one at a time; rejoining
// (rejoin.go) replaces it with a fresh one, under a new member ID, while
// the marmot server and its clients stay up.
type member struct {
	sys  *actor.ActorSystem
	c    *cluster.Cluster
	self *actor.PID                // the node actor
	topo *eventstream.Subscription // topology events, to the node actor
	left atomic.Bool               // leave was called: its topologies are stale
	// health is the automanaged health endpoint's listener (nil with
	// etcd), closed with the member.
	health net.Listener
}

// id is the member's protoactor ID: "n<NodeID>-<random>".
func (m *member) id() string { return m.sys.ID }

// member returns the node's current cluster member (nil before Start).
func (n *Node) member() *member { return n.mem.Load() }

// newMember makes and starts a cluster member with a fresh member ID: the
// node actor listens to the topology before the member starts, so that no
// change is missed. protoactor panics on a bind error, which becomes an
// error here.
func (n *Node) newMember() (m *member, err error) {
	sys := marmot.NewActorSystem(n.log)
	// The member's ID carries the NodeID, so that a ClientID's node is
	// found among the members; the random rest makes every member new
	// (protoactor blocks the IDs of members that left, for good).
	sys.ID = "n" + strconv.FormatUint(uint64(n.cfg.NodeID), 10) + "-" + sys.ID
	m = &member{sys: sys}
	self, err := sys.Root.SpawnNamed(actorProps(n, m), nodeActorName)
	if err != nil {
		sys.Shutdown()
		return nil, fmt.Errorf("marmot/cluster: spawn the node actor: %w", err)
	}
	m.self = self
	m.topo = sys.EventStream.Subscribe(func(evt any) {
		if t, ok := evt.(*cluster.ClusterTopology); ok {
			sys.Root.Send(self, t)
		}
	})

	host, port, _ := splitHostPort(n.cfg.Bind)
	var provider cluster.ClusterProvider
	switch n.cfg.Provider {
	case ProviderEtcd:
		p, err := etcd.NewWithConfig("/marmot/"+n.cfg.Name, clientv3.Config{
			Endpoints: n.cfg.EtcdEndpoints, DialTimeout: n.cfg.RequestTimeout,
			Logger: zap.NewNop(),
		})
		if err != nil {
			m.stopSystem()
			return nil, fmt.Errorf("marmot/cluster: etcd: %w", err)
		}
		provider = p
	default:
		// The health endpoint listens on the Bind host only, on a
		// listener opened here: a port that is taken fails the start
		// (automanaged.go).
		ln, err := net.Listen("tcp", net.JoinHostPort(host, strconv.Itoa(port+1)))
		if err != nil {
			m.stopSystem()
			return nil, fmt.Errorf("marmot/cluster: the automanaged health port (Bind port + 1): %w", err)
		}
		m.health = ln
		provider = newAutomanaged(sys, n.log, n.cfg.RefreshTTL, ln, n.healthHosts()...) // quiet (automanaged.go)
	}
	// The endpoint queue bounds what waits for a slow or unreachable
	// node (protoactor's default is a million messages).
	// The dial options close the gRPC connection of a failed attempt to
	// reach a node, which protoactor leaves running (remote_conns.go).
	opts := []remote.ConfigOption{remote.WithEndpointWriterQueueSize(100_000), remote.WithEndpointManagerQueueSize(100_000),
		remote.WithDialOptions(remoteDialOptions()...)}
	if n.cfg.Advertise != "" {
		opts = append(opts, remote.WithAdvertisedHost(n.cfg.Advertise))
	}
	rc := remote.Configure(host, port, opts...)
	mw := append([]actor.ReceiverMiddleware{n.grains.middleware}, n.cfg.GrainMiddleware...)
	kind := cluster.NewKind(roomKind, actor.PropsFromProducer(func() actor.Actor { return newRoomGrain(n) },
		actor.WithReceiverMiddleware(mw...)))
	cc := cluster.Configure(n.cfg.Name, provider, disthash.New(), rc,
		cluster.WithKinds(kind), cluster.WithRequestTimeout(n.cfg.RequestTimeout))
	defer func() {
		if r := recover(); r != nil {
			m.stopSystem()
			m, err = nil, fmt.Errorf("marmot/cluster: start member on %s: %v", n.cfg.Bind, r)
		}
	}()
	m.c = cluster.New(sys, cc)
	m.c.StartMember()
	return m, nil
}

// healthHosts are the automanaged health endpoints to poll: this node's
// own, and its seeds'.
func (n *Node) healthHosts() []string {
	hosts := []string{healthAddr(n.cfg.Bind)}
	for _, s := range n.seeds() {
		hosts = append(hosts, healthAddr(s))
	}
	return hosts
}

// seeds are the configured seeds but this node's own address.
func (n *Node) seeds() []string {
	var out []string
	seen := map[string]bool{n.cfg.Bind: true, n.cfg.Advertise: true}
	for _, s := range n.cfg.Seeds {
		if !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	return out
}

// stopSystem ends a member whose cluster never started.
func (m *member) stopSystem() {
	m.sys.EventStream.Unsubscribe(m.topo)
	m.sys.Shutdown()
	m.closeHealth()
}

// closeHealth closes the health endpoint's listener. The provider's
// shutdown closes its server, which closes the listener only once it
// serves it: closed here too, the port is free for the next member at
// once (closing it twice is harmless).
func (m *member) closeHealth() {
	if m.health != nil {
		_ = m.health.Close()
	}
}

// leave takes the member out of the cluster and stops it: gracefully
// (protoactor waits about 2 s for the grains' ownership to move), or at
// once, closing its ports, as when rejoining: a member the others have
// blocked has nothing to hand over. Its grains stop with it.
func (m *member) leave(graceful bool, timeout time.Duration) {
	if m.left.Swap(true) {
		return
	}
	m.sys.EventStream.Unsubscribe(m.topo)
	if graceful {
		m.c.Shutdown(true)
		m.closeHealth()
		return
	}
	// Shutdown(false) stops the remote at once but leaves the provider
	// (the automanaged health endpoint on its port) and the placement
	// actor running: stop them too, so that the next member can take
	// the ports and no grain outlives its member. The etcd provider
	// deregisters, which waits for etcd: timeout bounds that wait.
	m.c.Shutdown(false)
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = m.c.Config.ClusterProvider.Shutdown(false)
	}()
	select {
	case <-done:
	case <-time.After(timeout):
	}
	m.closeHealth()
	if m.c.IdentityLookup != nil {
		m.c.IdentityLookup.Shutdown()
	}
	m.c.Gossip.Shutdown()
	m.stopActors(timeout)
}

// stopActors stops the actors the member's system still runs, within
// timeout. protoactor's non-graceful shutdown (ActorSystem.Shutdown only
// ends the gossip loop; Remote.Shutdown(false) only stops the gRPC
// server) leaves them in place, among them the remote's endpoint
// supervisor, whose endpoint writers keep their gRPC connections to the
// other nodes open (and those nodes' readers of them): about twenty
// goroutines per rejoin, here and on the others. Stopping an actor stops
// its children (an endpoint writer closes its connection when it stops),
// so the top-level actors are enough (futures end with their timeouts;
// the event stream, dead letters and guardians are not actors), but for
// the endpoint supervisor itself: a send through the old member while the
// node rejoins (its room broker's, until the new member is in place) asks
// it for an endpoint and panics when it does not answer, so only its
// children, the endpoint writers and watchers, are stopped (sends to them
// become dead letters). The remote's own graceful stop
// (Remote.Shutdown(true)) is not used: it signals each endpoint reader on
// a channel that a reader which ended closes, a send that can panic once
// the gRPC server has stopped.
func (m *member) stopActors(timeout time.Duration) {
	const endpointSupervisor = "EndpointSupervisor" // protoactor's remote's name for it
	reg := m.sys.ProcessRegistry
	var futures []*actor.Future
	for _, bucket := range reg.LocalPIDs.LocalPIDs {
		for _, id := range bucket.Keys() {
			parent, _, child := strings.Cut(id, "/")
			switch {
			case id == endpointSupervisor:
				continue // its children below
			case parent == endpointSupervisor && !strings.Contains(id[len(parent)+1:], "/"):
				// An endpoint writer or watcher.
			case child:
				continue // it stops with its parent
			}
			if p, _ := reg.GetLocal(id); !isActor(p) {
				continue // the event stream, dead letters, guardians
			}
			futures = append(futures, m.sys.Root.StopFuture(m.sys.NewLocalPID(id)))
		}
	}
	deadline := time.After(timeout)
	for _, f := range futures {
		done := make(chan struct{})
		go func() {
			defer close(done)
			_ = f.Wait() // at most StopFuture's 10 s
		}()
		select {
		case <-done:
		case <-deadline:
			return
		}
	}
}

// actorProps makes n's node actor for its member m.
func actorProps(n *Node, m *member) *actor.Props {
	return actor.PropsFromProducer(func() actor.Actor { return &nodeActor{n: n, m: m} })
}

// isActor reports whether a process of the registry is an actor (not a
// future, the event stream, dead letters or a guardian).
func isActor(p actor.Process) bool {
	_, ok := p.(*actor.ActorProcess)
	return ok
}
