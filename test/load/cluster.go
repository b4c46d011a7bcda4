package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	pcluster "github.com/asynkron/protoactor-go/cluster"

	"github.com/marmotws/marmot"
	"github.com/marmotws/marmot/cluster"
)

// The cluster scenarios start marmot servers as the nodes of one
// protoactor cluster (package cluster, automanaged provider), each in its
// own child process ("load server --cluster ..."), on the loopback
// addresses 127.0.0.2, .3, .4 ..., and measure them against a single
// server started the same way without --cluster: same binary, same
// handler, same clients.

// clusterOpts are the server's cluster flags.
type clusterOpts struct {
	Name  string
	Node  uint
	Bind  string
	Seeds string
	Size  int // members to wait for before serving
}

func (c *clusterOpts) register(fs *flag.FlagSet) {
	fs.StringVar(&c.Name, "cluster", "", "marmot: be a node of the cluster called NAME (automanaged provider); needs --cluster-node and --cluster-bind")
	fs.UintVar(&c.Node, "cluster-node", 0, "marmot --cluster: this node's ID, 1 to 999999")
	fs.StringVar(&c.Bind, "cluster-bind", "", "marmot --cluster: host:port of the node's cluster traffic (port+1 is its health endpoint)")
	fs.StringVar(&c.Seeds, "cluster-seeds", "", "marmot --cluster: every node's --cluster-bind, comma-separated")
	fs.IntVar(&c.Size, "cluster-size", 1, "marmot --cluster: members to see before printing the URL (bounded by 60s)")
}

// start makes and starts the node serving cfg, and waits until it sees
// Size members: the scenarios begin with the cluster formed.
func (c *clusterOpts) start(cfg marmot.ServerConfig) (*cluster.Node, error) {
	var seeds []string
	for s := range strings.SplitSeq(c.Seeds, ",") {
		if s != "" && s != c.Bind {
			seeds = append(seeds, s)
		}
	}
	node, err := cluster.New(cluster.Config{
		Name:   c.Name,
		NodeID: uint32(c.Node),
		Bind:   c.Bind,
		Seeds:  seeds,
		Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
	}, cfg)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := node.Start(ctx); err != nil {
		_ = node.Stop(ctx)
		return nil, err
	}
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for len(node.Members()) < c.Size {
		select {
		case <-ctx.Done():
			_ = node.Stop(context.Background())
			return nil, fmt.Errorf("cluster: %d of %d members after 60s", len(node.Members()), c.Size)
		case <-tick.C:
		}
	}
	return node, nil
}

// nodeIP is the loopback address of node i (0-based): 127.0.0.2, .3, ...
// The clients dial from firstClientSource on, so that node and client
// addresses do not mix.
func nodeIP(i int) string { return fmt.Sprintf("127.0.0.%d", 2+i) }

const firstClientSource = 5

// spawnCluster starts n marmot servers in mode as the nodes of one
// cluster, the extra server flags appended, and waits until each sees
// all n. Cluster ports are picked at random below the ephemeral range
// (with the health port after each) and tried up to three times.
func spawnCluster(n int, mode string, extra []string, grainOn int) ([]*child, error) {
	var lastErr error
	for range 3 {
		binds := make([]string, n)
		for try := 0; ; try++ {
			for i := range binds {
				p, err := freeClusterPort(nodeIP(i))
				if err != nil {
					return nil, err
				}
				binds[i] = net.JoinHostPort(nodeIP(i), strconv.Itoa(p))
			}
			if grainOn == 0 || grainNode(binds, loadRoom) == grainOn-1 {
				break
			}
			if try == 1000 {
				return nil, fmt.Errorf("no ports found that put room %q's grain on node %d", loadRoom, grainOn)
			}
		}
		name := fmt.Sprintf("load-%d-%d", os.Getpid(), rand.Uint32())
		nodes := make([]*child, 0, n)
		type started struct {
			i   int
			c   *child
			err error
		}
		ch := make(chan started, n)
		for i := range n {
			args := []string{"--impl", "marmot", "--mode", mode, "--addr", nodeIP(i) + ":0",
				"--cluster", name, "--cluster-node", strconv.Itoa(i + 1), "--cluster-bind", binds[i],
				"--cluster-seeds", strings.Join(binds, ","), "--cluster-size", strconv.Itoa(n)}
			go func() {
				c, err := spawnServer(append(args, extra...)...)
				ch <- started{i, c, err}
			}()
		}
		byIndex := make([]*child, n)
		lastErr = nil
		for range n {
			s := <-ch
			if s.err != nil {
				lastErr = fmt.Errorf("node %d: %w", s.i+1, s.err)
				continue
			}
			byIndex[s.i] = s.c
		}
		for _, c := range byIndex {
			if c != nil {
				nodes = append(nodes, c)
			}
		}
		if lastErr == nil {
			return byIndex, nil
		}
		stopAllChildren(nodes)
	}
	return nil, lastErr
}

// grainNode is the index of the node (by cluster address, binds) that
// hosts room's grain: rendezvous hashing over the members' addresses, as
// protoactor's disthash places it (package cluster's room kind).
func grainNode(binds []string, room string) int {
	ms := make(pcluster.Members, len(binds))
	for i, b := range binds {
		host, port, _ := net.SplitHostPort(b)
		p, _ := strconv.Atoi(port)
		ms[i] = &pcluster.Member{Id: b, Host: host, Port: int32(p), Kinds: []string{"marmot-room"}}
	}
	rdv := pcluster.NewRendezvous()
	rdv.UpdateMembers(ms)
	return slices.Index(binds, rdv.GetByClusterIdentity(pcluster.NewClusterIdentity(room, "marmot-room")))
}

// freeClusterPort picks a port on ip, below the ephemeral range, whose
// next port (the automanaged health endpoint, on every interface) is free
// too. Another process can still take it before the node binds it:
// spawnCluster tries again.
func freeClusterPort(ip string) (int, error) {
	for range 100 {
		port := 20000 + rand.IntN(12000)
		ln, err := net.Listen("tcp", net.JoinHostPort(ip, strconv.Itoa(port)))
		if err != nil {
			continue
		}
		h, err := net.Listen("tcp", fmt.Sprintf("0.0.0.0:%d", port+1))
		_ = ln.Close()
		if err != nil {
			continue
		}
		_ = h.Close()
		return port, nil
	}
	return 0, errors.New("no free cluster port pair")
}

// stopAllChildren stops every child, in parallel (a node takes about 2 s
// to leave its cluster).
func stopAllChildren(cs []*child) error {
	errs := make(chan error, len(cs))
	for _, c := range cs {
		go func() { errs <- c.stop() }()
	}
	var all []error
	for range cs {
		all = append(all, <-errs)
	}
	return errors.Join(all...)
}

func urlsOf(cs []*child) string {
	us := make([]string, len(cs))
	for i, c := range cs {
		us[i] = c.url
	}
	return strings.Join(us, ",")
}

func pidsOf(cs []*child) []int {
	ps := make([]int, len(cs))
	for i, c := range cs {
		ps[i] = c.pid()
	}
	return ps
}
