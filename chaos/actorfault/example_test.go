package actorfault_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/marmotws/marmot"
	"github.com/marmotws/marmot/chaos/actorfault"
)

// Test a handler's panic path: the 2nd request named "save" panics in
// its connection's actor, as a bug in the handler would. The requester
// gets an error reply, OnError says the panic was injected, and the
// connection carries on with a fresh actor.
func Example() {
	inj := actorfault.New(actorfault.Options{})
	defer inj.Close()
	injected := make(chan bool, 1)
	srv, _ := marmot.NewServer(marmot.ServerConfig{
		Addr:            "127.0.0.1:0",
		Logger:          slog.New(slog.DiscardHandler),
		ActorMiddleware: []actor.ReceiverMiddleware{inj.Middleware()},
		ServerEvents: marmot.ServerEvents{
			OnHandleCommand: func(m *marmot.Message) { _ = m.Reply([]byte("saved")) },
			OnError:         func(_ marmot.ClientID, err error) { injected <- errors.Is(err, actorfault.ErrInjected) },
		},
	})
	ctx := context.Background()
	_ = srv.Start(ctx)
	defer srv.Stop(ctx)
	_, _ = inj.Add(actorfault.Rule{Match: actorfault.Named("save"), Skip: 1, Times: 1, Fault: actorfault.Panic})

	c, _ := marmot.NewClient(marmot.ClientConfig{URL: srv.URL(), Subprotocol: "marmot.v1", Logger: slog.New(slog.DiscardHandler)})
	defer c.Close(ctx)
	_ = c.Connect(ctx)
	for range 3 {
		reply, err := c.Request(ctx, "save", nil)
		fmt.Printf("%s %v\n", reply, err)
	}
	fmt.Println("injected:", <-injected, "panics:", inj.Counts().Panics)
	// Output:
	// saved <nil>
	//  marmot: remote error 500: internal error: handler failed
	// saved <nil>
	// injected: true panics: 1
}
