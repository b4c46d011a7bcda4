package cluster_test

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/marmotws/marmot"
)

// pclient is a client that records, in the order its ClientActor hands
// them on, room messages ("msg ROOM PAYLOAD") and presence events ("join
// ROOM ID", "leave ROOM ID"), and answers requests: "ping" with
// "pong-<its ID>", "refuse" with error 409, "slow" never.
type pclient struct {
	c    *marmot.Client
	id   marmot.ClientID
	node int
	got  chan string
}

func pconnect(t *testing.T, p *proc) *pclient {
	t.Helper()
	pc := &pclient{node: p.id, got: make(chan string, 4096)}
	var self atomic.Uint64 // the client's ID, for its answers (set after whoami)
	pc.c, pc.id = dialNode(t, p, marmot.ClientEvents{
		OnError: func(err error) { t.Logf("client of node %d: %v", p.id, err) },
		OnHandleCommand: func(m *marmot.Message) {
			if m.IsRequest() {
				switch m.Name {
				case "ping":
					_ = m.Reply(fmt.Appendf(nil, "pong-%d %s", self.Load(), m.Payload))
				case "refuse":
					_ = m.ReplyError(409, "no thanks")
				}
				return
			}
			if m.Room != "" {
				pc.got <- fmt.Sprintf("msg %s %s", m.Room, m.Payload)
			}
		},
		OnPresence: func(room string, id marmot.ClientID, joined bool) {
			ev := "leave"
			if joined {
				ev = "join"
			}
			pc.got <- fmt.Sprintf("%s %s %d", ev, room, id)
		},
	})
	self.Store(uint64(pc.id))
	return pc
}

func (pc *pclient) next(t *testing.T, what string) string {
	t.Helper()
	select {
	case s := <-pc.got:
		return s
	case <-time.After(waitTimeout):
		t.Fatalf("client %d (node %d): timed out waiting for %s", pc.id, pc.node, what)
	}
	return ""
}

func (pc *pclient) expect(t *testing.T, want ...string) {
	t.Helper()
	for i, w := range want {
		if g := pc.next(t, w); g != w {
			t.Fatalf("client %d (node %d): item %d = %q, want %q", pc.id, pc.node, i, g, w)
		}
	}
}

func idList(ids ...marmot.ClientID) string {
	slices.Sort(ids)
	s := make([]string, len(ids))
	for i, id := range ids {
		s[i] = strconv.FormatUint(uint64(id), 10)
	}
	return strings.Join(s, ",")
}

// TestClusterPresence runs three node processes on 127.0.0.2-4: joins
// and leaves on every node reach the members of a room with presence on
// every node, in one order among the room's messages; Presence and
// Node.RoomMembers list every node's members; a request from a client's
// handler reaches a client of another node (and fails clearly for a
// missing node or client, and within its deadline for one that does not
// answer); a SIGKILLed node's members are reported left, once.
func TestClusterPresence(t *testing.T) {
	specs := loopbackNodes(t)
	name := fmt.Sprintf("marmot-pres-%d", time.Now().UnixNano())
	procs := make([]*proc, len(specs))
	for i, s := range specs {
		procs[i] = startProc(t, name, s, specs)
	}
	for _, p := range procs {
		p.waitMembers("1,2,3")
	}
	ctx := ctxTimeout(t)
	const room = "pres-lobby"
	obs := make([]*pclient, len(procs))
	for i, p := range procs {
		obs[i] = pconnect(t, p)
	}
	// The observers join one after another: each earlier one is told.
	// A Join returns once the client is a member of its node's room; its
	// event reaches the grain on its way, so each observer's own message
	// after its join (the grain orders it after the join) marks the join
	// as ordered before the next observer's node starts the room.
	for i, o := range obs {
		if err := o.c.Join(ctx, room); err != nil {
			t.Fatal(err)
		}
		marker := fmt.Sprintf("joined-%d", i)
		if err := o.c.Publish(room, []byte(marker)); err != nil {
			t.Fatal(err)
		}
		for _, before := range obs[:i] {
			before.expect(t, fmt.Sprintf("join %s %d", room, o.id), "msg "+room+" "+marker)
		}
		o.expect(t, "msg "+room+" "+marker)
	}

	t.Run("one order", func(t *testing.T) {
		// A client per node joins and leaves while node 2's client publishes.
		churn := make([]*pclient, len(procs))
		for i, p := range procs {
			churn[i] = pconnect(t, p)
		}
		const rounds = 10
		var wg sync.WaitGroup
		for _, c := range churn {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for range rounds {
					if err := c.c.Join(ctx, room); err != nil {
						t.Error(err)
						return
					}
					if err := c.c.Leave(ctx, room); err != nil {
						t.Error(err)
						return
					}
				}
			}()
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for k := range rounds {
				if err := obs[1].c.Publish(room, fmt.Appendf(nil, "p%d", k)); err != nil {
					t.Error(err)
					return
				}
			}
		}()
		wg.Wait()
		if err := obs[0].c.Publish(room, []byte("end")); err != nil {
			t.Fatal(err)
		}
		// Every join, leave and message, on every node; "end" is not
		// necessarily last: the last leaves left other nodes before it
		// but may reach the grain after it.
		const items = 3*rounds*2 + rounds + 1
		seqs := make([][]string, len(obs))
		for i, o := range obs {
			for range items {
				seqs[i] = append(seqs[i], o.next(t, "the next item"))
			}
			if !slices.Contains(seqs[i], "msg "+room+" end") {
				t.Fatalf("client %d: no end message in %q", o.id, seqs[i])
			}
		}
		for i := range seqs[1:] {
			if !slices.Equal(seqs[0], seqs[i+1]) {
				t.Fatalf("nodes 1 and %d saw different orders:\n%s\n%s", i+2, strings.Join(seqs[0], "|"), strings.Join(seqs[i+1], "|"))
			}
		}
		for _, c := range churn {
			want := "join"
			n := 0
			for _, it := range seqs[0] {
				if strings.HasSuffix(it, fmt.Sprintf(" %s %d", room, c.id)) {
					if !strings.HasPrefix(it, want) {
						t.Fatalf("client %d: %q where a %s was due", c.id, it, want)
					}
					want = map[string]string{"join": "leave", "leave": "join"}[want]
					n++
				}
			}
			if n != 2*rounds {
				t.Fatalf("client %d: %d events, want %d", c.id, n, 2*rounds)
			}
		}
	})

	all := idList(obs[0].id, obs[1].id, obs[2].id)
	t.Run("members", func(t *testing.T) {
		for _, o := range obs {
			ids, err := o.c.Presence(ctx, room)
			if err != nil || idList(ids...) != all {
				t.Fatalf("Presence from node %d: %v, %v; want %s", o.node, ids, err, all)
			}
			res, err := o.c.Request(ctx, "members", []byte(room))
			if err != nil || string(res) != all {
				t.Fatalf("RoomMembers from node %d: %q, %v; want %s", o.node, res, err, all)
			}
		}
		// A room without presence: RoomMembers still lists every node's.
		for _, o := range obs[1:] {
			if err := o.c.Join(ctx, "plain"); err != nil {
				t.Fatal(err)
			}
		}
		want := idList(obs[1].id, obs[2].id)
		if res, err := obs[0].c.Request(ctx, "members", []byte("plain")); err != nil || string(res) != want {
			t.Fatalf("RoomMembers of a room without presence: %q, %v; want %s", res, err, want)
		}
	})

	t.Run("request", func(t *testing.T) {
		ask := func(from *pclient, arg string) ([]byte, error) {
			return from.c.Request(ctx, "ask", []byte(arg))
		}
		for _, from := range obs {
			for _, to := range obs { // to == from: a handler asks its own client (issue #14)
				res, err := ask(from, fmt.Sprintf("%d ping 10000 from-%d", to.id, from.id))
				if want := fmt.Sprintf("pong-%d from-%d", to.id, from.id); err != nil || string(res) != want {
					t.Fatalf("request from %d to %d: %q, %v; want %q", from.id, to.id, res, err, want)
				}
			}
		}
		remoteErr := func(arg, want string) {
			t.Helper()
			_, err := ask(obs[0], arg)
			var re *marmot.RemoteError
			if !errors.As(err, &re) || !strings.Contains(re.Message, want) {
				t.Fatalf("ask %q: %v, want an error saying %q", arg, err, want)
			}
		}
		remoteErr(fmt.Sprintf("%d refuse 10000", obs[2].id), "remote error 409: no thanks")
		remoteErr(fmt.Sprintf("%d ping 10000", obs[2].id+100), "no such client")
		remoteErr("9000000000001 ping 10000", "its node is not in the cluster")
		start := time.Now()
		remoteErr(fmt.Sprintf("%d slow 300", obs[2].id), "deadline exceeded")
		if d := time.Since(start); d > waitTimeout/2 {
			t.Fatalf("a request with a 300 ms deadline took %v", d)
		}
		// The client that did not answer still does.
		if res, err := ask(obs[0], fmt.Sprintf("%d ping 10000 again", obs[2].id)); err != nil || !strings.HasPrefix(string(res), "pong-") {
			t.Fatalf("request after a timeout: %q, %v", res, err)
		}
	})

	t.Run("killed node", func(t *testing.T) {
		procs[2].kill()
		procs[0].waitMembers("1,2")
		procs[1].waitMembers("1,2")
		if err := obs[0].c.Publish(room, []byte("after-kill")); err != nil {
			t.Fatal(err)
		}
		// Node 3's member is reported left once, before what follows.
		for _, o := range obs[:2] {
			o.expect(t, fmt.Sprintf("leave %s %d", room, obs[2].id), "msg "+room+" after-kill")
		}
		want := idList(obs[0].id, obs[1].id)
		for _, o := range obs[:2] {
			ids, err := o.c.Presence(ctx, room)
			if err != nil || idList(ids...) != want {
				t.Fatalf("Presence from node %d after the kill: %v, %v; want %s", o.node, ids, err, want)
			}
		}
		if res, err := obs[0].c.Request(ctx, "members", []byte(room)); err != nil || string(res) != want {
			t.Fatalf("RoomMembers after the kill: %q, %v; want %s", res, err, want)
		}
		// Nothing more: a join on node 2 is the next item of node 1's.
		late := pconnect(t, procs[1])
		if err := late.c.Join(ctx, room); err != nil {
			t.Fatal(err)
		}
		for _, o := range obs[:2] {
			o.expect(t, fmt.Sprintf("join %s %d", room, late.id))
		}

		// Node 3 back (a new member, the same NodeID): its clients'
		// presence counts again.
		procs[2] = startProc(t, name, specs[2], specs)
		for _, p := range procs {
			p.waitMembers("1,2,3")
		}
		back := pconnect(t, procs[2])
		if err := back.c.Join(ctx, room); err != nil {
			t.Fatal(err)
		}
		for _, o := range append(obs[:2:2], late) {
			o.expect(t, fmt.Sprintf("join %s %d", room, back.id))
		}
		want = idList(obs[0].id, obs[1].id, late.id, back.id)
		if ids, err := back.c.Presence(ctx, room); err != nil || idList(ids...) != want {
			t.Fatalf("Presence on the restarted node: %v, %v; want %s", ids, err, want)
		}
	})
}
