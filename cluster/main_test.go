package cluster_test

import (
	"bufio"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// The cluster tests run every node in its own process: the testnode
// command (internal/testnode), built once per test run, reports on stdout
// ("URL ...", "MEMBERS 1,2,3") until its stdin closes.
func TestMain(m *testing.M) {
	cleanup := func(code int) {
		if nodeBin != "" {
			_ = os.RemoveAll(filepath.Dir(nodeBin))
		}
		os.Exit(code)
	}
	if benchmarking() {
		// The benchmarks (rooms_bench_test.go) run protoactor cluster
		// members in this process, and protoactor and its gRPC leave
		// goroutines behind after a member's shutdown: no leak check
		// then. The tests run their nodes in processes of their own.
		cleanup(m.Run())
	}
	goleak.VerifyTestMain(m, goleak.Cleanup(cleanup))
}

// benchmarking says whether -test.bench asks for benchmarks.
func benchmarking() bool {
	flag.Parse()
	f := flag.Lookup("test.bench")
	return f != nil && f.Value.String() != ""
}

var (
	buildOnce sync.Once
	nodeBin   string
	buildErr  error
)

// testnode builds the testnode command (without -race: see its doc).
func testnode(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "marmot-testnode-")
		if err != nil {
			buildErr = err
			return
		}
		nodeBin = filepath.Join(dir, "testnode")
		cmd := exec.Command(filepath.Join(runtime.GOROOT(), "bin", "go"), "build", "-o", nodeBin, "./internal/testnode")
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("build testnode: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return nodeBin
}

// waitTimeout bounds every wait on an event; it only fires when a test is
// already failing, so it is generous for a busy 2-core machine.
const waitTimeout = 60 * time.Second

// proc is a node process.
type proc struct {
	t      *testing.T
	id     int
	bind   string
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	url    string
	lines  chan string // stdout lines after URL
	exited chan struct{}
}

// nodeSpec says where a node lives.
type nodeSpec struct {
	id   int
	ip   string
	bind string // cluster Bind
	// advertise, when set, is where the others reach the node (a proxy
	// in front of bind: MARMOT_ADVERTISE), and what they have as its seed.
	advertise string
	// seeds, when set, replaces the node's seeds (the others' addresses).
	seeds []string
}

// addr is the node's address as the others reach it.
func (s nodeSpec) addr() string {
	if s.advertise != "" {
		return s.advertise
	}
	return s.bind
}

// freePort picks a cluster port on ip whose next port is free on every
// interface (automanaged's health endpoint listens on the Bind host;
// every interface is stricter), below the kernel's ephemeral
// range (32768 and up on Linux), where the outgoing connections of other
// processes on a busy machine would take them between the pick and the
// node's start.
func freePort(t testing.TB, ip string) int {
	t.Helper()
	for range 200 {
		port := 20000 + rand.IntN(12000)
		ln, err := net.Listen("tcp", fmt.Sprintf("%s:%d", ip, port))
		if err != nil {
			continue
		}
		ln.Close()
		h, err := net.Listen("tcp", fmt.Sprintf("0.0.0.0:%d", port+1))
		if err != nil {
			continue
		}
		h.Close()
		return port
	}
	t.Fatal("no free port pair")
	return 0
}

func startProc(t *testing.T, name string, spec nodeSpec, all []nodeSpec, env ...string) *proc {
	t.Helper()
	return startProcBin(t, testnode(t), name, spec, all, env...)
}

// startProcBin is startProc with another node binary (a baseline's
// testnode, for figures).
func startProcBin(t *testing.T, bin, name string, spec nodeSpec, all []nodeSpec, env ...string) *proc {
	t.Helper()
	seeds := spec.seeds
	if seeds == nil {
		for _, s := range all {
			if s.id != spec.id {
				seeds = append(seeds, s.addr())
			}
		}
	}
	cmd := exec.Command(bin)
	cmd.Env = append(os.Environ(),
		"MARMOT_CLUSTER_NAME="+name,
		"MARMOT_NODE_ID="+strconv.Itoa(spec.id),
		"MARMOT_BIND="+spec.bind,
		"MARMOT_SEEDS="+strings.Join(seeds, ","),
		"MARMOT_WS_ADDR="+spec.ip+":0",
	)
	if spec.advertise != "" {
		cmd.Env = append(cmd.Env, "MARMOT_ADVERTISE="+spec.advertise)
	}
	cmd.Env = append(cmd.Env, env...)
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &proc{t: t, id: spec.id, bind: spec.bind, cmd: cmd, stdin: stdin, lines: make(chan string, 100), exited: make(chan struct{})}
	urls := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			line := sc.Text()
			if u, ok := strings.CutPrefix(line, "URL "); ok {
				urls <- u
				continue
			}
			select {
			case p.lines <- line:
			default: // nobody waits for old lines
			}
		}
		_ = cmd.Wait()
		close(p.exited)
	}()
	t.Cleanup(p.stop)
	select {
	case p.url = <-urls:
	case <-p.exited:
		t.Fatalf("node %d exited before it started", spec.id)
	case <-time.After(waitTimeout):
		t.Fatalf("node %d did not start", spec.id)
	}
	return p
}

// clusterName is a cluster name of its own for a test (clusters with the
// same name on reachable addresses join each other).
func clusterName(prefix string) string { return fmt.Sprintf("%s-%d", prefix, time.Now().UnixNano()) }

// startNodes starts a node process for every spec, in the cluster name,
// and waits until each lists them all.
func startNodes(t *testing.T, name string, specs []nodeSpec, env ...string) []*proc {
	t.Helper()
	procs := make([]*proc, len(specs))
	ids := make([]string, len(specs))
	for i, s := range specs {
		procs[i] = startProc(t, name, s, specs, env...)
		ids[i] = strconv.Itoa(s.id)
	}
	for _, p := range procs {
		p.waitMembers(strings.Join(ids, ","))
	}
	return procs
}

// stop ends the node gracefully (stdin closed), or kills it after the
// deadline.
func (p *proc) stop() {
	_ = p.stdin.Close()
	select {
	case <-p.exited:
	case <-time.After(waitTimeout):
		_ = p.cmd.Process.Kill()
		<-p.exited
	}
}

// kill SIGKILLs the node and waits for it to be gone.
func (p *proc) kill() {
	_ = p.cmd.Process.Kill()
	<-p.exited
}

// waitMembers waits until the node reports exactly the members want.
func (p *proc) waitMembers(want string) {
	p.t.Helper()
	deadline := time.After(waitTimeout)
	last := ""
	for {
		select {
		case line := <-p.lines:
			if m, ok := strings.CutPrefix(line, "MEMBERS "); ok {
				last = m
				if m == want {
					return
				}
			}
		case <-p.exited:
			p.t.Fatalf("node %d exited", p.id)
		case <-deadline:
			p.t.Fatalf("node %d: members %q, want %q", p.id, last, want)
		}
	}
}

// startEtcd runs Debian's etcd-server on loopback with a temporary data
// directory, and stops it by its PID when the test ends. It returns the
// client endpoint. Without etcd the test is skipped, unless
// MARMOT_REQUIRE_ETCD is set (CI installs it).
func startEtcd(t *testing.T) string { return newEtcd(t).endpoint }

// etcdServer is an etcd-server process that a test can stop and start
// again on the same ports and data directory.
type etcdServer struct {
	t            *testing.T
	bin, dir     string
	client, peer string // URLs
	endpoint     string // host:port of client
	cmd          *exec.Cmd
	exited       chan struct{}
}

// newEtcd starts an etcd server (see startEtcd); it is killed when the
// test ends.
func newEtcd(t *testing.T) *etcdServer {
	t.Helper()
	bin, err := exec.LookPath("etcd")
	if err != nil {
		if os.Getenv("MARMOT_REQUIRE_ETCD") != "" {
			t.Fatalf("etcd: %v", err)
		}
		t.Skipf("etcd not installed: %v", err)
	}
	port := func() int {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		return ln.Addr().(*net.TCPAddr).Port
	}
	e := &etcdServer{t: t, bin: bin, dir: t.TempDir(),
		client: fmt.Sprintf("http://127.0.0.1:%d", port()), peer: fmt.Sprintf("http://127.0.0.1:%d", port())}
	e.endpoint = strings.TrimPrefix(e.client, "http://")
	t.Cleanup(e.stop)
	e.start()
	return e
}

// start runs etcd and waits until it serves clients.
func (e *etcdServer) start() {
	t := e.t
	t.Helper()
	cmd := exec.Command(e.bin, "--name", "test", "--data-dir", e.dir,
		"--listen-client-urls", e.client, "--advertise-client-urls", e.client,
		"--listen-peer-urls", e.peer, "--initial-advertise-peer-urls", e.peer,
		"--initial-cluster", "test="+e.peer, "--logger", "zap")
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	ready := make(chan struct{})
	exited := make(chan struct{})
	e.cmd, e.exited = cmd, exited
	go func() {
		sc := bufio.NewScanner(stderr)
		once := sync.Once{}
		for sc.Scan() {
			// etcd 3.4 with the zap logger says this once it serves
			// clients (later versions also "ready to serve client requests").
			if l := sc.Text(); strings.Contains(l, "serving client traffic") || strings.Contains(l, "ready to serve client requests") {
				once.Do(func() { close(ready) })
			}
		}
		_ = cmd.Wait()
		close(exited)
	}()
	select {
	case <-ready:
	case <-exited:
		t.Fatal("etcd exited before it was ready")
	case <-time.After(waitTimeout):
		t.Fatal("etcd not ready")
	}
}

// stop kills etcd (by its PID) and waits for it to be gone.
func (e *etcdServer) stop() {
	if e.cmd == nil {
		return
	}
	_ = e.cmd.Process.Kill()
	<-e.exited
	e.cmd = nil
}
