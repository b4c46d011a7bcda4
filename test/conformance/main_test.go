// Package conformance is marmot's RFC 6455 conformance suite. It follows the
// case groups of the Autobahn|Testsuite (which needs Python 2 and cannot run
// here) and adds a few marmot cases (ids starting with "M."). Every case
// speaks raw TCP with hand-built frames to a marmot server (TestServer) and
// to a marmot client (TestClient), both in raw mode and echoing every
// message, and asserts the exact bytes echoed or the exact close code
// received.
//
// With MARMOT_CONFORMANCE_REPORT=path the run writes its results table to
// path (relative paths are taken from the module root):
//
//	MARMOT_CONFORMANCE_REPORT=docs/CONFORMANCE.md go test ./test/conformance
package conformance

import (
	"fmt"
	"log/slog"
	"os"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/marmotws/marmot"
)

// reportEnv names the environment variable that asks for the results table.
const reportEnv = "MARMOT_CONFORMANCE_REPORT"

// TestMain fails the run if a goroutine outlives the tests, and writes the
// results table when asked to.
func TestMain(m *testing.M) {
	code := m.Run()
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintf(os.Stderr, "goleak: %v\n", err)
			code = 1
		}
	}
	if path := os.Getenv(reportEnv); path != "" {
		if err := writeReport(path); err != nil {
			fmt.Fprintf(os.Stderr, "conformance report: %v\n", err)
			code = 1
		}
	}
	os.Exit(code)
}

// guard bounds every wait on an event (a read, a handshake). It only fires
// when a case is already failing, so it is generous for a busy machine
// running -race.
const guard = 20 * time.Second

// maxMessage is MaxMessageSize of the server and client under test: over
// the 256 KiB message of case 7.1.6, small enough to exceed cheaply.
const maxMessage = 512 << 10

// logger discards logs unless MARMOT_TEST_LOG is set.
func logger() *slog.Logger {
	if os.Getenv("MARMOT_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

// echo is the handler of the server and the client under test: every
// message goes back as it came (the frame type included).
func echo(m *marmot.Message) { _ = m.Reply(m.Payload) }
