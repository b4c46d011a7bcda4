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

// Client failover: a client given two servers moves to the second when
// the first stops, and re-joins its rooms there.
func ExampleClientConfig_failover() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	start := func(name string) *marmot.Server {
		srv, err := marmot.NewServer(marmot.ServerConfig{
			Addr:   "127.0.0.1:0",
			Logger: slog.New(slog.DiscardHandler),
			ServerEvents: marmot.ServerEvents{OnHandleCommand: func(m *marmot.Message) {
				if m.IsRequest() {
					_ = m.Reply([]byte("hello from " + name))
				}
			}},
		})
		if err != nil {
			log.Fatal(err)
		}
		if err := srv.Start(ctx); err != nil {
			log.Fatal(err)
		}
		return srv
	}
	a, b := start("a"), start("b")
	defer b.Stop(ctx)

	connected := make(chan struct{}, 2)
	rejoined := make(chan string, 1)
	c, err := marmot.NewClient(marmot.ClientConfig{
		URL: a.URL(), FailoverURLs: []string{b.URL()},
		Subprotocol: protocol.SubprotocolBinary, Logger: slog.New(slog.DiscardHandler),
		AutoReconnect: true, ReconnectInterval: 50 * time.Millisecond,
		ClientEvents: marmot.ClientEvents{
			OnConnect: func() { connected <- struct{}{} },
			OnRecover: func(room string, recovered bool, _ int, _ string) {
				rejoined <- fmt.Sprintf("re-joined %s, recovered: %v", room, recovered)
			},
		},
	})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close(ctx)
	if err := c.Connect(ctx); err != nil {
		log.Fatal(err)
	}
	<-connected
	if err := c.Join(ctx, "news"); err != nil {
		log.Fatal(err)
	}
	reply, _ := c.Request(ctx, "who", nil)
	fmt.Println(string(reply))

	_ = a.Stop(ctx) // the client moves to b
	<-connected
	fmt.Println(<-rejoined) // b never had the room: the application resynchronises
	reply, _ = c.Request(ctx, "who", nil)
	fmt.Println(string(reply), c.URL() == b.URL())
	// Output:
	// hello from a
	// re-joined news, recovered: false
	// hello from b true
}
