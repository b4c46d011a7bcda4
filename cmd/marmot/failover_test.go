package main

import (
	"strings"
	"testing"
)

// TestConnectFailover: "marmot connect --url A --url B" moves to B when A
// stops, re-joins its room there and goes on working; a first URL that
// refuses makes the first connect land on the next.
func TestConnectFailover(t *testing.T) {
	a, urlA := serve(t, "--mode", "rooms")
	b, urlB := serve(t, "--mode", "rooms")
	c := start(t, "connect", "--url", urlA, "--url", urlB, "--subprotocol", "marmot.v1", "--join", "lobby",
		"--auto-reconnect", "--reconnect-interval", "50ms", "--connect-timeout", "5s")
	c.stderr.expect(t, "* connected to "+urlA)
	c.stderr.expect(t, "* joined room lobby")
	c.send(t, "@lobby on a")
	c.stdout.expect(t, "[lobby #1] on a")
	a.stop(t)
	c.stderr.expect(t, "* reconnect attempt 1 in 50ms to "+urlB)
	c.stderr.expect(t, "* reconnected to "+urlB)
	c.stdout.expect(t, "not recovered room lobby")
	c.send(t, "@lobby on b")
	c.stdout.expect(t, "[lobby #1] on b") // b's room starts its own offsets
	c.send(t, "/req echo hi")
	c.stdout.expect(t, "< [reply] hi")
	c.quit(t)

	// The positional URL still works, and comes first.
	dead := "ws://127.0.0.1:1/websocket"
	d := start(t, "connect", dead, "--url", urlB)
	if line := d.stderr.expect(t, "* connected to "); !strings.Contains(line, urlB) {
		t.Fatalf("%q, want a connection to %s", line, urlB)
	}
	d.quit(t)
	b.stop(t)
}
