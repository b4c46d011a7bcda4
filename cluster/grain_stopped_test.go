package cluster_test

import (
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/marmotws/marmot/supervisor"
)

// TestGrainStopped makes a room's grain fail more often than protoactor's
// restart budget allows (11 publishes of "boom" in a row, each a panic
// in the grain: 10 restarts, then protoactor stops it). The stopped grain
// tells its subscribed nodes (wire.RoomResubscribe); they subscribe the
// room again, which starts a fresh grain that goes on from their
// position: the next message reaches every client on every node with the
// next offset of the same epoch, and nothing numbered before is lost or
// repeated. The failing messages themselves are lost (never numbered):
// their node sends them again, unconfirmed, and the grains drop them
// rather than fail on them again (before this, the fresh grain failed on
// the first of them, and the room stalled behind it for good).
func TestGrainStopped(t *testing.T) {
	col := newCollector(t)
	specs := loopbackNodes(t)
	procs := startNodes(t, clusterName("marmot-grain-stop"), specs, "MARMOT_GRAIN_PANIC=boom", "MARMOT_OTLP_URL="+col.srv.URL)
	var clients []*tclient
	for _, p := range procs {
		clients = append(clients, connect(t, p))
	}
	joinAll(t, "r", clients...)
	expect := func(text string, offset uint64, epoch string) string {
		t.Helper()
		return expectAll(t, clients, text, offset, epoch)
	}
	const before = 5
	epoch := ""
	for k := 1; k <= before; k++ {
		if err := clients[k%3].c.Publish("r", []byte("m"+strconv.Itoa(k))); err != nil {
			t.Fatal(err)
		}
		epoch = expect("m"+strconv.Itoa(k), uint64(k), epoch)
	}
	// One more failure than protoactor's budget (10 restarts in 10 s).
	for range 11 {
		if err := clients[1].c.Publish("r", []byte("boom")); err != nil {
			t.Fatal(err)
		}
	}
	// Published after the failures, from every node: each is numbered
	// once by the grain there is then (the failing one restarted, or the
	// fresh one), in each publisher's order.
	for k := before + 1; k <= before+3; k++ {
		if err := clients[k%3].c.Publish("r", []byte("m"+strconv.Itoa(k))); err != nil {
			t.Fatal(err)
		}
	}
	// Every client: the three, once each, with offsets 6, 7, 8 in one
	// order, the same epoch.
	var order []string
	for i, c := range clients {
		var got []string
		for off := uint64(before + 1); off <= before+3; off++ {
			m := c.next(t, "a message after the failures")
			if m.Offset != off || m.Epoch != epoch {
				t.Fatalf("client of node %d: got %q #%d epoch %q, want #%d epoch %q", c.node, m.Payload, m.Offset, m.Epoch, off, epoch)
			}
			got = append(got, string(m.Payload))
		}
		if i == 0 {
			order = got
		} else if strconv.Quote(got[0]+got[1]+got[2]) != strconv.Quote(order[0]+order[1]+order[2]) {
			t.Fatalf("client of node %d got %v, client of node 1 %v", c.node, got, order)
		}
	}
	// The grain is stopped and a fresh one took the room on: one more
	// message goes on from there.
	if err := clients[0].c.Publish("r", []byte("last")); err != nil {
		t.Fatal(err)
	}
	expect("last", before+4, epoch)

	// protoactor did stop the grain: the failure span of its 11th
	// failure says so, from the node that hosted it.
	deadline := time.After(waitTimeout)
	for !col.hasDirective(procs, supervisor.SpanName, "stop") {
		select {
		case <-col.changed:
		case <-deadline:
			t.Fatalf("no %s span with directive stop exported", supervisor.SpanName)
		}
	}
}

// hasDirective reports whether a node exported a span named name whose
// supervisor directive is d.
func (c *collector) hasDirective(procs []*proc, name, d string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, p := range procs {
		for _, s := range c.spans[fmt.Sprintf("node-%d", p.id)] {
			if s.GetName() != name {
				continue
			}
			for _, a := range s.GetAttributes() {
				if a.GetKey() == string(supervisor.AttrDirective) && a.GetValue().GetStringValue() == d {
					return true
				}
			}
		}
	}
	return false
}
