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

// The client's outbox: what a client sends is handled by the server once,
// in order, even when the connection drops in between; a send while the
// client reconnects waits in the outbox.
func ExampleClientConfig_outbox() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	got := make(chan string, 8)
	srv, err := marmot.NewServer(marmot.ServerConfig{
		Addr:   "127.0.0.1:0",
		Logger: slog.New(slog.DiscardHandler),
		ServerEvents: marmot.ServerEvents{
			OnHandleCommand: func(m *marmot.Message) { got <- m.Name + " " + string(m.Payload) },
		},
	})
	if err != nil {
		log.Fatal(err)
	}
	if err := srv.Start(ctx); err != nil {
		log.Fatal(err)
	}
	defer srv.Stop(ctx)

	connected := make(chan struct{}, 2)
	c, err := marmot.NewClient(marmot.ClientConfig{
		URL: srv.URL(), Subprotocol: protocol.SubprotocolBinary, Logger: slog.New(slog.DiscardHandler),
		AutoReconnect: true, ReconnectInterval: 50 * time.Millisecond, // OutboxBytes: 1 MiB by default
		ClientEvents: marmot.ClientEvents{OnConnect: func() { connected <- struct{}{} }},
	})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close(ctx)
	if err := c.Connect(ctx); err != nil {
		log.Fatal(err)
	}
	<-connected

	_ = c.SendCommand("order", []byte("1"))
	fmt.Println(<-got)
	// The server drops the connection; the client reconnects by itself and
	// resumes its session.
	_ = srv.Disconnect(srv.Clients()[0].ID, marmot.CloseGoingAway, "bye")
	_ = c.SendCommand("order", []byte("2")) // on the old connection, or queued: handled once either way
	fmt.Println(<-got)
	<-connected
	fmt.Println("sessions:", srv.Stats().Sessions)
	// Output:
	// order 1
	// order 2
	// sessions: 1
}
