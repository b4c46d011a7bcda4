package cluster_test

import (
	"strconv"
	"testing"

	"github.com/marmotws/marmot"
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
	procs, members, room, pub, errs := publisherRig(t, "marmot-pubonce", "MARMOT_PUB_HOLD=held")
	ctx := ctxTimeout(t)
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

// TestPublishAckWaitsForGrain: a client's Publish (its marmot.publish
// request, through its session's outbox) on node 1 never reaches the
// room's grain (the grain's node drops node 1's publishes of it, as if
// node 1 had died right after handing it over), and node 1 is SIGKILLed
// after the client has sent a hundred more messages (which would have
// had the session acknowledge everything before them at once) and had a
// request answered after them. The session's acknowledgement waited for
// the publish's answer, so the client still holds the publish: it sends
// it again to node 2, which publishes it; every member gets it once.
// (Before, the publish was acknowledged once node 1 had handed it to its
// room, and lost with node 1.)
func TestPublishAckWaitsForGrain(t *testing.T) {
	procs, members, room, pub, errs := publisherRig(t, "marmot-puback", "MARMOT_GRAIN_DROP=lost@1")
	ctx := ctxTimeout(t)
	if err := pub.Publish(room, []byte("a")); err != nil {
		t.Fatal(err)
	}
	epoch := expectAll(t, members, "a", 1, "")
	if err := pub.Publish(room, []byte("lost")); err != nil {
		t.Fatal(err)
	}
	sessiontest.Send(t, pub, 101, 200)
	procs[0].waitLine("HANDLED 200")
	if _, err := pub.Request(ctx, "done", nil); err != nil {
		t.Fatal(err)
	}
	procs[0].kill()
	// Sent again by the client, to node 2, and published from there.
	expectAll(t, members, "lost", 2, epoch)
	if err := pub.Publish(room, []byte("after")); err != nil {
		t.Fatal(err)
	}
	expectAll(t, members, "after", 3, epoch)
	if pub.URL() == procs[0].url {
		t.Fatal("the publisher did not fail over")
	}
	sessiontest.NoSessionLost(t, errs)
}

// publisherRig starts three session nodes with env, a member on nodes 2
// and 3 in a room whose grain is not on node 1 (it outlives node 1's
// loss), and a publisher with its session on node 1 (failing over to 2
// and 3) whose session's mark is on its replica: node 1 sends it as the
// client takes the session up, ahead of a broadcast to every node, which
// returns once every node has it. Without the mark the session would be
// lost with node 1, and nothing handled again.
func publisherRig(t *testing.T, prefix string, env ...string) ([]*proc, []*tclient, string, *marmot.Client, chan error) {
	t.Helper()
	procs := startSessionNodes(t, prefix, loopbackNodes(t), t.TempDir(), env...)
	members := []*tclient{connect(t, procs[1]), connect(t, procs[2])}
	room := roomNotOn(t, members[0], 1)
	joinAll(t, room, members...)
	pub, errs := sessionClient(t, procs[0].url, []string{procs[1].url, procs[2].url})
	sessiontest.Send(t, pub, 1, 100)
	procs[0].waitLine("HANDLED 100")
	if _, err := pub.Request(ctxTimeout(t), "bcast", []byte("warm")); err != nil {
		t.Fatal(err)
	}
	for _, m := range members {
		m.expectMarker(t, "warm")
	}
	return procs, members, room, pub, errs
}

// roomNotOn returns a room whose grain is not on node id (asked through
// c), so that it outlives that node's loss.
func roomNotOn(t *testing.T, c *tclient, id int) string {
	t.Helper()
	for k := 0; ; k++ {
		name := "room-" + strconv.Itoa(k)
		res, err := c.c.Request(ctxTimeout(t), "owner", []byte(name))
		if err != nil {
			t.Fatal(err)
		}
		if string(res) != strconv.Itoa(id) {
			return name
		}
	}
}
