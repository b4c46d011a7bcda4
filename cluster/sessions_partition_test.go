package cluster_test

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/marmotws/marmot"
	"github.com/marmotws/marmot/chaos"
	"github.com/marmotws/marmot/cluster"
	"github.com/marmotws/marmot/internal/sessiontest"
	"github.com/marmotws/marmot/protocol"
)

// grantedToken is a resume token a node handed out, seen by a tokenProxy.
type grantedToken struct {
	node    int
	token   string
	resumed bool
}

// tokenProxy starts a reverse proxy in front of wsURL, node's WebSocket
// URL, that reports every resume token the node hands out (the Marmot-Session header
// of its 101) to tokens, and returns the proxy's WebSocket URL. It closes
// when the test ends.
func tokenProxy(t *testing.T, node int, wsURL string, tokens chan<- grantedToken) string {
	t.Helper()
	u, err := url.Parse(strings.Replace(wsURL, "ws://", "http://", 1))
	if err != nil {
		t.Fatal(err)
	}
	tr := &http.Transport{}
	rp := &httputil.ReverseProxy{
		Rewrite:   func(r *httputil.ProxyRequest) { r.SetURL(&url.URL{Scheme: "http", Host: u.Host}) },
		Transport: tr,
		ModifyResponse: func(res *http.Response) error {
			if tok := res.Header.Get(protocol.HeaderSession); tok != "" {
				tokens <- grantedToken{node, tok, res.Header.Get(protocol.HeaderSessionResumed) == "true"}
			}
			return nil
		},
	}
	srv := httptest.NewServer(rp)
	t.Cleanup(func() {
		srv.Close()
		tr.CloseIdleConnections()
	})
	return "ws://" + srv.Listener.Addr().String() + u.Path
}

// resumes reports whether node url resumes a session for tok (it answers
// the upgrade with Marmot-Session-Resumed: true); the connection is
// closed at once.
func resumes(t *testing.T, wsURL, tok string) bool {
	t.Helper()
	d := websocket.Dialer{HandshakeTimeout: waitTimeout, Subprotocols: []string{"marmot.v1"}}
	ws, res, err := d.Dial(wsURL, http.Header{protocol.HeaderSession: {tok}})
	if err != nil {
		t.Fatalf("upgrade on %s: %v", wsURL, err)
	}
	res.Body.Close()
	_ = ws.Close()
	return res.Header.Get(protocol.HeaderSessionResumed) == "true"
}

// pacedSender sends "m" commands m<from>, m<from+1>... one a millisecond
// until stop is closed; done then gets the last number sent (or the
// error that ended it, with last 0).
func pacedSender(c *marmot.Client, from int, stop <-chan struct{}) <-chan sentUpTo {
	done := make(chan sentUpTo, 1)
	go func() {
		tick := time.NewTicker(time.Millisecond)
		defer tick.Stop()
		for k := from; ; k++ {
			select {
			case <-stop:
				done <- sentUpTo{last: k - 1}
				return
			case <-tick.C:
			}
			if err := c.SendCommand("m", fmt.Appendf(nil, "m%d", k)); err != nil {
				done <- sentUpTo{err: fmt.Errorf("send m%d: %w", k, err)}
				return
			}
		}
	}()
	return done
}

// sentUpTo is how a pacedSender ended.
type sentUpTo struct {
	last int
	err  error
}

// checkAtLeastOnce checks what the nodes handled of m<from>..m<to> after
// the session's home (node home) was lost to the others: every message
// at least once; none twice on the other nodes, each in order there; a
// message the home handled that another node handled again is flagged
// Redelivered, and the flagged ones come first. It returns how many the
// other nodes flagged, and how many were handled twice.
func checkAtLeastOnce(t *testing.T, dir string, home, from, to int) (flagged, twice int) {
	t.Helper()
	count := map[int]int{}
	onHome := map[int]bool{}
	for _, h := range readHandled(t, dir, home, from, to) {
		onHome[h.k] = true
		count[h.k]++
	}
	seen := map[int]bool{}
	for id := 1; id <= 3; id++ {
		if id == home {
			continue
		}
		prev, inPrefix := 0, true
		for _, h := range readHandled(t, dir, id, from, to) {
			count[h.k]++
			switch {
			case seen[h.k]:
				t.Fatalf("m%d handled twice away from node %d", h.k, home)
			case h.k <= prev:
				t.Fatalf("node %d handled m%d after m%d", id, h.k, prev)
			case onHome[h.k] && !h.redelivered:
				t.Fatalf("node %d handled m%d again, without Redelivered", id, h.k)
			case h.redelivered && !inPrefix:
				t.Fatalf("node %d flagged m%d Redelivered after unflagged messages", id, h.k)
			}
			seen[h.k], prev = true, h.k
			inPrefix = inPrefix && h.redelivered
			if h.redelivered {
				flagged++
			}
			if onHome[h.k] {
				twice++
			}
		}
	}
	for k := from; k <= to; k++ {
		if count[k] == 0 {
			t.Fatalf("m%d never handled", k)
		}
	}
	return flagged, twice
}

// startSessionNodes starts three node processes that log what they
// handle to dir, with RequestTimeout takeOverTimeout, and waits until
// each lists the three.
func startSessionNodes(t *testing.T, prefix string, specs []nodeSpec, dir string, env ...string) []*proc {
	t.Helper()
	name := clusterName(prefix)
	procs := make([]*proc, len(specs))
	for i, s := range specs {
		procs[i] = startProc(t, name, s, specs, append([]string{"MARMOT_HANDLED_LOG=" + filepath.Join(dir, fmt.Sprintf("node-%d.log", s.id)),
			"MARMOT_REQUEST_TIMEOUT=" + takeOverTimeout.String()}, env...)...)
	}
	for _, p := range procs {
		p.waitMembers("1,2,3")
	}
	return procs
}

// TestSessionHomeFrozen: the home of a client's session stops answering
// without closing its sockets (SIGSTOP: as a machine lost without a
// reset, where protoactor's endpoint never fails); the client moves to
// node 2, which asks the home, still a member, to hand the session over.
// The ask ends when the home leaves the member list (its health poll
// times out), and the session is taken from the replica's mark: the
// client is resumed and caught up well before the nodes' RequestTimeout
// (takeOverTimeout), which the ask would otherwise wait out. Every
// message is handled at least once, none twice but flagged, no
// ErrSessionLost.
func TestSessionHomeFrozen(t *testing.T) {
	specs := loopbackNodes(t)
	dir := t.TempDir()
	procs := startSessionNodes(t, "marmot-frozen", specs, dir, "MARMOT_WARNINGS=1")
	c, errs := sessionClient(t, procs[0].url, []string{procs[1].url, procs[2].url})
	sessiontest.Send(t, c, 1, 300)
	procs[0].waitLine("HANDLED 300")
	// A mark of the session is on its replica (node 2 or 3): before it,
	// a lost home loses the session (ErrSessionLost).
	waitEitherLine(t, "HELD", procs[1], procs[2])

	if err := procs[0].cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	frozen := time.Now()
	t.Cleanup(procs[0].kill) // a stopped process does not stop on stdin's close
	procs[0].waitStopped()
	sessiontest.Send(t, c, 301, 400)
	if _, err := c.Request(ctxTimeout(t), "done", nil); err != nil {
		t.Fatal(err)
	}
	took := time.Since(frozen)
	if took >= takeOverTimeout {
		t.Fatalf("resumed %v after the home froze: the take-over waited RequestTimeout (%v) for it", took, takeOverTimeout)
	}
	if c.URL() == procs[0].url {
		t.Fatal("the client is still on the frozen node")
	}
	procs[0].kill()
	_, twice := checkAtLeastOnce(t, dir, 1, 1, 400)
	t.Logf("resumed and caught up %v after the home froze (RequestTimeout %v); %d handled again, flagged", took.Round(time.Millisecond), takeOverTimeout, twice)
	sessiontest.NoSessionLost(t, errs)
}

// TestSessionsPartition cuts node 3, the home of a client's session, off
// from nodes 1 and 2 (the chaos proxies of TestPartition) while the client
// sends, and heals the cut:
//
//   - node 3, cut off from the majority, gives its sessions up and closes
//     the client with CloseIsolated; the client moves to node 1 or 2, which
//     takes the session over from its replica: it resumes (no
//     ErrSessionLost), every message is handled at least once, none twice
//     on the majority, and those node 3 handled too are flagged
//     Redelivered;
//   - the session's old token resumes nothing on node 3 during the cut,
//     nor on any node after the heal (once node 3 rejoined): the session
//     was resumed once.
func TestSessionsPartition(t *testing.T) {
	specs, proxies := partitionableNodes(t)
	dir := t.TempDir()
	procs := startSessionNodes(t, "marmot-sess-partition", specs, dir)

	tokens := make(chan grantedToken, 64)
	urls := []string{tokenProxy(t, 3, procs[2].url, tokens), tokenProxy(t, 1, procs[0].url, tokens), tokenProxy(t, 2, procs[1].url, tokens)}
	// The default KeepAlive: nothing here needs the client to notice a
	// silent route, and 500 ms dropped the connection (1006) under load
	// before node 3 closed it.
	c, closes, errs := failoverClientKeepAlive(t, urls[0], urls[1:], 0)
	nextToken := func() grantedToken { return nextToken(t, tokens) }
	old := nextToken()
	if old.node != 3 || old.resumed {
		t.Fatalf("first token %+v, want a new session on node 3", old)
	}
	sessiontest.Send(t, c, 1, 100)
	procs[2].waitLine("HANDLED 100")

	// The cut, while the client sends.
	stop := make(chan struct{})
	sent := pacedSender(c, 101, stop)
	for _, p := range proxies {
		if err := p.Set(chaos.Faults{Blackhole: true}); err != nil {
			t.Fatal(err)
		}
	}
	procs[0].waitMembers("1,2")
	procs[1].waitMembers("1,2")
	procs[2].waitMembers("3")
	select {
	case r := <-closes:
		if r.Code != cluster.CloseIsolated {
			t.Fatalf("the client was closed with %d %q (%v), want CloseIsolated (%d)", r.Code, r.Text, r.Err, cluster.CloseIsolated)
		}
	case <-time.After(waitTimeout):
		t.Fatal("node 3 did not close its client when cut off")
	}
	moved := nextToken()
	if moved.node == 3 || !moved.resumed {
		t.Fatalf("after the cut: token %+v, want the session resumed on node 1 or 2", moved)
	}
	// The sender stops; 100 more go out on the majority's node, and what
	// was sent is handled.
	close(stop)
	end := <-sent
	if end.err != nil {
		t.Fatal(end.err)
	}
	to := end.last + 100
	sessiontest.Send(t, c, end.last+1, to)
	if _, err := c.Request(ctxTimeout(t), "done", nil); err != nil {
		t.Fatal(err)
	}
	// The old token, on node 3 during the cut: given up, not resumed.
	if resumes(t, procs[2].url, old.token) {
		t.Fatal("node 3 resumed the session's old token during the cut")
	}

	// The heal: node 3 rejoins; the old token resumes nowhere.
	for _, p := range proxies {
		if err := p.Set(chaos.Faults{}); err != nil {
			t.Fatal(err)
		}
	}
	for _, p := range procs {
		p.waitMembers("1,2,3")
	}
	for _, p := range []*proc{procs[2], procs[0], procs[1]} {
		if resumes(t, p.url, old.token) {
			t.Fatalf("node %d resumed the session's old token after the heal", p.id)
		}
	}

	_, twice := checkAtLeastOnce(t, dir, 3, 1, to)
	t.Logf("sent m1-m%d; node 3 handled %d; %d handled again on the majority, flagged", to, len(readHandled(t, dir, 3, 1, to)), twice)
	sessiontest.NoSessionLost(t, errs)
}

// failoverClient connects a client with its outbox to url, failing over
// to the others; its closes and errors go to the channels it returns. Its
// KeepAlive is 500 ms, so that it notices a route gone dark (a chaos
// proxy's blackhole) at once.
func failoverClient(t *testing.T, url string, failover []string) (*marmot.Client, chan *marmot.CloseError, chan error) {
	t.Helper()
	return failoverClientKeepAlive(t, url, failover, 500*time.Millisecond)
}

// failoverClientKeepAlive is failoverClient with ClientConfig.KeepAlive
// keepAlive (0: the default).
func failoverClientKeepAlive(t *testing.T, url string, failover []string, keepAlive time.Duration) (*marmot.Client, chan *marmot.CloseError, chan error) {
	t.Helper()
	closes := make(chan *marmot.CloseError, 16)
	errs := make(chan error, 256)
	c, err := marmot.NewClient(marmot.ClientConfig{
		URL: url, FailoverURLs: failover, Subprotocol: "marmot.v1", Logger: slog.New(slog.DiscardHandler),
		AutoReconnect: true, ReconnectStrategy: marmot.ReconnectFixed, ReconnectInterval: 50 * time.Millisecond,
		KeepAlive: keepAlive,
		ClientEvents: marmot.ClientEvents{
			OnDisconnect: func(r *marmot.CloseError) {
				select {
				case closes <- r:
				default:
				}
			},
			OnError: func(err error) {
				select {
				case errs <- err:
				default:
				}
			},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = c.Close(ctx)
	})
	if err := c.Connect(ctxTimeout(t)); err != nil {
		t.Fatal(err)
	}
	return c, closes, errs
}

// nextToken waits for the next token a tokenProxy saw.
func nextToken(t *testing.T, tokens <-chan grantedToken) grantedToken {
	t.Helper()
	select {
	case g := <-tokens:
		return g
	case <-time.After(waitTimeout):
		t.Fatal("no resume token handed out")
	}
	return grantedToken{}
}

// TestSessionFenced: nodes 1 and 2 drop node 3, the home of a client's
// session, while node 3 still lists them (its health endpoint blackholed
// as they reach it, as in TestSlowNodeRejoins), so node 3 is not cut off
// by its own count and keeps the session; the client's route to node 3
// goes dark too (a chaos proxy), and the client moves to node 1, which
// takes the session over from its replica (node 3 is no member there).
// Once the health endpoint answers again node 3 rejoins and marks the
// session again; the replica, which gave the mark up, fences it, and node
// 3 ends it: the old token resumes nowhere, and every message is handled
// at least once, none twice but flagged, no ErrSessionLost.
func TestSessionFenced(t *testing.T) {
	f := cutHome(t, "marmot-fenced")

	// Node 3 rejoins, marks the session again, and is told to end it.
	if err := f.health.Set(chaos.Faults{}); err != nil {
		t.Fatal(err)
	}
	f.procs[2].waitLine("WARN marmot cluster: sessions taken over by another node while this node was cut off; ended them here")
	f.finish(t)
}

// TestSessionCopiedToken: as TestSessionFenced, but a copy of the
// session's old token is presented to node 3, its home, while nodes 1
// and 2 still leave it out: node 3 checks with the session's replica
// before it resumes the session, learns that it was taken over, ends it
// and resumes nothing (it did resume it there before, the window of the
// partition until node 3 marked the session again). After the heal the
// old token resumes nowhere.
func TestSessionCopiedToken(t *testing.T) {
	f := cutHome(t, "marmot-copied")
	if resumes(t, f.procs[2].url, f.old.token) {
		t.Fatal("node 3 resumed the session's old token while the session lived on another node")
	}
	if err := f.health.Set(chaos.Faults{}); err != nil {
		t.Fatal(err)
	}
	f.procs[2].waitLine("WARN marmot cluster: rejoined the cluster")
	f.finish(t)
}

// cutHomeRun is TestSessionFenced's set-up: node 3 dropped by the others
// while it lists them, and its client moved to node 1 or 2 with its
// session.
type cutHomeRun struct {
	procs  []*proc
	health *chaos.Proxy
	dir    string
	c      *marmot.Client
	errs   <-chan error
	old    grantedToken
}

// cutHome starts TestSessionFenced's three nodes and client, has nodes 1
// and 2 drop node 3 while node 3 still lists them (its health endpoint
// blackholed as they reach it), and moves the client (100 messages
// handled by node 3, then its route there dark) to node 1 or 2, with its
// session, taken from the replica; the health endpoint stays dark.
//
// The client reaches nodes 1 and 2 through gates that refuse it (503)
// until its route to node 3 goes dark: a connection to node 3 lost
// before (its 500 ms keep-alive run out on a busy machine) reconnects to
// node 3, which resumes the session, and the move cannot come before
// nodes 1 and 2 dropped node 3. (Without the gates such a client moved
// early, while node 3 was still a member: node 3 handed the session over,
// exactly, and had nothing left to fence.)
func cutHome(t *testing.T, name string) *cutHomeRun {
	specs := loopbackNodes(t)
	adv, proxies := proxyPair(t, specs[2].ip, specs[2].bind, specs)
	specs[2].advertise = adv
	health := proxies[1]
	dir := t.TempDir()
	procs := startSessionNodes(t, name, specs, dir, "MARMOT_WARNINGS=1")

	host := strings.TrimSuffix(strings.TrimPrefix(procs[2].url, "ws://"), "/websocket")
	route, err := chaos.NewProxy("127.0.0.1:0", host, chaos.Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = route.Close() })
	tokens := make(chan grantedToken, 64)
	gate1, open1 := closedGate(t, tokenProxy(t, 1, procs[0].url, tokens))
	gate2, open2 := closedGate(t, tokenProxy(t, 2, procs[1].url, tokens))
	c, closes, errs := failoverClient(t, tokenProxy(t, 3, strings.Replace(procs[2].url, host, route.Addr().String(), 1), tokens),
		[]string{gate1, gate2})
	old := nextToken(t, tokens)
	if old.node != 3 || old.resumed {
		t.Fatalf("first token %+v, want a new session on node 3", old)
	}
	sessiontest.Send(t, c, 1, 100)
	procs[2].waitLine("HANDLED 100")

	// Nodes 1 and 2 drop node 3; node 3 still lists them.
	if err := health.Set(chaos.Faults{Blackhole: true}); err != nil {
		t.Fatal(err)
	}
	procs[0].waitMembers("1,2")
	procs[1].waitMembers("1,2")
	// The client's route to node 3 goes dark, and the gates open: it
	// moves to node 1 or 2.
	if err := route.Set(chaos.Faults{Blackhole: true}); err != nil {
		t.Fatal(err)
	}
	open1()
	open2()
	sessiontest.Send(t, c, 101, 200)
	if _, err := c.Request(ctxTimeout(t), "done", nil); err != nil {
		t.Fatal(err)
	}
	// Node 3 resumed the session after every connection lost before the
	// move (its secret changes each time): the old token is its last.
	for {
		g := nextToken(t, tokens)
		if g.node != 3 {
			if !g.resumed {
				t.Fatalf("after the move: token %+v, want the session resumed on node 1 or 2", g)
			}
			break
		}
		if !g.resumed {
			t.Fatalf("node 3 handed out token %+v, want the session resumed there", g)
		}
		t.Logf("the client reconnected to node 3 before the move (%v), which resumed the session", lostBefore(closes))
		old = g
	}
	return &cutHomeRun{procs: procs, health: health, dir: dir, c: c, errs: errs, old: old}
}

// lostBefore is how the client's connection ended, for a log: the first
// close in closes, if any.
func lostBefore(closes <-chan *marmot.CloseError) string {
	select {
	case r := <-closes:
		return r.Error()
	default:
		return "no close reported yet"
	}
}

// closedGate starts a reverse proxy in front of wsURL that refuses every
// upgrade with 503 Service Unavailable (a client retries it, the next
// FailoverURL) until open is called, and forwards them from then on; it
// returns the proxy's WebSocket URL and open. It closes when the test
// ends.
func closedGate(t *testing.T, wsURL string) (gateURL string, open func()) {
	t.Helper()
	u, err := url.Parse(strings.Replace(wsURL, "ws://", "http://", 1))
	if err != nil {
		t.Fatal(err)
	}
	var opened atomic.Bool
	tr := &http.Transport{}
	rp := &httputil.ReverseProxy{
		Rewrite:   func(r *httputil.ProxyRequest) { r.SetURL(&url.URL{Scheme: "http", Host: u.Host}) },
		Transport: tr,
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !opened.Load() {
			http.Error(w, "closed by the test", http.StatusServiceUnavailable)
			return
		}
		rp.ServeHTTP(w, r)
	}))
	t.Cleanup(func() {
		srv.Close()
		tr.CloseIdleConnections()
	})
	return "ws://" + srv.Listener.Addr().String() + u.Path, func() { opened.Store(true) }
}

// finish checks, once node 3 is back, that the old token resumes nowhere,
// and that every message is handled at least once, none twice but
// flagged, no ErrSessionLost.
func (f *cutHomeRun) finish(t *testing.T) {
	t.Helper()
	procs := f.procs
	procs[0].waitMembers("1,2,3")
	procs[1].waitMembers("1,2,3")
	for _, p := range []*proc{procs[2], procs[0], procs[1]} {
		if resumes(t, p.url, f.old.token) {
			t.Fatalf("node %d resumed the session's old token after it was taken over", p.id)
		}
	}
	sessiontest.Send(t, f.c, 201, 300)
	if _, err := f.c.Request(ctxTimeout(t), "done", nil); err != nil {
		t.Fatal(err)
	}
	_, twice := checkAtLeastOnce(t, f.dir, 3, 1, 300)
	t.Logf("node 3 handled %d; %d handled again elsewhere, flagged", len(readHandled(t, f.dir, 3, 1, 300)), twice)
	sessiontest.NoSessionLost(t, f.errs)
}

// waitStopped waits until the node's process is stopped (SIGSTOP): its
// state in /proc is T.
func (p *proc) waitStopped() {
	p.t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p.cmd.Process.Pid))
		if err != nil {
			p.t.Fatalf("node %d: %v", p.id, err)
		}
		// pid (comm) state ...: the state follows the last ')'.
		if i := bytes.LastIndexByte(b, ')'); i > 0 && i+2 < len(b) && b[i+2] == 'T' {
			return
		}
		if time.Now().After(deadline) {
			p.t.Fatalf("node %d did not stop", p.id)
		}
		time.Sleep(5 * time.Millisecond) // polling the process state: no event tells it
	}
}

// waitEitherLine waits until node a or node b prints the line want (the
// other lines they print meanwhile are dropped).
func waitEitherLine(t *testing.T, want string, a, b *proc) {
	t.Helper()
	deadline := time.After(waitTimeout)
	for {
		var line string
		select {
		case line = <-a.lines:
		case line = <-b.lines:
		case <-deadline:
			t.Fatalf("neither node %d nor node %d printed %q", a.id, b.id, want)
		}
		if line == want {
			return
		}
	}
}
