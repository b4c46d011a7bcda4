// Broadcast is a chat room: every message goes to everyone else, and the
// room hears who joins and who leaves.
//
//	go run ./examples/broadcast -addr :8080
//	marmot connect ws://127.0.0.1:8080/websocket   (in two terminals)
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/marmotws/marmot"
)

func main() {
	addr := flag.String("addr", marmot.DefaultAddr, "listen address")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	// The callbacks need the server they belong to; they only run for
	// connections that Start accepts, so srv is set by then.
	var srv *marmot.Server
	say := func(except marmot.ClientID, format string, a ...any) {
		if _, err := srv.BroadcastExcept(except, fmt.Appendf(nil, format, a...)); err != nil {
			log.Printf("broadcast: %v", err)
		}
	}

	srv, err := marmot.NewServer(marmot.ServerConfig{
		Addr: *addr,
		ServerEvents: marmot.ServerEvents{
			OnClientConnected: func(c marmot.ClientInfo) {
				_ = srv.SendToClient(c.ID, fmt.Appendf(nil, "welcome, you are client %d; %d here", c.ID, srv.ClientCount()))
				say(c.ID, "client %d joined", c.ID)
			},
			OnClientDisconnected: func(c marmot.ClientInfo, _ *marmot.CloseError) {
				say(c.ID, "client %d left", c.ID)
			},
			// Everyone but the sender: its own words need no echo.
			OnHandleCommand: func(m *marmot.Message) {
				say(m.ClientID, "client %d: %s", m.ClientID, m.Payload)
			},
		},
	})
	if err != nil {
		log.Fatal(err)
	}
	if err := srv.Start(ctx); err != nil {
		log.Fatal(err)
	}
	log.Printf("chat room at %s", srv.URL())

	<-ctx.Done()
	stopCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := srv.Stop(stopCtx); err != nil {
		log.Fatal(err)
	}
}
