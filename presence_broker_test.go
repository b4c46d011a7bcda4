package marmot_test

import (
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/marmotws/marmot"
)

// presBroker adds presence to memBroker (a PresenceBroker for servers in
// one process): changes are ordered under the same lock as the messages,
// so every server's rooms get both in one order.
type presBroker struct {
	*memBroker
	members map[string]map[uint32][]marmot.ClientID // by room, by node
}

func newPresBroker() *presBroker {
	return &presBroker{memBroker: newMemBroker(), members: map[string]map[uint32][]marmot.ClientID{}}
}

func (b *presBroker) For(node uint32, s **marmot.Server) marmot.PresenceBroker {
	return &presView{memBrokerView: &memBrokerView{b: b.memBroker, s: s}, p: b, node: node}
}

type presView struct {
	*memBrokerView
	p    *presBroker
	node uint32
}

func (v *presView) PublishPresence(room string, client marmot.ClientID, joined bool) error {
	v.b.mu.Lock()
	defer v.b.mu.Unlock()
	if v.p.members[room] == nil {
		v.p.members[room] = map[uint32][]marmot.ClientID{}
	}
	set := slices.DeleteFunc(v.p.members[room][v.node], func(id marmot.ClientID) bool { return id == client })
	if joined {
		set = append(set, client)
	}
	v.p.members[room][v.node] = set
	for s := range v.b.subs[room] {
		s.DeliverPresence(room, &marmot.PresenceUpdate{Node: v.node, Client: client, Joined: joined})
	}
	return nil
}

func (v *presView) SyncPresence(room string, members []marmot.ClientID) error {
	v.b.mu.Lock()
	defer v.b.mu.Unlock()
	if v.p.members[room] == nil {
		v.p.members[room] = map[uint32][]marmot.ClientID{}
	}
	v.p.members[room][v.node] = slices.Clone(members)
	for s := range v.b.subs[room] {
		if s != *v.s {
			s.DeliverPresence(room, &marmot.PresenceUpdate{Node: v.node, Sync: true, Members: members})
		}
	}
	return nil
}

func (v *presView) PresenceState(room string) (map[uint32][]marmot.ClientID, error) {
	v.b.mu.Lock()
	defer v.b.mu.Unlock()
	out := map[uint32][]marmot.ClientID{}
	for node, ids := range v.p.members[room] {
		out[node] = slices.Clone(ids)
	}
	return out, nil
}

// gone tells every server but the lost one's that node left (as package
// cluster does when a member leaves).
func (b *presBroker) gone(room string, node uint32, lost *marmot.Server) {
	b.mu.Lock()
	defer b.mu.Unlock()
	delete(b.members[room], node)
	for s := range b.subs[room] {
		if s != lost {
			s.DeliverPresence(room, &marmot.PresenceUpdate{Node: node, Sync: true})
		}
	}
}

// TestPresenceBroker: under a PresenceBroker, a join or leave on either
// of two servers reaches the members of both in one order among the
// room's messages; Presence and Members list both servers' members and
// LocalMembers one's; a server that is gone has its members reported
// left, once; a room that starts late takes the broker's state.
func TestPresenceBroker(t *testing.T) {
	b := newPresBroker()
	var s1, s2 *marmot.Server
	ids := make(chan marmot.ClientID, 16)
	cfg := func(node uint32, s **marmot.Server) marmot.ServerConfig {
		return marmot.ServerConfig{NodeID: node, RoomBroker: b.For(node, s),
			RoomPresence: func(room string) bool { return room == "lobby" },
			ServerEvents: marmot.ServerEvents{OnClientConnected: func(info marmot.ClientInfo) { ids <- info.ID }}}
	}
	s1 = startServer(t, cfg(1, &s1))
	s2 = startServer(t, cfg(2, &s2))
	ctx := ctxTimeout(t)
	a, gotA := presenceClient(t, s1, "marmot.v1")
	idA := recv(t, ids, "a")
	d, gotD := presenceClient(t, s2, "marmot.json.v1")
	idD := recv(t, ids, "d")
	for _, c := range []*marmot.Client{a, d} {
		if err := c.Join(ctx, "lobby"); err != nil {
			t.Fatal(err)
		}
	}
	expect(t, "a", gotA, fmt.Sprintf("join lobby %d", idD))

	// Two clients per server join and leave while a third publishes:
	// a (server 1) and d (server 2) see the same sequence.
	type churner struct {
		c  *marmot.Client
		id marmot.ClientID
	}
	var churn []churner
	for _, s := range []*marmot.Server{s1, s2, s1, s2} {
		c := newClient(t, marmot.ClientConfig{URL: s.URL(), Subprotocol: "marmot.v1"}) // hears nothing
		if err := c.Connect(ctx); err != nil {
			t.Fatal(err)
		}
		churn = append(churn, churner{c, recv(t, ids, "a churner")})
	}
	const rounds = 20
	var wg sync.WaitGroup
	for _, ch := range churn {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range rounds {
				if err := ch.c.Join(ctx, "lobby"); err != nil {
					t.Error(err)
					return
				}
				if err := ch.c.Leave(ctx, "lobby"); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := range rounds {
			if _, err := s2.Publish("lobby", fmt.Appendf(nil, "p%d", i)); err != nil {
				t.Error(err)
				return
			}
		}
	}()
	waitGroup(t, &wg, "the churn")
	if _, err := s1.Publish("lobby", []byte("end")); err != nil {
		t.Fatal(err)
	}
	const items = 4*rounds*2 + rounds + 1
	var seqA, seqD []string
	for range items {
		seqA = append(seqA, recv(t, gotA, "a's next item"))
		seqD = append(seqD, recv(t, gotD, "d's next item"))
	}
	if !slices.Equal(seqA, seqD) {
		t.Fatalf("a and d saw different orders:\n%s\n%s", strings.Join(seqA, "|"), strings.Join(seqD, "|"))
	}
	if last := seqA[len(seqA)-1]; !strings.HasPrefix(last, "msg lobby end") {
		t.Fatalf("last item %q, want the end message", last)
	}
	// Each churner's events alternate join, leave.
	for _, ch := range churn {
		want := "join"
		for _, it := range seqA {
			if strings.HasSuffix(it, fmt.Sprintf(" lobby %d", ch.id)) {
				if !strings.HasPrefix(it, want) {
					t.Fatalf("client %d: %q where a %s was due", ch.id, it, want)
				}
				want = map[string]string{"join": "leave", "leave": "join"}[want]
			}
		}
		if want != "join" {
			t.Fatalf("client %d: did not end with a leave", ch.id)
		}
	}

	// Both servers' members, from either side.
	e, _ := presenceClient(t, s2, "marmot.v1")
	idE := recv(t, ids, "e")
	if err := e.Join(ctx, "lobby"); err != nil {
		t.Fatal(err)
	}
	expect(t, "a", gotA, fmt.Sprintf("join lobby %d", idE))
	expect(t, "d", gotD, fmt.Sprintf("join lobby %d", idE))
	all := []marmot.ClientID{idA, idD, idE}
	for _, c := range []*marmot.Client{a, d, e} {
		if got, err := c.Presence(ctx, "lobby"); err != nil || !slices.Equal(got, all) {
			t.Fatalf("Presence: %v, %v; want %v", got, err, all)
		}
	}
	if got := s1.Members("lobby"); !slices.Equal(got, all) {
		t.Fatalf("Members on server 1: %v, want %v", got, all)
	}
	if got := s1.LocalMembers("lobby"); !slices.Equal(got, []marmot.ClientID{idA}) {
		t.Fatalf("LocalMembers on server 1: %v, want [%d]", got, idA)
	}
	if got := s2.LocalMembers("lobby"); !slices.Equal(got, []marmot.ClientID{idD, idE}) {
		t.Fatalf("LocalMembers on server 2: %v, want [%d %d]", got, idD, idE)
	}

	// A server that starts the room late gets the broker's state.
	var s3 *marmot.Server
	s3 = startServer(t, cfg(3, &s3))
	f, _ := presenceClient(t, s3, "marmot.v1")
	idF := recv(t, ids, "f")
	// Asked before anyone is in the room there, server 3 starts it and
	// answers with the other servers' members.
	if got, err := f.Presence(ctx, "lobby"); err != nil || !slices.Equal(got, all) {
		t.Fatalf("Presence on a server without the room: %v, %v; want %v", got, err, all)
	}
	if err := f.Join(ctx, "lobby"); err != nil {
		t.Fatal(err)
	}
	withF := append(slices.Clone(all), idF)
	if got, err := f.Presence(ctx, "lobby"); err != nil || !slices.Equal(got, withF) {
		t.Fatalf("Presence on a late server: %v, %v; want %v", got, err, withF)
	}
	expect(t, "a", gotA, fmt.Sprintf("join lobby %d", idF))

	// Server 2 is lost: its members are reported left on server 1, once.
	b.gone("lobby", 2, s2)
	b.gone("lobby", 2, s2)
	if _, err := s1.Publish("lobby", []byte("after")); err != nil {
		t.Fatal(err)
	}
	expect(t, "a", gotA, fmt.Sprintf("leave lobby %d", idD), fmt.Sprintf("leave lobby %d", idE), "msg lobby after #22")
	if got, err := a.Presence(ctx, "lobby"); err != nil || !slices.Equal(got, []marmot.ClientID{idA, idF}) {
		t.Fatalf("Presence after server 2 left: %v, %v; want [%d %d]", got, err, idA, idF)
	}
}
