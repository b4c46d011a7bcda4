package marmot_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"log/slog"
	"time"

	"github.com/marmotws/marmot"
	"github.com/marmotws/marmot/protocol"
)

// The server asks a client, and waits for its handler's answer: a reply,
// or an error with the client's code and text.
func ExampleServer_RequestClient() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	ids := make(chan marmot.ClientID, 1)
	srv, err := marmot.NewServer(marmot.ServerConfig{
		Addr:         "127.0.0.1:0",
		Logger:       slog.New(slog.DiscardHandler),
		ServerEvents: marmot.ServerEvents{OnClientConnected: func(info marmot.ClientInfo) { ids <- info.ID }},
	})
	if err != nil {
		log.Fatal(err)
	}
	if err := srv.Start(ctx); err != nil {
		log.Fatal(err)
	}
	defer srv.Stop(ctx)

	c, err := marmot.NewClient(marmot.ClientConfig{URL: srv.URL(), Subprotocol: protocol.SubprotocolBinary,
		Logger: slog.New(slog.DiscardHandler), ClientEvents: marmot.ClientEvents{
			OnHandleCommand: func(m *marmot.Message) {
				if !m.IsRequest() {
					return
				}
				if m.Name == "confirm" {
					_ = m.Reply([]byte("yes to " + string(m.Payload)))
					return
				}
				_ = m.ReplyError(404, "unknown question")
			},
		}})
	if err != nil {
		log.Fatal(err)
	}
	if err := c.Connect(ctx); err != nil {
		log.Fatal(err)
	}
	defer c.Close(ctx)
	id := <-ids

	// Bound every request: a client that does not answer is given up on
	// when ctx ends.
	rctx, rcancel := context.WithTimeout(ctx, 2*time.Second)
	defer rcancel()
	res, err := srv.RequestClient(rctx, id, "confirm", []byte("the update"))
	fmt.Println(string(res), err)
	_, err = srv.RequestClient(rctx, id, "other", nil)
	var re *marmot.RemoteError
	fmt.Println(errors.As(err, &re), re.Code, re.Message)
	// Output:
	// yes to the update <nil>
	// true 404 unknown question
}
