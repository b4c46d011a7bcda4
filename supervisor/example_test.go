package supervisor_test

import (
	"fmt"
	"log/slog"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/marmotws/marmot/supervisor"
)

func ExampleNew() {
	system := actor.NewActorSystem(actor.WithLoggerFactory(func(*actor.ActorSystem) *slog.Logger {
		return slog.New(slog.DiscardHandler)
	}))
	defer system.Shutdown()

	failures := make(chan supervisor.Failure, 8)
	strategy := supervisor.New(supervisor.Config{
		MaxRestarts: 2,
		ActorKind:   "connection",
		OnFailure:   func(f supervisor.Failure) { failures <- f },
	})

	// The child panics on "boom".
	childProps := actor.PropsFromFunc(func(ctx actor.Context) {
		if ctx.Message() == "boom" {
			panic("boom")
		}
	})

	// The strategy supervises the children of the actor whose props carry it.
	spawned := make(chan *actor.PID, 1)
	terminated := make(chan struct{})
	parentProps := actor.PropsFromFunc(func(ctx actor.Context) {
		switch ctx.Message().(type) {
		case *actor.Started:
			spawned <- ctx.Spawn(childProps)
		case *actor.Terminated:
			close(terminated)
		}
	}, actor.WithSupervisor(strategy))

	system.Root.Spawn(parentProps)
	child := <-spawned

	for range 3 {
		system.Root.Send(child, "boom")

		f := <-failures
		fmt.Println(f.Directive, f.Restarts, f.BudgetExhausted)
	}

	<-terminated
	fmt.Println("child stopped")

	// Output:
	// RestartDirective 1 false
	// RestartDirective 2 false
	// StopDirective 3 true
	// child stopped
}
