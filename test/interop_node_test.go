package test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/marmotws/marmot"
)

// nodeMessages is N in ws_client.mjs: N text and N binary messages.
const nodeMessages = 50

// nodeSetupHint says how to get or skip the Node peers.
const nodeSetupHint = "install Node.js 18 or later with npm (Debian: apt-get install nodejs npm), " +
	"or set MARMOT_SKIP_NODE=1 to skip the Node interop tests"

// requireNode returns the node binary, skipping the test when
// MARMOT_SKIP_NODE=1. On first use it installs the pinned Node peer
// (npm ci in test/interop), so that "go test ./..." works on a fresh clone.
// It fails the test when node or npm is missing or the install fails: a
// silently skipped interop test is a test nobody runs.
func requireNode(t *testing.T) string {
	t.Helper()
	if os.Getenv("MARMOT_SKIP_NODE") == "1" {
		t.Skip("MARMOT_SKIP_NODE=1")
	}
	node, err := exec.LookPath("node")
	if err != nil {
		t.Fatalf("node not found in PATH (%v); %s", err, nodeSetupHint)
	}
	dir, err := filepath.Abs("interop")
	if err != nil {
		t.Fatal(err)
	}
	if err := ensureNodePeer(dir); err != nil {
		t.Fatalf("%v\n%s", err, nodeSetupHint)
	}
	return node
}

// nodeCommand runs an interop script with cwd test/interop, so that the
// script resolves ws from test/interop/node_modules.
func nodeCommand(ctx context.Context, node, script string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, node, append([]string{script}, args...)...)
	cmd.Dir = "interop"
	cmd.WaitDelay = 5 * time.Second // do not hang on inherited pipes after a kill
	return cmd
}

// TestNodeClientRawEcho: Node's ws client sends text and binary frames to a
// marmot echo server; each must come back with the same type and bytes, the
// close must be a clean 1000, and the server's counters must be exact. The
// client offers permessage-deflate: a server with compression accepts it
// (and the echoes go back compressed), one without declines.
func TestNodeClientRawEcho(t *testing.T) {
	for _, compress := range []bool{false, true} {
		t.Run(fmt.Sprintf("compression=%v", compress), func(t *testing.T) { nodeClientRawEcho(t, compress) })
	}
}

func nodeClientRawEcho(t *testing.T, compress bool) {
	node := requireNode(t)
	disconnected := make(chan *marmot.CloseError, 1)
	var received int64 // bytes seen by OnDataReceived; read after disconnected
	srv := startServer(t, marmot.ServerConfig{
		Compression: marmot.Compression{Enabled: compress},
		ServerEvents: marmot.ServerEvents{
			OnHandleCommand: echo,
			OnDataReceived:  func(_ marmot.ClientID, data []byte) { received += int64(len(data)) },
			OnClientDisconnected: func(_ marmot.ClientInfo, reason *marmot.CloseError) {
				disconnected <- reason
			},
		},
	})

	var stdout, stderr bytes.Buffer
	cmd := nodeCommand(timeout(t), node, "ws_client.mjs", srv.URL(), fmt.Sprint(nodeMessages))
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("ws_client.mjs: %v\nstdout: %s\nstderr: %s", err, stdout.String(), stderr.String())
	}
	var res struct {
		Messages   int64
		Bytes      int64
		Extensions string
		CloseCode  int
	}
	if err := json.Unmarshal(stdout.Bytes(), &res); err != nil {
		t.Fatalf("ws_client.mjs output %q: %v", stdout.String(), err)
	}
	if res.Messages != 2*nodeMessages || res.CloseCode != marmot.CloseNormal {
		t.Fatalf("ws_client.mjs reported %+v", res)
	}
	if want := map[bool]string{true: "permessage-deflate"}[compress]; res.Extensions != want {
		t.Fatalf("ws_client.mjs negotiated extensions %q, want %q", res.Extensions, want)
	}

	reason := recv(t, disconnected, "OnClientDisconnected")
	if reason.Code != marmot.CloseNormal || !reason.ByPeer {
		t.Errorf("server saw close %+v, want 1000 initiated by the peer", reason)
	}
	// OnClientDisconnected runs after every message of the connection, so
	// the counters are final now.
	want := marmot.Stats{
		TotalConnections:      1,
		TotalBytesReceived:    res.Bytes,
		TotalBytesSent:        res.Bytes,
		TotalMessagesReceived: res.Messages,
		TotalMessagesSent:     res.Messages,
	}
	if got := srv.Stats(); got != want {
		t.Errorf("stats\n got %+v\nwant %+v", got, want)
	}
	if received != res.Bytes {
		t.Errorf("OnDataReceived saw %d bytes, want %d", received, res.Bytes)
	}
}

// TestClientAgainstNodeServer: a raw-mode marmot Client against Node's ws
// echo server: frame types and bytes survive, and Disconnect closes with
// 1000; with compression on both, permessage-deflate is negotiated and
// both ways compressed.
func TestClientAgainstNodeServer(t *testing.T) {
	for _, compress := range []bool{false, true} {
		t.Run(fmt.Sprintf("compression=%v", compress), func(t *testing.T) { clientAgainstNodeServer(t, compress) })
	}
}

func clientAgainstNodeServer(t *testing.T, compress bool) {
	node := requireNode(t)
	ctx := timeout(t)
	var args []string
	if compress {
		args = append(args, "--deflate")
	}
	cmd := nodeCommand(ctx, node, "ws_echo_server.mjs", args...)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lines := make(chan string, 4)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			lines <- sc.Text()
		}
	}()
	t.Cleanup(func() {
		_ = stdin.Close() // the server exits at EOF
		if err := cmd.Wait(); err != nil {
			t.Errorf("ws_echo_server.mjs: %v\nstderr: %s", err, stderr.String())
		}
	})
	nextLine := func(what string, v any) {
		t.Helper()
		line, ok := <-lines // bounded: ctx kills the server and closes lines
		if !ok {
			t.Fatalf("ws_echo_server.mjs ended before %s; stderr: %s", what, stderr.String())
		}
		if err := json.Unmarshal([]byte(line), v); err != nil {
			t.Fatalf("ws_echo_server.mjs %s line %q: %v", what, line, err)
		}
	}
	var listening struct{ Port int }
	nextLine("listening", &listening)

	type frame struct {
		typ  marmot.MessageType
		data []byte
	}
	got := make(chan frame, 2*nodeMessages)
	disconnected := make(chan *marmot.CloseError, 1)
	c, err := marmot.NewClient(marmot.ClientConfig{
		URL:         fmt.Sprintf("ws://127.0.0.1:%d/", listening.Port),
		Logger:      logger(),
		Compression: marmot.Compression{Enabled: compress},
		ClientEvents: marmot.ClientEvents{
			OnHandleCommand: func(m *marmot.Message) { got <- frame{m.Type, m.Payload} },
			OnDisconnect:    func(r *marmot.CloseError) { disconnected <- r },
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = c.Close(context.Background()) }()
	if err := c.Connect(ctx); err != nil {
		t.Fatal(err)
	}

	var sent []frame
	for i := range nodeMessages {
		text := fmt.Appendf(nil, "text %d ✓ %s", i, bytes.Repeat([]byte("y"), i*311))
		bin := append([]byte{0xff, 0xfe, byte(i)}, bytes.Repeat([]byte{0, 0x80}, i*211)...)
		if i == 0 {
			bin = []byte("ASCII in a binary frame")
		}
		sent = append(sent, frame{marmot.TextMessage, text}, frame{marmot.BinaryMessage, bin})
	}
	var total int64
	for _, f := range sent {
		if err := c.SendRaw(f.typ, f.data); err != nil {
			t.Fatal(err)
		}
		total += int64(len(f.data))
	}
	for i, want := range sent {
		f := recv(t, got, fmt.Sprintf("echo #%d", i+1))
		if f.typ != want.typ || !bytes.Equal(f.data, want.data) {
			t.Fatalf("echo #%d: %s of %d bytes, want %s of %d bytes", i+1, f.typ, len(f.data), want.typ, len(want.data))
		}
	}
	if err := c.Disconnect(ctx); err != nil {
		t.Fatal(err)
	}
	if r := recv(t, disconnected, "OnDisconnect"); r.Code != marmot.CloseNormal {
		t.Errorf("client saw close %+v, want 1000", r)
	}
	var closed struct {
		Closed     int
		Protocol   string
		Extensions string
	}
	nextLine("closed", &closed)
	if closed.Closed != marmot.CloseNormal || closed.Protocol != "" {
		t.Errorf("Node server saw %+v, want close 1000 without subprotocol", closed)
	}
	if want := map[bool]string{true: "permessage-deflate"}[compress]; closed.Extensions != want {
		t.Errorf("Node server negotiated extensions %q, want %q", closed.Extensions, want)
	}
	st := c.Stats()
	if st.MessagesSent != int64(len(sent)) || st.MessagesReceived != int64(len(sent)) ||
		st.BytesSent != total || st.BytesReceived != total {
		t.Errorf("client stats %+v, want %d messages and %d bytes each way", st, len(sent), total)
	}
}
