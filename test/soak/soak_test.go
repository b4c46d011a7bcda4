package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
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

// The CI form of the soak (the README's test command runs it): 60 s of
// publishing while the faults rotate, two server SIGKILLs among them.
// It runs 300 clients rather than 1,000 because under -race every client,
// the proxy and the server (this binary again) cost several times their
// normal CPU, on a 2-core machine shared with the rest of the suite; 300
// keep a full room's fan-out (60 per room) and the whole run near 80 s.
// `go run ./test/soak` is the 1,000-client form, -duration 30m the long
// one. MARMOT_SOAK_CLIENTS and MARMOT_SOAK_DURATION override the figures.
func TestSoak(t *testing.T) {
	cfg := config{Clients: 300, Rooms: 5, Rate: 10, Duration: 60 * time.Second, Seed: 15, Kills: 2, History: 1000, Dir: t.TempDir()}
	if v := os.Getenv("MARMOT_SOAK_CLIENTS"); v != "" {
		if _, err := fmt.Sscan(v, &cfg.Clients); err != nil {
			t.Fatal(err)
		}
	}
	if v := os.Getenv("MARMOT_SOAK_DURATION"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			t.Fatal(err)
		}
		cfg.Duration = d
	}
	// The server runs from a build without -race: the race detector's
	// shadow memory only grows, so the RSS bound would measure it rather
	// than marmot. (The clients and the proxy, here, run with -race when
	// the suite does; the server code runs under -race in its own tests.)
	cfg.ServerExe = filepath.Join(cfg.Dir, "soak-server")
	build := exec.Command("go", "build", "-o", cfg.ServerExe, ".")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
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
	var b strings.Builder
	res.summary(&b)
	t.Log(b.String())
	if f := res.failures(); len(f) > 0 {
		t.Fatalf("soak failed:\n%s", strings.Join(f, "\n"))
	}
	// The faults did happen: every kind, and the clients came back.
	for k := range fault(nFaults) {
		if res.faults[k] == 0 {
			t.Errorf("no %s fault was injected", k)
		}
	}
	if res.faults[faultKill] != int64(cfg.Kills) || len(res.restarts) != cfg.Kills {
		t.Errorf("%d kills, %d restarts; want %d", res.faults[faultKill], len(res.restarts), cfg.Kills)
	}
	if res.recovered == 0 || res.report.Expected == 0 || res.serverCrashes == 0 {
		t.Errorf("nothing was recovered (%d), expected (%d) or crashed (%d)", res.recovered, res.report.Expected, res.serverCrashes)
	}
}
