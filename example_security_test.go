package marmot_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"log/slog"
	"net/http"
	"time"

	"github.com/marmotws/marmot"
	"github.com/marmotws/marmot/protocol"
)

// A server that lets in only clients with a known API key, refusing the
// others with 401 before any upgrade, and a handler that knows who sent
// each message. (Package jwtauth is the ready-made hook for JWTs.)
func Example_authenticate() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	keys := map[string]string{"k-123": "alice"} // API key -> user
	srv, err := marmot.NewServer(marmot.ServerConfig{
		Addr:   "127.0.0.1:0",
		Logger: slog.New(slog.DiscardHandler),
		Authenticate: func(r *http.Request) (*marmot.Identity, error) {
			user, ok := keys[r.Header.Get("X-Api-Key")]
			if !ok {
				return nil, marmot.ErrUnauthorized
			}
			return &marmot.Identity{UserID: user}, nil
		},
		ServerEvents: marmot.ServerEvents{OnHandleCommand: func(m *marmot.Message) {
			_ = m.Reply([]byte("hello " + m.Identity.UserID))
		}},
	})
	if err != nil {
		log.Fatal(err)
	}
	if err := srv.Start(ctx); err != nil {
		log.Fatal(err)
	}
	defer srv.Stop(ctx)

	for _, key := range []string{"k-123", "wrong"} {
		c, err := marmot.NewClient(marmot.ClientConfig{
			URL:         srv.URL(),
			Subprotocol: protocol.SubprotocolBinary,
			Header:      http.Header{"X-Api-Key": {key}},
			Logger:      slog.New(slog.DiscardHandler),
		})
		if err != nil {
			log.Fatal(err)
		}
		if err := c.Connect(ctx); errors.Is(err, marmot.ErrUnauthorized) {
			fmt.Println("refused:", key)
			c.Close(ctx)
			continue
		}
		reply, _ := c.Request(ctx, "greet", nil)
		fmt.Println(string(reply))
		c.Close(ctx)
	}
	// Output:
	// hello alice
	// refused: wrong
}
