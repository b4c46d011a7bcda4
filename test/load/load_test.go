package main

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// childEnv makes the test binary act as "load server ..." so the
// child-process path can be tested without building the command.
const childEnv = "MARMOT_LOAD_SERVER_CHILD"

// TestMain runs the server subcommand when started as a child, and
// otherwise checks that no goroutine outlives the tests: the in-process
// servers and every client must shut down completely.
func TestMain(m *testing.M) {
	if os.Getenv(childEnv) == "1" {
		raiseFileLimit()
		if err := serverMain(os.Args[2:]); err != nil {
			fmt.Fprintln(os.Stderr, "load server:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	serverExe = func() (string, []string) {
		exe, err := os.Executable()
		if err != nil {
			panic(err)
		}
		return exe, []string{childEnv + "=1"}
	}
	goleak.VerifyTestMain(m)
}

func inProcess(t *testing.T, impl, mode string) target {
	t.Helper()
	s, err := startServer(serverOpts{Impl: impl, Addr: "127.0.0.1:0", Mode: mode})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return target{URL: s.URL(), Impl: impl, Sources: 8, DialConc: 8, MaxDuration: 15 * time.Second}
}

func checkClean(t *testing.T, r *Result) {
	t.Helper()
	if !r.OK() {
		t.Errorf("%s %s not clean: %+v", r.Impl, r.Scenario, *r)
	}
}

// TestScenarios runs a tiny version of every scenario against every
// implementation, in-process.
func TestScenarios(t *testing.T) {
	ctx := context.Background()
	for _, impl := range impls {
		t.Run(impl, func(t *testing.T) {
			t.Parallel()
			t.Run("echo", func(t *testing.T) {
				tg := inProcess(t, impl, modeEcho)
				for _, w := range []int{1, 4} {
					r := runEcho(ctx, tg, echoOpts{Clients: 4, Size: 64, Window: w, Count: 50, Duration: time.Minute})
					checkClean(t, r)
					if r.Msgs != 200 || r.Verified != 200 {
						t.Errorf("window %d: %d msgs, %d verified; want 200", w, r.Msgs, r.Verified)
					}
				}
				r := runEcho(ctx, tg, echoOpts{Clients: 2, Size: 1024, Window: 2, Duration: 100 * time.Millisecond})
				checkClean(t, r)
				if r.Msgs == 0 || r.P99 == 0 {
					t.Errorf("duration-bound echo measured nothing: %+v", *r)
				}
			})
			t.Run("broadcast", func(t *testing.T) {
				r := runBroadcast(ctx, inProcess(t, impl, modeBroadcast), broadcastOpts{Receivers: 4, Count: 20, Size: 64})
				checkClean(t, r)
				if r.Deliveries != 80 {
					t.Errorf("%d deliveries; want 80", r.Deliveries)
				}
			})
			t.Run("connections", func(t *testing.T) {
				r := runConnections(ctx, inProcess(t, impl, modeEcho), connOpts{Conns: 20, Sample: 5, Size: 64})
				checkClean(t, r)
				if r.Connected != 20 || r.SampleOK != 5 {
					t.Errorf("connected %d, sample %d/%d; want 20, 5/5", r.Connected, r.SampleOK, r.Sample)
				}
			})
		})
	}
}

// TestChildProcess drives a server in its own process, as compare does,
// and reads its CPU time and RSS; marmot+gcm checks that the child gets
// the secure profile and the clients the key.
func TestChildProcess(t *testing.T) {
	f := cliFlags{sources: 8, dialConc: 8, maxDuration: 15 * time.Second, key: defaultKey}
	f.echo = echoOpts{Clients: 4, Size: 64, Window: 1, Count: 50, Duration: time.Minute}
	f.bc = broadcastOpts{Receivers: 4, Count: 20}
	for _, run := range []struct{ impl, scenario string }{
		{"gorilla", "echo"}, {"gorilla", "broadcast"}, {"marmot" + gcmSuffix, "echo"},
	} {
		r, err := runAgainst(context.Background(), run.scenario, run.impl, &f)
		if err != nil {
			t.Fatal(err)
		}
		checkClean(t, r)
		if r.Impl != run.impl || r.ServerRSSKiB == 0 {
			t.Errorf("%s %s: impl %q, server RSS %d KiB", run.impl, run.scenario, r.Impl, r.ServerRSSKiB)
		}
	}
}

func TestProcReaders(t *testing.T) {
	cpu, err := procCPU(os.Getpid())
	if err != nil || cpu < 0 {
		t.Errorf("procCPU = %v, %v", cpu, err)
	}
	rss, err := procRSS(os.Getpid())
	if err != nil || rss <= 0 {
		t.Errorf("procRSS = %v, %v", rss, err)
	}
}

func TestComparisonTable(t *testing.T) {
	var f cliFlags
	f.echo = echoOpts{Clients: 2, Size: 64}
	rows := []row{{label: label("echo", &f), scenario: "echo", flags: f}}
	res := map[string]map[string][]*Result{rows[0].label: {
		"marmot": {{MsgsPerSec: 90}, {MsgsPerSec: 110}, {MsgsPerSec: 100}},
		"gws":    {{MsgsPerSec: 200}, {MsgsPerSec: 200}, {MsgsPerSec: 200}},
	}}
	var b strings.Builder
	printComparison(&b, rows, []string{"marmot", "gws"}, res)
	if !strings.Contains(b.String(), "| echo 2 clients × 64 B | msgs/s | 100 (90.0–110) | 200 (200–200) | 0.50× |") {
		t.Errorf("table:\n%s", b.String())
	}
}

// TestEncrypted drives marmot's secure profile (AES-256-GCM) with the
// coder/websocket clients of the plain runs: echo, windowed echo and
// broadcast must be as clean as without encryption.
func TestEncrypted(t *testing.T) {
	ctx := context.Background()
	secure, err := newSecureClient(defaultKey)
	if err != nil {
		t.Fatal(err)
	}
	encrypted := func(t *testing.T, mode string) target {
		t.Helper()
		s, err := startServer(serverOpts{Impl: "marmot", Addr: "127.0.0.1:0", Mode: mode, Encrypt: true, Key: defaultKey, KDFIter: 100_000})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(s.Close)
		return target{URL: s.URL(), Impl: "marmot+gcm", Secure: secure, Sources: 8, DialConc: 8, MaxDuration: 15 * time.Second}
	}
	t.Run("echo", func(t *testing.T) {
		tg := encrypted(t, modeEcho)
		for _, w := range []int{1, 4} {
			r := runEcho(ctx, tg, echoOpts{Clients: 4, Size: 1024, Window: w, Count: 50, Duration: time.Minute})
			checkClean(t, r)
			if r.Msgs != 200 || r.Verified != 200 {
				t.Errorf("window %d: %d msgs, %d verified; want 200", w, r.Msgs, r.Verified)
			}
		}
	})
	t.Run("broadcast", func(t *testing.T) {
		r := runBroadcast(ctx, encrypted(t, modeBroadcast), broadcastOpts{Receivers: 4, Count: 20, Size: 1024})
		checkClean(t, r)
		if r.Deliveries != 80 {
			t.Errorf("%d deliveries; want 80", r.Deliveries)
		}
	})
	t.Run("wrong key", func(t *testing.T) {
		tg := encrypted(t, modeEcho)
		if tg.Secure, err = newSecureClient("not " + defaultKey); err != nil {
			t.Fatal(err)
		}
		r := runEcho(ctx, tg, echoOpts{Clients: 1, Size: 64, Count: 1, Duration: time.Minute})
		if len(r.Errors) == 0 || !strings.Contains(r.Errors[0], "server says "+reasonWrongKey) {
			t.Errorf("errors %q; want the server's %q", r.Errors, reasonWrongKey)
		}
	})
	t.Run("plain client", func(t *testing.T) {
		tg := encrypted(t, modeEcho)
		tg.Secure = nil
		if r := runEcho(ctx, tg, echoOpts{Clients: 1, Size: 64, Count: 1, Duration: time.Minute}); r.OK() {
			t.Errorf("a plain client echoed through an encrypted server: %+v", *r)
		}
	})
}

// TestRoomsScenarios runs tiny versions of publish and recover against
// marmot in-process: every member gets every message of both paths, and
// the recovering client every missed one, in order.
func TestRoomsScenarios(t *testing.T) {
	ctx := context.Background()
	t.Run("publish", func(t *testing.T) {
		rs := runPublish(ctx, inProcess(t, "marmot", modeBroadcast), publishOpts{Members: 5, Count: 30, Size: 64, Rounds: 2})
		if len(rs) != 4 {
			t.Fatalf("%d results, want 4", len(rs))
		}
		for _, r := range rs {
			checkClean(t, r)
			if r.Deliveries != 5*30 || r.DeliveriesPerSec == 0 {
				t.Errorf("%s round %d: %d deliveries, %.0f/s; want 150", r.Impl, r.Round, r.Deliveries, r.DeliveriesPerSec)
			}
		}
		if rs[0].Impl != pathPublish || rs[1].Impl != pathBroadcast || rs[2].Impl != pathBroadcast || rs[3].Impl != pathPublish {
			t.Errorf("phases not interleaved: %s %s %s %s", rs[0].Impl, rs[1].Impl, rs[2].Impl, rs[3].Impl)
		}
	})
	t.Run("recover", func(t *testing.T) {
		s, err := startServer(serverOpts{Impl: "marmot", Addr: "127.0.0.1:0", Mode: modeBroadcast, History: 100})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(s.Close)
		tg := target{URL: s.URL(), Impl: "marmot", Sources: 8, DialConc: 8, MaxDuration: 15 * time.Second}
		r := runRecover(ctx, tg, recoverOpts{Missed: 100, Size: 64}, "r")
		checkClean(t, r)
		if r.Deliveries != 100 || r.Bytes < 100*64 {
			t.Errorf("recovered %d messages in %d bytes; want 100 in at least 6400", r.Deliveries, r.Bytes)
		}
		// Beyond the history: the client is told, never silently short.
		r = runRecover(ctx, tg, recoverOpts{Missed: 101, Size: 64}, "r2")
		if r.OK() || !strings.Contains(strings.Join(r.Errors, ";"), "not recovered") {
			t.Errorf("a gap beyond the history went unreported: %+v", *r)
		}
	})
}

// TestCompressed runs echo and broadcast of 1 KiB JSON with
// permessage-deflate on against every implementation: as clean as plain
// runs, and fewer bytes on the wire than the same run uncompressed.
func TestCompressed(t *testing.T) {
	ctx := context.Background()
	for _, impl := range impls {
		t.Run(impl, func(t *testing.T) {
			t.Parallel()
			start := func(t *testing.T, mode string, compress bool) target {
				t.Helper()
				s, err := startServer(serverOpts{Impl: impl, Addr: "127.0.0.1:0", Mode: mode, Compress: compress})
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(s.Close)
				// Deflate under -race is slow, and the machine may be busy:
				// few messages, a generous bound.
				return target{URL: s.URL(), Impl: impl, Compress: compress, Sources: 8, DialConc: 8, MaxDuration: time.Minute}
			}
			var echoWire, bcWire [2]float64
			for i, compress := range []bool{false, true} {
				r := runEcho(ctx, start(t, modeEcho, compress), echoOpts{Clients: 2, Size: 1024, Window: 2, Count: 20, Duration: time.Minute, JSON: true})
				checkClean(t, r)
				if r.Verified != 40 {
					t.Errorf("compress %v: %d echoes verified; want 40", compress, r.Verified)
				}
				echoWire[i] = r.WireBytesPerMsg
				r = runBroadcast(ctx, start(t, modeBroadcast, compress), broadcastOpts{Receivers: 3, Count: 10, Size: 1024, JSON: true})
				checkClean(t, r)
				if r.Deliveries != 30 {
					t.Errorf("compress %v: %d deliveries; want 30", compress, r.Deliveries)
				}
				bcWire[i] = r.WireBytesPerMsg
			}
			t.Logf("wire bytes per message: echo %.0f plain, %.0f compressed; broadcast %.0f plain, %.0f compressed", echoWire[0], echoWire[1], bcWire[0], bcWire[1])
			// Plain: a 1 KiB message and its frame headers each way.
			if echoWire[0] < 2*1024 || echoWire[1] > echoWire[0]/2 || bcWire[0] < 1024 || bcWire[1] > bcWire[0]/2 {
				t.Errorf("wire bytes per message: echo %.0f plain, %.0f compressed; broadcast %.0f plain, %.0f compressed", echoWire[0], echoWire[1], bcWire[0], bcWire[1])
			}
		})
	}
}

// TestHTTPScenario runs the echo over marmot's HTTP fallback transport,
// in-process, with the load tool's own client of docs/HTTP.md.
func TestHTTPScenario(t *testing.T) {
	tg := inProcess(t, "marmot", modeEcho)
	tg.HTTP = true
	for _, w := range []int{1, 4} {
		r := runEcho(context.Background(), tg, echoOpts{Clients: 4, Size: 64, Window: w, Count: 30, Duration: time.Minute})
		checkClean(t, r)
		if r.Msgs != 120 || r.Verified != 120 {
			t.Errorf("window %d: %d msgs, %d verified; want 120", w, r.Msgs, r.Verified)
		}
	}
}
