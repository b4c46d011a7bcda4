package main

import (
	"io"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// pausingProxy forwards TCP connections to target. kill cuts the current
// ones; while paused, new ones are accepted but held, not forwarded, so a
// reconnecting client waits at the proxy until resume.
type pausingProxy struct {
	ln     net.Listener
	target string
	mu     sync.Mutex
	conns  []net.Conn
	open   chan struct{} // closed while forwarding
	wg     sync.WaitGroup
	closed bool
}

func newPausingProxy(t *testing.T, target string) *pausingProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &pausingProxy{ln: ln, target: target, open: make(chan struct{})}
	close(p.open)
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			p.mu.Lock()
			p.conns = append(p.conns, c)
			open := p.open
			p.mu.Unlock()
			p.wg.Add(1)
			go p.forward(c, open)
		}
	}()
	t.Cleanup(p.close)
	return p
}

func (p *pausingProxy) forward(c net.Conn, open chan struct{}) {
	defer p.wg.Done()
	<-open
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return
	}
	p.mu.Unlock()
	s, err := net.Dial("tcp", p.target)
	if err != nil {
		_ = c.Close()
		return
	}
	p.mu.Lock()
	p.conns = append(p.conns, s)
	p.mu.Unlock()
	var both sync.WaitGroup
	both.Add(2)
	pipe := func(dst, src net.Conn) {
		defer both.Done()
		_, _ = io.Copy(dst, src)
		_ = dst.Close()
		_ = src.Close()
	}
	go pipe(s, c)
	go pipe(c, s)
	both.Wait()
}

// url is the server's URL through the proxy.
func (p *pausingProxy) url(server string) string {
	host := strings.SplitN(server, "/", 4)[2]
	return strings.Replace(server, host, p.ln.Addr().String(), 1)
}

// pauseAndKill holds new connections and cuts the current ones.
func (p *pausingProxy) pauseAndKill() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.open = make(chan struct{})
	for _, c := range p.conns {
		_ = c.Close()
	}
	p.conns = nil
}

// resume forwards the held connections and the next ones.
func (p *pausingProxy) resume() {
	p.mu.Lock()
	defer p.mu.Unlock()
	close(p.open)
}

func (p *pausingProxy) close() {
	_ = p.ln.Close()
	p.mu.Lock()
	p.closed = true
	select {
	case <-p.open:
	default:
		close(p.open)
	}
	for _, c := range p.conns {
		_ = c.Close()
	}
	p.mu.Unlock()
	p.wg.Wait()
}

// TestRooms: with --mode rooms, "@room text" publishes to a room and its
// members, and only they, print "[room #offset] text".
func TestRooms(t *testing.T) {
	srv, url := serve(t, "--mode", "rooms")
	a := connect(t, url, "--subprotocol", "marmot.v1", "--join", "a,b")
	a.stderr.expect(t, "* joined room a")
	a.stderr.expect(t, "* joined room b")
	b := connect(t, url, "--subprotocol", "marmot.json.v1", "--join", "b")
	b.stderr.expect(t, "* joined room b")

	a.send(t, "@a just for a")
	a.stdout.expect(t, "[a #1] just for a")
	b.send(t, "@b hello b")
	a.stdout.expect(t, "[b #1] hello b")
	b.stdout.expect(t, "[b #1] hello b")
	a.send(t, "@b again")
	b.stdout.expect(t, "[b #2] again")
	a.send(t, "not for a room") // echoed, as in echo mode
	a.stdout.expect(t, "< not for a room")
	// Rooms need an envelope.
	raw := connect(t, url)
	raw.send(t, "@a hi")
	if hint := raw.stderr.expect(t, "! @a not sent: "); !strings.Contains(hint, "--subprotocol marmot.v1") {
		t.Errorf("hint %q does not name the flag", hint)
	}
	raw.quit(t)
	a.quit(t)
	b.quit(t)
	srv.stop(t)
	if out := b.stdout.String(); strings.Contains(out, "[a ") {
		t.Errorf("b printed a message of room a:\n%s", out)
	}
}

// TestRoomsRecover: a client behind a proxy that cuts it off re-joins by
// itself after every reconnect and prints what it recovered, in order:
// first while the server runs, then across a restart of the server with
// the same bolt file. With the memory store the restart is reported as
// not recovered.
func TestRoomsRecover(t *testing.T) {
	for _, store := range []string{"bolt", "memory"} {
		t.Run(store, func(t *testing.T) {
			flags := []string{"--mode", "rooms", "--history-size", "100", "--history-ttl", "1h"}
			if store == "bolt" {
				flags = append(flags, "--history-store", "bolt:"+filepath.Join(t.TempDir(), "rooms.db"))
			}
			srv, url := serve(t, flags...)
			addr := strings.SplitN(url, "/", 4)[2]
			proxy := newPausingProxy(t, addr)
			l := connect(t, proxy.url(url), "--subprotocol", "marmot.v1", "--join", "a",
				"--auto-reconnect", "--reconnect-interval", "20ms", "--connect-timeout", "20s")
			l.stderr.expect(t, "* joined room a")
			p := connect(t, url, "--subprotocol", "marmot.v1", "--join", "a")
			p.stderr.expect(t, "* joined room a")
			p.send(t, "@a m1")
			p.stdout.expect(t, "[a #1] m1")
			l.stdout.expect(t, "[a #1] m1")

			// Cut off while the server runs: two messages missed.
			proxy.pauseAndKill()
			l.stderr.expect(t, "* state connected -> reconnecting")
			p.send(t, "@a m2")
			p.send(t, "@a m3")
			p.stdout.expect(t, "[a #3] m3") // the room has them
			proxy.resume()
			l.stdout.expect(t, "recovered room a: 2 missed")
			l.stdout.expect(t, "[a #2] m2")
			l.stdout.expect(t, "[a #3] m3")

			// Cut off again; one more message; the server restarts.
			proxy.pauseAndKill()
			l.stderr.expect(t, "* state connected -> reconnecting")
			p.send(t, "@a m4")
			p.stdout.expect(t, "[a #4] m4")
			srv.stop(t)
			srv2 := start(t, append([]string{"serve", "--addr", addr}, flags...)...)
			srv2.stdout.expect(t, "marmot listening on "+url)
			proxy.resume()
			next := "[a #5] m5"
			if store == "bolt" {
				l.stdout.expect(t, "recovered room a: 1 missed")
				l.stdout.expect(t, "[a #4] m4")
			} else {
				l.stdout.expect(t, "not recovered room a: epoch changed")
				next = "[a #1] m5" // a new room
			}
			l.stderr.expect(t, "* state reconnecting -> connected")
			p2 := connect(t, url, "--subprotocol", "marmot.v1", "--join", "a")
			p2.stderr.expect(t, "* joined room a")
			p2.send(t, "@a m5")
			l.stdout.expect(t, next)
			l.quit(t)
			p2.quit(t)
			srv2.stop(t)
			// Exactly once, in order: nothing printed twice.
			seen := map[string]bool{}
			for _, line := range l.stdout.all(t) {
				if seen[line] {
					t.Errorf("printed twice: %q", line)
				}
				seen[line] = true
			}
		})
	}
}

// TestRoomsFlags: the history flags' errors, and a bolt file that cannot be
// opened fails the server with the reason.
func TestRoomsFlags(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"serve", "--history-store", "disk"}, exitUsage, `invalid value "disk" for flag -history-store: want memory or bolt:PATH`},
		{[]string{"serve", "--history-store", "bolt:"}, exitUsage, "want memory or bolt:PATH"},
		{[]string{"serve", "--history-size", "-1"}, exitUsage, "-history-size: must be >= 0"},
		{[]string{"serve", "--history-ttl", "-1s"}, exitUsage, "-history-ttl: must be >= 0"},
		{[]string{"serve", "--history-size", "0", "--history-store", "bolt:x.db"}, exitUsage, "-history-size 0 turns it off"},
		{[]string{"serve", "--addr", "127.0.0.1:0", "--history-store", "bolt:" + filepath.Join(dir, "no", "such", "dir.db")}, exitFailure, "no such file or directory"},
		{[]string{"serve", "--addr", "127.0.0.1:0", "--history-store", "bolt:" + dir}, exitFailure, "is a directory"},
		{[]string{"connect", "--join", "a", "ws://127.0.0.1:1/"}, exitUsage, "flag -join needs a marmot envelope: add --subprotocol marmot.v1"},
		{[]string{"connect", "--join", "a,,b", "ws://127.0.0.1:1/"}, exitUsage, "empty room name"},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			p := start(t, tc.args...)
			if code := p.wait(t); code != tc.code {
				t.Errorf("exit code %d, want %d; stderr:\n%s", code, tc.code, p.stderr)
			}
			p.stderr.expect(t, tc.want)
		})
	}

	// A bolt file held by a running server: a second one says it is locked.
	path := filepath.Join(dir, "rooms.db")
	srv, _ := serve(t, "--history-store", "bolt:"+path)
	p := start(t, "serve", "--addr", "127.0.0.1:0", "--history-store", "bolt:"+path)
	if code := p.wait(t); code != exitFailure {
		t.Errorf("exit code %d, want %d", code, exitFailure)
	}
	p.stderr.expect(t, "file is locked by another process")
	srv.stop(t)
}
