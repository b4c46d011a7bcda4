// Package cluster joins marmot servers into one protoactor cluster: a
// Node is a marmot.Server whose actor system is a protoactor cluster
// member, so that broadcasts, targeted sends, rooms and the server's
// figures span every node.
//
// What crosses nodes, and how (docs/CLUSTER.md has the whole picture):
//
//   - Membership is protoactor's (automanaged or etcd provider); a node
//     that stops answering leaves the member list, one that starts again
//     joins it. A node the others dropped while it lived (slow, or behind
//     a partition) rejoins on its own under a new member ID, and one cut
//     off from the majority closes its clients so that they fail over
//     (rejoin.go).
//   - ClientIDs are unique in the cluster: a node numbers its clients
//     from NodeID×10¹², so 3000000000007 is client 7 of node 3, and a
//     targeted send goes straight to the node the ID names.
//   - Node.Broadcast asks every member to send to its own clients, so a
//     client gets it once.
//   - A room is a protoactor grain (a virtual actor placed by rendezvous
//     hashing): every node's publishes to the room go to its grain, which
//     numbers them and hands each to every node that has members in the
//     room; there, the room's local actor sends it to its members. One
//     sequencer per room is what gives every member, on every node, one
//     order and the same offsets.
//
// The single-server path is untouched: a marmot.Server without this
// package runs no cluster code.
package cluster

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/asynkron/protoactor-go/cluster"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/propagation"

	"github.com/marmotws/marmot"
)

// nodeActorName is the well-known name of every node's actor: other
// nodes reach it at PID{Address: member address, Id: nodeActorName}.
const nodeActorName = "marmot-node"

// roomKind is the grain kind of rooms.
const roomKind = "marmot-room"

// Node is a marmot server that is a member of a cluster.
type Node struct {
	cfg  Config
	srv  *marmot.Server
	mem  atomic.Pointer[member] // the cluster member now (member.go); replaced on rejoin
	prop propagation.TextMapPropagator
	rb   *roomBroker
	hist marmot.HistoryConfig // the server's RoomHistory, kept by the brokers and grains
	ss   *sessionStore
	// grains reports and follows up the room grains' failures
	// (grain_failure.go).
	grains *grainSupervision
	log    *slog.Logger
	mp     metric.MeterProvider
	// roomGrains are the room grains the node hosts, by room
	// (rooms_takeover.go).
	roomGrains localGrains

	traffic    traffic
	metricsReg metric.Registration

	mu      sync.Mutex // serialises Start and Stop
	started bool
	stopped bool
	wg      sync.WaitGroup // the room broker's and session store's workers, and the membership watch
	watch   watchState     // the membership watch's (rejoin.go)

	reqSlots chan struct{} // requests carried out for other nodes (request.go)
}

// New makes a node: a marmot server configured from srv, whose actor
// system joins the cluster cfg describes when Start is called. srv must
// not set ActorSystem, NodeID or RoomBroker (the node sets them).
// RoomHistory is kept in memory by every node that has the room and by
// its grain (docs/CLUSTER.md): its Backend must be nil.
func New(cfg Config, srv marmot.ServerConfig) (*Node, error) {
	if err := cfg.normalize(); err != nil {
		return nil, err
	}
	if srv.ActorSystem != nil || srv.NodeID != 0 || srv.RoomBroker != nil || srv.SessionStore != nil {
		return nil, errors.New("marmot/cluster: ServerConfig.ActorSystem, NodeID, RoomBroker and SessionStore are the node's to set")
	}
	if srv.RoomHistory.Backend != nil {
		return nil, errors.New("marmot/cluster: RoomHistory.Backend is not used in a cluster: the nodes keep room history in memory, on more than one node")
	}
	n := &Node{cfg: cfg, log: cfg.Logger, prop: srv.Propagator, mp: srv.MeterProvider, hist: srv.RoomHistory, reqSlots: make(chan struct{}, maxNodeRequests)}
	if n.prop == nil {
		n.prop = defaultPropagator()
	}
	n.rb = newRoomBroker(n)
	n.ss = newSessionStore(n, srv.SessionTTL)
	n.grains = newGrainSupervision(n, srv.TracerProvider)
	// The server keeps an actor system of its own: the cluster member's
	// (member.go) is replaced when the node rejoins, the server's stays.
	srv.NodeID, srv.RoomBroker, srv.SessionStore = cfg.NodeID, n.rb, n.ss
	s, err := marmot.NewServer(srv)
	if err != nil {
		return nil, err
	}
	n.srv = s
	return n, nil
}

// histCfg is the history the node keeps of each room.
func (n *Node) histCfg() marmot.HistoryConfig { return n.hist }

// RoomOwner returns the NodeID of the member that hosts room's grain (its
// sequencer) in the current member list, or false when no member does.
func (n *Node) RoomOwner(room string) (uint32, bool) {
	mb := n.member()
	if mb == nil {
		return 0, false
	}
	pid := mb.c.Get(room, roomKind)
	if pid == nil {
		return 0, false
	}
	for _, m := range n.Members() {
		if m.Address == pid.Address {
			return m.NodeID, true
		}
	}
	return 0, false
}

// Server returns the node's marmot server: its local API (Join, Publish,
// Members, the local Broadcast...) works as on a single server; Publish
// reaches the room's members on every node, and returns once the room's
// grain has numbered the message and two nodes hold it
// (marmot.ErrPublishUnconfirmed after
// RequestTimeout; docs/CLUSTER.md).
func (n *Node) Server() *marmot.Server { return n.srv }

// NodeID returns the node's ID.
func (n *Node) NodeID() uint32 { return n.cfg.NodeID }

// Start joins the cluster, then starts the server (Server().Start). It
// returns once both are up; the other members are seen within a
// RefreshTTL or two.
func (n *Node) Start(ctx context.Context) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.started || n.stopped || n.member() != nil {
		return errors.New("marmot/cluster: node already started")
	}
	m, err := n.newMember()
	if err != nil {
		return err
	}
	n.mem.Store(m)
	n.rb.origin = newOrigin(n.cfg.NodeID, time.Now()) // this run of the node, in its room publishes (kept across rejoins)
	n.wg.Add(3)
	go n.rb.run()
	go n.ss.run()
	go n.watchMembership()
	n.started = true
	n.registerMetrics(n.mp)
	return n.srv.Start(ctx)
}

// Stop stops the server gracefully (Server().Stop), then leaves the
// cluster and shuts the actor system down, within ctx: when ctx ends
// first, Stop returns its error and the leaving goes on in the
// background. The node cannot start again.
func (n *Node) Stop(ctx context.Context) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.stopped {
		return nil
	}
	n.stopped = true
	err := n.srv.Stop(ctx)
	if n.metricsReg != nil {
		_ = n.metricsReg.Unregister()
	}
	if n.started {
		close(n.rb.done)
		close(n.ss.done)
	}
	n.wg.Wait() // a rejoin under way finishes first
	if n.started {
		// The server saved its sessions' final marks as it stopped:
		// they go to their replicas before the node leaves, so that
		// its clients resume them on other nodes.
		n.ss.flush()
	}
	m := n.member()
	if m == nil {
		return err
	}
	// Leaving takes protoactor about 2 s (it waits for ownership to
	// move), and longer when the provider cannot reach its store (etcd
	// down): ctx bounds the wait, and the rest finishes on its own.
	left := make(chan struct{})
	go func() {
		defer close(left)
		m.leave(true, n.cfg.RequestTimeout)
	}()
	select {
	case <-left:
	case <-ctx.Done():
		err = errors.Join(err, fmt.Errorf("marmot/cluster: leaving the cluster: %w", ctx.Err()))
	}
	return err
}

// Member is one node of the cluster.
type Member struct {
	NodeID  uint32
	Address string // its Bind address
}

// Members returns the nodes the cluster has now, ordered by NodeID.
func (n *Node) Members() []Member {
	mb := n.member()
	if mb == nil || mb.c == nil {
		return nil
	}
	var out []Member
	for _, m := range mb.c.MemberList.Members().Members() {
		out = append(out, Member{NodeID: memberNodeID(m), Address: m.Address()})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].NodeID < out[j].NodeID })
	return out
}

// memberNodeID reads the NodeID from a member's ID: the actor system's
// ID "n<NodeID>-...", which the etcd provider prefixes with "<cluster>@".
func memberNodeID(m *cluster.Member) uint32 { return nodeIDOf(m.Id) }

// nodeIDOf reads the NodeID from a member ID (0 if it has none).
func nodeIDOf(id string) uint32 {
	if i := strings.LastIndexByte(id, '@'); i >= 0 {
		id = id[i+1:]
	}
	s, _, _ := strings.Cut(strings.TrimPrefix(id, "n"), "-")
	v, _ := strconv.ParseUint(s, 10, 32)
	return uint32(v)
}

// nodeAddress returns the address of the member whose NodeID is id.
func (n *Node) nodeAddress(id uint32) (string, bool) {
	for _, m := range n.Members() {
		if m.NodeID == id {
			return m.Address, true
		}
	}
	return "", false
}

func nodePID(addr string) *actor.PID { return actor.NewPID(addr, nodeActorName) }

func (n *Node) check() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if !n.started || n.stopped {
		return ErrNotStarted
	}
	return nil
}

// timeout is the time a call to another node may take under ctx.
func (n *Node) timeout(ctx context.Context) time.Duration {
	d := n.cfg.RequestTimeout
	if dl, ok := ctx.Deadline(); ok {
		d = min(d, time.Until(dl))
	}
	return max(d, time.Millisecond)
}

// inject puts ctx's trace context into a message's meta.
func (n *Node) inject(ctx context.Context) map[string]string {
	m := map[string]string{}
	n.prop.Inject(ctx, propagation.MapCarrier(m))
	if len(m) == 0 {
		return nil
	}
	return m
}

// extract is inject's other end.
func (n *Node) extract(meta map[string]string) context.Context {
	if len(meta) == 0 {
		return context.Background()
	}
	return n.prop.Extract(context.Background(), propagation.MapCarrier(meta))
}

// remoteAddr is a client's remote address reported by another node.
type remoteAddr string

func (a remoteAddr) Network() string { return "tcp" }
func (a remoteAddr) String() string  { return string(a) }

var _ net.Addr = remoteAddr("")

// defaultPropagator is the global propagator when one is set, else W3C
// trace context and baggage (marmot's default).
func defaultPropagator() propagation.TextMapPropagator {
	if p := otel.GetTextMapPropagator(); len(p.Fields()) > 0 {
		return p
	}
	return propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{})
}
