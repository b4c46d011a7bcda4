package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/marmotws/marmot"
	"github.com/marmotws/marmot/cluster"
)

// stopTimeout bounds the graceful shutdown after SIGINT/SIGTERM: queues are
// flushed and clients get 1001, but a stuck peer cannot hold the process.
const stopTimeout = 10 * time.Second

// Server modes.
const (
	modeEcho      = "echo"
	modeBroadcast = "broadcast"
)

// timeRequest is the request echo mode answers with the server's time.
const timeRequest = "time"

// serveFlags holds "marmot serve" options: one flag per ServerConfig setting
// that can be written on a command line, plus the mode.
type serveFlags struct {
	cfg      marmot.ServerConfig
	mode     string
	logLevel logLevel
	encrypt  *encryptFlags
	// metricsAddr, when set, serves Prometheus /metrics there.
	metricsAddr string
	trace       *traceFlags
	history     *historyFlags
	cluster     *clusterFlags
	compress    *compressFlags
	security    *serveSecurityFlags
	// dashboard serves the web dashboard at /dashboard/; without
	// dashboardToken only to loopback peers.
	dashboard      bool
	dashboardToken string
}

func newServeFlags(stderr io.Writer) (*flag.FlagSet, *serveFlags) {
	f := &serveFlags{logLevel: logLevel{slog.LevelInfo}}
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), "Usage: marmot serve [flags]\n\nRuns a marmot WebSocket server until SIGINT or SIGTERM.\n\nFlags:\n")
		fs.PrintDefaults()
	}
	c := &f.cfg
	fs.StringVar(&f.mode, "mode", modeEcho, "echo: every message goes back to its sender as it came, except a request named \"time\", answered with the server's time (RFC 3339); broadcast: every message goes to all clients, sender included, and a request is answered with the number of clients it reached; rooms: clients join rooms and publish to them, members receive (marmot connect --join), other messages are echoed")
	fs.StringVar(&c.Addr, "addr", marmot.DefaultAddr, "listen address (host:port; port 0 picks a free one)")
	fs.StringVar(&c.Path, "path", marmot.DefaultPath, "WebSocket endpoint path")
	fs.IntVar(&c.MaxConnections, "max-connections", marmot.DefaultMaxConnections, "refuse connections beyond this many with HTTP 503 (negative: unlimited)")
	fs.DurationVar(&c.KeepAlive, "keepalive", marmot.DefaultKeepAlive, "drop peers that stay silent this long (noticed within 1.5 times it); pings every half of it (negative: no pings)")
	fs.IntVar(&c.HandlerConcurrency, "handler-concurrency", marmot.DefaultHandlerConcurrency, "handler calls running at once across all connections (negative: unbounded)")
	fs.Int64Var(&c.MaxMessageSize, "max-message-size", marmot.DefaultMaxMessageSize, "largest message accepted in bytes; larger closes with 1009 (negative: unlimited)")
	fs.Int64Var(&c.MaxQueueBytes, "max-queue-bytes", marmot.DefaultMaxQueueBytes, "outbound backlog per connection in bytes; beyond it the client is closed with 4008 (negative: unbounded)")
	fs.DurationVar(&c.WriteTimeout, "write-timeout", marmot.DefaultWriteTimeout, "bound on one batch of socket writes")
	fs.IntVar(&c.MaxRestarts, "max-restarts", marmot.DefaultMaxRestarts, "connection actor restarts allowed within --restart-window after handler panics (negative: close on the first)")
	fs.DurationVar(&c.RestartWindow, "restart-window", marmot.DefaultRestartWindow, "sliding window for --max-restarts")
	fs.BoolVar(&c.DisableJSON, "disable-json", false, "refuse the marmot.json.v1 subprotocol (raw and marmot.v1 remain)")
	fs.BoolVar(&c.DisableHTTPFallback, "disable-http-fallback", false, "turn off the HTTP fallback transport for clients whose WebSocket upgrade is refused or stripped (the seed's WebSocketsAjax=false; see docs/HTTP.md)")
	fs.Var(&f.logLevel, "log-level", "log `level`: debug, info, warn or error (default info)")
	f.compress = addCompressFlags(fs, &c.Compression)

	f.encrypt = addEncryptFlags(fs)
	fs.Func("encrypt-kdf-iterations", "secure profile: PBKDF2 iterations the server stretches its passphrase with and announces (default 600000; clients accept 100000 to 10000000)", func(v string) error {
		n, err := strconv.ParseUint(v, 10, 32)
		if err != nil || n == 0 {
			return fmt.Errorf("want a positive number of iterations, got %q", v)
		}
		f.cfg.EncryptionKDF.Iterations = uint32(n)
		return nil
	})
	fs.StringVar(&f.metricsAddr, "metrics-addr", "", "serve Prometheus metrics on http://`host:port`/metrics (port 0 picks a free one; empty: no metrics endpoint)")
	f.trace = addTraceFlags(fs)
	f.history = addHistoryFlags(fs)
	f.cluster = addClusterFlags(fs)
	f.security = addServeSecurityFlags(fs)
	fs.BoolVar(&f.dashboard, "dashboard", false, "serve the web dashboard (live counters, clients, send/broadcast/disconnect, event log) and a marmot.js client page at /dashboard/ on the same address; only to loopback peers unless --dashboard-token is given")
	fs.StringVar(&f.dashboardToken, "dashboard-token", "", "require this `token` from every dashboard request (open http://host:port/dashboard/?token=TOKEN); allows non-loopback peers")

	return fs, f
}

func runServe(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs, f := newServeFlags(stderr)
	pos, code, ok := parseFlags(fs, args)
	if !ok {
		return code
	}
	if len(pos) > 0 {
		return usageError(fs, "unexpected argument %q", pos[0])
	}
	if f.mode != modeEcho && f.mode != modeBroadcast && f.mode != modeRooms {
		return usageError(fs, "invalid value %q for flag -mode: want echo, broadcast or rooms", f.mode)
	}
	if err := f.history.check(); err != nil {
		return usageError(fs, "%v", err)
	}
	// Zero means "use the default" in ServerConfig, so a literal 0 on the
	// command line would silently become 1000 connections or a 30s
	// keep-alive. Whoever types 0 means "none" or "unlimited": say how.
	c := &f.cfg
	for _, z := range []struct {
		name string
		bad  bool
		hint string
	}{
		{"max-connections", c.MaxConnections == 0, "0 is not allowed; use a negative value for unlimited"},
		{"keepalive", c.KeepAlive == 0, "0 is not allowed; use a negative value to disable pings"},
		{"handler-concurrency", c.HandlerConcurrency == 0, "0 is not allowed; use a negative value for unbounded"},
		{"max-message-size", c.MaxMessageSize == 0, "0 is not allowed; use a negative value for unlimited"},
		{"max-queue-bytes", c.MaxQueueBytes == 0, "0 is not allowed; use a negative value for unbounded"},
		{"max-restarts", c.MaxRestarts == 0, "0 is not allowed; use a negative value to close on the first panic"},
		{"write-timeout", c.WriteTimeout <= 0, "must be positive"},
		{"restart-window", c.RestartWindow <= 0, "must be positive"},
	} {
		if z.bad {
			return usageError(fs, "invalid value for flag -%s: %s", z.name, z.hint)
		}
	}

	if err := f.encrypt.apply(&c.EncryptionConfig); err != nil {
		return usageError(fs, "%v", err)
	}
	if f.cluster.enabled() && strings.HasPrefix(f.history.store, "bolt:") {
		// In a cluster the nodes keep room history in memory, each room's
		// on more than one node (docs/CLUSTER.md).
		return usageError(fs, "-history-store bolt: does not work with -cluster: the nodes keep room history in memory, on more than one node")
	}
	if err := f.compress.check(c.MaxMessageSize); err != nil {
		return usageError(fs, "%v", err)
	}
	if err := f.security.apply(c); err != nil {
		return usageError(fs, "%v", err)
	}

	log := newLogger(stderr, f.logLevel.level)
	cfg := f.cfg
	cfg.Logger = log
	cfg.LogLevel = f.logLevel.level

	// Telemetry is set up before the server and torn down after it, so
	// the spans and metrics of the last connections are still exported.
	tr, err := setupTracing(ctx, "marmot-server", f.trace, stdout, stderr)
	if err != nil {
		fmt.Fprintf(stderr, "marmot serve: %v\n", err)
		return exitFailure
	}
	defer tr.shutdown(ctx)
	cfg.TracerProvider = tr.provider()
	cfg.Propagator = propagator
	var metrics *metricsEndpoint
	if f.metricsAddr != "" {
		if metrics, err = startMetrics(ctx, f.metricsAddr, log); err != nil {
			fmt.Fprintf(stderr, "marmot serve: %v\n", err)
			return exitFailure
		}
		defer metrics.shutdown(ctx, log)
		cfg.MeterProvider = metrics.provider()
	}

	// srv (and node, in a cluster) are set before Start, and callbacks run
	// only for connections Start accepts, so they always see them.
	var srv *marmot.Server
	var node *cluster.Node
	cfg.OnClientConnected = func(info marmot.ClientInfo) {
		user := ""
		if info.Identity != nil {
			user = info.Identity.UserID
		}
		log.Info("client connected", "client", uint64(info.ID), "remote", info.IP(), "subprotocol", subprotocolName(info.Subprotocol),
			"compressed", info.Compressed, "user", user)
	}
	cfg.OnClientDisconnected = func(info marmot.ClientInfo, reason *marmot.CloseError) {
		log.Info("client disconnected", "client", uint64(info.ID), "code", reason.Code, "by_peer", reason.ByPeer,
			"messages_in", info.MessagesReceived, "messages_out", info.MessagesSent)
	}
	// No OnError: the server already logs every error it reports at warn.
	switch f.mode {
	case modeEcho, modeRooms: // rooms: the room requests never reach the handler
		cfg.OnHandleCommand = func(m *marmot.Message) {
			logMessage(log, m)
			if err := m.Reply(echoReply(m)); err != nil {
				log.DebugContext(m.Context(), "echo failed", "client", uint64(m.ClientID), "err", err)
			}
		}
	case modeBroadcast:
		cfg.OnHandleCommand = func(m *marmot.Message) {
			logMessage(log, m)
			// BroadcastContext makes the broadcast span a child of this
			// message's process span, so one trace shows the message
			// and the fan-out it caused.
			var n int
			var err error
			if node != nil { // every client of every node
				n, err = node.Broadcast(m.Context(), m.Payload)
			} else {
				n, err = srv.BroadcastContext(m.Context(), m.Payload)
			}
			if err != nil {
				log.WarnContext(m.Context(), "broadcast failed", "client", uint64(m.ClientID), "err", err)
			}
			// A requester waits for an answer; tell it how many clients
			// the message reached rather than leaving it to time out.
			if m.IsRequest() {
				_ = m.Reply([]byte(strconv.Itoa(n)))
			}
		}
	}

	closeStore, err := f.history.apply(&cfg.RoomHistory)
	if err != nil {
		fmt.Fprintf(stderr, "marmot serve: %v\n", err)
		return exitFailure
	}
	defer func() { // after Stop: no room writes any more
		if err := closeStore(); err != nil {
			log.Warn("closing the history store", "err", err)
		}
	}()
	start, stop := func(ctx context.Context) error { return srv.Start(ctx) }, func(ctx context.Context) error { return srv.Stop(ctx) }
	if f.cluster.enabled() {
		ccfg, err := f.cluster.config(log)
		if err != nil {
			return usageError(fs, "%v", err)
		}
		if node, err = cluster.New(ccfg, cfg); err != nil {
			fmt.Fprintf(stderr, "marmot serve: %v\n", err)
			return exitUsage // New only fails on invalid settings
		}
		srv = node.Server()
		start, stop = node.Start, node.Stop
	} else if srv, err = marmot.NewServer(cfg); err != nil {
		fmt.Fprintf(stderr, "marmot serve: %v\n", err)
		return exitUsage // NewServer only fails on invalid settings
	}
	if f.dashboard || f.dashboardToken != "" {
		d := marmot.NewDashboard(srv, marmot.DashboardOptions{Token: f.dashboardToken, LoopbackOnly: f.dashboardToken == ""})
		srv.Handle(dashboardPath, http.StripPrefix(strings.TrimSuffix(dashboardPath, "/"), d))
	}
	if err := start(ctx); err != nil {
		fmt.Fprintf(stderr, "marmot serve: %v\n", err)
		if node != nil { // its actor system, and the member if it started
			_ = node.Stop(context.WithoutCancel(ctx))
		}
		return exitFailure
	}
	// The URL goes to stdout, alone on its line, so scripts (and the tests)
	// can learn the port chosen for ":0".
	fmt.Fprintf(stdout, "marmot listening on %s\n", srv.URL())
	if f.dashboard || f.dashboardToken != "" {
		u := strings.Replace(srv.URL(), "ws://", "http://", 1)
		u = strings.TrimSuffix(u, cfg.Path) + dashboardPath
		if f.dashboardToken == "" {
			fmt.Fprintf(stdout, "marmot dashboard on %s (loopback only)\n", u)
		} else {
			fmt.Fprintf(stdout, "marmot dashboard on %s (token required)\n", u)
		}
	}
	if metrics != nil {
		// After the listening line, which scripts wait for first.
		fmt.Fprintf(stdout, "marmot metrics on %s\n", metrics.url())
	}

	<-ctx.Done()
	// Stats go with the hub on Stop, so log them first.
	log.Info("shutting down", "stats", srv.Stats().String())
	stopCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), stopTimeout)
	defer cancel()
	if err := stop(stopCtx); err != nil {
		fmt.Fprintf(stderr, "marmot serve: stop: %v\n", err)
		return exitFailure
	}
	log.Info("stopped")
	return exitOK
}

// dashboardPath is where --dashboard serves the dashboard.
const dashboardPath = "/dashboard/"

// echoReply is what echo mode answers: a request named "time" gets the
// server's time in RFC 3339, everything else its own payload, as it came.
// README's quick start shows this handler.
func echoReply(m *marmot.Message) []byte {
	if m.IsRequest() && m.Name == timeRequest {
		return []byte(time.Now().Format(time.RFC3339))
	}
	return m.Payload
}

// logMessage logs one inbound message at debug level with the message's
// context, so the line carries the trace_id and span_id of its process span.
func logMessage(log *slog.Logger, m *marmot.Message) {
	ctx := m.Context()
	if !log.Enabled(ctx, slog.LevelDebug) {
		return // no attribute boxing on the hot path
	}
	log.DebugContext(ctx, "message", "client", uint64(m.ClientID), "kind", m.Kind.String(), "name", m.Name, "size", len(m.Payload))
}

func subprotocolName(s string) string {
	if s == "" {
		return "raw"
	}
	return s
}
