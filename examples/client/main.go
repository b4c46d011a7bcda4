// Client connects to a marmot.v1 server (such as examples/echo), sends a
// command and a request, prints every state change and reconnects with
// exponential backoff when the connection drops, until Ctrl-C.
//
//	go run ./examples/echo &
//	go run ./examples/client -url ws://127.0.0.1:8080/websocket
package main

import (
	"context"
	"flag"
	"log"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/marmotws/marmot"
	"github.com/marmotws/marmot/protocol"
)

func main() {
	url := flag.String("url", "ws://127.0.0.1:8080/websocket", "server endpoint")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	client, err := marmot.NewClient(marmot.ClientConfig{
		URL:               *url,
		Subprotocol:       protocol.SubprotocolBinary,
		AutoReconnect:     true,
		ReconnectStrategy: marmot.ReconnectExponential,
		ReconnectInterval: 500 * time.Millisecond, // then 1s, 2s, 4s... with jitter
		ClientEvents: marmot.ClientEvents{
			OnStateChange: func(old, new marmot.ClientState) {
				log.Printf("state: %s -> %s", old, new)
			},
			OnReconnecting: func(attempt int, delay time.Duration) {
				log.Printf("reconnect attempt %d in %v", attempt, delay)
			},
			OnHandleCommand: func(m *marmot.Message) {
				log.Printf("received %s %q: %s", m.Kind, m.Name, m.Payload)
			},
			// Callbacks run on the client's actor, which also delivers
			// replies: call Request from your own goroutine, never here.
		},
	})
	if err != nil {
		log.Fatal(err)
	}
	// Close releases the client's actor and goroutines.
	defer func() { _ = client.Close(context.Background()) }()

	if err := client.Connect(ctx); err != nil {
		log.Print(err) // a failed first attempt does not start reconnecting
		return
	}
	if err := client.SendCommand("greet", []byte("hello from examples/client")); err != nil {
		log.Print(err)
	}
	reqCtx, cancel := context.WithTimeout(ctx, 5*time.Second)
	reply, err := client.Request(reqCtx, "time", []byte(time.Now().Format(time.RFC3339)))
	cancel()
	if err != nil {
		log.Print(err)
	} else {
		log.Printf("reply: %s", reply)
	}

	<-ctx.Done()
}
