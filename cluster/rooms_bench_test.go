package cluster_test

import (
	"context"
	"encoding/binary"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	pcluster "github.com/asynkron/protoactor-go/cluster"
	"github.com/asynkron/protoactor-go/cluster/clusterproviders/automanaged"
	"github.com/asynkron/protoactor-go/cluster/identitylookup/disthash"
	"github.com/asynkron/protoactor-go/remote"

	"github.com/marmotws/marmot"
	"github.com/marmotws/marmot/cluster"
	"github.com/marmotws/marmot/cluster/internal/wire"
)

// BenchmarkRoomFanout publishes the same room traffic across three
// in-process nodes on 127.0.0.2–.4 two ways, to choose between them
// (docs/CLUSTER.md, "Rooms: grains, and why not cluster pub-sub"):
//
//   - grain: marmot's cluster package as it is: node 1's room actor hands
//     each message to the room's grain (wherever rendezvous hashing put
//     it), which numbers it and sends it to every node with members.
//   - pubsub: protoactor's cluster pub-sub in the same place: a
//     marmot.RoomBroker (below) that publishes each message, a protobuf
//     wire.RoomPublishSeq, through a cluster.BatchingProducer to the topic
//     named after the room (a grain of protoactor's topic kind), whose
//     subscribers are one delivery actor per node, which hands the
//     message to the local room; the offsets are counted by each node as
//     messages arrive (they agree only because there is one topic actor
//     and every node subscribed before the first message: the numbering a
//     room needs, and which pub-sub does not give, is left out in its
//     favour).
//
// Both end at real members: benchMembers marmot clients per node, over
// WebSocket on loopback, joined to the room, which check that every
// message arrives once and in order. Sub-benchmarks:
//
//   - throughput: b.N messages published back to back (actor messages
//     to node 1's server, not waiting); reports deliveries/s to the
//     members and the delivery latency's p50/p99 (queueing included).
//   - latency: one message at a time, the next once every member has the
//     previous one; ns/op is the time until the last member has it, and
//     p50/p99 are over every member's delivery.
//
// The nodes run in this process, so -race reports protoactor's own races
// (docs/CLUSTER.md); run it without: go test -run '^$' -bench RoomFanout
// -benchtime 2000x ./cluster/
func BenchmarkRoomFanout(b *testing.B) {
	for _, mode := range []string{"grain", "pubsub"} {
		b.Run(mode, func(b *testing.B) {
			bc := startBenchCluster(b, mode)
			b.Run("throughput", func(b *testing.B) { bc.run(b, false) })
			b.Run("latency", func(b *testing.B) { bc.run(b, true) })
		})
	}
}

const (
	benchNodes   = 3
	benchMembers = 10 // per node
	benchRoom    = "bench"
	benchSize    = 64 // bytes per message
)

// benchCluster is three nodes, their members, and what the members got
// in the current run.
type benchCluster struct {
	servers []*marmot.Server
	members []*benchMember

	cur  atomic.Pointer[benchRun]
	runs int // runs so far: each run's messages carry its number
}

// benchRun is one run's count: want messages per member.
type benchRun struct {
	id       uint32
	want     int
	complete atomic.Int64 // members that have every message
	done     chan struct{}
	msg      atomic.Int64 // latency mode: the message every member must have
	msgDone  chan struct{}
	msgCount atomic.Int64 // latency mode: members that have it
}

// benchMember is one member's record of the current run.
type benchMember struct {
	mu     sync.Mutex
	run    uint32
	next   uint64 // the sequence number expected next
	offset uint64 // the room offset of the last message
	lat    []int64
	bad    string // what went wrong first
	client *marmot.Client
}

func (m *benchMember) receive(bc *benchCluster, msg *marmot.Message) {
	now := time.Now().UnixNano()
	if msg.Room != benchRoom || len(msg.Payload) != benchSize {
		return
	}
	run := binary.LittleEndian.Uint32(msg.Payload[16:])
	seq := binary.LittleEndian.Uint64(msg.Payload)
	sent := int64(binary.LittleEndian.Uint64(msg.Payload[8:]))
	r := bc.cur.Load()
	if r == nil || run != r.id {
		return
	}
	m.mu.Lock()
	if m.run != run {
		m.run, m.next, m.lat = run, 0, m.lat[:0]
	} else if msg.Offset != m.offset+1 && m.bad == "" {
		m.bad = fmt.Sprintf("offset %d after %d", msg.Offset, m.offset)
	}
	m.offset = msg.Offset
	if seq != m.next && m.bad == "" {
		m.bad = fmt.Sprintf("message %d where %d was due", seq, m.next)
	}
	m.next = seq + 1
	m.lat = append(m.lat, now-sent)
	m.mu.Unlock()
	if r.msgDone != nil && int64(seq) == r.msg.Load() && r.msgCount.Add(1) == int64(len(bc.members)) {
		r.msgDone <- struct{}{}
	}
	if seq == uint64(r.want-1) && r.complete.Add(1) == int64(len(bc.members)) {
		close(r.done)
	}
}

// run publishes b.N messages on node 1 and waits for every member to
// have them all; oneByOne waits for each message before the next.
func (bc *benchCluster) run(b *testing.B, oneByOne bool) {
	bc.runs++
	r := &benchRun{id: uint32(bc.runs), want: b.N, done: make(chan struct{})}
	if oneByOne {
		r.msgDone = make(chan struct{}, 1)
	}
	bc.cur.Store(r)
	srv := bc.servers[0]
	root := srv.ActorSystem().Root
	payload := make([]byte, benchSize)
	b.ResetTimer()
	start := time.Now()
	for i := range b.N {
		binary.LittleEndian.PutUint64(payload, uint64(i))
		binary.LittleEndian.PutUint64(payload[8:], uint64(time.Now().UnixNano()))
		binary.LittleEndian.PutUint32(payload[16:], r.id)
		if oneByOne {
			r.msg.Store(int64(i))
			r.msgCount.Store(0)
		}
		// The room keeps the slice: a fresh one each time.
		root.Send(srv.PID(), &marmot.Publish{Room: benchRoom, Data: slices.Clone(payload)})
		if oneByOne {
			select {
			case <-r.msgDone:
			case <-time.After(waitTimeout):
				b.Fatalf("message %d: %d of %d members have it after %v", i, r.msgCount.Load(), len(bc.members), waitTimeout)
			}
		}
	}
	select {
	case <-r.done:
	case <-time.After(waitTimeout):
		b.Fatalf("%d of %d members have all %d messages after %v", r.complete.Load(), len(bc.members), b.N, waitTimeout)
	}
	elapsed := time.Since(start)
	b.StopTimer()
	var lat []int64
	for i, m := range bc.members {
		m.mu.Lock()
		if m.bad != "" {
			b.Fatalf("member %d: %s", i, m.bad)
		}
		lat = append(lat, m.lat...)
		m.mu.Unlock()
	}
	if len(lat) != b.N*len(bc.members) {
		b.Fatalf("%d deliveries, want %d", len(lat), b.N*len(bc.members))
	}
	slices.Sort(lat)
	at := func(q float64) float64 { return float64(lat[int(q*float64(len(lat)-1))]) / 1e3 }
	if !oneByOne {
		b.ReportMetric(float64(len(lat))/elapsed.Seconds(), "deliveries/s")
	}
	b.ReportMetric(at(0.5), "p50-µs")
	b.ReportMetric(at(0.99), "p99-µs")
}

// startBenchCluster starts the three nodes (mode "grain": cluster.Node;
// "pubsub": a protoactor cluster with the pub-sub broker) and their
// members, all joined to benchRoom; they stop at the benchmark's end.
func startBenchCluster(b *testing.B, mode string) *benchCluster {
	b.Helper()
	name := fmt.Sprintf("bench-%s-%d", mode, rand.Uint32())
	binds := make([]string, benchNodes)
	for i := range binds {
		ip := fmt.Sprintf("127.0.0.%d", 2+i)
		binds[i] = net.JoinHostPort(ip, strconv.Itoa(freePort(b, ip)))
	}
	log := slog.New(slog.NewTextHandler(b.Output(), &slog.HandlerOptions{Level: slog.LevelError}))
	bc := &benchCluster{}
	var counts []func() int // each node's count of members
	for i := range benchNodes {
		cfg := marmot.ServerConfig{
			Addr:   fmt.Sprintf("127.0.0.%d:0", 2+i),
			Logger: log, LogLevel: slog.LevelError,
			MaxConnections: -1, RoomIdle: time.Hour,
		}
		var srv *marmot.Server
		var stop func()
		var members func() int
		if mode == "grain" {
			srv, stop, members = startGrainNode(b, name, i, binds, cfg)
		} else {
			srv, stop, members = startPubSubNode(b, name, i, binds, cfg)
		}
		b.Cleanup(stop)
		bc.servers = append(bc.servers, srv)
		counts = append(counts, members)
	}
	for _, members := range counts {
		waitFor(b, func() bool { return members() == benchNodes })
	}
	for i, srv := range bc.servers {
		for range benchMembers {
			m := &benchMember{}
			c, err := marmot.NewClient(marmot.ClientConfig{
				URL: srv.URL(), Subprotocol: "marmot.v1",
				ClientEvents: marmot.ClientEvents{OnHandleCommand: func(msg *marmot.Message) { m.receive(bc, msg) }},
			})
			if err != nil {
				b.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
			err = c.Connect(ctx)
			if err == nil {
				err = c.Join(ctx, benchRoom)
			}
			cancel()
			if err != nil {
				b.Fatalf("member on node %d: %v", i+1, err)
			}
			b.Cleanup(func() {
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				defer cancel()
				_ = c.Close(ctx)
			})
			m.client = c
			bc.members = append(bc.members, m)
		}
	}
	return bc
}

func seedsOf(binds []string, i int) []string {
	var s []string
	for j, x := range binds {
		if j != i {
			s = append(s, x)
		}
	}
	return s
}

// startGrainNode starts node i as marmot's cluster package makes it; it
// returns the server, how to stop it and its count of members.
func startGrainNode(b *testing.B, name string, i int, binds []string, cfg marmot.ServerConfig) (*marmot.Server, func(), func() int) {
	node, err := cluster.New(cluster.Config{Name: name, NodeID: uint32(i + 1), Bind: binds[i], Seeds: seedsOf(binds, i), Logger: cfg.Logger}, cfg)
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	if err := node.Start(ctx); err != nil {
		b.Fatal(err)
	}
	stop := func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		_ = node.Stop(ctx)
	}
	return node.Server(), stop, func() int { return len(node.Members()) }
}

func waitFor(b *testing.B, cond func() bool) {
	b.Helper()
	deadline := time.Now().Add(waitTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			b.Fatal("the cluster did not form")
		}
		time.Sleep(20 * time.Millisecond) // polling protoactor's member list: it has no event to wait on here
	}
}

// pubsubEpoch is the pub-sub broker's one epoch: it has no sequencer
// whose runs could be told apart.
const pubsubEpoch = "pubsub"

// pubsubBroker is a marmot.RoomBroker on protoactor's cluster pub-sub:
// one topic per room, one delivery actor per node subscribed to it.
type pubsubBroker struct {
	c       *pcluster.Cluster
	srv     *marmot.Server
	deliver *actor.PID

	mu        sync.Mutex
	offsets   map[string]uint64 // per room: messages delivered here
	producers map[string]*pcluster.BatchingProducer
}

func (p *pubsubBroker) Subscribe(room string) (marmot.RoomPosition, error) {
	if _, err := p.c.SubscribeByPid(room, p.deliver); err != nil {
		return marmot.RoomPosition{}, err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return marmot.RoomPosition{Epoch: pubsubEpoch, Offset: p.offsets[room]}, nil
}

func (p *pubsubBroker) Unsubscribe(room string) {
	go func() { _, _ = p.c.UnsubscribeByPid(room, p.deliver) }()
}

func (p *pubsubBroker) Publish(room string, m *marmot.RoomMessage) (uint64, error) {
	p.mu.Lock()
	prod := p.producers[room]
	if prod == nil {
		prod = p.c.BatchingProducer(room)
		p.producers[room] = prod
	}
	p.mu.Unlock()
	_, err := prod.Produce(context.Background(), &wire.RoomPublishSeq{Room: room, Name: m.Name, Data: m.Data, Meta: m.Meta})
	return 0, err
}

// Receive is the node's delivery actor: it numbers and hands each
// message to the local room.
// History implements marmot.RoomBroker: the benchmark keeps no history.
func (p *pubsubBroker) History(room, epoch string, from, to uint64) ([]marmot.HistoryEntry, error) {
	return nil, &marmot.HistoryGap{Reason: "no history in the pub-sub benchmark"}
}

func (p *pubsubBroker) Receive(ctx actor.Context) {
	if m, ok := ctx.Message().(*wire.RoomPublishSeq); ok {
		p.mu.Lock()
		p.offsets[m.Room]++
		off := p.offsets[m.Room]
		p.mu.Unlock()
		p.srv.DeliverRoom(m.Room, &marmot.RoomMessage{Name: m.Name, Data: m.Data, Meta: m.Meta, Epoch: pubsubEpoch, Offset: off})
	}
}

func (p *pubsubBroker) stop() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, prod := range p.producers {
		prod.Dispose()
	}
}

// startPubSubNode starts node i as a protoactor cluster member configured
// as cluster.Node configures it (automanaged, disthash, the same remote
// queues), with the pub-sub broker as the server's RoomBroker.
func startPubSubNode(b *testing.B, name string, i int, binds []string, cfg marmot.ServerConfig) (*marmot.Server, func(), func() int) {
	host, p, _ := net.SplitHostPort(binds[i])
	port, _ := strconv.Atoi(p)
	var hosts []string
	for _, s := range binds {
		h, hp, _ := net.SplitHostPort(s)
		n, _ := strconv.Atoi(hp)
		hosts = append(hosts, net.JoinHostPort(h, strconv.Itoa(n+1)))
	}
	sys := marmot.NewActorSystem(cfg.Logger)
	provider := automanaged.NewWithConfig(time.Second, port+1, hosts...)
	rc := remote.Configure(host, port, remote.WithEndpointWriterQueueSize(100_000), remote.WithEndpointManagerQueueSize(100_000))
	c := pcluster.New(sys, pcluster.Configure(name, provider, disthash.New(), rc, pcluster.WithRequestTimeout(5*time.Second)))
	c.StartMember()
	br := &pubsubBroker{c: c, offsets: map[string]uint64{}, producers: map[string]*pcluster.BatchingProducer{}}
	br.deliver = sys.Root.Spawn(actor.PropsFromProducer(func() actor.Actor { return br }))
	cfg.ActorSystem, cfg.NodeID, cfg.RoomBroker = sys, uint32(i+1), br
	srv, err := marmot.NewServer(cfg)
	if err != nil {
		b.Fatal(err)
	}
	br.srv = srv
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	if err := srv.Start(ctx); err != nil {
		b.Fatal(err)
	}
	stop := func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		_ = srv.Stop(ctx)
		br.stop()
		c.Shutdown(true)
	}
	return srv, stop, func() int { return len(c.MemberList.Members().Members()) }
}
