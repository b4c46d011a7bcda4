package main

import (
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"strings"
	"syscall"
	"testing"
)

// clusterPort picks a port on ip for --cluster-bind whose next port
// (automanaged's health endpoint; checked on every interface) is free too, below
// the kernel's ephemeral range, where other processes' outgoing
// connections would take them between the pick and the node's start.
func clusterPort(t *testing.T, ip string) int {
	t.Helper()
	if ln, err := net.Listen("tcp", ip+":0"); err != nil {
		t.Skipf("loopback address %s unusable: %v", ip, err)
	} else {
		_ = ln.Close()
	}
	for range 200 {
		port := 20000 + rand.IntN(12000)
		ln, err := net.Listen("tcp", fmt.Sprintf("%s:%d", ip, port))
		if err != nil {
			continue
		}
		_ = ln.Close()
		if h, err := net.Listen("tcp", fmt.Sprintf("0.0.0.0:%d", port+1)); err == nil {
			_ = h.Close()
			return port
		}
	}
	t.Fatal("no free port pair")
	return 0
}

// TestBinaryCluster runs two "marmot serve --cluster" processes on
// 127.0.0.2 and .3 in broadcast mode: they see each other, and a line a
// client sends to one node reaches the client of the other.
func TestBinaryCluster(t *testing.T) {
	binds := []string{
		fmt.Sprintf("127.0.0.2:%d", clusterPort(t, "127.0.0.2")),
		fmt.Sprintf("127.0.0.3:%d", clusterPort(t, "127.0.0.3")),
	}
	name := fmt.Sprintf("cli-test-%d", syscall.Getpid())
	var nodes []*binProc
	var urls []string
	for i, bind := range binds {
		p := startBinary(t, "serve", "--mode", "broadcast", "--addr", strings.Split(bind, ":")[0]+":0",
			"--cluster", name, "--cluster-node", fmt.Sprint(i+1), "--cluster-bind", bind, "--cluster-seeds", binds[1-i])
		urls = append(urls, strings.TrimPrefix(p.stdout.expect(t, "marmot listening on "), "marmot listening on "))
		nodes = append(nodes, p)
	}
	for _, p := range nodes {
		for {
			if line := p.stderr.expect(t, "cluster members"); strings.Contains(line, "1@") && strings.Contains(line, "2@") {
				break
			}
		}
	}
	a, b := connect(t, urls[0]), connect(t, urls[1])
	nodes[1].stderr.expect(t, "client=2000000000001")
	a.send(t, "hello from node 1")
	b.stdout.expect(t, "< hello from node 1")
	a.stdout.expect(t, "< hello from node 1")
	for _, p := range nodes {
		if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		if code := p.exitCode(t); code != exitOK {
			t.Fatalf("exit code %d, want 0; stderr:\n%s", code, p.stderr)
		}
	}
}

// TestServeClusterFlags: the cluster flags are checked before anything
// starts.
func TestServeClusterFlags(t *testing.T) {
	for _, args := range [][]string{
		{"--cluster", "c", "--cluster-bind", "127.0.0.2:7001"},
		{"--cluster", "c", "--cluster-node", "1"},
		{"--cluster", "c", "--cluster-node", "1", "--cluster-bind", "127.0.0.2:7001", "--history-store", "bolt:x.db"},
		{"--cluster", "c", "--cluster-node", "1", "--cluster-bind", "127.0.0.2:7001", "--cluster-provider", "zk"},
		{"--cluster", "c", "--cluster-node", "1", "--cluster-bind", "127.0.0.2:7001", "--cluster-provider", "etcd"},
	} {
		var out, errs strings.Builder
		if code := runServe(t.Context(), append(args, "--addr", "127.0.0.1:0"), &out, &errs); code != exitUsage {
			t.Errorf("%v: exit code %d, want %d; stderr: %s", args, code, exitUsage, errs.String())
		}
	}
}

// TestServeClusterAdvertise: --cluster-advertise becomes Config.Advertise,
// defaults to none (the bind address), and an address without a port is a
// usage error.
func TestServeClusterAdvertise(t *testing.T) {
	parse := func(args ...string) *clusterFlags {
		fs := flag.NewFlagSet("serve", flag.ContinueOnError)
		fs.SetOutput(io.Discard)
		c := addClusterFlags(fs)
		if err := fs.Parse(args); err != nil {
			t.Fatalf("%v: %v", args, err)
		}
		return c
	}
	base := []string{"--cluster", "c", "--cluster-node", "1", "--cluster-bind", "127.0.0.2:7001"}
	cfg, err := parse(append(base, "--cluster-advertise", "10.0.0.9:9001")...).config(slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Advertise != "10.0.0.9:9001" || cfg.Bind != "127.0.0.2:7001" {
		t.Fatalf("Advertise %q, Bind %q; want 10.0.0.9:9001, 127.0.0.2:7001", cfg.Advertise, cfg.Bind)
	}
	if cfg, err = parse(base...).config(slog.New(slog.DiscardHandler)); err != nil || cfg.Advertise != "" {
		t.Fatalf("without the flag: Advertise %q, %v; want none", cfg.Advertise, err)
	}
	var out, errs strings.Builder
	args := append(base, "--cluster-advertise", "10.0.0.9", "--addr", "127.0.0.1:0")
	if code := runServe(t.Context(), args, &out, &errs); code != exitUsage {
		t.Fatalf("%v: exit code %d, want %d; stderr: %s", args, code, exitUsage, errs.String())
	}
	if !strings.Contains(errs.String(), "Advertise") {
		t.Fatalf("stderr does not name the bad advertise address: %s", errs.String())
	}
}
