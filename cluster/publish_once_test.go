package cluster_test

import (
	"strconv"
	"testing"

	"github.com/marmotws/marmot/internal/sessiontest"
)

// TestRedeliveredPublishOnce: a client's "pub/ROOM" request is handled on
// node 1, whose handler publishes it (Server.PublishFor: the room's grain,
// on another node, numbers it and the members get it) and then never
// returns, so the session does not acknowledge the request; node 1 is
// SIGKILLed. The client fails over, the node it reaches takes the session
// over from node 1's last mark and handles the request again, flagged
// Redelivered, and publishes it again under the same key: the grain
// drops the repeat and confirms it. The client's request is answered, and
// every member gets the message exactly once (before publish keys, twice:
// the second node's publish was a new one).
func TestRedeliveredPublishOnce(t *testing.T) {
	dir := t.TempDir()
	procs := startSessionNodes(t, "marmot-pubonce", loopbackNodes(t), dir, "MARMOT_PUB_HOLD=held")
	urls := []string{procs[0].url, procs[1].url, procs[2].url}
	members := []*tclient{connect(t, procs[1]), connect(t, procs[2])}
	// A room whose grain is not on node 1: it outlives the kill.
	room := ""
	for k := 0; room == ""; k++ {
		name := "once-" + strconv.Itoa(k)
		res, err := members[0].c.Request(ctxTimeout(t), "owner", []byte(name))
		if err != nil {
			t.Fatal(err)
		}
		if string(res) != "1" {
			room = name
		}
	}
	joinAll(t, room, members...)

	pub, errs := sessionClient(t, urls[0], urls[1:])
	ctx := ctxTimeout(t)
	// The session's mark must be on its replica before the kill, or the
	// session is lost with node 1 (and nothing is handled again): node 1
	// sends it as the client takes the session up, ahead of a broadcast
	// to every node, which returns once every node has it.
	sessiontest.Send(t, pub, 1, 100)
	procs[0].waitLine("HANDLED 100")
	if _, err := pub.Request(ctx, "bcast", []byte("warm")); err != nil {
		t.Fatal(err)
	}
	for _, m := range members {
		m.expectMarker(t, "warm")
	}
	if _, err := pub.Request(ctx, "pub/"+room, []byte("a")); err != nil {
		t.Fatal(err)
	}
	epoch := expectAll(t, members, "a", 1, "")
	held := make(chan error, 1)
	go func() {
		_, err := pub.Request(ctx, "pub/"+room, []byte("held"))
		held <- err
	}()
	procs[0].waitLine("HELD")
	expectAll(t, members, "held", 2, epoch)
	procs[0].kill()

	if err := recvErr(t, held); err != nil {
		t.Fatalf("the held publish, after the failover: %v", err)
	}
	var on *proc
	for _, p := range procs[1:] {
		if pub.URL() == p.url {
			on = p
		}
	}
	if on == nil {
		t.Fatalf("the publisher is on %s, not node 2 or 3", pub.URL())
	}
	on.waitLine("PUBLISHED held true") // handled again, flagged
	if _, err := pub.Request(ctx, "pub/"+room, []byte("after")); err != nil {
		t.Fatal(err)
	}
	// Not "held" again: "after" is the next message, at the next offset.
	expectAll(t, members, "after", 3, epoch)
	sessiontest.NoSessionLost(t, errs)
	t.Logf("room %s: the publish handled on node 1 and again on node %d was delivered once", room, on.id)
}
