package actorfault

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"github.com/marmotws/marmot/actors"
	"github.com/marmotws/marmot/supervisor"
)

// Injected is the value an injected panic panics with. It unwraps to
// ErrInjected, and its TraceContext makes the supervisor's failure span a
// child of the fault's span.
type Injected struct {
	// Rule is the rule that fired (0 for a Crash).
	Rule RuleID
	// Where is the actor that panicked.
	Where actors.ActorInfo
	// Message describes the message it panicked on.
	Message string
	ctx     context.Context
}

func (p *Injected) Error() string {
	return fmt.Sprintf("chaos: injected panic in %s actor on %s (rule %d)", where(p.Where), p.Message, p.Rule)
}

// Unwrap returns ErrInjected.
func (p *Injected) Unwrap() error { return ErrInjected }

// TraceContext implements supervisor.Traced.
func (p *Injected) TraceContext() context.Context { return p.ctx }

var _ supervisor.Traced = (*Injected)(nil)

// apply runs the first rule that picks the message, or passes it on.
func (i *Injector) apply(c actor.ReceiverContext, env *actor.MessageEnvelope, next actor.ReceiverFunc, rs []*rule) {
	who := actors.Identify(c.Actor())
	for _, r := range rs {
		if r.Actors != nil && !r.Actors(who) {
			continue
		}
		match := r.Match
		if match == nil {
			match = Messages
		}
		if !match(env.Message) {
			continue
		}
		n := r.seen.Add(1)
		if n <= int64(r.Skip) || r.Times > 0 && n > int64(r.Skip+r.Times) {
			continue
		}
		r.fired.Add(1)
		i.inject(c, env, next, r, who, n)
		return
	}
	next(c, env)
}

// inject does r's fault to the message in env; r is nil for a Crash.
func (i *Injector) inject(c actor.ReceiverContext, env *actor.MessageEnvelope, next actor.ReceiverFunc, r *rule, who actors.ActorInfo, n int64) {
	kind, parent, id := Panic, context.Context(nil), RuleID(0)
	if r != nil {
		kind, parent, id = r.Fault, r.Context, r.id
	}
	if parent == nil {
		parent = messageContext(env.Message)
	}
	desc := describe(env.Message)
	i.counts[kind].Add(1)
	attrs := []attribute.KeyValue{
		attribute.String("chaos.fault", kind.String()),
		attribute.Int64("chaos.rule", int64(id)),
		attribute.Int64("chaos.seq", n),
		attribute.String("chaos.message", desc),
		attribute.String("marmot.actor.kind", who.Kind),
		attribute.String("marmot.actor.pid", c.Self().GetId()),
	}
	if who.Client != 0 {
		attrs = append(attrs, attribute.Int64("marmot.client.id", int64(who.Client)))
	}
	if who.Room != "" {
		attrs = append(attrs, attribute.String("marmot.room", who.Room))
	}
	if kind == Delay {
		attrs = append(attrs, attribute.Int64("chaos.delay_ms", r.Delay.Milliseconds()))
	}
	ctx, span := i.tracer.Start(parent, "chaos.actor", trace.WithAttributes(attrs...))
	span.AddEvent("chaos.fault", trace.WithAttributes(attribute.String("chaos.fault", kind.String())))
	i.log.Info("chaos: actor fault", slog.String("fault", kind.String()), slog.Uint64("rule", uint64(id)),
		slog.String("actor", where(who)), slog.String("pid", c.Self().GetId()), slog.String("message", desc))
	switch kind {
	case Panic:
		span.End()
		panic(&Injected{Rule: id, Where: who, Message: desc, ctx: ctx})
	case Drop:
		span.End()
	case Duplicate:
		span.End()
		next(c, env)
		next(c, env)
	case Delay:
		t := time.NewTimer(r.Delay)
		select {
		case <-t.C:
		case <-r.removed:
		case <-i.done:
		}
		t.Stop()
		span.End()
		next(c, env)
	case Stall:
		select {
		case <-r.Release:
		case <-r.removed:
		case <-i.done:
		}
		span.End()
		next(c, env)
	}
}

// messageContext is the trace a message belongs to, if it says.
func messageContext(msg any) context.Context {
	switch m := msg.(type) {
	case *actors.Message:
		return m.Context()
	case supervisor.Traced:
		if ctx := m.TraceContext(); ctx != nil {
			return ctx
		}
	}
	return context.Background()
}

// describe names a message for spans and logs, never with its payload.
func describe(msg any) string {
	switch m := msg.(type) {
	case *actors.Message:
		if m.Name != "" {
			return fmt.Sprintf("%s %q", m.Kind, m.Name)
		}
		return m.Kind.String()
	case operation:
		return "room " + m.Operation()
	case *crash:
		return "crash"
	}
	return fmt.Sprintf("%T", msg)
}

func where(w actors.ActorInfo) string {
	switch w.Kind {
	case "connection":
		return fmt.Sprintf("connection %d", w.Client)
	case "room":
		return fmt.Sprintf("room %q", w.Room)
	case "":
		return "an"
	}
	return w.Kind
}
