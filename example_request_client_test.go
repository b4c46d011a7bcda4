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

// A handler asks the client whose request it is handling, and answers that
// request with what the client said: the connection goes on reading while
// the handler waits, so the answer arrives (issue #14).
func ExampleServer_RequestClient_fromHandler() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	var srv *marmot.Server
	srv, err := marmot.NewServer(marmot.ServerConfig{
		Addr:   "127.0.0.1:0",
		Logger: slog.New(slog.DiscardHandler),
		ServerEvents: marmot.ServerEvents{OnHandleCommand: func(m *marmot.Message) {
			if m.Name != "delete" {
				return
			}
			rctx, rcancel := context.WithTimeout(m.Context(), 2*time.Second)
			defer rcancel()
			sure, err := srv.RequestClient(rctx, m.ClientID, "are-you-sure", m.Payload)
			if err != nil {
				_ = m.ReplyError(504, err.Error())
				return
			}
			_ = m.Reply(append([]byte("deleted "+string(m.Payload)+": "), sure...))
		}},
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
				if m.Name == "are-you-sure" {
					_ = m.Reply([]byte("yes"))
				}
			},
		}})
	if err != nil {
		log.Fatal(err)
	}
	if err := c.Connect(ctx); err != nil {
		log.Fatal(err)
	}
	defer c.Close(ctx)
	res, err := c.Request(ctx, "delete", []byte("file.txt"))
	fmt.Println(string(res), err)
	// Output:
	// deleted file.txt: yes <nil>
}
