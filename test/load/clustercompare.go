package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"
)

// The cluster comparisons (load compare --scenario cluster-publish |
// cluster-connections): N marmot nodes in a cluster against one marmot
// server, each started fresh for every run, alternated round by round.
//
// cluster-publish has two rows. Throughput: Receivers members join one
// room, spread evenly over the nodes (Receivers/N each) or all on the
// single server; a publisher on node 1 publishes Count messages as fast
// as it can write; deliveries/s from the first send to the last delivery.
// Latency: fewer members, the publisher paced at --latency-rate, so the
// machine is not saturated; the cluster's members are split into those
// on the publisher's node (same node) and those on the other nodes
// (cross-node). Both go through the room's grain, wherever rendezvous
// hashing put it: node 1 hands the message to the grain, the grain to
// every node, node 1 included, so the same-node members are spared a
// network hop only when the grain lives on node 1.
//
// cluster-connections: every node holds Conns idle connections at once,
// each node's from its own client process (a process has 20,000 file
// descriptors here) dialling from loopback source addresses of its own,
// one per connsPerSource connections; then the single server alone holds
// Conns. Per node: RSS per connection
// and the RSS with the cluster on against off at the same count.

// clusterFlags are the cluster comparisons' own flags.
type clusterFlags struct {
	nodes      int
	latMembers int
	latCount   int
	latRate    float64
	grainOn    int
}

func (c *clusterFlags) register(fs *flag.FlagSet) {
	fs.IntVar(&c.nodes, "nodes", 3, "cluster-*: nodes in the cluster (127.0.0.2, .3, ...)")
	fs.IntVar(&c.latMembers, "latency-receivers", 30, "cluster-publish: members in the paced latency row")
	fs.IntVar(&c.latCount, "latency-count", 500, "cluster-publish: messages in the paced latency row")
	fs.Float64Var(&c.latRate, "latency-rate", 50, "cluster-publish: messages per second in the paced latency row")
	fs.IntVar(&c.grainOn, "grain-on", 0, "cluster-publish: the node (1 to --nodes) that hosts the room's grain, by the choice of the nodes' ports (0: wherever rendezvous hashing puts it); 1 is the publisher's node")
}

// Names of the configurations.
func clusterName(nodes int) string { return fmt.Sprintf("%d nodes", nodes) }

const singleName = "1 node"

func configName(nodes int) string {
	if nodes > 1 {
		return clusterName(nodes)
	}
	return singleName
}

// configOrder is the cluster and the single server in the order of
// round: swapped every other round, so neither always goes first.
func configOrder(nodes, round int) []int {
	if round%2 == 1 {
		return []int{1, nodes}
	}
	return []int{nodes, 1}
}

// clusterCompare runs scenario ("cluster-publish" or
// "cluster-connections") for rounds rounds.
func clusterCompare(scenario string, f cliFlags, c clusterFlags, rounds int) error {
	if c.grainOn < 0 || c.grainOn > c.nodes {
		return fmt.Errorf("--grain-on %d: 0 or a node, 1 to %d", c.grainOn, c.nodes)
	}
	if c.nodes < 2 || c.nodes > firstClientSource-2 {
		return fmt.Errorf("--nodes %d: 2 to %d (the nodes take 127.0.0.2 on, the clients 127.0.0.%d on)", c.nodes, firstClientSource-2, firstClientSource)
	}
	if f.sourceBase < firstClientSource {
		f.sourceBase = firstClientSource
	}
	switch scenario {
	case "cluster-publish":
		return clusterPublishCompare(f, c, rounds)
	case "cluster-connections":
		return clusterConnectionsCompare(f, c, rounds)
	}
	return fmt.Errorf("unknown scenario %q", scenario)
}

// startConfig starts the servers of one configuration: nodes > 1 a
// cluster, 1 a single server on nodeIP(0).
// grainOn, when not 0, is the node that hosts the room's grain.
func startConfig(nodes int, mode string, f *cliFlags, grainOn int) ([]*child, error) {
	extra := strings.Fields(f.serverArgs)
	if nodes > 1 {
		return spawnCluster(nodes, mode, extra, grainOn)
	}
	c, err := spawnServer(append([]string{"--impl", "marmot", "--mode", mode, "--addr", nodeIP(0) + ":0"}, extra...)...)
	if err != nil {
		return nil, err
	}
	return []*child{c}, nil
}

func clusterPublishCompare(f cliFlags, c clusterFlags, rounds int) error {
	ctx := context.Background()
	cname := clusterName(c.nodes)
	thr := row{label: fmt.Sprintf("room publish, %d members × %d msgs of %d B, as fast as possible", f.bc.Receivers, f.bc.Count, f.echo.Size), scenario: "publish"}
	lat := row{label: fmt.Sprintf("room publish, %d members × %d msgs of %d B, paced at %g/s", c.latMembers, c.latCount, f.echo.Size, c.latRate), scenario: "publish-latency"}
	rowOpts := map[string]publishOpts{
		thr.label: {Members: f.bc.Receivers, Count: f.bc.Count, Size: f.echo.Size, Rounds: 1, RoomOnly: true},
		lat.label: {Members: c.latMembers, Count: c.latCount, Size: f.echo.Size, Rounds: 1, RoomOnly: true, Rate: c.latRate},
	}
	results := map[string]map[string][]*Result{thr.label: {}, lat.label: {}}
	load0 := loadAvg()
	for round := range rounds {
		for _, rw := range []row{thr, lat} {
			for _, nodes := range configOrder(c.nodes, round) {
				name := configName(nodes)
				fmt.Fprintf(os.Stderr, "round %d/%d  %-70s %-8s load %s\n", round+1, rounds, rw.label, name, loadAvg())
				servers, err := startConfig(nodes, modeBroadcast, &f, c.grainOn)
				if err != nil {
					return fmt.Errorf("%s: %w", name, err)
				}
				t, err := f.target(name, urlsOf(servers), 0, false, false)
				if err != nil {
					_ = stopAllChildren(servers)
					return err
				}
				pids := pidsOf(servers)
				t.PID, t.PIDs = pids[0], pids[1:]
				rs := runPublish(ctx, t, rowOpts[rw.label])
				if err := stopAllChildren(servers); err != nil {
					rs[0].addErr("server exit: %v", err)
				}
				for _, r := range rs {
					r.Round = round + 1
					switch r.Impl {
					case pathPublish:
						r.Impl = name
					case pathPublish + " " + whereSame:
						r.Impl = name + " " + whereSame
					case pathPublish + " " + whereCross:
						r.Impl = name + " " + whereCross
					}
					fmt.Fprintf(os.Stderr, "    %-24s %s\n", r.Impl, summary(r))
					if f.json {
						r.writeJSON(os.Stdout)
					}
					results[rw.label][r.Impl] = append(results[rw.label][r.Impl], r)
				}
			}
		}
	}
	fmt.Printf("\nload average before: %s, after: %s\n\n", load0, loadAvg())
	printComparison(os.Stdout, []row{thr}, []string{cname, singleName}, results)
	fmt.Println()
	printComparison(os.Stdout, []row{lat}, []string{cname + " " + whereCross, cname + " " + whereSame, singleName}, results)
	return checkRuns(results)
}

// checkRuns is reportRuns over every run of a comparison.
func checkRuns(results map[string]map[string][]*Result) error {
	var all []*Result
	for _, byImpl := range results {
		for _, rs := range byImpl {
			all = append(all, rs...)
		}
	}
	return reportRuns(all)
}

// holdUntilStdinCloses is the connections scenario's Hold in a client
// child: it prints the result on stdout, marked "held ", and waits for
// the parent to close stdin.
func holdUntilStdinCloses(r *Result) {
	b, _ := json.Marshal(r)
	fmt.Printf("held %s\n", b)
	_, _ = io.Copy(io.Discard, os.Stdin)
}

// heldClient is a "load connections --hold" child process.
type heldClient struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	held  chan *Result // the result once its connections are open, or nil
	done  chan error
}

// spawnHeld starts a client child opening conns idle connections to url
// (whose server is pid) from sources source addresses starting at
// 127.0.0.base.
func spawnHeld(f *cliFlags, url string, pid, conns, base, sources int) (*heldClient, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(exe, "connections", "--url", url, "--pid", strconv.Itoa(pid), "--conns", strconv.Itoa(conns),
		"--sample", strconv.Itoa(f.conn.Sample), "--settle", f.conn.Settle.String(), "--max-duration", f.maxDuration.String(),
		"--dial-concurrency", strconv.Itoa(f.dialConc), "--sources", strconv.Itoa(sources), "--source-base", strconv.Itoa(base), "--hold")
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	h := &heldClient{cmd: cmd, stdin: stdin, held: make(chan *Result, 1), done: make(chan error, 1)}
	go func() {
		sc := bufio.NewScanner(stdout)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		sent := false
		for sc.Scan() {
			if rest, ok := strings.CutPrefix(sc.Text(), "held "); ok && !sent {
				var r Result
				if json.Unmarshal([]byte(rest), &r) == nil {
					h.held <- &r
					sent = true
				}
			}
		}
		if !sent {
			h.held <- nil
		}
		h.done <- cmd.Wait()
	}()
	return h, nil
}

// release closes the child's stdin, so it closes its connections and
// exits; killed after 60 s.
func (h *heldClient) release() error {
	_ = h.stdin.Close()
	select {
	case err := <-h.done:
		return err
	case <-time.After(60 * time.Second):
		_ = h.cmd.Process.Kill()
		<-h.done
		return errors.New("client did not exit within 60s; killed")
	}
}

// connsPerSource is how many connections one source address carries
// towards one server: well inside the 28,000 ephemeral ports.
const connsPerSource = 5000

// holdConfig starts nodes servers (a cluster, or one server), has one
// client child per server open conns connections to it, and, once every
// child holds its connections, reads each server's RSS. It returns one
// result per server: the child's (connect rate, sample, RSS growth while
// it dialled) with RSSKiB replaced by the RSS with every server's
// connections open at once.
func holdConfig(nodes int, f *cliFlags, conns int) ([]*Result, error) {
	servers, err := startConfig(nodes, modeEcho, f, 0)
	if err != nil {
		return nil, err
	}
	defer func() { _ = stopAllChildren(servers) }()
	base := make([]int64, len(servers))
	for i, s := range servers {
		base[i], _ = procRSS(s.pid())
	}
	sources := (conns + connsPerSource - 1) / connsPerSource
	var clients []*heldClient
	defer func() {
		for _, h := range clients {
			_ = h.release()
		}
	}()
	for i, s := range servers {
		h, err := spawnHeld(f, s.url, s.pid(), conns, f.sourceBase+i*sources, sources)
		if err != nil {
			return nil, err
		}
		clients = append(clients, h)
	}
	out := make([]*Result, len(servers))
	for i, h := range clients {
		r := <-h.held
		if r == nil {
			return nil, fmt.Errorf("client of server %d ended without holding its connections", i+1)
		}
		out[i] = r
	}
	for i, s := range servers {
		out[i].RSSBaseKiB = base[i]
		out[i].RSSKiB, _ = procRSS(s.pid())
		out[i].KiBPerConn = float64(out[i].RSSKiB-base[i]) / float64(max(out[i].Connected, 1))
	}
	for i, h := range clients {
		if err := h.release(); err != nil {
			out[i].addErr("client: %v", err)
		}
	}
	clients = nil
	return out, nil
}

func clusterConnectionsCompare(f cliFlags, c clusterFlags, rounds int) error {
	cname := clusterName(c.nodes)
	rw := row{label: fmt.Sprintf("idle connections %d per node", f.conn.Conns), scenario: "cluster-connections"}
	results := map[string]map[string][]*Result{rw.label: {}}
	load0 := loadAvg()
	for round := range rounds {
		for _, nodes := range configOrder(c.nodes, round) {
			name := configName(nodes)
			fmt.Fprintf(os.Stderr, "round %d/%d  %s × %d idle connections, load %s\n", round+1, rounds, name, f.conn.Conns, loadAvg())
			rs, err := holdConfig(nodes, &f, f.conn.Conns)
			if err != nil {
				return fmt.Errorf("%s: %w", name, err)
			}
			var total, connected int64
			for i, r := range rs {
				r.Round, r.Impl = round+1, name
				if nodes > 1 {
					r.Impl = fmt.Sprintf("%s, node %d", name, i+1)
				}
				total += r.RSSKiB
				connected += int64(r.Connected)
				fmt.Fprintf(os.Stderr, "    %-16s %s  RSS %d → %d KiB\n", r.Impl, summary(r), r.RSSBaseKiB, r.RSSKiB)
				if f.json {
					r.writeJSON(os.Stdout)
				}
				r.Impl = name // the table's column: every node of the cluster
				results[rw.label][name] = append(results[rw.label][name], r)
			}
			fmt.Fprintf(os.Stderr, "    %s: %d connections held at once, servers' RSS %d KiB in all\n", name, connected, total)
		}
	}
	fmt.Printf("\nload average before: %s, after: %s\n\n", load0, loadAvg())
	printComparison(os.Stdout, []row{rw}, []string{cname, singleName}, results)
	fmt.Println()
	fmt.Println("(the cluster's column is over every node of every round; the cluster's overhead per node is")
	fmt.Println("its server RSS against the single server's, both holding the same count)")
	return checkRuns(results)
}
