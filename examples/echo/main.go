// Echo is the server "marmot serve" runs by default and README's quick
// start shows: a request named "time" gets the server's time (RFC 3339);
// every other message goes back to its sender as it came. Raw text stays
// text, binary stays binary, a command comes back as the same command, and
// any other request over marmot.v1 or marmot.json.v1 gets its own payload
// as its reply.
//
//	go run ./examples/echo -addr :8080
//	go run ./cmd/marmot connect --subprotocol marmot.v1 ws://127.0.0.1:8080/websocket
//	/req time          # < [reply] 2025-06-01T12:00:00Z
//	hello              # < hello
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
				if m.IsRequest() && m.Name == "time" {
					_ = m.Reply([]byte(time.Now().Format(time.RFC3339)))
				} else {
					_ = m.Reply(m.Payload)
				}
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
