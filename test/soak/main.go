// Command soak runs marmot through rotating faults and checks that no
// room message is lost, duplicated, reordered or corrupted (issue #15):
// clients in rooms with recovery and the bolt history store, behind the
// chaos proxy, publishers sending while faults rotate (resets, a 2 s
// blackhole, a bandwidth cap, handler panics in random connection actors,
// the server process SIGKILLed and restarted). It prints a progress line
// while it runs and a summary table at the end, and exits 1 when the
// outcome falls short: any anomaly from the checker (chaos/delivery),
// server RSS at the end more than 10 % over its size after warm-up, or
// goroutines not back to their baseline.
//
//	go run ./test/soak                          # 1,000 clients, 60 s
//	go run ./test/soak -duration 30m            # the long form
//	go run ./test/soak -seed 7                  # the same fault schedule and targets again
//	go run ./test/soak -cluster -clients 300    # three cluster nodes; a node killed and restarted
//	go run ./test/soak -result out.json         # the verdict and its figures as JSON, too
//
// The server is this binary run again as a child process (MARMOT_SOAK_ROLE).
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"time"
)

func main() {
	if os.Getenv(envRole) == "server" {
		if err := serveChild(); err != nil {
			fmt.Fprintln(os.Stderr, "soak server:", err)
			os.Exit(1)
		}
		return
	}
	var cfg config
	flag.IntVar(&cfg.Clients, "clients", 1000, "receiving clients")
	flag.IntVar(&cfg.Rooms, "rooms", 10, "rooms, one publisher each")
	flag.Float64Var(&cfg.Rate, "rate", 10, "messages per second per room")
	flag.DurationVar(&cfg.Duration, "duration", 60*time.Second, "how long publishers send while faults rotate (30m for the long form)")
	flag.Uint64Var(&cfg.Seed, "seed", uint64(time.Now().UnixNano()%1e6), "seed of the fault schedule and targets")
	flag.IntVar(&cfg.Kills, "kills", 2, "server SIGKILLs and restarts")
	flag.IntVar(&cfg.History, "history", 1000, "messages each room keeps in the bolt history")
	cluster := flag.Bool("cluster", false, "run a cluster (-nodes nodes on 127.0.0.2 on, clients spread over them with failover) instead of one server; -kills then kills nodes")
	nodes := flag.Int("nodes", 3, "nodes of the -cluster")
	flag.StringVar(&cfg.Dir, "dir", "", "directory for the bolt file and the server log (default: a temporary one)")
	resultPath := flag.String("result", "", "write the verdict and its figures to this file as JSON (TestSoak reads it)")
	flag.Parse()
	if *cluster {
		cfg.Nodes = max(*nodes, 1)
	}
	cfg.Progress = os.Stderr
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	fmt.Fprintf(os.Stderr, "marmot soak: seed %d (rerun with -seed %d)\n", cfg.Seed, cfg.Seed)
	res, err := run(ctx, cfg)
	if err != nil {
		fmt.Fprintln(os.Stderr, "soak:", err)
		os.Exit(1)
	}
	finish(res)
	res.summary(os.Stdout)
	if *resultPath != "" {
		b, err := json.MarshalIndent(res.outcome(), "", "  ")
		if err == nil {
			err = os.WriteFile(*resultPath, b, 0o644)
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "soak: -result:", err)
			os.Exit(1)
		}
	}
	if len(res.failures()) > 0 {
		os.Exit(1)
	}
}
