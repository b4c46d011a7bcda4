// Client connects to a marmot.v1 server (such as examples/echo), waiting for
// it if it is not up yet, sends a command and a request, prints every state
// change and reconnects with exponential backoff when the connection drops,
// until Ctrl-C.
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
		RetryFirstConnect: true, // wait for a server that is not up yet
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
			// Callbacks run one at a time on the client's actor. Request
			// may be called from them (OnConnect is a good place for a
			// per-connection login, as it runs after every reconnect), but
			// every later event waits for its reply: give it a short
			// deadline, or call it from your own goroutine as below.
		},
	})
	if err != nil {
		log.Fatal(err)
	}
	// Close releases the client's actor and goroutines.
	defer func() { _ = client.Close(context.Background()) }()

	// With RetryFirstConnect, Connect keeps trying until the server is up
	// or Ctrl-C; it gives up only on errors that retrying cannot fix (a
	// wrong key, an encryption mismatch).
	if err := client.Connect(ctx); err != nil {
		log.Print(err)
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
