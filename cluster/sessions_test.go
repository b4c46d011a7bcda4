package cluster_test

import (
	"bufio"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/marmotws/marmot"
	"github.com/marmotws/marmot/chaos"
	"github.com/marmotws/marmot/internal/sessiontest"
)

// waitLine waits until the node prints the line want.
func (p *proc) waitLine(want string) {
	p.t.Helper()
	deadline := time.After(waitTimeout)
	for {
		select {
		case line := <-p.lines:
			if line == want {
				return
			}
		case <-p.exited:
			p.t.Fatalf("node %d exited waiting for %q", p.id, want)
		case <-deadline:
			p.t.Fatalf("node %d: no %q", p.id, want)
		}
	}
}

// handledEntry is one line of a node's MARMOT_HANDLED_LOG.
type handledEntry struct {
	k           int
	redelivered bool
}

// readHandled reads what node id handled of the commands m<from>..m<to>,
// in its order.
func readHandled(t *testing.T, dir string, id, from, to int) []handledEntry {
	t.Helper()
	f, err := os.Open(filepath.Join(dir, fmt.Sprintf("node-%d.log", id)))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []handledEntry
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var k, r int
		if _, err := fmt.Sscanf(sc.Text(), "%d %d", &k, &r); err != nil {
			t.Fatalf("node %d's log: %q: %v", id, sc.Text(), err)
		}
		if k >= from && k <= to {
			out = append(out, handledEntry{k, r == 1})
		}
	}
	return out
}

// sessionClient connects to url with its outbox and failover to the
// others; its errors go to errs.
func sessionClient(t *testing.T, url string, failover []string) (*marmot.Client, chan error) {
	t.Helper()
	c, _, errs := failoverClient(t, url, failover)
	return c, errs
}

// takeOverTimeout is the nodes' RequestTimeout in the tests of sessions
// across nodes: long, so that a take-over that waits it out for a dead
// home is told from one that ends when the home leaves the member list.
const takeOverTimeout = 20 * time.Second

// TestSessionsFollowClients runs three node processes on 127.0.0.2-4 and
// a client with its outbox that fails over from node 1:
//
//   - moved: node 1 stays up, but the client's route to it goes dark (a
//     chaos proxy blackholes it); the client moves to node 2, which takes
//     the session over from node 1 (node 1 closes the old connection with
//     4009): every message is handled exactly once, in order, none
//     flagged Redelivered, no ErrSessionLost.
//   - killed: node 1 is SIGKILLed while the client sends 2,000 messages;
//     the client moves on, and the node it reaches takes the session over
//     from the mark node 1 kept on its replica: every message is handled
//     at least once, none twice on the surviving nodes, a message handled
//     by node 1 and again after is flagged Redelivered (and those flagged
//     come first), no ErrSessionLost; the client is resumed and caught
//     up before the nodes' RequestTimeout (takeOverTimeout) has passed
//     since the kill: the ask of the dead home ended when it left the
//     member list.
//   - stopped: node 2 stops gracefully while the client sends; the client
//     moves to node 3, which takes the session over from draining node 2:
//     exactly once, none flagged.
func TestSessionsFollowClients(t *testing.T) {
	dir := t.TempDir()
	procs := startSessionNodes(t, "marmot-sessions", loopbackNodes(t), dir)
	urls := []string{procs[0].url, procs[1].url, procs[2].url}

	t.Run("moved", func(t *testing.T) {
		host := strings.TrimSuffix(strings.TrimPrefix(urls[0], "ws://"), "/websocket")
		p, err := chaos.NewProxy("127.0.0.1:0", host, chaos.Options{Logger: slog.New(slog.DiscardHandler)})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = p.Close() })
		c, errs := sessionClient(t, strings.Replace(urls[0], host, p.Addr().String(), 1), urls[1:])
		sessiontest.Send(t, c, 1, 100)
		procs[0].waitLine("HANDLED 100")
		if err := p.Set(chaos.Faults{Blackhole: true}); err != nil {
			t.Fatal(err)
		}
		sessiontest.Send(t, c, 101, 200) // into the blackhole, then to node 2
		if _, err := c.Request(ctxTimeout(t), "done", nil); err != nil {
			t.Fatal(err)
		}
		if c.URL() != urls[1] {
			t.Fatalf("client on %s, want node 2 (%s)", c.URL(), urls[1])
		}
		procs[0].waitLine(fmt.Sprintf("CLOSED %d", marmot.CloseSessionMoved))
		var got []handledEntry
		for id := 1; id <= 3; id++ {
			got = append(got, readHandled(t, dir, id, 1, 200)...)
		}
		if len(got) != 200 {
			t.Fatalf("%d handled, want 200: %v", len(got), got)
		}
		for i, h := range got {
			if h.k != i+1 || h.redelivered {
				t.Fatalf("handled #%d is %+v, want m%d once, not redelivered", i, h, i+1)
			}
		}
		if on1 := readHandled(t, dir, 1, 1, 200); len(on1) != 100 {
			t.Fatalf("node 1 handled %d, want 1-100", len(on1))
		}
		sessiontest.NoSessionLost(t, errs)
	})

	t.Run("killed", func(t *testing.T) {
		const from, to = 1001, 3000
		c, errs := sessionClient(t, urls[0], urls[1:])
		sent := make(chan error, 1)
		go func() {
			// Paced, so that node 1 dies in the middle of the stream.
			tick := time.NewTicker(500 * time.Microsecond)
			defer tick.Stop()
			for k := from; k <= to; k++ {
				<-tick.C
				if err := c.SendCommand("m", fmt.Appendf(nil, "m%d", k)); err != nil {
					sent <- fmt.Errorf("send m%d: %w", k, err)
					return
				}
			}
			sent <- nil
		}()
		procs[0].waitLine("HANDLED 1500")
		procs[0].kill()
		killed := time.Now()
		if err := recvErr(t, sent); err != nil {
			t.Fatal(err)
		}
		if _, err := c.Request(ctxTimeout(t), "done", nil); err != nil {
			t.Fatal(err)
		}
		// The take-over asked the dead home first: it ended when node 1
		// left the member list, not when the ask timed out.
		if took := time.Since(killed); took >= takeOverTimeout {
			t.Fatalf("resumed %v after the kill: the take-over waited RequestTimeout (%v) for the dead home", took, takeOverTimeout)
		} else {
			t.Logf("resumed and caught up %v after the kill (RequestTimeout %v)", took.Round(time.Millisecond), takeOverTimeout)
		}
		on1 := readHandled(t, dir, 1, from, to)
		for _, h := range on1 {
			if h.redelivered {
				t.Fatalf("node 1 flagged m%d Redelivered", h.k)
			}
		}
		flagged, twice := checkAtLeastOnce(t, dir, 1, from, to)
		t.Logf("node 1 handled %d; after its loss %d were flagged Redelivered, %d of them handled by node 1 too", len(on1), flagged, twice)
		sessiontest.NoSessionLost(t, errs)
	})

	t.Run("stopped", func(t *testing.T) {
		// Node 2 stops gracefully while the client sends: its client,
		// told 1001, moves to node 3, which takes the session over from
		// node 2 as it drains: exactly once.
		const from = 5001
		c, errs := sessionClient(t, urls[1], urls[2:])
		sessiontest.Send(t, c, from, from+199)
		procs[1].waitLine(fmt.Sprintf("HANDLED %d", from+199))
		stopped := make(chan struct{})
		go func() {
			procs[1].stop()
			close(stopped)
		}()
		// Paced sends until the client has left node 2, then 100 more.
		to := from + 199
		tick := time.NewTicker(time.Millisecond)
		defer tick.Stop()
		deadline := time.After(waitTimeout)
		for c.URL() == urls[1] {
			select {
			case <-tick.C:
			case <-deadline:
				t.Fatal("the client did not leave node 2")
			}
			to++
			sessiontest.Send(t, c, to, to)
		}
		sessiontest.Send(t, c, to+1, to+100)
		to += 100
		if _, err := c.Request(ctxTimeout(t), "done", nil); err != nil {
			t.Fatal(err)
		}
		if c.URL() != urls[2] {
			t.Fatalf("client on %s, want node 3 (%s)", c.URL(), urls[2])
		}
		select {
		case <-stopped:
		case <-time.After(waitTimeout):
			t.Fatal("node 2 did not stop")
		}
		got := append(readHandled(t, dir, 2, from, to), readHandled(t, dir, 3, from, to)...)
		if len(got) != to-from+1 {
			t.Fatalf("%d handled, want %d: %v", len(got), to-from+1, got)
		}
		t.Logf("sent m%d-m%d; node 2 handled %d", from, to, len(readHandled(t, dir, 2, from, to)))
		for i, h := range got {
			if h.k != from+i || h.redelivered {
				t.Fatalf("handled #%d is %+v, want m%d once, not redelivered", i, h, from+i)
			}
		}
		sessiontest.NoSessionLost(t, errs)
	})
}

func recvErr(t *testing.T, ch chan error) error {
	t.Helper()
	select {
	case err := <-ch:
		return err
	case <-time.After(waitTimeout):
		t.Fatal("timed out")
	}
	return nil
}
