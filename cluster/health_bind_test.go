package cluster_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestHealthOnBindHost: the automanaged health endpoint (Bind port + 1)
// listens on the Bind host only. A node bound on 127.0.0.2 starts while
// the same port is taken on 127.0.0.4 (another node's, on one machine),
// answers /_health on 127.0.0.2, and nothing answers on 127.0.0.3 (on
// every interface, as protoactor listens, both would fail).
func TestHealthOnBindHost(t *testing.T) {
	port := freePort(t, "127.0.0.2")
	taken, err := net.Listen("tcp", fmt.Sprintf("127.0.0.4:%d", port+1))
	if err != nil {
		t.Skipf("127.0.0.4:%d: %v", port+1, err)
	}
	defer taken.Close()
	spec := nodeSpec{id: 1, ip: "127.0.0.2", bind: fmt.Sprintf("127.0.0.2:%d", port)}
	startNodes(t, clusterName("health"), []nodeSpec{spec})

	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, fmt.Sprintf("http://127.0.0.2:%d/_health", port+1), nil)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("health on the Bind host: %v", err)
	}
	_ = res.Body.Close()
	if res.StatusCode != http.StatusOK {
		t.Fatalf("health on the Bind host: %d, want 200", res.StatusCode)
	}
	c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.3:%d", port+1), waitTimeout)
	if err == nil {
		c.Close()
		t.Fatalf("the health port answers on 127.0.0.3, not only on the Bind host 127.0.0.2")
	}
	if !errors.Is(err, syscall.ECONNREFUSED) {
		t.Fatalf("dial 127.0.0.3: %v, want connection refused", err)
	}
}

// TestHealthPortTaken: a node whose health port is taken on its Bind host
// does not start (rather than run unseen by the others): Node.Start fails
// and says which port.
func TestHealthPortTaken(t *testing.T) {
	port := freePort(t, "127.0.0.2")
	taken, err := net.Listen("tcp", fmt.Sprintf("127.0.0.2:%d", port+1))
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, testnode(t))
	cmd.Env = append(os.Environ(),
		"MARMOT_CLUSTER_NAME="+clusterName("health"),
		"MARMOT_NODE_ID=1",
		fmt.Sprintf("MARMOT_BIND=127.0.0.2:%d", port),
		"MARMOT_WS_ADDR=127.0.0.2:0",
	)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	cmd.Stdin = strings.NewReader("") // a node that started would stop at once
	start := time.Now()
	err = cmd.Run()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 2 {
		t.Fatalf("node with its health port taken: %v (stdout %q, stderr %q), want exit 2", err, stdout.String(), stderr.String())
	}
	if strings.Contains(stdout.String(), "URL ") {
		t.Fatalf("the node served: %q", stdout.String())
	}
	want := fmt.Sprintf("health port (Bind port + 1): listen tcp 127.0.0.2:%d: bind: address already in use", port+1)
	if !strings.Contains(stderr.String(), want) {
		t.Fatalf("Start's error %q, want it to contain %q", stderr.String(), want)
	}
	t.Logf("failed in %v: %s", time.Since(start).Round(time.Millisecond), strings.TrimSpace(stderr.String()))
}
