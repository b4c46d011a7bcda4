package cluster_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/marmotws/marmot"
	"github.com/marmotws/marmot/supervisor"
)

// TestGrainFailure makes a room's grain panic (the testnode's grain
// middleware, on a publish of "boom"): protoactor restarts it, the
// failure is a marmot.actor.failure span exported over OTLP by the node
// that hosts the grain, and the restarted grain goes on with the room's
// subscribers, epoch and offsets: the next message reaches every client
// on every node with the next offset. Only the failed message is lost,
// and its publisher is told so: its Publish is answered with
// marmot.ErrPublishFailed (not as confirmed by the next confirmation of
// its node, nor unconfirmed after a timeout).
func TestGrainFailure(t *testing.T) {
	col := newCollector(t)
	specs := loopbackNodes(t)
	procs := startNodes(t, clusterName("marmot-grain"), specs, "MARMOT_GRAIN_PANIC=boom", "MARMOT_OTLP_URL="+col.srv.URL)
	var clients []*tclient
	for _, p := range procs {
		clients = append(clients, connect(t, p))
	}
	joinAll(t, "r", clients...)
	expect := func(text string, offset uint64, epoch string) string {
		t.Helper()
		return expectAll(t, clients, text, offset, epoch)
	}
	if err := clients[0].c.Publish("r", []byte("a")); err != nil {
		t.Fatal(err)
	}
	epoch := expect("a", 1, "")
	// The publisher of "boom" (on node 2, not a member) hears of its
	// publish through OnError: a refusal or failure is reported there.
	boomErr := make(chan error, 4)
	boomer, _ := dialNode(t, procs[1], marmot.ClientEvents{OnError: func(err error) {
		select {
		case boomErr <- err:
		default:
		}
	}})
	if err := boomer.Publish("r", []byte("boom")); err != nil {
		t.Fatal(err)
	}
	if err := clients[2].c.Publish("r", []byte("b")); err != nil {
		t.Fatal(err)
	}
	expect("b", 2, epoch)
	// A second publish from the same node after the failed one is
	// numbered at once (the failed seq is no hole) and confirmed.
	if err := clients[1].c.Publish("r", []byte("c")); err != nil {
		t.Fatal(err)
	}
	expect("c", 3, epoch)
	select {
	case err := <-boomErr:
		var re *marmot.RoomError
		var remote *marmot.RemoteError
		if !errors.As(err, &re) || !errors.As(err, &remote) || !strings.Contains(remote.Message, marmot.ErrPublishFailed.Error()) {
			t.Fatalf("the failed publish was answered with %v, want %q", err, marmot.ErrPublishFailed)
		}
		t.Logf("the failed publish's answer: %v", err)
	case <-time.After(waitTimeout):
		t.Fatal("the failed publish was not answered with an error")
	}

	// The failure span, from whichever node hosts the grain.
	deadline := time.After(waitTimeout)
	for {
		found := false
		for _, p := range procs {
			if _, ok := col.find(fmt.Sprintf("node-%d", p.id), supervisor.SpanName, ""); ok {
				found = true
			}
		}
		if found {
			break
		}
		select {
		case <-col.changed:
		case <-deadline:
			t.Fatalf("no %s span exported", supervisor.SpanName)
		}
	}
}

// expectAll checks that every client's next message is text at offset,
// of epoch (any epoch when ""; then all the same), and returns the epoch.
func expectAll(t *testing.T, clients []*tclient, text string, offset uint64, epoch string) string {
	t.Helper()
	for _, c := range clients {
		m := c.next(t, text)
		if string(m.Payload) != text || m.Offset != offset || (epoch != "" && m.Epoch != epoch) {
			t.Fatalf("client of node %d: got %q #%d epoch %q, want %q #%d epoch %q", c.node, m.Payload, m.Offset, m.Epoch, text, offset, epoch)
		}
		epoch = m.Epoch
	}
	return epoch
}
