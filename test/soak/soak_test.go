package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// TestMain runs the soak's server when this test binary is started as
// its child process, and checks for leaked goroutines otherwise.
func TestMain(m *testing.M) {
	if os.Getenv(envRole) == "server" {
		flag.Parse()
		if err := serveChild(); err != nil {
			os.Stderr.WriteString("soak server: " + err.Error() + "\n")
			os.Exit(1)
		}
		os.Exit(0)
	}
	goleak.VerifyTestMain(m)
}

// buildSoak builds this command without -race into dir: the race
// detector's shadow memory only grows, so the RSS bound would measure it
// rather than marmot, and it multiplies the CPU of every client.
func buildSoak(t *testing.T, dir string) string {
	t.Helper()
	exe := filepath.Join(dir, "soak")
	if out, err := exec.Command("go", "build", "-o", exe, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return exe
}

// envInt and envDuration read an override of a figure from the
// environment.
func envInt(t *testing.T, name string, def int) int {
	if v := os.Getenv(name); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		return n
	}
	return def
}

func envDuration(t *testing.T, name string, def time.Duration) time.Duration {
	if v := os.Getenv(name); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		return d
	}
	return def
}

// TestSoak is the CI form of the soak at the size (the README's
// test command runs it): 1,000 clients in 10 rooms, publishers sending
// for 60 s while the faults rotate, two server SIGKILLs among them, seed
// 15. It runs the soak as a process built without -race (`go build`
// here), as the cluster tests run their nodes, and asserts its verdict
// (the JSON of -result): under -race beside the rest of the suite on a
// 2-core machine, 1,000 clients in this process starved the publishers.
// marmot's client, the proxy and the soak's own code stay under -race in
// TestSoakRace (a small in-process run) and in their packages' tests.
// MARMOT_SOAK_CLIENTS, MARMOT_SOAK_ROOMS, MARMOT_SOAK_DURATION,
// MARMOT_SOAK_SEED and MARMOT_SOAK_KILLS override the figures.
func TestSoak(t *testing.T) {
	runSoak(t, soakRun{clients: 1000, rooms: 10, duration: 60 * time.Second, seed: 15, kills: 2}, "MARMOT_SOAK")
}

// TestSoakCluster is the issue's soak "with the cluster, a node killed
// and restarted", in CI: three cluster nodes on 127.0.0.2-4, each behind
// its chaos proxy, 300 clients in 5 rooms failing over between them,
// publishers sending for 60 s while the faults rotate, a node SIGKILLed
// and started again among them, seed 15 (node 3). It asserts the same
// verdict as TestSoak, node by node where one process's figure does not
// carry over to a cluster (pernode.go): each node's goroutines back to
// its own baseline, the cluster's RSS within 10 %, every re-join
// recovered, every fault in the trace. 300 clients and one kill keep
// CI's total in bounds on 2 cores (about 80 s) and to what the issue
// asks; the rest is on demand with MARMOT_SOAK_CLUSTER_CLIENTS, _ROOMS,
// _DURATION, _SEED, _NODES and _KILLS (the size: 1000, 10; two
// kills are go run ./test/soak -cluster's default, docs/FAULTS.md).
func TestSoakCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("-short")
	}
	runSoak(t, soakRun{clients: 300, rooms: 5, duration: 60 * time.Second, seed: 15, kills: 1, nodes: 3}, "MARMOT_SOAK_CLUSTER")
}

// soakRun is one soak run as a process: its figures, which the
// environment variables PREFIX_CLIENTS, _ROOMS, _DURATION, _SEED, _KILLS
// and (in a cluster) _NODES override.
type soakRun struct {
	clients, rooms int
	duration       time.Duration
	seed           int
	kills          int
	nodes          int // 0: one server
}

// runSoak builds the soak, runs it with -result and asserts its verdict.
func runSoak(t *testing.T, r soakRun, env string) {
	dir := t.TempDir()
	exe := buildSoak(t, dir)
	duration := envDuration(t, env+"_DURATION", r.duration)
	resultPath := filepath.Join(dir, "result.json")
	r.kills = envInt(t, env+"_KILLS", r.kills)
	args := []string{
		"-clients", strconv.Itoa(envInt(t, env+"_CLIENTS", r.clients)),
		"-rooms", strconv.Itoa(envInt(t, env+"_ROOMS", r.rooms)),
		"-rate", "10", "-duration", duration.String(), "-seed", strconv.Itoa(envInt(t, env+"_SEED", r.seed)),
		"-kills", strconv.Itoa(r.kills), "-history", "1000",
		"-dir", dir, "-result", resultPath,
	}
	if r.nodes > 0 {
		args = append(args, "-cluster", "-nodes", strconv.Itoa(envInt(t, env+"_NODES", r.nodes)))
	}
	ctx, cancel := context.WithTimeout(context.Background(), duration+6*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, exe, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout = &stdout
	cmd.Stderr = &stderr
	if testing.Verbose() {
		cmd.Stderr = os.Stderr // the progress line, every 5 s
	}
	// SIGINT first: the soak stops its servers; they die with it anyway.
	cmd.Cancel = func() error { return cmd.Process.Signal(os.Interrupt) }
	cmd.WaitDelay = 30 * time.Second
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	start := time.Now()
	runErr := cmd.Run()
	t.Logf("soak %s: %v in %s", strings.Join(args, " "), runErr, time.Since(start).Round(time.Second))
	b, err := os.ReadFile(resultPath)
	if err != nil {
		t.Fatalf("no result (%v): %v\nstdout:\n%s\nstderr:\n%s", runErr, err, stdout.String(), tail(stderr.String(), 4000))
	}
	var o outcome
	if err := json.Unmarshal(b, &o); err != nil {
		t.Fatal(err)
	}
	t.Log(o.Summary)
	checkOutcome(t, o, r.kills)
	if runErr != nil && !t.Failed() {
		t.Errorf("the soak exited with %v though its verdict passed", runErr)
	}
}

// checkOutcome asserts a soak's verdict, and that it was a soak: every
// kind of fault injected, kills many SIGKILLs each followed by a restart,
// connection actors crashed, deliveries expected and re-joins recovered.
func checkOutcome(t *testing.T, o outcome, kills int) {
	t.Helper()
	if len(o.Verdict) == 0 {
		t.Fatal("no verdict")
	}
	for _, c := range o.Verdict {
		if !c.Pass {
			t.Errorf("%s: %s", c.Name, c.Detail)
		}
	}
	for f := range fault(nFaults) {
		if o.Faults[f.String()] == 0 {
			t.Errorf("no %s fault was injected", f)
		}
	}
	if o.Faults[faultKill.String()] != int64(kills) || o.Restarts != kills {
		t.Errorf("%d kills, %d restarts; want %d", o.Faults[faultKill.String()], o.Restarts, kills)
	}
	if o.Recovered == 0 || o.Expected == 0 || o.Crashes == 0 || o.Acked == 0 {
		t.Errorf("nothing was recovered (%d), expected (%d), crashed (%d) or acked (%d)", o.Recovered, o.Expected, o.Crashes, o.Acked)
	}
}

// TestSoakRace runs a small soak in this process, so that under -race
// the soak's own code, marmot's client (reconnecting, recovering, failing
// requests over) and the chaos proxy run through every fault with the
// race detector on: 100 clients in 4 rooms, 36 s (the shortest run with
// one round of faults before its one SIGKILL), seed 16. Its server is
// the build without -race, as in TestSoak.
func TestSoakRace(t *testing.T) {
	if testing.Short() {
		t.Skip("-short")
	}
	cfg := config{Clients: 100, Rooms: 4, Rate: 10, Duration: 36 * time.Second, Seed: 16, Kills: 1, History: 1000, Dir: t.TempDir()}
	cfg.ServerExe = buildSoak(t, cfg.Dir)
	if testing.Verbose() {
		cfg.Progress = os.Stderr
	}
	ctx, cancel := context.WithTimeout(context.Background(), cfg.Duration+5*time.Minute)
	defer cancel()
	res, err := run(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	finish(res)
	o := res.outcome()
	t.Log(o.Summary)
	checkOutcome(t, o, cfg.Kills)
}

// tail is the end of s, at most n bytes.
func tail(s string, n int) string {
	if len(s) > n {
		return "...\n" + s[len(s)-n:]
	}
	return s
}
