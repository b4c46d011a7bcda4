package main

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// The marmot binary, built once per test process by buildBinary for the
// tests that need a real process (signals, the real stdout and stderr).
// Not "go run": killing a "go run" process leaves the program it started
// running. binDir is removed by TestMain.
var (
	binOnce sync.Once
	binDir  string
	binPath string
	binErr  error
)

func buildBinary(t *testing.T) string {
	t.Helper()
	binOnce.Do(func() {
		if binDir, binErr = os.MkdirTemp("", "marmot-cli-test-"); binErr != nil {
			return
		}
		goTool, err := exec.LookPath("go") // go test puts its GOROOT/bin first in PATH
		if err != nil {
			binErr = err
			return
		}
		binPath = filepath.Join(binDir, "marmot")
		out, err := exec.Command(goTool, "build", "-o", binPath, ".").CombinedOutput()
		if err != nil {
			binErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if binErr != nil {
		t.Fatalf("building the marmot binary: %v", binErr)
	}
	return binPath
}

// removeBinary deletes what buildBinary built; TestMain calls it.
func removeBinary() {
	if binDir != "" {
		_ = os.RemoveAll(binDir)
	}
}

// binProc is one run of the built binary.
type binProc struct {
	cmd    *exec.Cmd
	stdout *lineLog
	stderr *lineLog
	done   chan struct{} // closed when the process has exited
}

// startBinary runs the built binary with args; the test's cleanup kills it
// if it is still running.
func startBinary(t *testing.T, args ...string) *binProc {
	t.Helper()
	cmd := exec.Command(buildBinary(t), args...)
	outR, outW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	errR, errW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = outW, errW
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// The child holds its own copies: the readers see EOF when it exits.
	_ = outW.Close()
	_ = errW.Close()
	p := &binProc{
		cmd:    cmd,
		stdout: newLineLog("marmot "+args[0]+" stdout", outR),
		stderr: newLineLog("marmot "+args[0]+" stderr", errR),
		done:   make(chan struct{}),
	}
	go func() {
		_ = cmd.Wait() // the exit code is in cmd.ProcessState
		close(p.done)
	}()
	t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			_ = cmd.Process.Kill()
			<-p.done
		}
		p.stdout.all(t) // the readers have ended
		p.stderr.all(t)
		_ = outR.Close()
		_ = errR.Close()
	})
	return p
}

// exitCode waits for the process to exit and returns its exit code.
func (p *binProc) exitCode(t *testing.T) int {
	t.Helper()
	select {
	case <-p.done:
	case <-time.After(guard):
		t.Fatalf("marmot did not exit; stderr:\n%s", p.stderr)
	}
	return p.cmd.ProcessState.ExitCode()
}

// TestBinaryStopsOnSignal runs the real binary: SIGINT (Ctrl-C) and SIGTERM
// (kill) stop "marmot serve" gracefully: clients get 1001, the exit code is
// 0 and the port is free again.
func TestBinaryStopsOnSignal(t *testing.T) {
	for _, sig := range []syscall.Signal{syscall.SIGINT, syscall.SIGTERM} {
		t.Run(sig.String(), func(t *testing.T) {
			srv := startBinary(t, "serve", "--addr", "127.0.0.1:0")
			url := strings.TrimPrefix(srv.stdout.expect(t, "marmot listening on "), "marmot listening on ")
			c := connect(t, url)
			srv.stderr.expect(t, "client connected")
			c.send(t, "hello")
			c.stdout.expect(t, "< hello")

			if err := srv.cmd.Process.Signal(sig); err != nil {
				t.Fatal(err)
			}
			c.stderr.expect(t, "closed by the server with code 1001")
			if code := srv.exitCode(t); code != exitOK {
				t.Fatalf("exit code %d after %v, want 0; stderr:\n%s", code, sig, srv.stderr)
			}
			srv.stderr.expect(t, "stopped")
			if code := c.wait(t); code != exitFailure {
				t.Errorf("connect: exit code %d after the server went away, want %d", code, exitFailure)
			}

			// The port is free once the process is gone.
			hostPort := strings.TrimSuffix(strings.TrimPrefix(url, "ws://"), "/websocket")
			ln, err := net.Listen("tcp", hostPort)
			if err != nil {
				t.Fatalf("port still held after exit: %v", err)
			}
			_ = ln.Close()
		})
	}
}

// TestBinaryTraceStdout: in the real process, --trace-stdout spans reach
// file descriptor 1 and logs fd 2.
func TestBinaryTraceStdout(t *testing.T) {
	t.Setenv(envOTLPEndpoint, "")
	t.Setenv(envOTLPTracesEndpoint, "")
	srv := startBinary(t, "serve", "--addr", "127.0.0.1:0", "--trace-stdout")
	url := strings.TrimPrefix(srv.stdout.expect(t, "marmot listening on "), "marmot listening on ")
	c := connect(t, url)
	srv.stderr.expect(t, "client connected")
	srv.stdout.expect(t, `{"Name":"marmot.upgrade",`)
	c.quit(t)
	srv.stderr.expect(t, "client disconnected")
	if err := srv.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if code := srv.exitCode(t); code != exitOK {
		t.Fatalf("exit code %d, want 0; stderr:\n%s", code, srv.stderr)
	}
	if strings.Contains(srv.stderr.String(), `"SpanContext"`) {
		t.Errorf("a span on stderr:\n%s", srv.stderr)
	}
}
