package actorfault

import (
	"context"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/asynkron/protoactor-go/actor"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"github.com/marmotws/marmot/actors"
)

// InstrumentationName names the tracer of the injector's spans.
const InstrumentationName = "github.com/marmotws/marmot/chaos/actorfault"

// Options configure an Injector.
type Options struct {
	// Logger gets a line (Info) for every rule added or removed and every
	// fault injected. Default: discard.
	Logger *slog.Logger
	// TracerProvider makes the injector's tracer. Default: the global one.
	TracerProvider trace.TracerProvider
}

// RuleID names a rule of an Injector, from 1.
type RuleID uint64

// Counts are the faults an Injector has injected, by kind.
type Counts struct {
	Panics, Delays, Drops, Duplicates, Stalls int64
	// Crashes and Stops count Crash and Stop calls.
	Crashes, Stops int64
}

// An Injector holds rules and applies them, through its Middleware, to the
// actors the middleware runs on. Every method is safe for concurrent use.
type Injector struct {
	log    *slog.Logger
	tracer trace.Tracer
	done   chan struct{} // closed by Close: ends every stall and delay

	mu     sync.Mutex // serialises writers of rules
	nextID RuleID
	rules  atomic.Pointer[[]*rule] // copy on write: the middleware only loads it
	closed bool

	counts         [Stall + 1]atomic.Int64
	crashes, stops atomic.Int64
}

// rule is a Rule with its counters.
type rule struct {
	Rule
	id      RuleID
	seen    atomic.Int64  // matching messages
	fired   atomic.Int64  // faults injected
	removed chan struct{} // closed by Remove: ends its stalls
}

// New returns an Injector without rules.
func New(opts Options) *Injector {
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	tp := opts.TracerProvider
	if tp == nil {
		tp = otel.GetTracerProvider()
	}
	i := &Injector{log: log, tracer: tp.Tracer(InstrumentationName), done: make(chan struct{})}
	i.rules.Store(&[]*rule{})
	return i
}

// Add puts r in force and returns its id; an invalid r is an error
// wrapping ErrBadRule.
func (i *Injector) Add(r Rule) (RuleID, error) {
	if err := r.validate(); err != nil {
		return 0, err
	}
	i.mu.Lock()
	defer i.mu.Unlock()
	i.nextID++
	nr := &rule{Rule: r, id: i.nextID, removed: make(chan struct{})}
	rs := append(slices.Clone(*i.rules.Load()), nr)
	i.rules.Store(&rs)
	i.log.Info("chaos: actor fault rule added", slog.Uint64("rule", uint64(nr.id)), slog.String("fault", r.Fault.String()),
		slog.Int("skip", r.Skip), slog.Int("times", r.Times))
	return nr.id, nil
}

// Remove takes rule id out of force (its stalls end); it reports whether
// there was such a rule.
func (i *Injector) Remove(id RuleID) bool {
	i.mu.Lock()
	defer i.mu.Unlock()
	rs := *i.rules.Load()
	k := slices.IndexFunc(rs, func(r *rule) bool { return r.id == id })
	if k < 0 {
		return false
	}
	close(rs[k].removed)
	rs = slices.Delete(slices.Clone(rs), k, k+1)
	i.rules.Store(&rs)
	i.log.Info("chaos: actor fault rule removed", slog.Uint64("rule", uint64(id)))
	return true
}

// Clear removes every rule.
func (i *Injector) Clear() {
	i.mu.Lock()
	defer i.mu.Unlock()
	for _, r := range *i.rules.Load() {
		close(r.removed)
	}
	i.rules.Store(&[]*rule{})
	i.log.Info("chaos: actor fault rules cleared")
}

// Fired returns how many faults rule id has injected (0 for an unknown or
// removed rule).
func (i *Injector) Fired(id RuleID) int {
	for _, r := range *i.rules.Load() {
		if r.id == id {
			return int(r.fired.Load())
		}
	}
	return 0
}

// Counts returns the faults injected so far.
func (i *Injector) Counts() Counts {
	return Counts{
		Panics: i.counts[Panic].Load(), Delays: i.counts[Delay].Load(), Drops: i.counts[Drop].Load(),
		Duplicates: i.counts[Duplicate].Load(), Stalls: i.counts[Stall].Load(),
		Crashes: i.crashes.Load(), Stops: i.stops.Load(),
	}
}

// Close removes every rule and ends every stall and delay in progress;
// the middleware passes messages on from then on.
func (i *Injector) Close() {
	i.Clear()
	i.mu.Lock()
	defer i.mu.Unlock()
	if !i.closed {
		i.closed = true
		close(i.done)
	}
}

// crash is what Crash sends: the middleware panics on it.
type crash struct{}

// Crash makes the actor pid panic on its next turn, as a bug in it would:
// its supervisor restarts it or, past its budget, stops it (a connection
// then closes with 1011). The actor must run the Injector's Middleware.
func (i *Injector) Crash(sys *actor.ActorSystem, pid *actor.PID) {
	i.crashes.Add(1)
	sys.Root.Send(pid, &crash{})
}

// Stop stops the actor pid at once, as protoactor's Stop does: a
// connection actor closes its connection (1001), a room actor ends the
// room (a later join or publish starts it again), a client actor ends the
// client. It does not need the Middleware.
func (i *Injector) Stop(ctx context.Context, sys *actor.ActorSystem, pid *actor.PID) {
	i.stops.Add(1)
	_, span := i.tracer.Start(ctx, "chaos.actor")
	span.AddEvent("chaos.fault", trace.WithAttributes(attribute.String("chaos.fault", "stop"), attribute.String("marmot.actor.pid", pid.Id)))
	span.End()
	i.log.Info("chaos: actor fault", slog.String("fault", "stop"), slog.String("pid", pid.Id))
	sys.Root.Stop(pid)
}

// Middleware returns the receive middleware that applies the injector's
// rules; install it with ServerConfig.ActorMiddleware or
// ClientConfig.ActorMiddleware (or actor.WithReceiverMiddleware on your
// own actors' props).
func (i *Injector) Middleware() actor.ReceiverMiddleware {
	return func(next actor.ReceiverFunc) actor.ReceiverFunc {
		return func(c actor.ReceiverContext, env *actor.MessageEnvelope) {
			if _, ok := env.Message.(*crash); ok {
				i.inject(c, env, next, nil, actors.Identify(c.Actor()), 0)
				return
			}
			rs := *i.rules.Load()
			if len(rs) == 0 || lifecycle(env.Message) {
				next(c, env)
				return
			}
			i.apply(c, env, next, rs)
		}
	}
}

// lifecycle reports protoactor's own messages, which no rule matches.
func lifecycle(msg any) bool {
	switch msg.(type) {
	case *actor.Started, *actor.Stopping, *actor.Stopped, *actor.Restarting, actor.SystemMessage, actor.AutoReceiveMessage:
		return true
	}
	return false
}
