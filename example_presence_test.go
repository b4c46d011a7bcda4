package marmot_test

import (
	"context"
	"fmt"
	"log"
	"log/slog"
	"time"

	"github.com/marmotws/marmot"
	"github.com/marmotws/marmot/protocol"
)

// A room with presence: Presence lists who is in it, and the members are
// told when another client joins or leaves, in the room's order among its
// messages.
func ExampleClient_Presence() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	srv, err := marmot.NewServer(marmot.ServerConfig{
		Addr:         "127.0.0.1:0",
		Logger:       slog.New(slog.DiscardHandler),
		RoomPresence: func(room string) bool { return room == "lobby" },
	})
	if err != nil {
		log.Fatal(err)
	}
	if err := srv.Start(ctx); err != nil {
		log.Fatal(err)
	}
	defer srv.Stop(ctx)

	events := make(chan string, 4)
	connect := func(ev marmot.ClientEvents) *marmot.Client {
		c, err := marmot.NewClient(marmot.ClientConfig{URL: srv.URL(), Subprotocol: protocol.SubprotocolBinary,
			Logger: slog.New(slog.DiscardHandler), ClientEvents: ev})
		if err != nil {
			log.Fatal(err)
		}
		if err := c.Connect(ctx); err != nil {
			log.Fatal(err)
		}
		if err := c.Join(ctx, "lobby"); err != nil {
			log.Fatal(err)
		}
		return c
	}
	alice := connect(marmot.ClientEvents{
		OnPresence: func(room string, id marmot.ClientID, joined bool) {
			events <- fmt.Sprintf("%s: client joined=%v", room, joined)
		},
		OnHandleCommand: func(m *marmot.Message) { events <- fmt.Sprintf("%s #%d: %s", m.Room, m.Offset, m.Payload) },
	})
	defer alice.Close(ctx)

	bob := connect(marmot.ClientEvents{})
	if err := bob.Publish("lobby", []byte("hi")); err != nil {
		log.Fatal(err)
	}
	ids, err := alice.Presence(ctx, "lobby")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("members:", len(ids))
	fmt.Println(<-events)
	fmt.Println(<-events)
	bob.Close(ctx)
	fmt.Println(<-events)
	// Output:
	// members: 2
	// lobby: client joined=true
	// lobby #1: hi
	// lobby: client joined=false
}
