package main

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"time"

	"github.com/marmotws/marmot/chaos"
)

// nodes are the soak's server processes: one server, or with -cluster
// the nodes of a cluster on 127.0.0.2, .3, .4..., each behind its own
// chaos proxy. Their figures are summed.
type nodes []*child

// clusterIP is the loopback address of node i (from 0): 127.0.0.2 on.
func clusterIP(i int) string { return fmt.Sprintf("127.0.0.%d", 2+i) }

// makeNodes describes the server processes of cfg (not started).
func makeNodes(cfg config, exe, dir, otlp string) (nodes, error) {
	base := child{exe: exe, otlp: otlp, maxConn: cfg.Clients + cfg.Rooms + 100, history: cfg.History}
	if cfg.Nodes == 0 {
		c := base
		var err error
		if c.addr, err = freeAddr(); err != nil {
			return nil, err
		}
		if c.control, err = freeAddr(); err != nil {
			return nil, err
		}
		c.db, c.logPath = filepath.Join(dir, "rooms.db"), filepath.Join(dir, "server.log")
		return nodes{&c}, nil
	}
	ns := make(nodes, cfg.Nodes)
	// The health ports listen on every interface: no port is used twice.
	taken := map[int]bool{}
	for i := range ns {
		c := base
		ip := clusterIP(i)
		var err error
		if c.bind, err = freeBind(ip, taken); err != nil {
			return nil, fmt.Errorf("node %d on %s: %w", i+1, ip, err)
		}
		if c.addr, err = freeAddrNotIn(ip, taken); err != nil {
			return nil, err
		}
		if c.control, err = freeAddrNotIn(ip, taken); err != nil {
			return nil, err
		}
		c.node = i + 1
		c.db, c.logPath = filepath.Join(dir, fmt.Sprintf("rooms-%d.db", i+1)), filepath.Join(dir, fmt.Sprintf("node-%d.log", i+1))
		ns[i] = &c
	}
	for i, c := range ns {
		for j, o := range ns {
			if j != i {
				c.seeds = append(c.seeds, o.bind)
			}
		}
	}
	return ns, nil
}

// start starts every node and, in a cluster, waits until each sees all.
func (ns nodes) start(ctx context.Context) error {
	for _, c := range ns {
		if err := c.start(ctx); err != nil {
			return err
		}
	}
	return ns.formed(ctx)
}

// formed waits (up to a minute) until every node of a cluster counts all
// the nodes as members.
func (ns nodes) formed(ctx context.Context) error {
	if len(ns) < 2 || ns[0].node == 0 {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	for {
		all := true
		for _, c := range ns {
			if s, err := c.stats(ctx, false); err != nil || s.Members != len(ns) {
				all = false
				break
			}
		}
		if all {
			return nil
		}
		select {
		case <-ctx.Done():
			return errors.New("the cluster did not form (every node seeing every other) within a minute")
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func (ns nodes) stop(grace time.Duration) {
	for _, c := range ns {
		c.stop(grace)
	}
}

// stats sums the nodes' figures (Members: the fewest any node sees).
func (ns nodes) stats(ctx context.Context, gc bool) (serverStats, error) {
	var sum serverStats
	for i, c := range ns {
		s, err := c.stats(ctx, gc)
		if err != nil {
			return sum, err
		}
		sum.Goroutines += s.Goroutines
		sum.Clients += s.Clients
		sum.Sessions += s.Sessions
		sum.Faults.Panics += s.Faults.Panics
		sum.Faults.Crashes += s.Faults.Crashes
		m := &sum.Mem
		m.HeapAlloc += s.Mem.HeapAlloc
		m.HeapInuse += s.Mem.HeapInuse
		m.HeapIdle += s.Mem.HeapIdle
		m.HeapReleased += s.Mem.HeapReleased
		m.StackInuse += s.Mem.StackInuse
		m.MSpanInuse += s.Mem.MSpanInuse
		m.MCacheInuse += s.Mem.MCacheInuse
		m.GCSys += s.Mem.GCSys
		m.OtherSys += s.Mem.OtherSys
		m.BuckHashSys += s.Mem.BuckHashSys
		if i == 0 || s.Members < sum.Members {
			sum.Members = s.Members
		}
	}
	return sum, nil
}

// post posts path to every node.
func (ns nodes) post(ctx context.Context, path string) error {
	for _, c := range ns {
		if err := c.post(ctx, path); err != nil {
			return err
		}
	}
	return nil
}

// logTail is the end of every node's log.
func (ns nodes) logTail() string {
	var b strings.Builder
	for _, c := range ns {
		if c.node > 0 {
			fmt.Fprintf(&b, "node %d:\n", c.node)
		}
		b.WriteString(c.logTail())
	}
	return b.String()
}

// proxies are the chaos proxies, one per node; a wire fault goes to all.
type proxies []*chaos.Proxy

func (ps proxies) resetAll() {
	for _, p := range ps {
		p.ResetAll()
	}
}

func (ps proxies) set(f chaos.Faults) error {
	for _, p := range ps {
		if err := p.Set(f); err != nil {
			return err
		}
	}
	return nil
}

func (ps proxies) conns() int {
	n := 0
	for _, p := range ps {
		n += len(p.Conns())
	}
	return n
}

func (ps proxies) counts() chaos.Counts {
	var sum chaos.Counts
	for _, p := range ps {
		c := p.Counts()
		sum.Accepted += c.Accepted
		sum.Refused += c.Refused
		sum.Resets += c.Resets
		sum.Changes += c.Changes
	}
	return sum
}

func (ps proxies) close() {
	for _, p := range ps {
		_ = p.Close()
	}
}

// urls are the proxies' WebSocket URLs.
func (ps proxies) urls() []string {
	out := make([]string, len(ps))
	for i, p := range ps {
		out[i] = "ws://" + p.Addr().String() + "/websocket"
	}
	return out
}
