package jwtauth_test

import (
	"context"
	"fmt"
	"log"
	"log/slog"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/marmotws/marmot"
	"github.com/marmotws/marmot/jwtauth"
)

// A server that lets in clients with a JWT signed with its secret, and a
// client whose Token callback signs a fresh one on every connect.
func Example() {
	secret := []byte("an HS256 secret of at least 32 bytes")
	auth, err := jwtauth.New(jwtauth.Config{Secret: secret})
	if err != nil {
		log.Fatal(err)
	}
	cfg := marmot.ServerConfig{
		Addr:   "127.0.0.1:0",
		Logger: slog.New(slog.DiscardHandler),
		ServerEvents: marmot.ServerEvents{OnHandleCommand: func(m *marmot.Message) {
			_ = m.Reply([]byte("hello " + m.Identity.UserID))
		}},
	}
	auth.Apply(&cfg)
	srv, err := marmot.NewServer(cfg)
	if err != nil {
		log.Fatal(err)
	}
	ctx := context.Background()
	if err := srv.Start(ctx); err != nil {
		log.Fatal(err)
	}
	defer srv.Stop(ctx)

	c, err := marmot.NewClient(marmot.ClientConfig{
		URL:         srv.URL(),
		Subprotocol: "marmot.v1",
		Logger:      slog.New(slog.DiscardHandler),
		Token: func(context.Context) (string, error) {
			claims := jwt.MapClaims{"sub": "alice", "exp": time.Now().Add(time.Hour).Unix()}
			return jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString(secret)
		},
	})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close(ctx)
	if err := c.Connect(ctx); err != nil {
		log.Fatal(err)
	}
	reply, err := c.Request(ctx, "greet", nil)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(string(reply))
	// Output: hello alice
}
