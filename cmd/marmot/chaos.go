package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/marmotws/marmot/chaos"
)

// chaosFlags holds "marmot chaos" options.
type chaosFlags struct {
	listen, upstream, control string
	faults                    chaos.Faults
	logLevel                  logLevel
	trace                     *traceFlags
}

func newChaosFlags(stderr io.Writer) (*flag.FlagSet, *chaosFlags) {
	f := &chaosFlags{logLevel: logLevel{slog.LevelInfo}}
	fs := flag.NewFlagSet("chaos", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), "Usage: marmot chaos --upstream ADDR [flags]\n\n"+
			"Runs a TCP proxy that injects faults (latency, jitter, bandwidth cap,\n"+
			"reset, blackhole, refuse, down/up) between clients and --upstream, until\n"+
			"SIGINT or SIGTERM. The HTTP control API on --control changes them while it\n"+
			"runs (docs/FAULTS.md).\n\nFlags:\n")
		fs.PrintDefaults()
	}
	fs.StringVar(&f.listen, "listen", "127.0.0.1:8081", "proxy listen address (host:port; port 0 picks a free one)")
	fs.StringVar(&f.upstream, "upstream", "", "address connections are forwarded to (host:port; required)")
	fs.StringVar(&f.control, "control", "127.0.0.1:8474", "HTTP control API address (port 0 picks a free one; empty: none)")
	fs.DurationVar(&f.faults.Latency, "latency", 0, "initial latency added to each direction")
	fs.DurationVar(&f.faults.Jitter, "jitter", 0, "initial jitter (± this, around --latency)")
	fs.Int64Var(&f.faults.Bandwidth, "bandwidth", 0, "initial bandwidth cap per direction and connection, in bytes per second (0: none)")
	fs.Var(&f.logLevel, "log-level", "log `level`: debug, info, warn or error (default info)")
	f.trace = addTraceFlags(fs)
	return fs, f
}

func runChaos(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs, f := newChaosFlags(stderr)
	pos, code, ok := parseFlags(fs, args)
	if !ok {
		return code
	}
	if len(pos) > 0 {
		return usageError(fs, "unexpected argument %q", pos[0])
	}
	if f.upstream == "" {
		return usageError(fs, "--upstream is required")
	}
	if _, _, err := net.SplitHostPort(f.upstream); err != nil {
		return usageError(fs, "invalid value %q for flag -upstream: %v", f.upstream, err)
	}
	if err := f.faults.Validate(); err != nil {
		return usageError(fs, "%v", err)
	}
	log := newLogger(stderr, f.logLevel.level)
	tr, err := setupTracing(ctx, "marmot-chaos", f.trace, stdout, stderr)
	if err != nil {
		fmt.Fprintf(stderr, "marmot chaos: %v\n", err)
		return exitFailure
	}
	defer tr.shutdown(ctx)

	p, err := chaos.NewProxy(f.listen, f.upstream, chaos.Options{Logger: log, TracerProvider: tr.provider()})
	if err != nil {
		fmt.Fprintf(stderr, "marmot chaos: %v\n", err)
		return exitFailure
	}
	defer p.Close()
	if f.faults != (chaos.Faults{}) {
		_ = p.Set(f.faults) // validated above
	}
	fmt.Fprintf(stdout, "chaos proxy on %s -> %s\n", p.Addr(), f.upstream)

	if f.control != "" {
		ln, err := net.Listen("tcp", f.control)
		if err != nil {
			fmt.Fprintf(stderr, "marmot chaos: control: %v\n", err)
			return exitFailure
		}
		srv := &http.Server{Handler: p.Handler(), ReadHeaderTimeout: 10 * time.Second}
		done := make(chan struct{})
		go func() {
			defer close(done)
			if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				log.Error("chaos control", slog.Any("err", err))
			}
		}()
		defer func() {
			sctx, cancel := context.WithTimeout(context.Background(), stopTimeout)
			defer cancel()
			_ = srv.Shutdown(sctx)
			<-done
		}()
		fmt.Fprintf(stdout, "chaos control on http://%s/\n", ln.Addr())
	}
	<-ctx.Done()
	return exitOK
}
