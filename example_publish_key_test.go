package marmot_test

import (
	"context"
	"fmt"
	"log"
	"log/slog"
	"strings"
	"time"

	"github.com/marmotws/marmot"
	"github.com/marmotws/marmot/protocol"
)

// A handler that publishes for the message it handles: "say/ROOM"
// requests put their payload in ROOM. Server.PublishFor keys the publish
// by the message (its client's session and number), so in a cluster a
// request handled again on another node after its first node died
// (Message.Redelivered) is delivered once; on a single server it is
// PublishContext.
func ExampleServer_PublishFor() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var srv *marmot.Server
	srv, err := marmot.NewServer(marmot.ServerConfig{
		Addr:   "127.0.0.1:0",
		Logger: slog.New(slog.DiscardHandler),
		ServerEvents: marmot.ServerEvents{OnHandleCommand: func(m *marmot.Message) {
			room, ok := strings.CutPrefix(m.Name, "say/")
			if !ok || !m.IsRequest() {
				return
			}
			if _, err := srv.PublishFor(m, room, m.Payload); err != nil {
				_ = m.ReplyError(503, err.Error())
				return
			}
			_ = m.Reply(nil)
		}},
	})
	if err != nil {
		log.Fatal(err)
	}
	if err := srv.Start(ctx); err != nil {
		log.Fatal(err)
	}
	defer srv.Stop(ctx)

	got := make(chan string, 1)
	c, err := marmot.NewClient(marmot.ClientConfig{
		URL: srv.URL(), Subprotocol: protocol.SubprotocolBinary, Logger: slog.New(slog.DiscardHandler),
		ClientEvents: marmot.ClientEvents{OnHandleCommand: func(m *marmot.Message) {
			got <- fmt.Sprintf("%s #%d: %s", m.Room, m.Offset, m.Payload)
		}},
	})
	if err != nil {
		log.Fatal(err)
	}
	if err := c.Connect(ctx); err != nil {
		log.Fatal(err)
	}
	defer c.Close(ctx)
	if err := c.Join(ctx, "lobby"); err != nil {
		log.Fatal(err)
	}
	if _, err := c.Request(ctx, "say/lobby", []byte("hello")); err != nil {
		log.Fatal(err)
	}
	fmt.Println(<-got)
	// Output: lobby #1: hello
}
