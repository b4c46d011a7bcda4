// Command marmot runs a marmot WebSocket server or connects to one.
//
// Usage:
//
//	marmot serve   [flags]       run an echo or broadcast server
//	marmot connect [flags] URL   interactive client, like wscat
//	marmot chaos   [flags]       fault-injecting TCP proxy
//
// Run "marmot serve -h" or "marmot connect -h" for the flags. Exit codes: 0
// on success, 1 on a runtime failure, 2 on bad usage (unknown subcommand or
// flag, invalid flag value).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"

	"github.com/marmotws/marmot"
)

// Exit codes, following the flag package's convention that usage errors are 2.
const (
	exitOK      = 0
	exitFailure = 1
	exitUsage   = 2
)

func main() {
	// SIGINT and SIGTERM cancel ctx so that serve can stop gracefully and
	// connect can send its close frame; a second signal kills the process
	// the usual way because NotifyContext stops relaying after cancel.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

const usage = `marmot: a WebSocket server and client built on actors

Usage:
  marmot serve   [flags]       run an echo or broadcast server
  marmot connect [flags] URL   connect to a server; stdin lines are sent,
                               incoming messages are printed
  marmot chaos   [flags]       a TCP proxy that injects faults, with an
                               HTTP control API (docs/FAULTS.md)
  marmot help                  show this help

Run "marmot <command> -h" for the flags of a command.
`

// run is main without the process: it parses args (without the program
// name), runs the subcommand until it ends or ctx is cancelled and returns the
// exit code. Tests call it in-process with pipes.
func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return exitUsage
	}
	// Callbacks print from actor goroutines while the command prints from its
	// own; serialising writes keeps lines whole.
	stdout, stderr = &lockedWriter{w: stdout}, &lockedWriter{w: stderr}
	switch args[0] {
	case "serve":
		return runServe(ctx, args[1:], stdout, stderr)
	case "connect":
		return runConnect(ctx, args[1:], stdin, stdout, stderr)
	case "chaos":
		return runChaos(ctx, args[1:], stdout, stderr)
	case "help", "-h", "-help", "--help":
		fmt.Fprint(stdout, usage)
		return exitOK
	default:
		fmt.Fprintf(stderr, "marmot: unknown command %q\n\n%s", args[0], usage)
		return exitUsage
	}
}

// parseFlags parses args with fs, allowing flags after positional arguments
// ("marmot connect URL --subprotocol marmot.v1"), which the flag package
// alone stops at. It returns the positional arguments, or an exit code when
// parsing should end the command: 0 after -h, 2 after an error (the flag
// package has already printed the message and usage to fs.Output()).
func parseFlags(fs *flag.FlagSet, args []string) ([]string, int, bool) {
	var positional []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, exitOK, false
			}
			return nil, exitUsage, false
		}
		rest := fs.Args()
		if len(rest) == 0 {
			return positional, 0, true
		}
		// Parse swallows a "--" terminator: everything after it is
		// positional, even if it looks like a flag.
		if n := len(args) - len(rest); n > 0 && args[n-1] == "--" {
			return append(positional, rest...), 0, true
		}
		positional = append(positional, rest[0])
		args = rest[1:]
	}
}

// usageError reports a bad flag value found after parsing, in the same shape
// as the flag package's own errors, and returns the usage exit code.
func usageError(fs *flag.FlagSet, format string, a ...any) int {
	fmt.Fprintf(fs.Output(), "marmot %s: %s\n", fs.Name(), fmt.Sprintf(format, a...))
	fmt.Fprintf(fs.Output(), "Run \"marmot %s -h\" for usage.\n", fs.Name())
	return exitUsage
}

// logLevel is a flag.Value restricted to the four slog levels by name: slog's
// own parser also accepts forms such as "info+2", which would only confuse.
type logLevel struct{ level slog.Level }

func (l *logLevel) String() string { return strings.ToLower(l.level.String()) }

func (l *logLevel) Set(s string) error {
	switch strings.ToLower(s) {
	case "debug":
		l.level = slog.LevelDebug
	case "info":
		l.level = slog.LevelInfo
	case "warn", "warning":
		l.level = slog.LevelWarn
	case "error":
		l.level = slog.LevelError
	default:
		return fmt.Errorf("want debug, info, warn or error")
	}
	return nil
}

// newLogger logs text lines to w at level and above. Records logged with a
// span's context (a handler's m.Context()) carry trace_id and span_id, so a
// log line leads to its trace.
func newLogger(w io.Writer, level slog.Level) *slog.Logger {
	return slog.New(marmot.NewLogHandler(slog.NewTextHandler(w, &slog.HandlerOptions{Level: level})))
}

// lockedWriter serialises writes to w.
type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}
