package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// socketIOPolling names the Socket.IO baseline of the http scenario: a
// Node socket.io server and socket.io-client clients, both forced to
// long-polling, pinned in test/socketio (package-lock.json).
const socketIOPolling = "socketio-polling"

// socketIODir finds test/socketio from the repository root or from
// test/load (go test runs there).
func socketIODir() (string, error) {
	for _, d := range []string{"test/socketio", "../socketio"} {
		if _, err := os.Stat(filepath.Join(d, "package.json")); err == nil {
			return filepath.Abs(d)
		}
	}
	return "", fmt.Errorf("test/socketio not found: run from the repository root")
}

// runSocketIO runs the echo scenario against the Socket.IO baseline: its
// server in one Node process, its clients in another (as the Go clients
// are in a process of their own), and reads the clients' JSON result.
func runSocketIO(ctx context.Context, scenario string, f *cliFlags) (*Result, error) {
	if scenario != "echo" && scenario != "http" {
		return nil, fmt.Errorf("%s runs the echo scenario only", socketIOPolling)
	}
	dir, err := socketIODir()
	if err != nil {
		return nil, err
	}
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "socket.io")); err != nil {
		cmd := exec.CommandContext(ctx, "npm", "ci", "--no-audit", "--no-fund")
		cmd.Dir = dir
		if out, err := cmd.CombinedOutput(); err != nil {
			return nil, fmt.Errorf("npm ci in %s: %w\n%s", dir, err, out)
		}
	}
	ctx, cancel := context.WithTimeout(ctx, f.maxDuration)
	defer cancel()
	srv := exec.Command("node", "server.mjs")
	srv.Dir = dir
	srv.Stderr = os.Stderr
	out, err := srv.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := srv.Start(); err != nil {
		return nil, fmt.Errorf("node server.mjs: %w", err)
	}
	defer func() {
		_ = srv.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { _ = srv.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			_ = srv.Process.Kill()
			<-done
		}
	}()
	line, err := bufio.NewReader(out).ReadString('\n')
	port, ok := strings.CutPrefix(strings.TrimSpace(line), "listening ")
	if err != nil || !ok {
		return nil, fmt.Errorf("node server.mjs: %q %v", line, err)
	}
	pid := srv.Process.Pid
	o := f.echo
	res := &Result{Scenario: "echo", Impl: socketIOPolling, Clients: o.Clients, Size: o.Size, Window: 1}
	if o.Window > 1 {
		res.addErr("%s: only window 1", socketIOPolling)
	}
	cpu0, _ := procCPU(pid)
	cli := exec.CommandContext(ctx, "node", "client.mjs", "--url", "http://127.0.0.1:"+port,
		"--clients", strconv.Itoa(o.Clients), "--size", strconv.Itoa(o.Size),
		"--duration", strconv.FormatFloat(o.Duration.Seconds(), 'f', -1, 64),
		"--max-duration", strconv.FormatFloat(f.maxDuration.Seconds(), 'f', -1, 64))
	cli.Dir = dir
	cli.Stderr = os.Stderr
	b, err := cli.Output()
	if err != nil {
		return nil, fmt.Errorf("node client.mjs: %w", err)
	}
	cpu, _ := procCPU(pid)
	var r struct {
		Msgs                int64
		Seconds, MsgsPerSec float64
		P50, P90, P99, Max  float64
		Mismatched          int64
		Errors              []string
	}
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("node client.mjs printed %q: %w", b, err)
	}
	res.Msgs, res.Seconds, res.MsgsPerSec = r.Msgs, r.Seconds, r.MsgsPerSec
	res.P50, res.P90, res.P99, res.Max = r.P50, r.P90, r.P99, r.Max
	res.Mismatched, res.Verified = r.Mismatched, r.Msgs-r.Mismatched
	for _, e := range r.Errors {
		res.addErr("%s", e)
	}
	if r.Msgs > 0 {
		res.ServerCPUms = float64(cpu-cpu0) / 1e6
		res.CPUPerMsgUs = float64(cpu-cpu0) / 1e3 / float64(r.Msgs)
	}
	res.ServerRSSKiB, _ = procRSS(pid)
	return res, nil
}
