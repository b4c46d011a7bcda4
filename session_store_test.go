package marmot_test

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/marmotws/marmot"
	"github.com/marmotws/marmot/actors"
	"github.com/marmotws/marmot/chaos"
	"github.com/marmotws/marmot/internal/sessiontest"
	"github.com/marmotws/marmot/protocol"
)

// hubsStore is a SessionStore shared by the servers of one test, standing
// in for package cluster's: Take asks the session's live server to hand it
// over, or takes the record Save and Mark kept once that server is
// "lost" (kill).
type hubsStore struct {
	mu      sync.Mutex
	recs    map[uint64]marmot.SessionRecord
	servers map[uint32]*marmot.Server
	dead    map[uint32]bool
	takes   []marmot.SessionTaken
	// onMark, when set, sees every mark after it was kept (just before
	// its acknowledgement goes out).
	onMark func(last uint64)
}

func newHubsStore() *hubsStore {
	return &hubsStore{recs: map[uint64]marmot.SessionRecord{}, servers: map[uint32]*marmot.Server{}, dead: map[uint32]bool{}}
}

func (st *hubsStore) Save(rec marmot.SessionRecord) {
	st.mu.Lock()
	defer st.mu.Unlock()
	if !st.dead[actors.SessionNode(rec.ID)] {
		st.recs[rec.ID] = rec
	}
}

func (st *hubsStore) Mark(id, last uint64) {
	st.mu.Lock()
	if r, ok := st.recs[id]; ok && !st.dead[actors.SessionNode(id)] && last > r.Last {
		r.Last = last
		st.recs[id] = r
	}
	f := st.onMark
	st.mu.Unlock()
	if f != nil {
		f(last)
	}
}

func (st *hubsStore) Delete(id uint64) {
	st.mu.Lock()
	defer st.mu.Unlock()
	if !st.dead[actors.SessionNode(id)] {
		delete(st.recs, id)
	}
}

func (st *hubsStore) Take(_ context.Context, id uint64, secret []byte) (marmot.SessionTaken, error) {
	home := actors.SessionNode(id)
	st.mu.Lock()
	srv, dead := st.servers[home], st.dead[home]
	st.mu.Unlock()
	var t marmot.SessionTaken
	if !dead {
		last, err := srv.HandOverSession(id, secret)
		if err != nil {
			return t, err
		}
		t = marmot.SessionTaken{Last: last, Certain: true}
	} else {
		st.mu.Lock()
		r, ok := st.recs[id]
		if !ok || !actors.SecretMatches(r.SecretHash, secret) {
			st.mu.Unlock()
			return t, marmot.ErrSessionNotFound
		}
		delete(st.recs, id)
		st.mu.Unlock()
		t = marmot.SessionTaken{Last: r.Last, Certain: r.Final}
	}
	st.mu.Lock()
	st.takes = append(st.takes, t)
	st.mu.Unlock()
	return t, nil
}

// kill makes node id lost: its records stay as they were, and Take uses
// them instead of asking it. It returns the marks kept.
func (st *hubsStore) kill(id uint32) map[uint64]uint64 {
	st.mu.Lock()
	defer st.mu.Unlock()
	st.dead[id] = true
	marks := map[uint64]uint64{}
	for k, r := range st.recs {
		if actors.SessionNode(k) == id {
			marks[k] = r.Last
		}
	}
	return marks
}

// handling is one handled message: its number (payload "m<k>") and flag.
type handling struct {
	k           int
	redelivered bool
}

// storeNode is a server of node id that records what it handles.
type storeNode struct {
	s    *marmot.Server
	mu   sync.Mutex
	seen []handling
	got  chan handling
	// closes are the codes of its connections' ends.
	closes chan int
	// onHandle, when set, runs in the handler after k is recorded.
	onHandle func(k int)
}

func newStoreNode(t *testing.T, st *hubsStore, id uint32) *storeNode {
	n := &storeNode{got: make(chan handling, 1024), closes: make(chan int, 16)}
	n.s = startServer(t, marmot.ServerConfig{NodeID: id, SessionStore: st, ServerEvents: marmot.ServerEvents{
		OnHandleCommand: func(m *marmot.Message) {
			if m.IsRequest() {
				_ = m.Reply([]byte("done"))
				return
			}
			var k int
			if _, err := fmt.Sscanf(string(m.Payload), "m%d", &k); err != nil {
				return
			}
			h := handling{k, m.Redelivered}
			n.mu.Lock()
			n.seen = append(n.seen, h)
			f := n.onHandle
			n.mu.Unlock()
			n.got <- h
			if f != nil {
				f(k)
			}
		},
		OnClientDisconnected: func(_ marmot.ClientInfo, reason *marmot.CloseError) {
			if reason != nil {
				n.closes <- reason.Code
			}
		},
	}})
	st.mu.Lock()
	st.servers[id] = n.s
	st.mu.Unlock()
	return n
}

func (n *storeNode) handled() []handling {
	n.mu.Lock()
	defer n.mu.Unlock()
	return append([]handling(nil), n.seen...)
}

// storeClient connects through a proxy to a and fails over to b, with its
// outbox; it keeps its errors.
func storeClient(t *testing.T, a, b *storeNode) (*marmot.Client, *chaos.Proxy, chan error) {
	p, err := chaos.NewProxy("127.0.0.1:0", a.s.Addr().String(), chaos.Options{Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Close() })
	urlA := strings.Replace(a.s.URL(), a.s.Addr().String(), p.Addr().String(), 1)
	errs := make(chan error, 64)
	c := newClient(t, marmot.ClientConfig{URL: urlA, FailoverURLs: []string{b.s.URL()}, Subprotocol: "marmot.v1",
		AutoReconnect: true, ReconnectStrategy: marmot.ReconnectFixed, ReconnectInterval: 20 * time.Millisecond,
		KeepAlive: 300 * time.Millisecond,
		ClientEvents: marmot.ClientEvents{OnError: func(err error) {
			select {
			case errs <- err:
			default:
			}
		}}})
	if err := c.Connect(ctxTimeout(t)); err != nil {
		t.Fatal(err)
	}
	return c, p, errs
}

// TestSessionFollowsClientHandover: the client moves from server A (still
// alive, its connection cut off behind a blackholed proxy) to server B,
// which takes the session over from A: A closes the old connection with
// 4009, and every message is handled exactly once, on A or on B, in order,
// none flagged Redelivered, no ErrSessionLost.
func TestSessionFollowsClientHandover(t *testing.T) {
	st := newHubsStore()
	a, b := newStoreNode(t, st, 1), newStoreNode(t, st, 2)
	c, p, errs := storeClient(t, a, b)
	sessiontest.Send(t, c, 1, 50)
	for range 50 {
		recv(t, a.got, "a message on A")
	}
	if err := p.Set(chaos.Faults{Blackhole: true}); err != nil {
		t.Fatal(err)
	}
	sessiontest.Send(t, c, 51, 100) // into the blackhole, then again to B
	if _, err := c.Request(ctxTimeout(t), "done", nil); err != nil {
		t.Fatal(err)
	}
	if c.URL() != b.s.URL() {
		t.Fatalf("client on %s, want B", c.URL())
	}
	if code := recv(t, a.closes, "A closing the old connection"); code != marmot.CloseSessionMoved {
		t.Fatalf("A closed the old connection with %d, want %d", code, marmot.CloseSessionMoved)
	}
	got := append(a.handled(), b.handled()...)
	if len(got) != 100 {
		t.Fatalf("%d messages handled, want 100: A %v, B %v", len(got), a.handled(), b.handled())
	}
	for i, h := range got {
		if h.k != i+1 || h.redelivered {
			t.Fatalf("handling %d is %+v: A %v, B %v", i, h, a.handled(), b.handled())
		}
	}
	st.mu.Lock()
	takes := append([]marmot.SessionTaken(nil), st.takes...)
	st.mu.Unlock()
	if len(takes) != 1 || !takes[0].Certain || takes[0].Last != 50 {
		t.Fatalf("takes %+v, want one certain take at 50", takes)
	}
	sessiontest.NoSessionLost(t, errs)
}

// TestSessionFollowsClientLostServer: server A is lost (it stops
// answering, and the store keeps the last mark it saved) while the client
// sends; the client fails over to B, which takes the session over from
// the mark. Nothing is lost; B handles nothing at or below the mark (what
// the client sends again of it is dropped); whatever B handles that the
// client had sent to A is flagged Redelivered, and what it sent after the
// failover is not. No ErrSessionLost.
//
// A is lost at its acknowledgement of 30, its mark kept at: 30 (the
// acknowledgement is lost: the client sends 21-30 again, and B drops
// them); 20 (A handled 21-30 after it: B handles them again, flagged); or
// 10, behind what A acknowledged (the client does not send 11-20 again: B
// takes its first message, 21, past the gap).
func TestSessionFollowsClientLostServer(t *testing.T) {
	for _, mark := range []uint64{30, 20, 10} {
		t.Run(fmt.Sprintf("mark %d", mark), func(t *testing.T) { lostServer(t, mark) })
	}
}

func lostServer(t *testing.T, markAt uint64) {
	st := newHubsStore()
	a, b := newStoreNode(t, st, 1), newStoreNode(t, st, 2)
	c, p, errs := storeClient(t, a, b)
	marks := make(chan uint64, 64)
	lost := make(chan struct{})
	var once sync.Once
	st.onMark = func(last uint64) {
		// The store keeps no mark past markAt.
		st.mu.Lock()
		for id, r := range st.recs {
			r.Last = min(r.Last, markAt)
			st.recs[id] = r
		}
		st.mu.Unlock()
		if last < 30 {
			marks <- last
			return
		}
		once.Do(func() {
			// Lost right here: nothing more goes in or out (the
			// acknowledgement neither), and the store keeps what
			// it has.
			_ = p.Set(chaos.Faults{Blackhole: true})
			close(lost)
		})
	}
	sessiontest.Send(t, c, 1, 20)
	for recv(t, marks, "mark 20") != 20 {
	}
	sessiontest.Send(t, c, 21, 30)
	recv(t, lost, "A lost")
	kept := st.kill(1)
	if len(kept) != 1 {
		t.Fatalf("marks kept %v, want one session", kept)
	}
	var mark uint64
	for _, v := range kept {
		mark = v
	}
	if mark != markAt {
		t.Fatalf("mark %d, want %d", mark, markAt)
	}
	sessiontest.Send(t, c, 31, 60)
	for c.URL() != b.s.URL() {
		recv(t, b.got, "the client on B")
	}
	sessiontest.Send(t, c, 61, 70)
	if _, err := c.Request(ctxTimeout(t), "done", nil); err != nil {
		t.Fatal(err)
	}
	count := map[int]int{}
	onA := map[int]bool{}
	for _, h := range a.handled() {
		count[h.k]++
		onA[h.k] = true
	}
	if len(onA) != 30 {
		t.Fatalf("A handled %v, want 1-30", a.handled())
	}
	prev := 0
	for _, h := range b.handled() {
		count[h.k]++
		switch {
		case h.k <= prev:
			t.Fatalf("B handled %d after %d: %v", h.k, prev, b.handled())
		case uint64(h.k) <= mark:
			t.Fatalf("B handled %d, at or below the mark %d", h.k, mark)
		case onA[h.k] && !h.redelivered:
			t.Fatalf("B handled %d again without Redelivered", h.k)
		case h.k > 60 && h.redelivered:
			t.Fatalf("B flagged %d, sent after the failover, Redelivered", h.k)
		case h.k <= 60 && !h.redelivered:
			t.Fatalf("B did not flag %d, sent to A, Redelivered", h.k)
		}
		prev = h.k
	}
	if first, want := b.handled()[0].k, max(int(mark), 20)+1; first != want {
		t.Fatalf("B's first message is %d, want %d", first, want)
	}
	for k := 1; k <= 70; k++ {
		if count[k] == 0 {
			t.Fatalf("m%d never handled", k)
		}
	}
	st.mu.Lock()
	takes := append([]marmot.SessionTaken(nil), st.takes...)
	st.mu.Unlock()
	if len(takes) != 1 || takes[0].Certain || takes[0].Last != mark {
		t.Fatalf("takes %+v, want one uncertain take at %d", takes, mark)
	}
	sessiontest.NoSessionLost(t, errs)
}

// upgrade opens a marmot.v1 connection to url presenting the session
// header tok, and returns it with the response's token and whether it
// resumed.
func upgrade(t *testing.T, url, tok string) (*websocket.Conn, string, bool) {
	t.Helper()
	d := websocket.Dialer{HandshakeTimeout: 10 * time.Second, Subprotocols: []string{"marmot.v1"}}
	ws, resp, err := d.Dial(url, http.Header{protocol.HeaderSession: {tok}})
	if err != nil {
		t.Fatalf("dial %s: %v", url, err)
	}
	resp.Body.Close()
	t.Cleanup(func() { ws.Close() })
	return ws, resp.Header.Get(protocol.HeaderSession), resp.Header.Get(protocol.HeaderSessionResumed) == "true"
}

// TestSessionTokenAcrossServers: a token resumes its session on another
// server once; used again, or forged (one bit of its secret changed), on
// either server it gets a fresh session. The session's old connection is
// closed with 4009 when another server takes it over. A server that
// refuses the upgrade does not take the session over.
func TestSessionTokenAcrossServers(t *testing.T) {
	st := newHubsStore()
	a, b := newStoreNode(t, st, 1), newStoreNode(t, st, 2)
	wsA, t1, resumed := upgrade(t, a.s.URL(), protocol.SessionNew)
	if t1 == "" || resumed {
		t.Fatalf("new session: token %q, resumed %v", t1, resumed)
	}
	_, t2, resumed := upgrade(t, b.s.URL(), t1)
	if !resumed || t2 == "" || t2 == t1 {
		t.Fatalf("on B: token %q, resumed %v; want resumed under a new token", t2, resumed)
	}
	if ce := readClose(t, wsA); ce.Code != marmot.CloseSessionMoved {
		t.Fatalf("A's connection closed with %d, want %d", ce.Code, marmot.CloseSessionMoved)
	}
	for _, url := range []string{a.s.URL(), b.s.URL()} {
		if _, _, resumed := upgrade(t, url, t1); resumed {
			t.Fatalf("the used token resumed again on %s", url)
		}
	}
	forged := []byte(t2)
	forged[len(forged)-2] ^= 1 // in the secret, past the ID
	if forged[len(forged)-2] == '.' {
		t.Fatal("forged the ID, not the secret")
	}
	for _, url := range []string{a.s.URL(), b.s.URL()} {
		if _, _, resumed := upgrade(t, url, string(forged)); resumed {
			t.Fatalf("a forged token resumed on %s", url)
		}
	}
	// A server that refuses the upgrade (full) does not take the session
	// over first.
	full := startServer(t, marmot.ServerConfig{NodeID: 3, SessionStore: st, MaxConnections: 1})
	st.mu.Lock()
	st.servers[3] = full
	st.mu.Unlock()
	upgrade(t, full.URL(), protocol.SessionNew)
	d := websocket.Dialer{HandshakeTimeout: 10 * time.Second, Subprotocols: []string{"marmot.v1"}}
	if ws, resp, err := d.Dial(full.URL(), http.Header{protocol.HeaderSession: {t2}}); err == nil {
		ws.Close()
		t.Fatal("a full server accepted the upgrade")
	} else if resp != nil {
		resp.Body.Close()
	}
	// The real one still works, once, on A.
	if _, _, resumed := upgrade(t, a.s.URL(), t2); !resumed {
		t.Fatal("the current token did not resume on A")
	}
}

// TestDropSession: a store ends a session on its server without a
// handover (it was taken over elsewhere while the server was cut off):
// the session's connection is closed with the code given, the store is
// told to forget it, and its token resumes it nowhere.
func TestDropSession(t *testing.T) {
	st := newHubsStore()
	a := newStoreNode(t, st, 1)
	ws, tok, _ := upgrade(t, a.s.URL(), protocol.SessionNew)
	idPart, _, _ := strings.Cut(tok, ".")
	id, err := strconv.ParseUint(idPart, 36, 64)
	if err != nil {
		t.Fatalf("token %q: %v", tok, err)
	}
	if a.s.DropSession(id+1, marmot.CloseSessionMoved, "x") {
		t.Fatal("dropped a session the server does not have")
	}
	if !a.s.DropSession(id, marmot.CloseSessionMoved, "taken over elsewhere") {
		t.Fatal("the server did not have its session")
	}
	if ce := readClose(t, ws); ce.Code != marmot.CloseSessionMoved {
		t.Fatalf("the session's connection closed with %d, want %d", ce.Code, marmot.CloseSessionMoved)
	}
	st.mu.Lock()
	_, kept := st.recs[id]
	st.mu.Unlock()
	if kept {
		t.Fatal("the store still has the dropped session")
	}
	if a.s.DropSession(id, marmot.CloseSessionMoved, "again") {
		t.Fatal("dropped twice")
	}
	if _, _, resumed := upgrade(t, a.s.URL(), tok); resumed {
		t.Fatal("the dropped session's token resumed it")
	}
}
