package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/coder/websocket"

	"github.com/marmotws/marmot"
	"github.com/marmotws/marmot/crypto"
	"github.com/marmotws/marmot/protocol"
)

// raiseFileLimit lifts the soft RLIMIT_NOFILE to the hard limit: the load
// tool holds every client socket, the server process every server socket.
func raiseFileLimit() {
	var r syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &r); err != nil {
		return
	}
	if r.Cur < r.Max {
		r.Cur = r.Max
		_ = syscall.Setrlimit(syscall.RLIMIT_NOFILE, &r)
	}
}

// clockTicks is USER_HZ, the unit of utime and stime in /proc/<pid>/stat;
// 100 on every Linux architecture Go supports.
const clockTicks = 100

// procCPU returns the user+system CPU time pid has used.
func procCPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command name (field 2) may hold spaces; fields count from after
	// its closing parenthesis, where field 3 (state) begins.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, fmt.Errorf("/proc/%d/stat: no ')'", pid)
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: %d fields", pid, len(f))
	}
	utime, err1 := strconv.ParseInt(f[11], 10, 64) // field 14
	stime, err2 := strconv.ParseInt(f[12], 10, 64) // field 15
	if err := errors.Join(err1, err2); err != nil {
		return 0, err
	}
	return time.Duration(utime+stime) * time.Second / clockTicks, nil
}

// procRSS returns pid's resident set size in KiB (VmRSS).
func procRSS(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for line := range strings.Lines(string(b)) {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			f := strings.Fields(rest)
			if len(f) == 0 {
				break
			}
			return strconv.ParseInt(f[0], 10, 64)
		}
	}
	return 0, fmt.Errorf("/proc/%d/status: no VmRSS", pid)
}

// child is a server under test running in its own process.
type child struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	url   string
	done  chan error
}

// serverExe is the binary to run with "server ..." args: this one, unless a
// test says otherwise.
var serverExe = func() (string, []string) {
	exe, err := os.Executable()
	if err != nil {
		exe = os.Args[0]
	}
	return exe, nil
}

// spawnServer starts "<this binary> server args..." and reads the URL it
// prints. The server stops when its stdin closes (child.stop).
func spawnServer(args ...string) (*child, error) {
	exe, env := serverExe()
	return spawnServerFrom(exe, env, args...)
}

// spawnServerFrom is spawnServer with the binary exe (and extra env).
func spawnServerFrom(exe string, env []string, args ...string) (*child, error) {
	cmd := exec.Command(exe, append([]string{"server"}, args...)...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	c := &child{cmd: cmd, stdin: stdin, done: make(chan error, 1)}
	line := make(chan string, 1)
	go func() {
		r := bufio.NewReader(stdout)
		// The URL is the first ws:// line; a cluster node's
		// protoactor prints its health server's banner before it.
		for {
			s, err := r.ReadString('\n')
			if s = strings.TrimSpace(s); strings.HasPrefix(s, "ws://") || err != nil {
				line <- s
				break
			}
			fmt.Fprintln(os.Stderr, s)
		}
		_, _ = io.Copy(os.Stdout, r)
		c.done <- cmd.Wait()
	}()
	select {
	case c.url = <-line:
	case <-time.After(60 * time.Second):
		c.kill()
		return nil, errors.New("server did not print its URL within 60s")
	}
	if !strings.HasPrefix(c.url, "ws://") {
		c.kill()
		return nil, fmt.Errorf("server printed %q, not a ws:// URL", c.url)
	}
	return c, nil
}

func (c *child) pid() int { return c.cmd.Process.Pid }

func (c *child) kill() {
	_ = c.cmd.Process.Kill()
	_ = c.stdin.Close()
}

// stop closes the server's stdin and waits for it to exit, killing it after
// 20 s.
func (c *child) stop() error {
	_ = c.stdin.Close()
	select {
	case err := <-c.done:
		return err
	case <-time.After(20 * time.Second):
		_ = c.cmd.Process.Kill()
		<-c.done
		return errors.New("server did not exit within 20s; killed")
	}
}

// dialer opens the scenario's client connections with coder/websocket,
// spreading them over several loopback source addresses (127.0.0.2,
// 127.0.0.3, ...) so that tens of thousands of connections do not exhaust
// one address's ephemeral ports.
type dialer struct {
	urls   []string // dialled in turn (the nodes of a cluster)
	nurl   atomic.Uint64
	secure *secureClient // nil: plain connections
	// envelope offers marmot.v1 on plain connections too (the rooms
	// scenarios speak envelopes); the secure profile always does.
	envelope bool
	session  bool // plain marmot.v1 envelopes with a session (target.Session)
	http     bool // marmot's HTTP fallback transport instead of WebSocket
	clients  []*http.Client
	next     atomic.Uint64
	compress bool
	wire     wireCounters // bytes on the wire, per connection
}

// newDialer makes a dialer for t's server with t.Sources source addresses;
// 0 (or a server that is not on a loopback IP) lets the kernel choose.
func newDialer(t target) *dialer {
	sources := t.Sources
	// Several comma-separated URLs (the nodes of a cluster) are dialled
	// in turn.
	d := &dialer{urls: strings.Split(t.URL, ","), secure: t.Secure, compress: t.Compress, http: t.HTTP, session: t.Session && t.Secure == nil}
	for _, s := range d.urls {
		u, err := url.Parse(s)
		if err == nil {
			if ip := net.ParseIP(u.Hostname()); ip == nil || !ip.IsLoopback() || ip.To4() == nil {
				sources = 0
			}
		}
	}
	base := t.SourceBase
	if base == 0 {
		base = 2
	}
	for i := range max(sources, 1) {
		nd := &net.Dialer{Timeout: 30 * time.Second}
		if sources > 0 {
			nd.LocalAddr = &net.TCPAddr{IP: net.IPv4(127, 0, 0, byte(base+i))}
		}
		dial := func(ctx context.Context, network, addr string) (net.Conn, error) {
			c, err := nd.DialContext(ctx, network, addr)
			if err != nil {
				return nil, err
			}
			return d.wire.wrap(c), nil
		}
		tr := &http.Transport{
			DialContext:         dial,
			MaxIdleConnsPerHost: -1,
			DisableKeepAlives:   true,
		}
		if t.HTTP {
			// HTTP sessions reuse their connections: a poll and a send
			// in flight per session.
			tr.DisableKeepAlives, tr.MaxIdleConnsPerHost, tr.MaxIdleConns = false, 1<<16, 1<<16
		}
		d.clients = append(d.clients, &http.Client{Transport: tr})
	}
	return d
}

// dial opens one connection with a 1 MiB read limit, offering
// permessage-deflate (no context takeover) with d.compress.
// With d.secure it offers marmot.v1, the subprotocol that carries the
// secure profile, says so in marmot.HeaderEncryption (without it an
// encrypted server refuses the upgrade), announces handshake version 2 in
// marmot.HeaderHandshake (without it the server refuses the legacy
// handshake with 4501 "downgrade refused"), and runs the handshake before
// returning.
func (d *dialer) dial(ctx context.Context) (*conn, error) {
	return d.dialTo(ctx, d.urls[(d.nurl.Add(1)-1)%uint64(len(d.urls))])
}

// dialTo is dial to the given one of d's URLs.
func (d *dialer) dialTo(ctx context.Context, url string) (*conn, error) {
	hc := d.clients[d.next.Add(1)%uint64(len(d.clients))]
	if d.http {
		h, err := openHTTP(ctx, hc, url)
		if err != nil {
			return nil, err
		}
		return &conn{h: h}, nil
	}
	opts := &websocket.DialOptions{HTTPClient: hc, CompressionMode: websocket.CompressionDisabled}
	if d.compress {
		opts.CompressionMode, opts.CompressionThreshold = websocket.CompressionNoContextTakeover, compressThreshold
	}
	if d.envelope {
		opts.Subprotocols = []string{protocol.SubprotocolBinary}
	}
	if d.session {
		opts.Subprotocols = []string{protocol.SubprotocolBinary}
		opts.HTTPHeader = http.Header{protocol.HeaderSession: {protocol.SessionNew}}
	}
	if d.secure != nil {
		opts.Subprotocols = []string{protocol.SubprotocolBinary}
		opts.HTTPHeader = http.Header{marmot.HeaderEncryption: {"secure"},
			marmot.HeaderHandshake: {strconv.Itoa(crypto.HandshakeVersion)}}
	}
	ws, resp, err := websocket.Dial(ctx, url, opts)
	if resp != nil && resp.Body != nil && err != nil {
		_ = resp.Body.Close()
	}
	if err != nil {
		return nil, err
	}
	ws.SetReadLimit(maxMessage)
	c := &conn{ws: ws, url: url, session: d.session}
	if d.secure != nil {
		if c.sess, err = d.secure.handshake(ctx, ws); err != nil {
			_ = ws.CloseNow()
			return nil, err
		}
	}
	return c, nil
}

func (d *dialer) close() {
	for _, c := range d.clients {
		c.CloseIdleConnections()
	}
}

// dialAll opens n connections, conc at a time, and calls each(i, conn) for
// every one; it stops at the first error.
func dialAll(ctx context.Context, d *dialer, n, conc int, each func(int, *conn)) error {
	if conc < 1 {
		conc = 1
	}
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var next atomic.Int64
	errc := make(chan error, conc)
	for range min(conc, n) {
		go func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= n || ctx.Err() != nil {
					errc <- nil
					return
				}
				c, err := d.dial(ctx)
				if err != nil {
					err = fmt.Errorf("dial #%d: %w", i, err)
					cancel(err)
					errc <- err
					return
				}
				each(i, c)
			}
		}()
	}
	var first error
	for range min(conc, n) {
		if err := <-errc; err != nil && first == nil {
			first = err
		}
	}
	if first == nil && context.Cause(ctx) != nil && ctx.Err() != nil {
		first = context.Cause(ctx)
	}
	return first
}
