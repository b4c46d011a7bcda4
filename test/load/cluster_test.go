package main

import (
	"context"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"
)

// TestClusterScenarios runs tiny versions of compare --scenario
// cluster-publish and cluster-connections end to end: the tool built
// without -race (cluster nodes run protoactor, whose own races -race
// reports; docs/CLUSTER.md), three node processes on 127.0.0.2–.4 and a
// single server, clients from 127.0.0.5 on. Every run must be clean and
// the tables must hold every configuration.
func TestClusterScenarios(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the tool and starts clusters")
	}
	bin := filepath.Join(t.TempDir(), "load")
	build := exec.Command(filepath.Join(runtime.GOROOT(), "bin", "go"), "build", "-o", bin, ".")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	for _, tc := range []struct {
		args []string
		want []string
	}{
		{
			[]string{"--scenario", "cluster-publish", "--rounds", "1", "--receivers", "30", "--count", "20",
				"--latency-receivers", "6", "--latency-count", "10", "--latency-rate", "200", "--max-duration", "60s"},
			[]string{"| 3 nodes | 1 node |", "| 3 nodes cross-node | 3 nodes same node | 1 node |",
				"| 0 / 0 / 0 / 0 | 0 / 0 / 0 / 0 |", "| 0 / 0 / 0 / 0 | 0 / 0 / 0 / 0 | 0 / 0 / 0 / 0 |"},
		},
		{
			[]string{"--scenario", "cluster-connections", "--rounds", "1", "--conns", "40", "--sample", "4", "--settle", "0s", "--max-duration", "60s"},
			// Every node's connections held at once, and the single server's.
			[]string{"| 12 of 12 / 120 of 120 / 0 | 4 of 4 / 40 of 40 / 0 |"},
		},
	} {
		t.Run(tc.args[1], func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
			defer cancel()
			cmd := exec.CommandContext(ctx, bin, append([]string{"compare"}, tc.args...)...)
			var stderr strings.Builder
			cmd.Stderr = &stderr
			out, err := cmd.Output()
			if err != nil {
				t.Fatalf("%v\nstdout:\n%s\nstderr:\n%s", err, out, stderr.String())
			}
			for _, w := range tc.want {
				if !strings.Contains(string(out), w) {
					t.Errorf("no %q in the output:\n%s", w, out)
				}
			}
		})
	}
}
