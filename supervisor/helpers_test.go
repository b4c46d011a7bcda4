package supervisor_test

import (
	"context"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"go.uber.org/goleak"

	"github.com/marmotws/marmot/supervisor"
)

// TestMain checks that no goroutine outlives the tests. Shutting the actor
// systems down is enough: idle protoactor actors own no goroutine, and the
// test systems use a short dead-letter throttle interval (see newSystem).
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// guard bounds every wait; it only fires when a test is broken.
const guard = 10 * time.Second

func newSystem(t *testing.T) *actor.ActorSystem {
	t.Helper()

	system := actor.NewActorSystem(
		actor.WithLoggerFactory(func(*actor.ActorSystem) *slog.Logger {
			return slog.New(slog.DiscardHandler)
		}),
		// A dead letter (a message to a stopped actor) starts a throttle
		// goroutine that lives for this interval: 1s by default, longer than
		// goleak's retries. No test sends dead letters today; this keeps
		// goleak reliable if one does.
		actor.WithDeadLetterThrottleInterval(10*time.Millisecond),
	)
	t.Cleanup(system.Shutdown)

	return system
}

func recv[T any](t *testing.T, ch <-chan T, what string) T {
	t.Helper()

	select {
	case v := <-ch:
		return v
	case <-time.After(guard):
		t.Fatalf("timed out waiting for %s", what)

		var zero T

		return zero
	}
}

// Messages understood by testChild.
type (
	// boom makes the child panic with reason; payload is never looked at.
	boom struct {
		reason  any
		payload string
	}
	// tracedBoom makes the child panic with reason; it carries a trace context.
	tracedBoom struct {
		ctx    context.Context
		reason any
	}
	// ping makes the child report pong with the number of pings it handled
	// across all its incarnations.
	ping struct{}
	pong struct{ pings int64 }
)

func (m tracedBoom) TraceContext() context.Context { return m.ctx }

// Lifecycle events reported by testChild.
type event string

const (
	evStarted    event = "started"
	evRestarting event = "restarting"
	evStopping   event = "stopping"
	evStopped    event = "stopped"
)

// probe is shared by all incarnations of a testChild: it is the state that
// survives restarts.
type probe struct {
	events     chan any
	pings      atomic.Int64
	restarting atomic.Int64 // *actor.Restarting messages received
	stopped    atomic.Bool
}

func newProbe() *probe { return &probe{events: make(chan any, 64)} }

func (p *probe) props() *actor.Props {
	return actor.PropsFromProducer(func() actor.Actor { return &testChild{p: p} })
}

func (p *probe) expect(t *testing.T, want ...event) {
	t.Helper()

	for _, w := range want {
		if got := recv(t, p.events, string(w)); got != w {
			t.Fatalf("child event = %v, want %v", got, w)
		}
	}
}

type testChild struct{ p *probe }

func (c *testChild) Receive(ctx actor.Context) {
	switch m := ctx.Message().(type) {
	case *actor.Started:
		c.p.events <- evStarted
	case *actor.Restarting:
		c.p.restarting.Add(1)
		c.p.events <- evRestarting
	case *actor.Stopping:
		c.p.events <- evStopping
	case *actor.Stopped:
		c.p.stopped.Store(true)
		c.p.events <- evStopped
	case boom:
		panic(m.reason)
	case tracedBoom:
		panic(m.reason)
	case ping:
		c.p.events <- pong{pings: c.p.pings.Add(1)}
	}
}

// parent spawns one child from childProps on every start and reports the
// child's PID, and the PIDs of terminated children.
type parent struct {
	childProps *actor.Props
	spawned    chan *actor.PID
	terminated chan *actor.PID
}

func newParent(childProps *actor.Props) *parent {
	return &parent{
		childProps: childProps,
		spawned:    make(chan *actor.PID, 8),
		terminated: make(chan *actor.PID, 8),
	}
}

func (p *parent) props(strategy actor.SupervisorStrategy) *actor.Props {
	return actor.PropsFromProducer(func() actor.Actor { return &parentActor{p} },
		actor.WithSupervisor(strategy))
}

type parentActor struct{ p *parent }

func (a *parentActor) Receive(ctx actor.Context) {
	switch m := ctx.Message().(type) {
	case *actor.Started:
		a.p.spawned <- ctx.Spawn(a.p.childProps)
	case *actor.Terminated:
		a.p.terminated <- m.Who
	}
}

// observed is a Failure reported to OnFailure, together with what the child
// had gone through when OnFailure ran.
type observed struct {
	supervisor.Failure
	restartingBefore int64 // *actor.Restarting received by the child so far
	stoppedBefore    bool  // whether the child had already stopped
}

// harness is a parent supervising one testChild with a Strategy.
type harness struct {
	system   *actor.ActorSystem
	probe    *probe
	parent   *parent
	child    *actor.PID
	failures chan observed
}

// start spawns a parent supervising with supervisor.New(cfg) and waits for
// its child to start. cfg.OnFailure, if set, is called before the failure is
// reported on h.failures.
func start(t *testing.T, cfg supervisor.Config) *harness {
	t.Helper()

	h := &harness{
		system:   newSystem(t),
		probe:    newProbe(),
		failures: make(chan observed, 16),
	}

	user := cfg.OnFailure
	cfg.OnFailure = func(f supervisor.Failure) {
		if user != nil {
			user(f)
		}
		h.failures <- observed{
			Failure:          f,
			restartingBefore: h.probe.restarting.Load(),
			stoppedBefore:    h.probe.stopped.Load(),
		}
	}

	h.parent = newParent(h.probe.props())
	h.system.Root.Spawn(h.parent.props(supervisor.New(cfg)))
	h.child = recv(t, h.parent.spawned, "child spawned")
	h.probe.expect(t, evStarted)

	return h
}

// fail makes the child panic with reason and returns the reported failure.
func (h *harness) fail(t *testing.T, reason any) observed {
	t.Helper()

	h.system.Root.Send(h.child, boom{reason: reason})

	return recv(t, h.failures, "OnFailure")
}

// pingPong checks the child is alive and returns its shared ping count.
func (h *harness) pingPong(t *testing.T) int64 {
	t.Helper()

	h.system.Root.Send(h.child, ping{})

	got := recv(t, h.probe.events, "pong")
	p, ok := got.(pong)
	if !ok {
		t.Fatalf("child event = %v, want pong", got)
	}

	return p.pings
}

// expectTerminated waits for the parent to see its child terminate.
func (h *harness) expectTerminated(t *testing.T) {
	t.Helper()

	if who := recv(t, h.parent.terminated, "Terminated"); !who.Equal(h.child) {
		t.Fatalf("terminated %v, want %v", who, h.child)
	}
}
