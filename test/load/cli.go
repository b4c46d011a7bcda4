package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// cliFlags are the flags of the scenario subcommands and of compare.
type cliFlags struct {
	impl, url   string
	pid         int
	sources     int
	sourceBase  int
	dialConc    int
	maxDuration time.Duration
	json        bool
	serverArgs  string
	encrypt     bool
	key         string
	compress    bool
	session     bool
	payload     string
	hold        bool

	echo echoOpts
	bc   broadcastOpts
	conn connOpts
}

func (f *cliFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&f.impl, "impl", "marmot", "server to start in a child process: marmot, gorilla or gws")
	fs.StringVar(&f.url, "url", "", "drive this ws:// URL instead of starting a server; several, comma-separated (the nodes of a cluster), take the connections in turn")
	fs.IntVar(&f.pid, "pid", 0, "with --url: the server's process ID, for its RSS and CPU")
	fs.IntVar(&f.sources, "sources", 8, "loopback source addresses 127.0.0.2, 127.0.0.3, ... to spread clients over (0: the kernel picks)")
	fs.IntVar(&f.sourceBase, "source-base", 2, "the first source address is 127.0.0.N (the cluster scenarios' nodes are on .2–.4, their clients from .5)")
	fs.IntVar(&f.dialConc, "dial-concurrency", 64, "connections dialled at once")
	fs.DurationVar(&f.maxDuration, "max-duration", 3*time.Minute, "hard limit on one scenario run, dialling included")
	fs.BoolVar(&f.json, "json", false, "also print every result as a JSON line")
	fs.BoolVar(&f.encrypt, "encrypt", false, "marmot only: secure profile, AES-256-GCM; the clients run marmot's handshake and seal/open every message (same as naming the implementation marmot"+gcmSuffix+")")
	fs.StringVar(&f.key, "key", defaultKey, "passphrase with --encrypt")
	fs.BoolVar(&f.compress, "compress", false, "permessage-deflate on server and clients (no context takeover, level 1, from 128 bytes; gorilla's server compresses every message); same as naming the implementation X"+deflateSuffix)
	fs.BoolVar(&f.session, "session", false, "marmot only: echo clients ask for a session (marmot.v1 data envelopes, numbered, acknowledged in batches): the server side of the client's outbox")
	fs.StringVar(&f.payload, "payload", payloadPattern, "echo and broadcast message bodies: pattern (a byte pattern) or json (JSON text, what compression is for)")
	fs.StringVar(&f.serverArgs, "server-args", "", "extra flags for the server child, space-separated (e.g. \"--cpuprofile cpu.out\")")

	fs.IntVar(&f.echo.Clients, "clients", 100, "echo: concurrent clients")
	fs.IntVar(&f.echo.Size, "size", 64, "echo and broadcast: bytes per message")
	fs.IntVar(&f.echo.Window, "window", 1, "echo: messages in flight per client")
	fs.DurationVar(&f.echo.Duration, "duration", 5*time.Second, "echo: how long clients send")
	fs.IntVar(&f.echo.Count, "per-client", 0, "echo: messages per client (0: as many as --duration allows)")

	fs.IntVar(&f.bc.Receivers, "receivers", 1000, "broadcast: receiving clients")
	fs.IntVar(&f.bc.Count, "count", 200, "broadcast: sequenced messages sent")
	fs.Float64Var(&f.bc.Rate, "rate", 0, "broadcast: messages per second (0: as fast as possible)")

	fs.IntVar(&f.conn.Conns, "conns", 19000, "connections: idle connections to open")
	fs.IntVar(&f.conn.Sample, "sample", 100, "connections: how many must still echo at the end")
	fs.BoolVar(&f.hold, "hold", false, "connections: once measured, print the result as one line \"held {json}\" on stdout and keep the connections open until stdin closes")
	fs.DurationVar(&f.conn.Settle, "settle", 2*time.Second, "connections: pause before reading the server's RSS")
}

func (f *cliFlags) bcOpts() broadcastOpts {
	o := f.bc
	o.Size = f.echo.Size
	o.JSON = f.payload == payloadJSON
	return o
}

func (f *cliFlags) echoOpts() echoOpts {
	o := f.echo
	o.JSON = f.payload == payloadJSON
	return o
}

// check validates the flags that have a fixed set of values.
func (f *cliFlags) check() error {
	if f.payload != payloadPattern && f.payload != payloadJSON {
		return fmt.Errorf("--payload %q: want %s or %s", f.payload, payloadPattern, payloadJSON)
	}
	return nil
}

// gcmSuffix names an implementation with the secure profile on: compare
// --impls marmot,marmot+gcm runs both in the same rounds. deflateSuffix
// names one with compression on (marmot+deflate, gorilla+deflate);
// httpSuffix marmot driven over its HTTP fallback transport
// (marmot+http).
const (
	gcmSuffix     = "+gcm"
	deflateSuffix = "+deflate"
	httpSuffix    = "+http"
)

// splitImpl turns "marmot+gcm" into "marmot" and whether to encrypt, and
// "gws+deflate" into "gws" and whether to compress; --encrypt and
// --compress apply whatever the name says.
// "+http" is kept: target reads it.
func (f *cliFlags) splitImpl(name string) (impl string, encrypt, compress bool) {
	impl, compress = strings.CutSuffix(name, deflateSuffix)
	impl, encrypt = strings.CutSuffix(impl, gcmSuffix)
	return impl, encrypt || f.encrypt, compress || f.compress
}

// target describes the server at url for the scenarios; with encrypt, its
// clients speak the secure profile and results are labelled impl+gcm; with
// compress, they offer permessage-deflate, labelled impl+deflate.
func (f *cliFlags) target(impl, url string, pid int, encrypt, compress bool) (target, error) {
	t := target{URL: url, PID: pid, Impl: impl, Sources: f.sources, SourceBase: f.sourceBase, DialConc: f.dialConc, MaxDuration: f.maxDuration, Compress: compress, Session: f.session}
	t.HTTP = strings.HasSuffix(impl, httpSuffix)
	if encrypt {
		var err error
		if t.Secure, err = newSecureClient(f.key); err != nil {
			return t, fmt.Errorf("--key: %w", err)
		}
		t.Impl += gcmSuffix
	}
	if compress {
		t.Impl += deflateSuffix
	}
	return t, nil
}

func modeOf(scenario string) string {
	if scenario == "broadcast" {
		return modeBroadcast
	}
	return modeEcho
}

// runScenario runs one scenario against t.
func runScenario(ctx context.Context, scenario string, t target, f *cliFlags) (*Result, error) {
	switch scenario {
	case "http":
		if !t.HTTP {
			t.HTTP = true
			t.Impl += httpSuffix
		}
		r := runEcho(ctx, t, f.echo)
		r.Scenario = "http"
		return r, nil
	case "echo":
		return runEcho(ctx, t, f.echoOpts()), nil
	case "broadcast":
		return runBroadcast(ctx, t, f.bcOpts()), nil
	case "connections":
		o := f.conn
		o.Size = f.echo.Size
		if f.hold {
			o.Hold = holdUntilStdinCloses
		}
		return runConnections(ctx, t, o), nil
	}
	return nil, fmt.Errorf("unknown scenario %q (echo, broadcast or connections)", scenario)
}

// limitsSuffix names marmot with per-connection rate limits on, set far
// above what the load reaches: compare --impls marmot+limits,marmot
// measures what the per-message check costs.
const limitsSuffix = "+limits"

// runAgainst starts impl (marmot+gcm: marmot with the secure profile;
// marmot+limits: with rate limits checked) in a child process, runs the
// scenario and stops it.
//
// NAME@BINARY runs the server of another build of this tool (say, one
// built from main), so that a change is measured against its baseline in
// the same interleaved rounds: --impls marmot,marmot@/tmp/load-main.
func runAgainst(ctx context.Context, scenario, name string, f *cliFlags) (*Result, error) {
	name, exe, other := strings.Cut(name, "@")
	name, limits := strings.CutSuffix(name, limitsSuffix)
	impl, encrypt, compress := f.splitImpl(name)
	if impl == socketIOPolling {
		return runSocketIO(ctx, scenario, f)
	}
	args := []string{"--impl", strings.TrimSuffix(impl, httpSuffix), "--mode", modeOf(scenario), "--addr", "127.0.0.1:0"}
	if limits {
		args = append(args, "--limits")
	}
	if encrypt {
		// The least stretching a marmot client accepts keeps dialling fast.
		args = append(args, "--encrypt", "--key", f.key, "--kdf-iterations", "100000")
	}
	if compress {
		args = append(args, "--compress")
	}
	args = append(args, strings.Fields(f.serverArgs)...)
	var c *child
	var err error
	if other {
		c, err = spawnServerFrom(exe, nil, args...)
	} else {
		c, err = spawnServer(args...)
	}
	if err != nil {
		return nil, fmt.Errorf("%s server: %w", impl, err)
	}
	t, err := f.target(impl, c.url, c.pid(), encrypt, compress)
	if err == nil && limits {
		t.Impl += limitsSuffix
	}
	if err == nil && other {
		t.Impl += "@" + filepath.Base(exe)
	}
	var r *Result
	if err == nil {
		r, err = runScenario(ctx, scenario, t, f)
	}
	if serr := c.stop(); serr != nil && err == nil && r != nil {
		r.addErr("server exit: %v", serr)
	}
	return r, err
}

// scenarioMain is "load echo|broadcast|connections".
func scenarioMain(scenario string, args []string) error {
	fs := flag.NewFlagSet(scenario, flag.ContinueOnError)
	var f cliFlags
	f.register(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if err := f.check(); err != nil {
		return err
	}
	ctx := context.Background()
	var r *Result
	var err error
	if f.url != "" {
		impl, encrypt, compress := f.splitImpl(f.impl)
		if !isFlagSet(fs, "impl") {
			impl = f.url
		}
		var t target
		if t, err = f.target(impl, f.url, f.pid, encrypt, compress); err == nil {
			r, err = runScenario(ctx, scenario, t, &f)
		}
	} else {
		r, err = runAgainst(ctx, scenario, f.impl, &f)
	}
	if err != nil {
		return err
	}
	printResults(os.Stdout, []*Result{r})
	if f.json {
		r.writeJSON(os.Stdout)
	}
	if !r.OK() {
		return errors.New("the run was not clean (see errors above)")
	}
	return nil
}

func isFlagSet(fs *flag.FlagSet, name string) bool {
	set := false
	fs.Visit(func(fl *flag.Flag) { set = set || fl.Name == name })
	return set
}

// row is one line of the comparison: a scenario with its parameters.
type row struct {
	label    string
	scenario string
	flags    cliFlags
}

// compareMain is "load compare": marmot and the baselines back to back,
// interleaved, --rounds times; then medians with min–max and ratios.
func compareMain(args []string) error {
	fs := flag.NewFlagSet("compare", flag.ContinueOnError)
	var f cliFlags
	f.register(fs)
	scenario := fs.String("scenario", "echo", "echo, broadcast, connections, http, cluster-publish (room publish and its latency, --nodes nodes against one) or cluster-connections (--conns idle connections on every node at once, against one server)")
	all := fs.Bool("all", false, "run the issue's table: echo 100×64 B, echo 1,000×1 KiB, broadcast 1,000×200, broadcast 5,000×50, 19,000 idle connections")
	rounds := fs.Int("rounds", 3, "runs of each implementation per row")
	encryption := fs.Bool("encryption", false, "run the issue's encryption table, marmot"+gcmSuffix+" against marmot: echo 100 and 1,000 clients × 1 KiB, broadcast 1,000 receivers × 200 msgs of 1 KiB")
	compression := fs.Bool("compression", false, "run the issue's compression table: marmot"+deflateSuffix+" against marmot, gorilla"+deflateSuffix+" and gws"+deflateSuffix+": echo 100 clients × 1 KiB JSON, broadcast 1,000 receivers × 200 msgs of 1 KiB JSON")
	var cl clusterFlags
	cl.register(fs)
	implList := fs.String("impls", strings.Join(impls, ","), "implementations, comma-separated, marmot"+gcmSuffix+" for marmot encrypted; the first one is divided by each other for the ratios")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if n := btoi(*all) + btoi(*encryption) + btoi(*compression); n > 1 {
		return errors.New("--all, --encryption and --compression are different tables; pick one")
	}
	if err := f.check(); err != nil {
		return err
	}
	if strings.HasPrefix(*scenario, "cluster-") {
		// The room: 3 nodes × 1,000 members against 1 × 3,000,
		// and phases long enough to settle (3,000,000 deliveries).
		if !isFlagSet(fs, "receivers") {
			f.bc.Receivers = 3000
		}
		if !isFlagSet(fs, "count") {
			f.bc.Count = 1000
		}
		return clusterCompare(*scenario, f, cl, *rounds)
	}
	names := strings.Split(*implList, ",")
	var rows []row
	switch {
	case *encryption:
		rows = encryptionRows(f)
		if !isFlagSet(fs, "impls") {
			// First, so the ratio column is marmot+gcm / marmot.
			names = []string{"marmot" + gcmSuffix, "marmot"}
		}
	case *compression:
		rows = compressionRows(f)
		if !isFlagSet(fs, "impls") {
			// First, so the ratio column is marmot+deflate / each other.
			names = []string{"marmot" + deflateSuffix, "marmot", "gorilla" + deflateSuffix, "gws" + deflateSuffix}
		}
	case *all:
		rows = allRows(f, isFlagSet(fs, "conns"))
	default:
		rows = []row{{label: label(*scenario, &f), scenario: *scenario, flags: f}}
		if *scenario == "http" {
			// Echo over the HTTP transport next to WebSocket and next to
			// Socket.IO forced to long-polling; the scenario itself is
			// echo, the names say the transport.
			rows[0].scenario = "echo"
			if !isFlagSet(fs, "impls") {
				names = []string{"marmot" + httpSuffix, "marmot", socketIOPolling}
			}
		}
	}

	ctx := context.Background()
	results := make(map[string]map[string][]*Result) // row label → impl → runs
	load0 := loadAvg()
	for round := range *rounds {
		for _, rw := range rows {
			// Rotate the order each round so no implementation always
			// runs first (or right after another's connections drain).
			order := slices.Clone(names)
			k := round % len(order)
			order = append(order[k:], order[:k]...)
			for _, impl := range order {
				fmt.Fprintf(os.Stderr, "round %d/%d  %-32s %-8s ", round+1, *rounds, rw.label, impl)
				r, err := runAgainst(ctx, rw.scenario, impl, &rw.flags)
				if err != nil {
					return err
				}
				r.Round = round + 1
				fmt.Fprintln(os.Stderr, summary(r))
				if f.json {
					r.writeJSON(os.Stdout)
				}
				if results[rw.label] == nil {
					results[rw.label] = make(map[string][]*Result)
				}
				results[rw.label][impl] = append(results[rw.label][impl], r)
			}
		}
	}
	fmt.Printf("\nload average before: %s, after: %s\n\n", load0, loadAvg())
	printComparison(os.Stdout, rows, names, results)
	return nil
}

// allRows is the table.
func allRows(f cliFlags, connsSet bool) []row {
	echo100, echo1k, bc1k, bc5k, idle := f, f, f, f, f
	echo100.echo.Clients, echo100.echo.Size = 100, 64
	echo1k.echo.Clients, echo1k.echo.Size = 1000, 1024
	bc1k.bc.Receivers, bc1k.bc.Count, bc1k.echo.Size = 1000, 200, 64
	bc5k.bc.Receivers, bc5k.bc.Count, bc5k.echo.Size = 5000, 50, 64
	if !connsSet {
		idle.conn.Conns = 19000
	}
	idle.echo.Size = 64
	return []row{
		{label: label("echo", &echo100), scenario: "echo", flags: echo100},
		{label: label("echo", &echo1k), scenario: "echo", flags: echo1k},
		{label: label("broadcast", &bc1k), scenario: "broadcast", flags: bc1k},
		{label: label("broadcast", &bc5k), scenario: "broadcast", flags: bc5k},
		{label: label("connections", &idle), scenario: "connections", flags: idle},
	}
}

// encryptionRows is the encryption table: the secure profile must
// keep ≥ 0.8× marmot's unencrypted throughput for 1 KiB messages.
func encryptionRows(f cliFlags) []row {
	echo100, echo1k, bc1k := f, f, f
	echo100.echo.Clients, echo100.echo.Size = 100, 1024
	echo1k.echo.Clients, echo1k.echo.Size = 1000, 1024
	bc1k.bc.Receivers, bc1k.bc.Count, bc1k.echo.Size = 1000, 200, 1024
	return []row{
		{label: label("echo", &echo100), scenario: "echo", flags: echo100},
		{label: label("echo", &echo1k), scenario: "echo", flags: echo1k},
		{label: label("broadcast", &bc1k), scenario: "broadcast", flags: bc1k},
	}
}

// compressionRows is the compression table: 1 KiB JSON text, echo
// and broadcast.
func compressionRows(f cliFlags) []row {
	f.payload = payloadJSON
	echo100, bc1k := f, f
	echo100.echo.Clients, echo100.echo.Size = 100, 1024
	bc1k.bc.Receivers, bc1k.bc.Count, bc1k.echo.Size = 1000, 200, 1024
	return []row{
		{label: label("echo", &echo100), scenario: "echo", flags: echo100},
		{label: label("broadcast", &bc1k), scenario: "broadcast", flags: bc1k},
	}
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

func label(scenario string, f *cliFlags) string {
	switch scenario {
	case "echo", "http":
		s := fmt.Sprintf("%s %d clients × %d B", scenario, f.echo.Clients, f.echo.Size)
		if f.payload == payloadJSON {
			s += " JSON"
		}
		if f.echo.Window > 1 {
			s += fmt.Sprintf(" (window %d)", f.echo.Window)
		}
		return s
	case "broadcast":
		s := fmt.Sprintf("broadcast %d receivers × %d msgs of %d B", f.bc.Receivers, f.bc.Count, f.echo.Size)
		if f.payload == payloadJSON {
			s += " JSON"
		}
		return s
	case "connections":
		return fmt.Sprintf("idle connections %d", f.conn.Conns)
	}
	return scenario
}

func summary(r *Result) string {
	var s string
	switch r.Scenario {
	case "echo", "http":
		s = fmt.Sprintf("%9.0f msgs/s  p50 %6.0f µs  p99 %6.0f µs  srv %.2f µs/msg  wire %.0f B/msg", r.MsgsPerSec, r.P50, r.P99, r.CPUPerMsgUs, r.WireBytesPerMsg)
	case "recover":
		s = fmt.Sprintf("caught up %d in %.0f ms  %d bytes  lost %d ooo %d", r.Deliveries, r.Seconds*1e3, r.Bytes, r.Lost, r.OutOfOrder)
	case "broadcast", "publish":
		s = fmt.Sprintf("%9.0f deliv/s  p50 %7.0f µs  p99 %7.0f µs  srv %.2f µs/deliv  wire %.0f B/deliv  lost %d dup %d ooo %d",
			r.DeliveriesPerSec, r.P50, r.P99, r.CPUPerMsgUs, r.WireBytesPerMsg, r.Lost, r.Duplicated, r.OutOfOrder)
		if r.AnswerP50 > 0 {
			s += fmt.Sprintf("  answered p50 %.0f µs p99 %.0f µs", r.AnswerP50, r.AnswerP99)
		}
	case "connections":
		s = fmt.Sprintf("%d/%d connected  %6.0f conn/s  %.1f KiB/conn  sample %d/%d", r.Connected, r.Conns, r.ConnectPerSec, r.KiBPerConn, r.SampleOK, r.Sample)
	}
	if r.Mismatched > 0 {
		s += fmt.Sprintf("  MISMATCHED %d", r.Mismatched)
	}
	if len(r.Errors) > 0 {
		s += "  ERRORS: " + strings.Join(r.Errors, "; ")
	}
	return s
}

func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}
