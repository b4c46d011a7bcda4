// Command testnode runs one cluster node for the cluster package's tests,
// which start three of them as separate processes. It is configured from
// the environment (MARMOT_CLUSTER_NAME, MARMOT_NODE_ID, MARMOT_BIND,
// MARMOT_SEEDS, MARMOT_ADVERTISE, MARMOT_WS_ADDR, MARMOT_PROVIDER, MARMOT_ETCD,
// MARMOT_GRAIN_PANIC to make room grains panic on a publish of that text,
// MARMOT_GRAIN_DROP=TEXT@NODE to make them drop node NODE's publishes of TEXT,
// MARMOT_GRAIN_LOSE_ANSWER to make them drop each member's first take-over answer,
// MARMOT_OTLP_URL to export its spans over OTLP/HTTP as service node-N,
// MARMOT_HISTORY to keep that many messages of room history,
// MARMOT_KEEP_ISOLATED to keep clients when cut off from the majority,
// MARMOT_REQUEST_TIMEOUT for Config.RequestTimeout, MARMOT_WARNINGS to
// print "WARN <message>" for every warning marmot logs and "HELD" for
// every batch of session marks it keeps for another node), prints "URL ws://..." once it serves and
// "MEMBERS 1,2,3" after every change of the member list, and stops
// gracefully when its stdin closes. Its clients drive it with requests:
// whoami, bcast PAYLOAD, sendto "ID TEXT", count, clients, owner ROOM,
// members (the cluster's NodeIDs), members ROOM (the room's members on
// every node), ask "ID NAME TIMEOUT_MS PAYLOAD", done. Rooms whose name
// starts with "pres-" have presence. A request named "pub/ROOM" publishes
// its payload to ROOM from the node on the request's behalf
// (Server.PublishFor: a request handled again after a failover is numbered
// once) and is answered once the room's grain has numbered it. "goroutines" answers the process's
// number of goroutines.
//
// With MARMOT_PUB_HOLD=PAYLOAD a "pub/ROOM" request prints "PUBLISHED
// PAYLOAD REDELIVERED" once published, and one whose payload is PAYLOAD
// (not redelivered) prints "HELD" and never returns: its session never
// acknowledges it (a publish handled, then the node lost before its mark).
//
// With MARMOT_HANDLED_LOG=PATH it appends a line "K R" to PATH for every
// command "m" it handles (payload "mK"; R is 1 when the message was
// Redelivered), written before the handler returns, so before its
// acknowledgement (a SIGKILL loses none); prints "HANDLED K" for every
// hundredth, and "CLOSED CODE" when a connection ends.
//
// It is built without the race detector on purpose: protoactor's remote
// and cluster packages have data races of their own (docs/CLUSTER.md),
// which would fail every process that runs them under -race.
package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"

	"github.com/marmotws/marmot"
	"github.com/marmotws/marmot/cluster"
	"github.com/marmotws/marmot/cluster/internal/wire"
)

func main() { os.Exit(runChild()) }

// runChild runs one node. Its clients drive it with requests: whoami,
// bcast PAYLOAD, sendto "ID TEXT", count, clients.
func runChild() int {
	nodeID, _ := strconv.ParseUint(os.Getenv("MARMOT_NODE_ID"), 10, 32)
	var seeds []string
	if s := os.Getenv("MARMOT_SEEDS"); s != "" {
		seeds = strings.Split(s, ",")
	}
	log := slog.New(slog.DiscardHandler)
	if os.Getenv("MARMOT_TEST_LOG") != "" {
		log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug})).With("test_node", nodeID)
	}
	var out sync.Mutex
	say := func(format string, a ...any) {
		out.Lock()
		defer out.Unlock()
		fmt.Printf(format+"\n", a...)
	}
	if os.Getenv("MARMOT_WARNINGS") != "" && os.Getenv("MARMOT_TEST_LOG") == "" {
		// Warnings on stdout, as "WARN <message>" lines.
		log = slog.New(warnLines{say})
	}
	var n *cluster.Node
	handledLog := openHandledLog(say)
	// MARMOT_PUB_HOLD=PAYLOAD: a "pub/ROOM" request prints "PUBLISHED
	// PAYLOAD REDELIVERED" once published, and one with PAYLOAD (not
	// redelivered) prints "HELD" and never returns.
	pubHold := os.Getenv("MARMOT_PUB_HOLD")
	handle := func(m *marmot.Message) {
		if m.Name == "m" && handledLog != nil {
			handledLog(m)
			return
		}
		if room, ok := strings.CutPrefix(m.Name, "pub/"); ok {
			if _, err := n.Server().PublishFor(m, room, m.Payload); err != nil {
				_ = m.ReplyError(503, err.Error())
				return
			}
			if pubHold != "" {
				say("PUBLISHED %s %v", m.Payload, m.Redelivered)
				if string(m.Payload) == pubHold && !m.Redelivered {
					// Published, never handled to the end: the session
					// does not acknowledge it, and the node waits for
					// its SIGKILL.
					say("HELD")
					select {}
				}
			}
			_ = m.Reply(nil)
			return
		}
		// The message's context carries its process span: the calls to
		// other nodes carry it on (MARMOT_OTLP_URL exports the spans).
		ctx, cancel := context.WithTimeout(m.Context(), 20*time.Second)
		defer cancel()
		var res string
		var err error
		switch m.Name {
		case "whoami":
			res = strconv.FormatUint(uint64(m.ClientID), 10)
		case "goroutines":
			res = strconv.Itoa(runtime.NumGoroutine())
		case "done":
			res = "done" // what came before it was handled
		case "bcast":
			var k int
			k, err = n.Broadcast(ctx, m.Payload)
			res = strconv.Itoa(k)
		case "sendto":
			id, text, _ := strings.Cut(string(m.Payload), " ")
			var v uint64
			if v, err = strconv.ParseUint(id, 10, 64); err == nil {
				err = n.SendCommandToClient(ctx, marmot.ClientID(v), "direct", []byte(text))
			}
		case "count":
			var k int
			k, err = n.ClientCount(ctx)
			res = strconv.Itoa(k)
		case "owner":
			// The node that hosts the room's grain.
			id, ok := n.RoomOwner(string(m.Payload))
			if !ok {
				err = fmt.Errorf("no owner for room %q", m.Payload)
			}
			res = strconv.FormatUint(uint64(id), 10)
		case "members":
			if len(m.Payload) == 0 {
				// The cluster's members.
				ms := n.Members()
				ids := make([]string, len(ms))
				for i, mb := range ms {
					ids[i] = strconv.Itoa(int(mb.NodeID))
				}
				res = strings.Join(ids, ",")
				break
			}
			var ids []marmot.ClientID
			ids, err = n.RoomMembers(ctx, string(m.Payload))
			res = joinIDs(ids)
		case "pub":
			// "ROOM\nDATA": a server-side publish, answered once the
			// cluster has it (Server.PublishContext).
			room, data, _ := strings.Cut(string(m.Payload), "\n")
			_, err = n.Server().PublishContext(ctx, room, []byte(data))
		case "ask":
			res, err = ask(ctx, n, string(m.Payload))
		case "clients":
			var cs []marmot.ClientInfo
			cs, err = n.Clients(ctx)
			ids := make([]string, len(cs))
			for i, c := range cs {
				ids[i] = strconv.FormatUint(uint64(c.ID), 10)
			}
			res = strings.Join(ids, ",")
		default:
			return
		}
		if err != nil {
			_ = m.ReplyError(500, err.Error())
			return
		}
		_ = m.Reply([]byte(res))
	}
	var tp trace.TracerProvider
	if u := os.Getenv("MARMOT_OTLP_URL"); u != "" {
		exp, err := otlptracehttp.New(context.Background(), otlptracehttp.WithEndpointURL(u+"/v1/traces"))
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 2
		}
		sdk := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp), sdktrace.WithResource(resource.NewSchemaless(
			attribute.String("service.name", "node-"+strconv.FormatUint(nodeID, 10)))))
		defer func() { _ = sdk.Shutdown(context.Background()) }()
		tp = sdk
	}
	// MARMOT_GRAIN_PANIC: room grains panic on a publish of that text.
	var grainMW []actor.ReceiverMiddleware
	if boom := os.Getenv("MARMOT_GRAIN_PANIC"); boom != "" {
		grainMW = append(grainMW, func(next actor.ReceiverFunc) actor.ReceiverFunc {
			return func(c actor.ReceiverContext, env *actor.MessageEnvelope) {
				if p, ok := env.Message.(*wire.RoomPublishSeq); ok && string(p.Data) == boom {
					panic("testnode: injected grain failure")
				}
				next(c, env)
			}
		})
	}
	// MARMOT_GRAIN_DROP=TEXT@NODE: room grains drop, unnumbered and
	// unanswered, the publishes of TEXT made on node NODE (its publishes
	// never reach the grain, as when the node dies right after handing
	// them over). The node's origin carries its NodeID in the top 20 bits.
	if text, node, ok := strings.Cut(os.Getenv("MARMOT_GRAIN_DROP"), "@"); ok {
		id, _ := strconv.ParseUint(node, 10, 32)
		grainMW = append(grainMW, func(next actor.ReceiverFunc) actor.ReceiverFunc {
			return func(c actor.ReceiverContext, env *actor.MessageEnvelope) {
				if p, ok := env.Message.(*wire.RoomPublishSeq); ok && string(p.Data) == text && p.Origin>>44 == id {
					return
				}
				next(c, env)
			}
		})
	}
	// MARMOT_GRAIN_LOSE_ANSWER: each room grain drops the first answer
	// of each member to its take-over (as protoactor's remote drops one
	// sent to an address it is reconnecting).
	if os.Getenv("MARMOT_GRAIN_LOSE_ANSWER") != "" {
		var mu sync.Mutex
		seen := map[string]bool{}
		grainMW = append(grainMW, func(next actor.ReceiverFunc) actor.ReceiverFunc {
			return func(c actor.ReceiverContext, env *actor.MessageEnvelope) {
				if st, ok := env.Message.(*wire.RoomState); ok && st.Node != "" {
					key := c.Self().Id + " " + st.Node
					mu.Lock()
					first := !seen[key]
					seen[key] = true
					mu.Unlock()
					if first {
						return
					}
				}
				next(c, env)
			}
		})
	}
	var hist marmot.HistoryConfig
	if v := os.Getenv("MARMOT_HISTORY"); v != "" {
		// Room history: that many messages per room.
		hist.Size, _ = strconv.Atoi(v)
	}
	var err error
	n, err = cluster.New(cluster.Config{
		GrainMiddleware: grainMW,
		Name:            os.Getenv("MARMOT_CLUSTER_NAME"),
		NodeID:          uint32(nodeID),
		Bind:            os.Getenv("MARMOT_BIND"),
		// MARMOT_ADVERTISE: the address the others reach it at (a
		// chaos proxy in the partition test).
		Advertise: os.Getenv("MARMOT_ADVERTISE"),
		Seeds:     seeds,
		Provider:  os.Getenv("MARMOT_PROVIDER"),
		EtcdEndpoints: func() []string {
			if e := os.Getenv("MARMOT_ETCD"); e != "" {
				return strings.Split(e, ",")
			}
			return nil
		}(),
		// Each poll that times out on a loaded machine would remove a
		// live node for good (protoactor blocks members that left; see
		// docs/CLUSTER.md): the default 1 s polls half as often as 500 ms.
		RefreshTTL: time.Second,
		// MARMOT_KEEP_ISOLATED: a node left alone keeps its clients.
		KeepClientsWhenIsolated: os.Getenv("MARMOT_KEEP_ISOLATED") != "",
		// MARMOT_REQUEST_TIMEOUT: Config.RequestTimeout (a Go duration).
		RequestTimeout: envDuration("MARMOT_REQUEST_TIMEOUT"),
		Logger:         log,
		OnMembersChange: func(ms []cluster.Member) {
			ids := make([]string, len(ms))
			for i, m := range ms {
				ids[i] = strconv.Itoa(int(m.NodeID))
			}
			say("MEMBERS %s", strings.Join(ids, ","))
		},
	}, marmot.ServerConfig{
		Addr:           os.Getenv("MARMOT_WS_ADDR"),
		TracerProvider: tp,
		Logger:         log,
		MaxConnections: -1,
		RoomHistory:    hist,
		RoomPresence:   func(room string) bool { return strings.HasPrefix(room, "pres-") },
		ServerEvents: marmot.ServerEvents{OnHandleCommand: handle, OnClientDisconnected: func(_ marmot.ClientInfo, reason *marmot.CloseError) {
			if handledLog != nil && reason != nil {
				say("CLOSED %d", reason.Code)
			}
		}},
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	if err := n.Start(context.Background()); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	say("URL %s", n.Server().URL())
	_, _ = io.Copy(io.Discard, os.Stdin) // until the test closes stdin
	// Leaving the cluster took 4.8-7.7 s under load 9-16 (2 s idle), and
	// over 10 s at load 19: within the tests' 60 s wait for the process.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	stopping := time.Now()
	if err := n.Stop(ctx); err != nil {
		fmt.Fprintf(os.Stderr, "node %d: stop after %v: %v\n", nodeID, time.Since(stopping).Round(time.Millisecond), err)
		return 1
	}
	log.Info("testnode stopped", "took", time.Since(stopping).Round(time.Millisecond))
	return 0
}

// ask is the "ask" request: "ID NAME TIMEOUT_MS PAYLOAD" sends client ID
// a request and answers with its reply.
func ask(ctx context.Context, n *cluster.Node, arg string) (string, error) {
	f := strings.SplitN(arg, " ", 4)
	if len(f) < 3 {
		return "", fmt.Errorf("ask: want ID NAME TIMEOUT_MS [PAYLOAD], got %q", arg)
	}
	id, err := strconv.ParseUint(f[0], 10, 64)
	if err != nil {
		return "", err
	}
	ms, err := strconv.Atoi(f[2])
	if err != nil {
		return "", err
	}
	var payload []byte
	if len(f) == 4 {
		payload = []byte(f[3])
	}
	ctx, cancel := context.WithTimeout(ctx, time.Duration(ms)*time.Millisecond)
	defer cancel()
	res, err := n.RequestClient(ctx, marmot.ClientID(id), f[1], payload)
	return string(res), err
}

func joinIDs(ids []marmot.ClientID) string {
	s := make([]string, len(ids))
	for i, id := range ids {
		s[i] = strconv.FormatUint(uint64(id), 10)
	}
	return strings.Join(s, ",")
}

// openHandledLog opens MARMOT_HANDLED_LOG (nil when unset) and returns the
// handler of "m" commands that records them there.
func openHandledLog(say func(string, ...any)) func(*marmot.Message) {
	path := os.Getenv("MARMOT_HANDLED_LOG")
	if path == "" {
		return nil
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	var mu sync.Mutex
	return func(m *marmot.Message) {
		k, err := strconv.Atoi(strings.TrimPrefix(string(m.Payload), "m"))
		if err != nil {
			return
		}
		r := 0
		if m.Redelivered {
			r = 1
		}
		mu.Lock()
		defer mu.Unlock()
		// One write per message: in the kernel once it returns.
		if _, err := fmt.Fprintf(f, "%d %d\n", k, r); err != nil {
			fmt.Fprintln(os.Stderr, err)
		}
		if k%100 == 0 {
			say("HANDLED %d", k)
		}
	}
}

// envDuration reads a duration from the environment (0 when unset).
func envDuration(name string) time.Duration {
	d, err := time.ParseDuration(os.Getenv(name))
	if err != nil && os.Getenv(name) != "" {
		fmt.Fprintf(os.Stderr, "%s: %v\n", name, err)
		os.Exit(2)
	}
	return d
}

// warnLines is the MARMOT_WARNINGS logger: a line "WARN <message>" on
// stdout for every warning or error of marmot's (not protoactor's),
// without its attributes, and "HELD" for every batch of session marks
// the node keeps for another (sessions.go's debug record).
type warnLines struct{ say func(string, ...any) }

func (w warnLines) Enabled(_ context.Context, l slog.Level) bool { return true }
func (w warnLines) Handle(_ context.Context, r slog.Record) error {
	switch {
	case r.Level >= slog.LevelWarn && strings.HasPrefix(r.Message, "marmot"): // not protoactor's own
		w.say("WARN %s", r.Message)
	case r.Message == "marmot cluster: session marks held":
		w.say("HELD")
	}
	return nil
}
func (w warnLines) WithAttrs([]slog.Attr) slog.Handler { return w }
func (w warnLines) WithGroup(string) slog.Handler      { return w }
