package marmot_test

import (
	"errors"
	"fmt"
	"slices"
	"testing"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/marmotws/marmot"
)

// presenceClient connects a client that records, in the order its
// ClientActor hands them on, room messages ("msg <room> <payload>
// #<offset>") and presence events ("join <room> <id>", "leave <room>
// <id>").
func presenceClient(t *testing.T, s *marmot.Server, sub string) (*marmot.Client, chan string) {
	t.Helper()
	got := make(chan string, 64)
	c := newClient(t, marmot.ClientConfig{URL: s.URL(), Subprotocol: sub, ClientEvents: marmot.ClientEvents{
		OnHandleCommand: func(m *marmot.Message) {
			got <- fmt.Sprintf("msg %s %s #%d", m.Room, m.Payload, m.Offset)
		},
		OnPresence: func(room string, id marmot.ClientID, joined bool) {
			ev := "leave"
			if joined {
				ev = "join"
			}
			got <- fmt.Sprintf("%s %s %d", ev, room, id)
		},
	}})
	if err := c.Connect(ctxTimeout(t)); err != nil {
		t.Fatal(err)
	}
	return c, got
}

// expect reads len(want) items from got and compares them in order.
func expect(t *testing.T, who string, got chan string, want ...string) {
	t.Helper()
	for i, w := range want {
		if g := recv(t, got, fmt.Sprintf("%s: item %d (%s)", who, i, w)); g != w {
			t.Fatalf("%s: item %d = %q, want %q", who, i, g, w)
		}
	}
}

// Presence events reach the other members in the room's order among its
// messages; a leave on disconnect is one; Presence lists the members; a
// room without presence refuses the request and sends no event.
func TestRoomPresence(t *testing.T) {
	for _, sub := range []string{"marmot.v1", "marmot.json.v1"} {
		t.Run(sub, func(t *testing.T) {
			ids, gone := make(chan marmot.ClientID, 4), make(chan marmot.ClientID, 4)
			s := startServer(t, marmot.ServerConfig{
				RoomPresence: func(room string) bool { return room == "lobby" },
				ServerEvents: marmot.ServerEvents{
					OnClientConnected:    func(info marmot.ClientInfo) { ids <- info.ID },
					OnClientDisconnected: func(info marmot.ClientInfo, _ *marmot.CloseError) { gone <- info.ID },
				},
			})
			ctx := ctxTimeout(t)
			a, gotA := presenceClient(t, s, sub)
			idA := recv(t, ids, "client a")
			b, gotB := presenceClient(t, s, sub)
			idB := recv(t, ids, "client b")
			c, gotC := presenceClient(t, s, sub)
			idC := recv(t, ids, "client c")

			if got, err := a.Presence(ctx, "lobby"); err != nil || len(got) != 0 {
				t.Fatalf("Presence of a room that does not exist: %v, %v", got, err)
			}
			if err := a.Join(ctx, "lobby"); err != nil {
				t.Fatal(err)
			}
			if got, err := a.Presence(ctx, "lobby"); err != nil || !slices.Equal(got, []marmot.ClientID{idA}) {
				t.Fatalf("Presence: %v, %v; want [%d]", got, err, idA)
			}
			if err := b.Join(ctx, "lobby"); err != nil {
				t.Fatal(err)
			}
			if got, err := b.Presence(ctx, "lobby"); err != nil || !slices.Equal(got, []marmot.ClientID{idA, idB}) {
				t.Fatalf("Presence: %v, %v; want [%d %d]", got, err, idA, idB)
			}
			// Interleave messages with joins and leaves of c, by the
			// server and by c itself.
			publish := func(p string) {
				t.Helper()
				if _, err := s.Publish("lobby", []byte(p)); err != nil {
					t.Fatal(err)
				}
			}
			publish("one")
			if err := s.Join(idC, "lobby"); err != nil {
				t.Fatal(err)
			}
			if err := c.Publish("lobby", []byte("two")); err != nil {
				t.Fatal(err)
			}
			expect(t, "c", gotC, "msg lobby two #2") // c's own publish, after its join
			if err := c.Leave(ctx, "lobby"); err != nil {
				t.Fatal(err)
			}
			publish("three")
			if err := s.Join(idC, "lobby"); err != nil {
				t.Fatal(err)
			}
			if err := s.Leave(idC, "lobby"); err != nil {
				t.Fatal(err)
			}
			expect(t, "a", gotA,
				fmt.Sprintf("join lobby %d", idB),
				"msg lobby one #1",
				fmt.Sprintf("join lobby %d", idC),
				"msg lobby two #2",
				fmt.Sprintf("leave lobby %d", idC),
				"msg lobby three #3",
				fmt.Sprintf("join lobby %d", idC),
				fmt.Sprintf("leave lobby %d", idC))
			expect(t, "b", gotB, // no event for its own join
				"msg lobby one #1",
				fmt.Sprintf("join lobby %d", idC),
				"msg lobby two #2",
				fmt.Sprintf("leave lobby %d", idC),
				"msg lobby three #3",
				fmt.Sprintf("join lobby %d", idC),
				fmt.Sprintf("leave lobby %d", idC))

			// A connection that ends leaves: the others are told, before
			// anything published later (its leaves are queued to its rooms
			// before OnClientDisconnected).
			if err := b.Disconnect(ctx); err != nil {
				t.Fatal(err)
			}
			if id := recv(t, gone, "b's disconnect"); id != idB {
				t.Fatalf("disconnected %d, want %d", id, idB)
			}
			publish("four")
			expect(t, "a", gotA, fmt.Sprintf("leave lobby %d", idB), "msg lobby four #4")

			// The server's actors ask by message.
			res, err := s.ActorSystem().Root.RequestFuture(s.PID(), &marmot.RoomMembers{Room: "lobby"}, waitTimeout).Result()
			if l, ok := res.(*marmot.MemberList); err != nil || !ok || l.Err != nil || !slices.Equal(l.IDs, []marmot.ClientID{idA}) {
				t.Fatalf("RoomMembers: %#v, %v", res, err)
			}
			res, err = s.ActorSystem().Root.RequestFuture(s.PID(), &marmot.RoomMembers{Room: ""}, waitTimeout).Result()
			if l, ok := res.(*marmot.MemberList); err != nil || !ok || !errors.Is(l.Err, marmot.ErrInvalidRoom) {
				t.Fatalf("RoomMembers of no room: %#v, %v", res, err)
			}

			// A room without presence: refused, and silent.
			if err := a.Join(ctx, "quiet"); err != nil {
				t.Fatal(err)
			}
			_, err = a.Presence(ctx, "quiet")
			var re *marmot.RemoteError
			var roomErr *marmot.RoomError
			if !errors.As(err, &re) || re.Code != marmot.RoomCodeRefused || re.Message != marmot.ErrNoPresence.Error() ||
				!errors.As(err, &roomErr) || roomErr.Op != "presence" {
				t.Fatalf("Presence of a room without presence: %v", err)
			}
			if err := c.Join(ctx, "quiet"); err != nil {
				t.Fatal(err)
			}
			if _, err := s.Publish("quiet", []byte("q")); err != nil {
				t.Fatal(err)
			}
			expect(t, "a", gotA, "msg quiet q #1")
			if _, err := a.Presence(ctx, ""); !errors.Is(err, marmot.ErrInvalidRoom) {
				t.Fatalf("Presence of an empty room name: %v", err)
			}
		})
	}
}

func TestRoomPresenceRawMode(t *testing.T) {
	s := startServer(t, marmot.ServerConfig{RoomPresence: func(string) bool { return true }})
	c, _ := roomClient(t, s, "", nil)
	_, err := c.Presence(ctxTimeout(t), "lobby")
	if !errors.Is(err, marmot.ErrRawMode) {
		t.Fatalf("Presence in raw mode: %v, want ErrRawMode", err)
	}
	if err.Error() != "marmot: connection is in raw mode (no envelope subprotocol)" {
		t.Fatalf("Presence in raw mode: unclear error %q", err)
	}
}

// presenceActor is a client's user actor that forwards presence events.
type presenceActor struct{ events chan *marmot.RoomPresence }

func (p *presenceActor) Receive(ctx actor.Context) {
	if ev, ok := ctx.Message().(*marmot.RoomPresence); ok {
		p.events <- ev
	}
}

// A client's user actor receives *RoomPresence; a RoomPresence function
// that panics turns presence off for the room and reports the panic.
func TestRoomPresenceUserActorAndPanic(t *testing.T) {
	ids := make(chan marmot.ClientID, 2)
	errs := make(chan error, 4)
	s := startServer(t, marmot.ServerConfig{
		RoomPresence: func(room string) bool {
			if room == "bad" {
				panic("no")
			}
			return true
		},
		ServerEvents: marmot.ServerEvents{
			OnClientConnected: func(info marmot.ClientInfo) { ids <- info.ID },
			OnError:           func(_ marmot.ClientID, err error) { errs <- err },
		},
	})
	ctx := ctxTimeout(t)
	events := make(chan *marmot.RoomPresence, 4)
	a := newClient(t, marmot.ClientConfig{URL: s.URL(), Subprotocol: "marmot.v1",
		Actor: func() actor.Actor { return &presenceActor{events: events} }})
	if err := a.Connect(ctx); err != nil {
		t.Fatal(err)
	}
	recv(t, ids, "client a")
	if err := a.Join(ctx, "r"); err != nil {
		t.Fatal(err)
	}
	b, _ := roomClient(t, s, "marmot.v1", nil)
	idB := recv(t, ids, "client b")
	if err := b.Join(ctx, "r"); err != nil {
		t.Fatal(err)
	}
	if ev := recv(t, events, "presence"); *ev != (marmot.RoomPresence{Room: "r", Client: idB, Joined: true}) {
		t.Fatalf("user actor got %+v", ev)
	}
	_, err := a.Presence(ctx, "bad")
	var re *marmot.RemoteError
	if !errors.As(err, &re) || re.Code != marmot.RoomCodeRefused {
		t.Fatalf("Presence with a panicking RoomPresence: %v", err)
	}
	if err := recv(t, errs, "the panic"); !errors.Is(err, marmot.ErrHandlerPanic) {
		t.Fatalf("OnError got %v, want ErrHandlerPanic", err)
	}
}
