// Echo is the seed's echo server: every message comes back to its sender
// prefixed with "Echo: ". Raw text stays text, binary stays binary, and a
// request over marmot.v1 or marmot.json.v1 gets the echo as its reply.
//
//	go run ./examples/echo -addr :8080
//	marmot connect ws://127.0.0.1:8080/websocket
package main

import (
	"context"
	"flag"
	"log"
	"log/slog"
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

	srv, err := marmot.NewServer(marmot.ServerConfig{
		Addr: *addr,
		ServerEvents: marmot.ServerEvents{
			OnClientConnected: func(c marmot.ClientInfo) {
				slog.Info("connected", "client", c.ID, "ip", c.IP())
			},
			OnClientDisconnected: func(c marmot.ClientInfo, reason *marmot.CloseError) {
				slog.Info("disconnected", "client", c.ID, "code", reason.Code)
			},
			// Reply answers in kind, so one call serves raw frames,
			// commands and requests alike.
			OnHandleCommand: func(m *marmot.Message) {
				_ = m.Reply(append([]byte("Echo: "), m.Payload...))
				// Optional: hand the message back so the next ones reuse
				// its storage (m is not touched after this).
				m.Release()
			},
		},
	})
	if err != nil {
		log.Fatal(err)
	}
	if err := srv.Start(ctx); err != nil {
		log.Fatal(err)
	}
	slog.Info("echo server ready", "url", srv.URL())

	<-ctx.Done()
	// Stop flushes every queue and says 1001 Going Away; bound it so a
	// stuck client cannot hold the process.
	stopCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := srv.Stop(stopCtx); err != nil {
		log.Fatal(err)
	}
}
