package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"
)

// A cluster's bounds node by node. The sums over the nodes (run.go) say
// whether the cluster as a whole grew; they do not say which node, and a
// node SIGKILLed and started again is a fresh process whose figures can
// hide a survivor's growth in the sum. So each node is also held to its
// own baseline for its goroutines: its count at the end to its count at
// the start (+goroutineSlack; a restarted node to its first process's,
// which ran the same role: marmot's goroutines do not grow with
// connections). Each node's RSS is reported beside the sum (rssCheck
// says why the bound stays on the sum). The goroutine profiles of the
// two moments are kept so that growth is named: which stacks there are
// more of.

// nodeSnap is one node's figures at one moment.
type nodeSnap struct {
	rss     memory
	clients int // connections it serves
}

// snapshot is the servers' memory at one moment: the sums (the Go
// runtime's view and the resident sets) and each node's.
type snapshot struct {
	mem   goMemory
	rss   memory
	nodes []nodeSnap
}

// each returns every node's stats and resident set.
func (ns nodes) each(ctx context.Context, gc bool) (snapshot, error) {
	var s snapshot
	sum, err := ns.stats(ctx, gc)
	if err != nil {
		return s, err
	}
	s.mem = sum.Mem
	for _, c := range ns {
		st, err := c.stats(ctx, false)
		if err != nil {
			return s, err
		}
		m, err := c.rss()
		if err != nil {
			return s, err
		}
		s.rss.rss += m.rss
		s.rss.anon += m.anon
		s.rss.file += m.file
		s.nodes = append(s.nodes, nodeSnap{rss: m, clients: st.Clients})
	}
	return s, nil
}

// settleNodes samples every node's goroutines for a few seconds (idle
// readers park within two ticks) and returns each node's lowest, early
// once each is at or below its target (targets nil: none, the full
// few seconds).
func settleNodes(ctx context.Context, ns nodes, targets []int) []int {
	low := make([]int, len(ns))
	for i := range low {
		low[i] = -1
	}
	for end := time.Now().Add(5 * time.Second); ; {
		done := targets != nil
		for i, c := range ns {
			if s, err := c.stats(ctx, false); err == nil && (low[i] < 0 || s.Goroutines < low[i]) {
				low[i] = s.Goroutines
			}
			if targets == nil || low[i] < 0 || low[i] > targets[i] {
				done = false
			}
		}
		if done || time.Now().After(end) || ctx.Err() != nil {
			break
		}
		sleep(ctx, 250*time.Millisecond)
	}
	for i := range low {
		low[i] = max(low[i], 0)
	}
	return low
}

func sum(xs []int) int {
	n := 0
	for _, x := range xs {
		n += x
	}
	return n
}

// stacks is a goroutine profile: how many goroutines have each stack
// (its functions, innermost first, one a line).
type stacks map[string]int

// goroutines reads the node's goroutine profile (pprof's debug=1 text).
func (c *child) goroutines(ctx context.Context) (stacks, error) {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+c.control+"/debug/pprof/goroutine?debug=1", nil)
	resp, err := ctlClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("goroutine profile: %s", resp.Status)
	}
	return parseStacks(resp.Body)
}

// parseStacks reads pprof's debug=1 goroutine text: records "N @ addrs"
// followed by "#\taddr\tfunc+off\tfile:line" lines.
func parseStacks(r io.Reader) (stacks, error) {
	out := stacks{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	n := 0
	var fns []string
	flush := func() {
		if n > 0 {
			out[strings.Join(fns, "\n")] += n
		}
		n, fns = 0, nil
	}
	for sc.Scan() {
		line := sc.Text()
		if count, _, ok := strings.Cut(line, " @ "); ok && !strings.HasPrefix(line, "#") {
			flush()
			n, _ = strconv.Atoi(count)
			continue
		}
		if f, ok := strings.CutPrefix(line, "#\t"); ok && n > 0 {
			parts := strings.Split(f, "\t")
			if len(parts) >= 2 {
				fn, _, _ := strings.Cut(parts[1], "+")
				fns = append(fns, fn)
			}
			continue
		}
		if line == "" {
			flush()
		}
	}
	flush()
	return out, sc.Err()
}

// growth names the stacks there are more of in end than in base, most
// first, at most k: "+N goroutines in FUNC (called from CALLER)", where
// FUNC is the stack's first function outside the runtime and sync.
func growth(base, end stacks, k int) []string {
	type grown struct {
		stack string
		n     int
	}
	var gs []grown
	for s, n := range end {
		if d := n - base[s]; d > 0 {
			gs = append(gs, grown{s, d})
		}
	}
	sort.Slice(gs, func(i, j int) bool { return gs[i].n > gs[j].n || gs[i].n == gs[j].n && gs[i].stack < gs[j].stack })
	var out []string
	for _, g := range gs[:min(k, len(gs))] {
		fns := strings.Split(g.stack, "\n")
		i := 0
		for i < len(fns)-1 && (strings.HasPrefix(fns[i], "runtime.") || strings.HasPrefix(fns[i], "sync.") || strings.HasPrefix(fns[i], "internal/")) {
			i++
		}
		where := fns[i]
		if i+1 < len(fns) {
			where += " (called from " + fns[i+1] + ")"
		}
		out = append(out, fmt.Sprintf("+%d in %s", g.n, where))
	}
	return out
}

// profiles reads every node's goroutine profile; a node that does not
// answer has none (nil).
func (ns nodes) profiles(ctx context.Context) []stacks {
	out := make([]stacks, len(ns))
	for i, c := range ns {
		out[i], _ = c.goroutines(ctx)
	}
	return out
}

// saveHeaps writes every node's heap profile (after a GC) to dir as
// heap-N-TAG.pb.gz (N the node, 0 the single server), for `go tool
// pprof -base heap-1-warm.pb.gz heap-1-end.pb.gz`: what a node holds
// more of at the end than at the RSS baseline. A node that does not
// answer is skipped.
func (ns nodes) saveHeaps(ctx context.Context, dir, tag string) {
	for _, c := range ns {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+c.control+"/debug/pprof/heap?gc=1", nil)
		resp, err := ctlClient.Do(req)
		if err != nil {
			continue
		}
		if resp.StatusCode == http.StatusOK {
			if f, err := os.Create(filepath.Join(dir, fmt.Sprintf("heap-%d-%s.pb.gz", c.node, tag))); err == nil {
				_, _ = io.Copy(f, resp.Body)
				_ = f.Close()
			}
		}
		resp.Body.Close()
	}
}
