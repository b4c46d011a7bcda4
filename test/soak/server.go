package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/http/pprof"
	"os"
	"os/signal"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/marmotws/marmot"
	"github.com/marmotws/marmot/boltstore"
	"github.com/marmotws/marmot/chaos/actorfault"
	"github.com/marmotws/marmot/cluster"
)

// The server is a child process (so that it can be SIGKILLed): the soak
// binary (or test binary) run again with these variables set.
const (
	envRole    = "MARMOT_SOAK_ROLE" // "server"
	envAddr    = "MARMOT_SOAK_ADDR"
	envControl = "MARMOT_SOAK_CONTROL"
	envDB      = "MARMOT_SOAK_DB"
	envMaxConn = "MARMOT_SOAK_MAXCONN"
	envHistory = "MARMOT_SOAK_HISTORY"
	envOTLP    = "MARMOT_SOAK_OTLP" // the soak's trace receiver
	envLog     = "MARMOT_SOAK_LOG"  // the servers' log level (default warn)
	// With -cluster: the node's ID (1..), its cluster Bind address and the
	// other nodes' (comma-separated).
	envNode  = "MARMOT_SOAK_NODE"
	envBind  = "MARMOT_SOAK_BIND"
	envSeeds = "MARMOT_SOAK_SEEDS"
)

// pubPrefix names the request a publisher sends: "pub/ROOM", answered once
// the room has taken the message (so that the publisher knows it was
// accepted), or with an error.
const pubPrefix = "pub/"

// serverStats is what the control API's GET /stats answers.
type serverStats struct {
	PID        int               `json:"pid"`
	Goroutines int               `json:"goroutines"`
	Clients    int               `json:"clients"`
	Faults     actorfault.Counts `json:"faults"`
	Mem        goMemory          `json:"mem"`
	Members    int               `json:"members"`  // cluster members seen (-cluster)
	Sessions   int               `json:"sessions"` // client sessions kept (attached or waiting)
}

// goMemory is the part of runtime.MemStats that says what the server's
// anonymous memory is made of (bytes).
type goMemory struct {
	HeapAlloc, HeapInuse, HeapIdle, HeapReleased int64
	StackInuse                                   int64
	MSpanInuse, MCacheInuse, GCSys, OtherSys     int64
	BuckHashSys                                  int64
}

// runtime is the runtime's own structures: span and cache metadata, GC
// bitmaps, profiling buckets, the rest.
func (m goMemory) runtime() int64 {
	return m.MSpanInuse + m.MCacheInuse + m.GCSys + m.OtherSys + m.BuckHashSys
}

func readGoMemory() goMemory {
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return goMemory{HeapAlloc: int64(ms.HeapAlloc), HeapInuse: int64(ms.HeapInuse), HeapIdle: int64(ms.HeapIdle),
		HeapReleased: int64(ms.HeapReleased), StackInuse: int64(ms.StackInuse), MSpanInuse: int64(ms.MSpanInuse),
		MCacheInuse: int64(ms.MCacheInuse), GCSys: int64(ms.GCSys), OtherSys: int64(ms.OtherSys), BuckHashSys: int64(ms.BuckHashSys)}
}

// serveChild runs the soak's server until SIGTERM (or SIGKILL).
func serveChild() error {
	// Warnings and errors go to the server's log (node-N.log, server.log
	// in -dir); MARMOT_SOAK_LOG=info (or debug) has the cluster and the
	// fault injector say more, to find the cause of an anomaly (marmot's
	// own logs stay at warn: at debug they are a line per connection).
	level := slog.LevelWarn
	if v := os.Getenv(envLog); v != "" {
		if err := level.UnmarshalText([]byte(v)); err != nil {
			return fmt.Errorf("%s: %w", envLog, err)
		}
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	store, err := boltstore.Open(os.Getenv(envDB), nil)
	if err != nil {
		return err
	}
	defer store.Close()
	maxConn, _ := strconv.Atoi(os.Getenv(envMaxConn))
	history, _ := strconv.Atoi(os.Getenv(envHistory))
	// The injector's spans (one per actor fault) go to the soak's
	// receiver; marmot's own spans stay off (a span per message would be
	// the soak's biggest cost).
	tp, err := tracerProvider(os.Getenv(envOTLP), "soak-server")
	if err != nil {
		return err
	}
	defer func() { _ = tp.Shutdown(context.Background()) }()
	inj := actorfault.New(actorfault.Options{Logger: log, TracerProvider: tp})
	defer inj.Close()
	var srv *marmot.Server
	var node *cluster.Node
	scfg := marmot.ServerConfig{
		Addr:            os.Getenv(envAddr),
		MaxConnections:  maxConn,
		Logger:          log,
		LogLevel:        slog.LevelWarn,
		RoomHistory:     marmot.HistoryConfig{Size: history, TTL: time.Hour, Backend: store},
		ActorMiddleware: []actor.ReceiverMiddleware{inj.Middleware()},
		ServerEvents: marmot.ServerEvents{OnHandleCommand: func(m *marmot.Message) {
			room, ok := strings.CutPrefix(m.Name, pubPrefix)
			if !ok || !m.IsRequest() {
				return
			}
			n, err := srv.PublishFor(m, room, m.Payload)
			switch {
			case err != nil:
				_ = m.ReplyError(503, err.Error())
			case n == 0 && node == nil:
				// (A node's Publish hands the message to the room's
				// grain and counts no members: nil is its accepted.)
				_ = m.ReplyError(503, "room not live")
			default:
				_ = m.Reply([]byte(strconv.Itoa(n)))
			}
		}},
	}
	if id, _ := strconv.ParseUint(os.Getenv(envNode), 10, 32); id > 0 {
		// A cluster node keeps room history in memory, on every node
		// that has the room and in its grain (cluster.New refuses a
		// Backend: a node's own file is out of reach when it is down),
		// so a failed-over client's re-join is recovered on the node it
		// reaches (docs/CLUSTER.md, "Room history across nodes").
		scfg.RoomHistory.Backend = nil
		node, err = cluster.New(cluster.Config{Name: "soak", NodeID: uint32(id), Bind: os.Getenv(envBind),
			Seeds: strings.Split(os.Getenv(envSeeds), ","), RefreshTTL: time.Second, Logger: log}, scfg)
		if err != nil {
			return err
		}
		srv = node.Server()
		err = node.Start(context.Background())
	} else if srv, err = marmot.NewServer(scfg); err == nil {
		err = srv.Start(context.Background())
	}
	if err != nil {
		return err
	}
	mux := http.NewServeMux()
	// The profiles: the heap, for the memory the RSS bound is about
	// (go tool pprof http://CONTROL/debug/pprof/heap), and the
	// goroutines, which the soak reads at its baseline and at the end to
	// name what grew (pernode.go).
	mux.HandleFunc("GET /debug/pprof/", pprof.Index)
	mux.HandleFunc("GET /stats", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("gc") != "" {
			runtime.GC()
			debug.FreeOSMemory()
		}
		st := serverStats{PID: os.Getpid(), Goroutines: runtime.NumGoroutine(), Clients: srv.ClientCount(), Faults: inj.Counts(),
			Mem: readGoMemory(), Sessions: srv.Stats().Sessions}
		if node != nil {
			st.Members = len(node.Members())
		}
		_ = json.NewEncoder(w).Encode(st)
	})
	// POST /flush: export the spans recorded so far.
	mux.HandleFunc("POST /flush", func(w http.ResponseWriter, r *http.Request) {
		if err := tp.ForceFlush(r.Context()); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
		}
	})
	// POST /crash?n=K&seed=S: K connection actors, picked at random with
	// seed S, panic on their next turn.
	mux.HandleFunc("POST /crash", func(w http.ResponseWriter, r *http.Request) {
		n, _ := strconv.Atoi(r.URL.Query().Get("n"))
		seed, _ := strconv.ParseUint(r.URL.Query().Get("seed"), 10, 64)
		clients := srv.Clients()
		rng := rand.New(rand.NewPCG(seed, seed))
		rng.Shuffle(len(clients), func(i, j int) { clients[i], clients[j] = clients[j], clients[i] })
		n = min(n, len(clients))
		for _, ci := range clients[:n] {
			inj.Crash(srv.ActorSystem(), ci.PID)
		}
		fmt.Fprintln(w, n)
	})
	// POST /panic-publish?n=K: the next K publish requests panic in their
	// connection actors, before the room sees them.
	mux.HandleFunc("POST /panic-publish", func(w http.ResponseWriter, r *http.Request) {
		n, _ := strconv.Atoi(r.URL.Query().Get("n"))
		_, err := inj.Add(actorfault.Rule{Actors: actorfault.Connections(), Times: n, Fault: actorfault.Panic,
			Match: func(msg any) bool {
				m, ok := msg.(*marmot.Message)
				return ok && strings.HasPrefix(m.Name, pubPrefix)
			}})
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
		}
	})
	ctl := &http.Server{Addr: os.Getenv(envControl), Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- ctl.ListenAndServe() }()
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, os.Interrupt)
	select {
	case <-sig:
	case err := <-errc:
		if !errors.Is(err, http.ErrServerClosed) {
			return err
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_ = ctl.Shutdown(ctx)
	if node != nil {
		return node.Stop(ctx)
	}
	return srv.Stop(ctx)
}
