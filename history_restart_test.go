package marmot_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/marmotws/marmot"
	"github.com/marmotws/marmot/boltstore"
)

// restartMember is a client of the restart test: its room messages and
// recovery outcomes arrive on got, in the order it handled them.
type restartMember struct {
	c     *marmot.Client
	rooms []string
	got   chan any // *marmot.Message or marmot.RoomRecovered
}

// A server restarted on the same address with the same bolt file gives
// reconnecting clients every message they missed before it stopped:
// Recovered=true, exactly once, in order, then the live ones. With the
// memory store the same clients are told Recovered=false ("epoch
// changed"), never silently short.
func TestRoomRecoverAcrossRestart(t *testing.T) {
	for _, persistent := range []bool{true, false} {
		name := "memory"
		if persistent {
			name = "bolt"
		}
		t.Run(name, func(t *testing.T) { testRecoverAcrossRestart(t, persistent) })
	}
}

func testRecoverAcrossRestart(t *testing.T, persistent bool) {
	path := filepath.Join(t.TempDir(), "rooms.db")
	openStore := func() marmot.HistoryBackend {
		if !persistent {
			return nil
		}
		st, err := boltstore.Open(path, nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = st.Close() }) // a second Close is harmless
		return st
	}
	ids := make(chan marmot.ClientID, 16)
	gone := make(chan marmot.ClientID, 16)
	errs := make(chan error, 16)
	newServer := func(addr string, backend marmot.HistoryBackend) *marmot.Server {
		return startServer(t, marmot.ServerConfig{Addr: addr, RoomIdle: time.Hour,
			RoomHistory: marmot.HistoryConfig{Size: 1000, TTL: time.Hour, Backend: backend},
			ServerEvents: marmot.ServerEvents{
				OnClientConnected:    func(info marmot.ClientInfo) { ids <- info.ID },
				OnClientDisconnected: func(info marmot.ClientInfo, _ *marmot.CloseError) { gone <- info.ID },
				OnError:              func(_ marmot.ClientID, err error) { errs <- err },
			}})
	}
	store := openStore()
	s1 := newServer("127.0.0.1:0", store)

	gate := make(chan struct{}) // holds every reconnect until the new server is up
	members := []*restartMember{{rooms: []string{"a", "b"}}, {rooms: []string{"a"}}, {rooms: []string{"b"}}}
	var first []marmot.ClientID
	for _, m := range members {
		m.got = make(chan any, 1024)
		m.c = newClient(t, marmot.ClientConfig{URL: s1.URL(), Subprotocol: "marmot.v1", AutoReconnect: true,
			ReconnectInterval: 10 * time.Millisecond, ClientEvents: marmot.ClientEvents{
				OnReconnecting: func(int, time.Duration) {
					select {
					case <-gate:
					case <-time.After(waitTimeout):
					}
				},
				OnHandleCommand: func(msg *marmot.Message) { m.got <- msg },
				OnRecover: func(room string, recovered bool, missed int, reason string) {
					m.got <- marmot.RoomRecovered{Room: room, Recovered: recovered, Missed: missed, Reason: reason}
				},
			}})
		if err := m.c.Connect(ctxTimeout(t)); err != nil {
			t.Fatal(err)
		}
		first = append(first, recv(t, ids, "a connection"))
		for _, room := range m.rooms {
			if err := m.c.Join(ctxTimeout(t), room); err != nil {
				t.Fatal(err)
			}
		}
	}
	publish := func(s *marmot.Server, room string, from, to int) {
		t.Helper()
		for i := from; i <= to; i++ {
			if _, err := s.Publish(room, []byte(room+strconv.Itoa(i))); err != nil {
				t.Fatal(err)
			}
		}
	}
	// expect reads one member's messages of its rooms until each room's
	// offset `to`, checking offsets and payloads: every one exactly once,
	// in order. With recover set, each room's recovery outcome must come
	// first and be want(room).
	last := map[string]int{"a": 0, "b": 0}
	expect := func(m *restartMember, to map[string]int, want func(room string) marmot.RoomRecovered) {
		t.Helper()
		next := map[string]int{}
		outcome := map[string]bool{}
		pending := 0
		for _, room := range m.rooms {
			next[room] = last[room] + 1
			if want != nil {
				pending++
			}
			pending += to[room] - last[room]
		}
		for ; pending > 0; pending-- {
			switch v := recv(t, m.got, fmt.Sprintf("room messages of member %v", m.rooms)).(type) {
			case marmot.RoomRecovered:
				if want == nil || outcome[v.Room] || v != want(v.Room) {
					t.Fatalf("member %v: recovery %+v, unexpected or not once", m.rooms, v)
				}
				outcome[v.Room] = true
			case *marmot.Message:
				if want != nil && !outcome[v.Room] {
					t.Fatalf("member %v: %q before the recovery outcome of %q", m.rooms, v.Payload, v.Room)
				}
				n := next[v.Room]
				if v.Offset != uint64(n) || string(v.Payload) != v.Room+strconv.Itoa(n) {
					t.Fatalf("member %v: %q at offset %d in %q, want %s%d", m.rooms, v.Payload, v.Offset, v.Room, v.Room, n)
				}
				next[v.Room]++
			}
		}
	}

	publish(s1, "a", 1, 5)
	publish(s1, "b", 1, 5)
	for _, m := range members {
		expect(m, map[string]int{"a": 5, "b": 5}, nil)
	}
	last = map[string]int{"a": 5, "b": 5}
	// The clients go away; the server goes on publishing, then stops.
	for _, id := range first {
		if err := s1.Disconnect(id, marmot.CloseGoingAway, "bye"); err != nil {
			t.Fatal(err)
		}
	}
	for range first {
		recv(t, gone, "a connection's end")
	}
	publish(s1, "a", 6, 20)
	publish(s1, "b", 6, 12)
	addr := s1.Addr().String()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	if err := s1.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	if persistent {
		// The file, not the process, carries the history: close it and
		// open it again for the new server.
		if err := store.(*boltstore.Store).Close(); err != nil {
			t.Fatal(err)
		}
	}
	s2 := newServer(addr, openStore())
	close(gate)
	for range members {
		recv(t, ids, "a reconnection")
	}

	if persistent {
		missed := map[string]int{"a": 15, "b": 7}
		for _, m := range members {
			expect(m, map[string]int{"a": 20, "b": 12}, func(room string) marmot.RoomRecovered {
				return marmot.RoomRecovered{Room: room, Recovered: true, Missed: missed[room]}
			})
		}
		last = map[string]int{"a": 20, "b": 12}
	} else {
		for _, m := range members {
			expect(m, map[string]int{"a": 5, "b": 5}, func(room string) marmot.RoomRecovered {
				return marmot.RoomRecovered{Room: room, Missed: -1, Reason: marmot.RecoverEpochChanged}
			})
		}
		last = map[string]int{"a": 0, "b": 0} // new rooms: offsets start again
	}
	// Live again, with nothing doubled at the seam: the next message is
	// the room's next offset.
	publish(s2, "a", last["a"]+1, last["a"]+1)
	publish(s2, "b", last["b"]+1, last["b"]+1)
	for _, m := range members {
		expect(m, map[string]int{"a": last["a"] + 1, "b": last["b"] + 1}, nil)
		select {
		case v := <-m.got:
			t.Fatalf("member %v: unexpected %+v after the live message", m.rooms, v)
		default:
		}
	}
	select {
	case err := <-errs:
		t.Fatalf("server error: %v", err)
	default:
	}
}

// A history store that cannot be written fails the publish, visibly: the
// server's Publish returns the error, OnError reports it, a client's
// publish is refused with code 500; nothing is delivered that the history
// does not hold.
func TestRoomHistoryWriteFails(t *testing.T) {
	store, err := boltstore.Open(filepath.Join(t.TempDir(), "rooms.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	errs := make(chan error, 16)
	s := startServer(t, marmot.ServerConfig{RoomIdle: time.Hour,
		RoomHistory:  marmot.HistoryConfig{Size: 10, Backend: store},
		ServerEvents: marmot.ServerEvents{OnError: func(_ marmot.ClientID, err error) { errs <- err }}})
	cerrs := make(chan error, 16)
	c, got := roomClient(t, s, "marmot.v1", cerrs)
	if err := c.Join(ctxTimeout(t), "r"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Publish("r", []byte("kept")); err != nil {
		t.Fatal(err)
	}
	if m := recv(t, got, "the first message"); m.Offset != 1 {
		t.Fatalf("offset %d", m.Offset)
	}
	if err := store.Close(); err != nil {
		t.Fatal(err)
	}
	if n, err := s.Publish("r", []byte("lost")); err == nil || n != 0 {
		t.Fatalf("publish with the store closed: %d, %v", n, err)
	}
	if err := recv(t, errs, "the reported write error"); err == nil {
		t.Fatal("nil error reported")
	}
	if err := c.Publish("r", []byte("from the client")); err != nil {
		t.Fatal(err)
	}
	var re *marmot.RemoteError
	if err := recv(t, cerrs, "the refused publish"); !errors.As(err, &re) || re.Code != marmot.RoomCodeFailed {
		t.Fatalf("client publish: %v, want a %d", err, marmot.RoomCodeFailed)
	}
}

// failingBackend cannot open any room's history.
type failingBackend struct{}

var errNoDisk = errors.New("no disk")

func (failingBackend) Open(string, marmot.HistoryConfig) (marmot.HistoryStore, error) {
	return nil, errNoDisk
}

// A room whose history cannot be opened reports it and fails its
// publishes with the cause, rather than deliver what it cannot keep.
func TestRoomHistoryOpenFails(t *testing.T) {
	errs := make(chan error, 16)
	s := startServer(t, marmot.ServerConfig{RoomIdle: time.Hour,
		RoomHistory:  marmot.HistoryConfig{Size: 10, Backend: failingBackend{}},
		ServerEvents: marmot.ServerEvents{OnError: func(_ marmot.ClientID, err error) { errs <- err }}})
	c, _ := roomClient(t, s, "marmot.v1", nil)
	if err := c.Join(ctxTimeout(t), "r"); err != nil {
		t.Fatal(err)
	}
	if err := recv(t, errs, "the reported open error"); !errors.Is(err, errNoDisk) {
		t.Fatalf("reported %v", err)
	}
	if _, err := s.Publish("r", []byte("x")); !errors.Is(err, errNoDisk) {
		t.Fatalf("publish: %v", err)
	}
}

// With the bolt store a room's history outlives the room: a client away
// while its room ended (empty for RoomIdle) and was created again by its
// re-join recovers what it missed, where the memory store reports "epoch
// changed" (TestRoomRecoverFails).
func TestRoomRecoverAfterIdleEndWithBolt(t *testing.T) {
	store, err := boltstore.Open(filepath.Join(t.TempDir(), "rooms.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = store.Close() }) // after the server's Stop (cleanups run last first)
	r := newRecoverRig(t, marmot.ServerConfig{RoomIdle: 20 * time.Millisecond,
		RoomHistory: marmot.HistoryConfig{Size: 100, Backend: store}}, "marmot.v1")
	r.publish(t, 1, 3)
	for i := 1; i <= 3; i++ {
		if m := r.next(t).(*marmot.Message); m.Offset != uint64(i) {
			t.Fatalf("offset %d, want %d", m.Offset, i)
		}
	}
	// A second member keeps the room alive while the client is away (a
	// publish to a room that has ended goes nowhere), then leaves it.
	keeper, _ := roomClient(t, r.s, "marmot.v1", nil)
	recv(t, r.ids, "the keeper's connection") // not the client's reconnection
	if err := keeper.Join(ctxTimeout(t), "r"); err != nil {
		t.Fatal(err)
	}
	r.drop(t)
	r.publish(t, 4, 8)
	if err := keeper.Leave(ctxTimeout(t), "r"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the empty room to end", func() bool { return len(r.s.Rooms()) == 0 })
	r.resume(t)
	if v, ok := r.next(t).(marmot.RoomRecovered); !ok || !v.Recovered || v.Missed != 5 {
		t.Fatalf("got %+v, want recovered, 5 missed", v)
	}
	for i := 4; i <= 8; i++ {
		if m := r.next(t).(*marmot.Message); m.Offset != uint64(i) || string(m.Payload) != strconv.Itoa(i) {
			t.Fatalf("got %q at %d, want %d", m.Payload, m.Offset, i)
		}
	}
	r.publish(t, 9, 9)
	if m := r.next(t).(*marmot.Message); m.Offset != 9 {
		t.Fatalf("live offset %d, want 9", m.Offset)
	}
}
