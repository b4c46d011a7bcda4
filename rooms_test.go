package marmot_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/marmotws/marmot"
)

// roomClient connects a client that hands every message to the returned
// channel.
func roomClient(t *testing.T, s *marmot.Server, sub string, errs chan error) (*marmot.Client, chan *marmot.Message) {
	t.Helper()
	got := make(chan *marmot.Message, 64)
	cfg := marmot.ClientConfig{URL: s.URL(), Subprotocol: sub, ClientEvents: marmot.ClientEvents{
		OnHandleCommand: func(m *marmot.Message) { got <- m },
	}}
	if errs != nil {
		cfg.OnError = func(err error) { errs <- err }
	}
	c := newClient(t, cfg)
	if err := c.Connect(ctxTimeout(t)); err != nil {
		t.Fatal(err)
	}
	return c, got
}

func TestRoomJoinPublishLeave(t *testing.T) {
	for _, sub := range []string{"marmot.v1", "marmot.json.v1"} {
		t.Run(sub, func(t *testing.T) {
			ids := make(chan marmot.ClientID, 2)
			s := startServer(t, marmot.ServerConfig{ServerEvents: marmot.ServerEvents{
				OnClientConnected: func(info marmot.ClientInfo) { ids <- info.ID },
			}})
			a, gotA := roomClient(t, s, sub, nil)
			idA := recv(t, ids, "client a")
			b, gotB := roomClient(t, s, sub, nil)
			idB := recv(t, ids, "client b")
			ctx := ctxTimeout(t)

			if err := a.Join(ctx, "lobby"); err != nil {
				t.Fatal(err)
			}
			if err := s.Join(idB, "lobby"); err != nil { // the server's own join
				t.Fatal(err)
			}
			if got := s.Members("lobby"); !slices.Equal(got, []marmot.ClientID{idA, idB}) {
				t.Fatalf("members %v", got)
			}
			if got := s.Rooms(); !slices.Equal(got, []string{"lobby"}) {
				t.Fatalf("rooms %v", got)
			}

			// A server publish, a named one, and one from a client.
			if n, err := s.Publish("lobby", []byte("one")); n != 2 || err != nil {
				t.Fatalf("Publish: %d, %v", n, err)
			}
			if n, err := s.PublishCommand("lobby", "move", []byte("two")); n != 2 || err != nil {
				t.Fatalf("PublishCommand: %d, %v", n, err)
			}
			if err := b.Publish("lobby", []byte("three")); err != nil {
				t.Fatal(err)
			}
			for _, got := range []chan *marmot.Message{gotA, gotB} {
				for i, want := range []struct{ name, payload string }{{"", "one"}, {"move", "two"}, {"", "three"}} {
					m := recv(t, got, "room message")
					if m.Room != "lobby" || m.Offset != uint64(i+1) || m.Name != want.name || string(m.Payload) != want.payload {
						t.Fatalf("message %d: room %q offset %d name %q payload %q", i, m.Room, m.Offset, m.Name, m.Payload)
					}
				}
			}

			// The same by message, from the actor system.
			root := s.ActorSystem().Root
			res, err := root.RequestFuture(s.PID(), &marmot.Publish{Room: "lobby", Data: []byte("four")}, waitTimeout).Result()
			if ack, ok := res.(*marmot.Ack); err != nil || !ok || ack.Err != nil || ack.N != 2 {
				t.Fatalf("Publish by message: %#v, %v", res, err)
			}
			res, err = root.RequestFuture(s.PID(), &marmot.LeaveRoom{ID: idB, Room: "lobby"}, waitTimeout).Result()
			if ack, ok := res.(*marmot.Ack); err != nil || !ok || ack.Err != nil {
				t.Fatalf("LeaveRoom by message: %#v, %v", res, err)
			}
			if m := recv(t, gotB, "four"); string(m.Payload) != "four" || m.Offset != 4 {
				t.Fatalf("b got %q offset %d", m.Payload, m.Offset)
			}

			if err := a.Leave(ctx, "lobby"); err != nil {
				t.Fatal(err)
			}
			if got := s.Members("lobby"); len(got) != 0 {
				t.Fatalf("members after leaving %v", got)
			}
			if n, err := s.Publish("lobby", []byte("nobody")); n != 0 || err != nil {
				t.Fatalf("Publish to an empty room: %d, %v", n, err)
			}
			res, err = root.RequestFuture(s.PID(), &marmot.JoinRoom{ID: idA, Room: "lobby"}, waitTimeout).Result()
			if ack, ok := res.(*marmot.Ack); err != nil || !ok || ack.Err != nil {
				t.Fatalf("JoinRoom by message: %#v, %v", res, err)
			}
			if n, err := s.Publish("lobby", []byte("back")); n != 1 || err != nil {
				t.Fatalf("Publish: %d, %v", n, err)
			}
			// a got "four" before it left, then "back"; "nobody" went to no one.
			if m := recv(t, gotA, "four"); string(m.Payload) != "four" || m.Offset != 4 {
				t.Fatalf("a got %q offset %d", m.Payload, m.Offset)
			}
			if m := recv(t, gotA, "back"); string(m.Payload) != "back" || m.Offset != 6 {
				t.Fatalf("a got %q offset %d", m.Payload, m.Offset)
			}
			if n, err := s.Publish("nowhere", []byte("x")); n != 0 || err != nil {
				t.Fatalf("Publish to no room: %d, %v", n, err)
			}
			if err := s.Join(idA, ""); !errors.Is(err, marmot.ErrInvalidRoom) {
				t.Fatalf("Join of an empty room name: %v", err)
			}
		})
	}
}

// 100 clients, each in two of five rooms; one publisher per room. Every
// client must receive exactly its rooms' messages, each room's in order
// with offsets 1, 2, 3...
func TestRoomsFanOutInOrder(t *testing.T) {
	const clients, rooms, perRoom = 100, 5, 50
	s := startServer(t, marmot.ServerConfig{})
	ctx := ctxTimeout(t)
	roomName := func(r int) string { return fmt.Sprintf("room-%d", r) }

	var done sync.WaitGroup
	failures := make(chan string, clients)
	fail := func(f string) {
		select {
		case failures <- f:
		default: // enough to go on; never block a callback or a publisher
		}
	}
	for i := range clients {
		mine := map[string]bool{roomName(i % rooms): true, roomName((i + 1) % rooms): true}
		next := map[string]uint64{}
		left := 2 * perRoom
		done.Add(1)
		sub := "marmot.v1"
		if i%2 == 1 {
			sub = "marmot.json.v1"
		}
		c := newClient(t, marmot.ClientConfig{URL: s.URL(), Subprotocol: sub, ClientEvents: marmot.ClientEvents{
			// One callback at a time per client: next and left need no lock.
			OnHandleCommand: func(m *marmot.Message) {
				want := next[m.Room] + 1
				switch {
				case left == 0:
					fail(fmt.Sprintf("client %d: extra message %q", i, m.Payload))
					return
				case !mine[m.Room]:
					fail(fmt.Sprintf("client %d: message of room %q", i, m.Room))
				case m.Offset != want || string(m.Payload) != fmt.Sprintf("%s/%d", m.Room, want):
					fail(fmt.Sprintf("client %d: room %s offset %d payload %q, want offset %d", i, m.Room, m.Offset, m.Payload, want))
				}
				next[m.Room] = m.Offset
				if left--; left == 0 {
					done.Done()
				}
			},
		}})
		if err := c.Connect(ctx); err != nil {
			t.Fatal(err)
		}
		for r := range mine {
			if err := c.Join(ctx, r); err != nil {
				t.Fatal(err)
			}
		}
	}
	if got := s.Rooms(); len(got) != rooms {
		t.Fatalf("rooms %v", got)
	}

	var pubs sync.WaitGroup
	for r := range rooms {
		pubs.Add(1)
		go func() {
			defer pubs.Done()
			for k := 1; k <= perRoom; k++ {
				if n, err := s.Publish(roomName(r), []byte(fmt.Sprintf("%s/%d", roomName(r), k))); n != 2*clients/rooms || err != nil {
					fail(fmt.Sprintf("Publish %s/%d: %d, %v", roomName(r), k, n, err))
				}
			}
		}()
	}
	waitGroup(t, &pubs, "publishers")
	waitGroup(t, &done, "every client's messages")
	close(failures)
	for f := range failures {
		t.Error(f)
	}
}

func TestRoomHooksRefuse(t *testing.T) {
	s := startServer(t, marmot.ServerConfig{ServerEvents: marmot.ServerEvents{
		OnJoin: func(info marmot.ClientInfo, room string) error {
			if room == "secret" {
				return errors.New("members only")
			}
			return nil
		},
		OnPublish: func(info marmot.ClientInfo, room string, payload []byte) error {
			if room == "news" {
				return fmt.Errorf("client %d may not write to news", info.ID)
			}
			return nil
		},
	}})
	errs := make(chan error, 4)
	c, got := roomClient(t, s, "marmot.json.v1", errs)
	ctx := ctxTimeout(t)

	err := c.Join(ctx, "secret")
	var re *marmot.RemoteError
	var roomErr *marmot.RoomError
	if !errors.As(err, &re) || re.Message != "members only" || re.Code != marmot.RoomCodeRefused ||
		!errors.As(err, &roomErr) || roomErr.Room != "secret" || roomErr.Op != "join" {
		t.Fatalf("refused Join: %v", err)
	}
	if got := s.Members("secret"); len(got) != 0 {
		t.Fatalf("refused client is a member: %v", got)
	}

	if err := c.Join(ctx, "news"); err != nil {
		t.Fatal(err)
	}
	if err := c.Publish("news", []byte("fake")); err != nil {
		t.Fatal(err)
	}
	err = recv(t, errs, "the publish refusal")
	if !errors.As(err, &re) || re.Message != "client 1 may not write to news" || !errors.As(err, &roomErr) || roomErr.Room != "news" || roomErr.Op != "publish" {
		t.Fatalf("refused Publish: %v", err)
	}
	// The refused message reached nobody; the next one does.
	if _, err := s.Publish("news", []byte("real")); err != nil {
		t.Fatal(err)
	}
	if m := recv(t, got, "news"); string(m.Payload) != "real" || m.Offset != 1 {
		t.Fatalf("got %q offset %d", m.Payload, m.Offset)
	}
}

func TestRoomMembershipSurvivesPanicEndsWithConnection(t *testing.T) {
	ids := make(chan marmot.ClientID, 1)
	panicked := make(chan error, 4)
	gone := make(chan struct{}, 1)
	s := startServer(t, marmot.ServerConfig{MaxRestarts: 3, ServerEvents: marmot.ServerEvents{
		OnClientConnected:    func(info marmot.ClientInfo) { ids <- info.ID },
		OnHandleCommand:      func(m *marmot.Message) { panic("boom") },
		OnError:              func(_ marmot.ClientID, err error) { panicked <- err },
		OnClientDisconnected: func(marmot.ClientInfo, *marmot.CloseError) { gone <- struct{}{} },
	}})
	c, got := roomClient(t, s, "marmot.v1", nil)
	id := recv(t, ids, "connection")
	ctx := ctxTimeout(t)
	if err := c.Join(ctx, "r"); err != nil {
		t.Fatal(err)
	}
	if err := c.SendCommand("crash", nil); err != nil {
		t.Fatal(err)
	}
	if err := recv(t, panicked, "the handler panic"); !errors.Is(err, marmot.ErrHandlerPanic) {
		t.Fatalf("OnError %v", err)
	}
	if got := s.Members("r"); !slices.Equal(got, []marmot.ClientID{id}) {
		t.Fatalf("members after the restart %v", got)
	}
	if n, err := s.Publish("r", []byte("still here")); n != 1 || err != nil {
		t.Fatalf("Publish: %d, %v", n, err)
	}
	if m := recv(t, got, "room message"); string(m.Payload) != "still here" || m.Room != "r" {
		t.Fatalf("got %q in %q", m.Payload, m.Room)
	}

	if err := c.Disconnect(ctx); err != nil {
		t.Fatal(err)
	}
	recv(t, gone, "disconnect")
	if got := s.Members("r"); len(got) != 0 {
		t.Fatalf("members after disconnect %v", got)
	}
}

func TestRoomEndsWhenEmptyAndIdle(t *testing.T) {
	// With a long idle time an empty room stays...
	s := startServer(t, marmot.ServerConfig{RoomIdle: time.Hour})
	c, _ := roomClient(t, s, "marmot.v1", nil)
	ctx := ctxTimeout(t)
	if err := c.Join(ctx, "stays"); err != nil {
		t.Fatal(err)
	}
	if err := c.Leave(ctx, "stays"); err != nil {
		t.Fatal(err)
	}
	if got := s.Rooms(); !slices.Equal(got, []string{"stays"}) {
		t.Fatalf("rooms %v", got)
	}

	// ...with a short one it ends, and comes back on the next join with
	// offsets from 1 again.
	s2 := startServer(t, marmot.ServerConfig{RoomIdle: 20 * time.Millisecond})
	c2, got := roomClient(t, s2, "marmot.v1", nil)
	if err := c2.Join(ctx, "brief"); err != nil {
		t.Fatal(err)
	}
	if _, err := s2.Publish("brief", []byte("x")); err != nil {
		t.Fatal(err)
	}
	recv(t, got, "first message")
	if err := c2.Leave(ctx, "brief"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the room to end", func() bool { return len(s2.Rooms()) == 0 })
	if err := c2.Join(ctx, "brief"); err != nil {
		t.Fatal(err)
	}
	if _, err := s2.Publish("brief", []byte("y")); err != nil {
		t.Fatal(err)
	}
	if m := recv(t, got, "message in the new room"); string(m.Payload) != "y" || m.Offset != 1 {
		t.Fatalf("got %q offset %d", m.Payload, m.Offset)
	}
}

// waitFor checks cond on a short tick until it holds; the tick paces the
// checks, it is not what the test waits for.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	deadline := time.After(waitTimeout)
	for !cond() {
		select {
		case <-tick.C:
		case <-deadline:
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

func TestRoomRawModeCannotJoin(t *testing.T) {
	ids := make(chan marmot.ClientID, 1)
	s := startServer(t, marmot.ServerConfig{ServerEvents: marmot.ServerEvents{
		OnClientConnected: func(info marmot.ClientInfo) { ids <- info.ID },
	}})
	c, _ := roomClient(t, s, "", nil)
	id := recv(t, ids, "connection")
	if err := c.Join(ctxTimeout(t), "r"); !errors.Is(err, marmot.ErrRawMode) {
		t.Fatalf("client Join in raw mode: %v", err)
	}
	if err := c.Publish("r", []byte("x")); !errors.Is(err, marmot.ErrRawMode) {
		t.Fatalf("client Publish in raw mode: %v", err)
	}
	if err := s.Join(id, "r"); !errors.Is(err, marmot.ErrRawMode) {
		t.Fatalf("server Join of a raw-mode client: %v", err)
	}
	if got := s.Rooms(); len(got) != 0 {
		t.Fatalf("rooms %v", got)
	}
}

// Joining in OnConnect, as docs/ROOMS.md advised before history, still
// puts a client back in its room after every reconnect: the Join waits for
// the automatic re-join rather than joining twice.
func TestRoomRejoinInOnConnect(t *testing.T) {
	ids := make(chan marmot.ClientID, 2)
	gone := make(chan marmot.ClientID, 2)
	s := startServer(t, marmot.ServerConfig{ServerEvents: marmot.ServerEvents{
		OnClientConnected:    func(info marmot.ClientInfo) { ids <- info.ID },
		OnClientDisconnected: func(info marmot.ClientInfo, _ *marmot.CloseError) { gone <- info.ID },
	}})
	joined := make(chan error, 2)
	got := make(chan *marmot.Message, 4)
	var c *marmot.Client
	c = newClient(t, marmot.ClientConfig{URL: s.URL(), Subprotocol: "marmot.v1", AutoReconnect: true,
		ReconnectInterval: 10 * time.Millisecond, ClientEvents: marmot.ClientEvents{
			OnConnect: func() {
				ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
				defer cancel()
				joined <- c.Join(ctx, "r")
			},
			OnHandleCommand: func(m *marmot.Message) { got <- m },
		}})
	if err := c.Connect(ctxTimeout(t)); err != nil {
		t.Fatal(err)
	}
	first := recv(t, ids, "first connection")
	if err := recv(t, joined, "first join"); err != nil {
		t.Fatal(err)
	}
	if err := s.Disconnect(first, marmot.CloseGoingAway, "bye"); err != nil {
		t.Fatal(err)
	}
	second := recv(t, ids, "second connection")
	if err := recv(t, joined, "second join"); err != nil {
		t.Fatal(err)
	}
	if id := recv(t, gone, "the first connection's end"); id != first {
		t.Fatalf("connection %d ended, want %d", id, first)
	}
	if got := s.Members("r"); !slices.Equal(got, []marmot.ClientID{second}) {
		t.Fatalf("members %v, want [%d]", got, second)
	}
	if n, err := s.Publish("r", []byte("again")); n != 1 || err != nil {
		t.Fatalf("Publish: %d, %v", n, err)
	}
	if m := recv(t, got, "room message"); string(m.Payload) != "again" || m.Room != "r" {
		t.Fatalf("got %q in %q", m.Payload, m.Room)
	}
}

// A hand-written marmot.json.v1 peer: a room request without a room is
// answered 400, a join whose hook panics 500 (and OnError hears of it), and
// the connection carries on.
func TestRoomRequestErrorsOnTheWire(t *testing.T) {
	errs := make(chan error, 2)
	s := startServer(t, marmot.ServerConfig{ServerEvents: marmot.ServerEvents{
		OnJoin:  func(marmot.ClientInfo, string) error { panic("hook bug") },
		OnError: func(_ marmot.ClientID, err error) { errs <- err },
	}})
	ws := dial(t, s.URL(), "marmot.json.v1")
	_ = ws.SetReadDeadline(time.Now().Add(waitTimeout))
	for _, tc := range []struct{ send, want string }{
		{`{"v":1,"kind":"request","id":1,"name":"marmot.join"}`,
			`{"v":1,"kind":"error","id":1,"code":400,"payload":"marmot: invalid room name: \"\""}`},
		{`{"v":1,"kind":"request","id":2,"name":"marmot.join","room":"r"}`,
			`{"v":1,"kind":"error","id":2,"code":500,"payload":"internal error: OnJoin failed"}`},
		{`{"v":1,"kind":"request","id":3,"name":"marmot.leave","room":"r"}`,
			`{"v":1,"kind":"reply","id":3}`},
		{`{"v":1,"kind":"request","id":4,"name":"marmot.publish","room":"nobody-here","payload":"x"}`,
			`{"v":1,"kind":"reply","id":4}`},
	} {
		if err := ws.WriteMessage(websocket.TextMessage, []byte(tc.send)); err != nil {
			t.Fatal(err)
		}
		_, got, err := ws.ReadMessage()
		if err != nil || string(got) != tc.want {
			t.Fatalf("sent %s\ngot  %s, %v\nwant %s", tc.send, got, err, tc.want)
		}
	}
	if err := recv(t, errs, "the hook's panic"); !errors.Is(err, marmot.ErrHandlerPanic) {
		t.Fatalf("OnError %v", err)
	}
}
