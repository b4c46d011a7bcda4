package supervisor

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"
	"unicode/utf8"

	"github.com/asynkron/protoactor-go/actor"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
)

// Defaults applied to the zero fields of [Config].
const (
	// DefaultMaxRestarts is the restart budget used when Config.MaxRestarts is 0.
	DefaultMaxRestarts = 3
	// DefaultWindow is the sliding window used when Config.Window is 0 or negative.
	DefaultWindow = 10 * time.Second
)

// Names used in the telemetry emitted for every failure.
const (
	// TracerName is the instrumentation scope of the spans emitted by [Strategy].
	TracerName = "github.com/marmotws/marmot/supervisor"
	// SpanName is the name of the span emitted for every failure.
	SpanName = "marmot.actor.failure"

	// EventRestart, EventStop, EventResume and EventEscalate are the span events
	// that record the directive applied to the failing child.
	EventRestart  = "marmot.actor.restart"
	EventStop     = "marmot.actor.stop"
	EventResume   = "marmot.actor.resume"
	EventEscalate = "marmot.actor.escalate"

	// MaxReasonBytes is the maximum length, in bytes, of the
	// marmot.failure.reason attribute (and of the reason in log records).
	MaxReasonBytes = 256
)

// Attribute keys set on the failure span.
const (
	AttrActorKind       = attribute.Key("marmot.actor.kind")
	AttrActorPID        = attribute.Key("marmot.actor.pid")
	AttrFailureReason   = attribute.Key("marmot.failure.reason")
	AttrRestartCount    = attribute.Key("marmot.restart.count")
	AttrDirective       = attribute.Key("marmot.supervisor.directive")
	AttrBudgetExhausted = attribute.Key("marmot.restart.budget_exhausted")
)

var (
	// ErrActorFailed is matched (errors.Is) by every error returned by
	// [Failure.Err].
	ErrActorFailed = errors.New("supervisor: actor failed")
	// ErrRestartBudgetExhausted is matched (errors.Is) by the error returned by
	// [Failure.Err] when the child was stopped because it failed more than
	// MaxRestarts times within Window.
	ErrRestartBudgetExhausted = errors.New("supervisor: restart budget exhausted")
)

// Traced is implemented by messages that carry the context of the trace they
// belong to. When an actor fails while processing such a message (directly or
// wrapped in an *actor.MessageEnvelope), the failure span is a child of the
// span found in TraceContext, so the failure shows up in the trace of the
// message that caused it. A panic value that implements Traced comes first:
// a fault injected on purpose (package chaos/actorfault) parents the
// failure span to the span that records the injection.
type Traced interface {
	TraceContext() context.Context
}

// Config configures a [Strategy]. The zero value is usable.
type Config struct {
	// MaxRestarts is the number of restarts allowed within Window. The failure
	// that exceeds it stops the child instead of restarting it (so a child is
	// stopped by its MaxRestarts+1-th failure within Window).
	// 0 means DefaultMaxRestarts (3); a negative value means never restart:
	// the child is stopped on its first failure that the Decider would restart.
	MaxRestarts int

	// Window is the sliding window in which failures are counted, using the
	// child's *actor.RestartStatistics. 0 (or a negative value) means
	// DefaultWindow (10s).
	Window time.Duration

	// Decider chooses the directive for a failure reason (the panic value).
	// nil means actor.RestartDirective for every failure. The restart budget
	// only applies to actor.RestartDirective; Resume, Stop and Escalate are
	// applied as decided and are not counted in the restart statistics.
	// A Decider that panics, or returns an unknown directive, stops the child.
	Decider actor.DeciderFunc

	// ActorKind is recorded as the marmot.actor.kind span attribute and log
	// field, e.g. "connection" or "client". May be empty.
	ActorKind string

	// Attributes returns extra span attributes for the failing child (e.g.
	// marmot.client.id). May be nil. It runs on the goroutine that handles the
	// failure (see OnFailure) and must be fast.
	Attributes func(child *actor.PID) []attribute.KeyValue

	// TracerProvider provides the tracer for the failure spans. nil means
	// otel.GetTracerProvider(), looked up at every failure.
	TracerProvider trace.TracerProvider

	// Logger, when non-nil, receives one Warn record per failure with the
	// actor kind, pid, reason, directive and restart count. Message payloads
	// are never logged. nil means no logging.
	Logger *slog.Logger

	// OnFailure, when non-nil, is called synchronously for every failure,
	// after the directive has been decided and before it is applied (so the
	// child has not been restarted or stopped yet when it runs). It runs on
	// the goroutine that handles the failure: the parent actor's mailbox
	// goroutine when the strategy is the parent's supervisor (serialised with
	// the parent's Receive), or the failing child's own goroutine when the
	// strategy is a root guardian (actor.WithGuardian) — then it may run
	// concurrently for different children and must be goroutine-safe.
	// It must not block for long: the parent (or the child) cannot process
	// anything else meanwhile. A panic in OnFailure is recovered (and logged
	// to Logger) and the directive is applied anyway.
	OnFailure func(Failure)
}

// Failure describes one actor failure and what the supervisor decided.
type Failure struct {
	// Child is the failing actor.
	Child *actor.PID
	// Reason is the value the actor panicked with (often an error).
	Reason any
	// Message is the message being processed when the actor failed, with any
	// *actor.MessageEnvelope unwrapped. It may be nil, or a lifecycle message
	// such as *actor.Started.
	Message any
	// Directive is the directive applied: actor.RestartDirective,
	// actor.StopDirective, actor.ResumeDirective or actor.EscalateDirective.
	Directive actor.Directive
	// Restarts is the number of failures counted within the window, including
	// this one. For failures the Decider does not restart (Resume, Stop,
	// Escalate) the statistics are left untouched, as in protoactor's
	// one-for-one strategy, and Restarts is the failures already recorded
	// within the window plus this one.
	Restarts int
	// BudgetExhausted is true when Directive is actor.StopDirective because
	// the restart budget ran out (or MaxRestarts is negative).
	BudgetExhausted bool
}

// Err returns an error describing the failure. It always matches
// [ErrActorFailed] with errors.Is, also matches [ErrRestartBudgetExhausted]
// when BudgetExhausted is true, and wraps Reason when Reason is an error, so
// errors.Is and errors.As see through to it.
func (f Failure) Err() error {
	var err error
	if reason, ok := f.Reason.(error); ok {
		err = fmt.Errorf("%w: %w", ErrActorFailed, reason)
	} else {
		err = fmt.Errorf("%w: %v", ErrActorFailed, f.Reason)
	}

	if f.BudgetExhausted {
		err = fmt.Errorf("%w: %w", ErrRestartBudgetExhausted, err)
	}

	return err
}

// Strategy is an actor.SupervisorStrategy that restarts failing children
// within a restart budget and reports every failure as an OpenTelemetry span.
// The zero value behaves like New(Config{}). A Strategy is safe for
// concurrent use and may be shared by many parents.
type Strategy struct {
	cfg Config
}

var _ actor.SupervisorStrategy = (*Strategy)(nil)

// New returns a *Strategy configured by cfg, as the actor.SupervisorStrategy
// protoactor's props take.
func New(cfg Config) actor.SupervisorStrategy {
	return &Strategy{cfg: cfg}
}

func (s *Strategy) maxRestarts() int {
	if s.cfg.MaxRestarts == 0 {
		return DefaultMaxRestarts
	}

	return s.cfg.MaxRestarts
}

func (s *Strategy) window() time.Duration {
	if s.cfg.Window <= 0 {
		return DefaultWindow
	}

	return s.cfg.Window
}

// HandleFailure implements actor.SupervisorStrategy. It decides the directive
// like protoactor's one-for-one strategy (the restart budget is computed with
// rs.Fail, rs.NumberOfFailures and rs.Reset), reports the failure (span, log,
// OnFailure) and then applies the directive to child only.
//
// Escalation is impossible when supervisor is a root guardian (actors
// spawned from the root context with actor.WithGuardian): protoactor's
// guardian panics on EscalateFailure, which would crash the process, so
// actor.EscalateDirective is turned into actor.StopDirective there.
func (s *Strategy) HandleFailure(
	_ *actor.ActorSystem,
	supervisor actor.Supervisor,
	child *actor.PID,
	rs *actor.RestartStatistics,
	reason any,
	message any,
) {
	if rs == nil {
		rs = actor.NewRestartStatistics()
	}

	f := Failure{
		Child:   child,
		Reason:  reason,
		Message: actor.UnwrapEnvelopeMessage(message),
	}
	s.decide(&f, supervisor, rs)

	reasonText := truncate(fmt.Sprint(reason), MaxReasonBytes)
	ctx, span := s.startSpan(message, f, reasonText)

	s.log(ctx, f, reasonText)

	if s.cfg.OnFailure != nil {
		s.protect(ctx, "OnFailure", func() { s.cfg.OnFailure(f) })
	}

	span.AddEvent(directiveEvent(f.Directive))
	// The span is ended before the directive is applied so that anything
	// observing the effect of the directive (a restarted or stopped child)
	// also observes the ended span.
	span.End()

	switch f.Directive {
	case actor.ResumeDirective:
		supervisor.ResumeChildren(child)
	case actor.RestartDirective:
		supervisor.RestartChildren(child)
	case actor.EscalateDirective:
		supervisor.EscalateFailure(reason, message)
	default: // actor.StopDirective
		supervisor.StopChildren(child)
	}
}

// decide fills f.Directive, f.Restarts and f.BudgetExhausted.
func (s *Strategy) decide(f *Failure, supervisor actor.Supervisor, rs *actor.RestartStatistics) {
	f.Directive = actor.RestartDirective
	if s.cfg.Decider != nil {
		f.Directive = actor.StopDirective
		s.protect(context.Background(), "Decider", func() { f.Directive = s.cfg.Decider(f.Reason) })
	}

	window := s.window()

	switch f.Directive {
	case actor.RestartDirective:
		maxRestarts := s.maxRestarts()
		if maxRestarts < 0 {
			f.Restarts = rs.NumberOfFailures(window) + 1
			f.Directive = actor.StopDirective
			f.BudgetExhausted = true

			return
		}

		rs.Fail()
		f.Restarts = rs.NumberOfFailures(window)

		if f.Restarts > maxRestarts {
			rs.Reset()

			f.Directive = actor.StopDirective
			f.BudgetExhausted = true
		}

		return
	case actor.EscalateDirective:
		if !canEscalate(supervisor) {
			f.Directive = actor.StopDirective
		}
	case actor.ResumeDirective, actor.StopDirective:
	default:
		f.Directive = actor.StopDirective
	}

	f.Restarts = rs.NumberOfFailures(window) + 1
}

// canEscalate reports whether supervisor can escalate a failure to a parent.
// protoactor's root guardian is the only Supervisor that is also an
// actor.Process (actor contexts are not) and it panics on EscalateFailure.
func canEscalate(supervisor actor.Supervisor) bool {
	_, isGuardian := supervisor.(actor.Process)

	return !isGuardian
}

func (s *Strategy) startSpan(message any, f Failure, reasonText string) (context.Context, trace.Span) {
	parent := s.parentContext(f.Reason, message)

	attrs := make([]attribute.KeyValue, 0, 8)
	attrs = append(attrs,
		AttrActorKind.String(s.cfg.ActorKind),
		AttrActorPID.String(pidID(f.Child)),
		AttrFailureReason.String(reasonText),
		AttrRestartCount.Int(f.Restarts),
		AttrDirective.String(directiveName(f.Directive)),
		AttrBudgetExhausted.Bool(f.BudgetExhausted),
	)

	if s.cfg.Attributes != nil {
		s.protect(parent, "Attributes", func() { attrs = append(attrs, s.cfg.Attributes(f.Child)...) })
	}

	tp := s.cfg.TracerProvider
	if tp == nil {
		tp = otel.GetTracerProvider()
	}

	ctx, span := tp.Tracer(TracerName).Start(parent, SpanName,
		trace.WithSpanKind(trace.SpanKindInternal),
		trace.WithAttributes(attrs...),
	)

	reasonErr, ok := f.Reason.(error)
	if !ok {
		reasonErr = errors.New(fmt.Sprint(f.Reason))
	}

	span.RecordError(reasonErr)
	span.SetStatus(codes.Error, reasonText)

	return ctx, span
}

// parentContext returns the context of the panic's value when it implements
// Traced (an injected fault), else that of the message (or of the message
// inside an envelope) when it does, and context.Background otherwise.
func (s *Strategy) parentContext(reason, message any) context.Context {
	candidates := []any{reason, message}
	if env, ok := message.(*actor.MessageEnvelope); ok && env != nil {
		candidates = append(candidates, env.Message)
	}

	for _, m := range candidates {
		traced, ok := m.(Traced)
		if !ok {
			continue
		}

		var ctx context.Context

		s.protect(context.Background(), "TraceContext", func() { ctx = traced.TraceContext() })

		if ctx != nil {
			// Keep the values (span, baggage) but not the cancellation of the
			// message's context: the failure is reported regardless.
			return context.WithoutCancel(ctx)
		}
	}

	return context.Background()
}

func (s *Strategy) log(ctx context.Context, f Failure, reasonText string) {
	if s.cfg.Logger == nil {
		return
	}

	s.cfg.Logger.LogAttrs(ctx, slog.LevelWarn, "actor failed",
		slog.String("kind", s.cfg.ActorKind),
		slog.String("pid", pidID(f.Child)),
		slog.String("reason", reasonText),
		slog.String("directive", directiveName(f.Directive)),
		slog.Int("restarts", f.Restarts),
		slog.Bool("budget_exhausted", f.BudgetExhausted),
	)
}

// protect runs a user callback, recovering (and logging) a panic so that the
// failing child is never left suspended because of a faulty callback.
func (s *Strategy) protect(ctx context.Context, name string, fn func()) {
	defer func() {
		if r := recover(); r != nil && s.cfg.Logger != nil {
			s.cfg.Logger.LogAttrs(ctx, slog.LevelError, "supervisor callback panicked",
				slog.String("callback", name),
				slog.String("kind", s.cfg.ActorKind),
				slog.String("panic", truncate(fmt.Sprint(r), MaxReasonBytes)),
			)
		}
	}()

	fn()
}

func pidID(pid *actor.PID) string {
	if pid == nil {
		return ""
	}

	return pid.Id
}

func directiveName(d actor.Directive) string {
	switch d {
	case actor.RestartDirective:
		return "restart"
	case actor.StopDirective:
		return "stop"
	case actor.ResumeDirective:
		return "resume"
	case actor.EscalateDirective:
		return "escalate"
	default:
		return "unknown"
	}
}

func directiveEvent(d actor.Directive) string {
	switch d {
	case actor.RestartDirective:
		return EventRestart
	case actor.ResumeDirective:
		return EventResume
	case actor.EscalateDirective:
		return EventEscalate
	default:
		return EventStop
	}
}

// truncate shortens s to at most n bytes without splitting a UTF-8 sequence.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}

	i := n
	for i > 0 && !utf8.RuneStart(s[i]) {
		i--
	}

	return s[:i]
}
