package supervisor_test

import (
	"context"
	"log/slog"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/asynkron/protoactor-go/actor"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/marmotws/marmot/supervisor"
)

func newTracerProvider(t *testing.T) (*sdktrace.TracerProvider, *tracetest.SpanRecorder) {
	t.Helper()

	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })

	return tp, rec
}

// failureSpan returns the only failure span recorded so far. The strategy
// ends the span before applying the directive, so once the effect of the
// directive has been observed the span is in rec.Ended().
func failureSpan(t *testing.T, rec *tracetest.SpanRecorder) sdktrace.ReadOnlySpan {
	t.Helper()

	var found []sdktrace.ReadOnlySpan

	for _, s := range rec.Ended() {
		if s.Name() == supervisor.SpanName {
			found = append(found, s)
		}
	}

	if len(found) != 1 {
		t.Fatalf("recorded %d %q spans, want 1", len(found), supervisor.SpanName)
	}

	return found[0]
}

func attrs(s sdktrace.ReadOnlySpan) map[attribute.Key]attribute.Value {
	m := make(map[attribute.Key]attribute.Value)
	for _, kv := range s.Attributes() {
		m[kv.Key] = kv.Value
	}

	return m
}

func eventNames(s sdktrace.ReadOnlySpan) []string {
	names := make([]string, 0, len(s.Events()))
	for _, e := range s.Events() {
		names = append(names, e.Name)
	}

	return names
}

func TestSpanForRestart(t *testing.T) {
	tp, rec := newTracerProvider(t)

	h := start(t, supervisor.Config{
		ActorKind:      "connection",
		TracerProvider: tp,
		Attributes: func(child *actor.PID) []attribute.KeyValue {
			return []attribute.KeyValue{attribute.String("marmot.client.id", "client-"+child.Id)}
		},
	})

	h.fail(t, "kaput")
	h.probe.expect(t, evRestarting, evStarted)

	s := failureSpan(t, rec)

	if s.Parent().IsValid() {
		t.Errorf("span has parent %v, want a root span", s.Parent())
	}
	if got := s.InstrumentationScope().Name; got != supervisor.TracerName {
		t.Errorf("tracer = %q, want %q", got, supervisor.TracerName)
	}
	if s.SpanKind() != trace.SpanKindInternal {
		t.Errorf("kind = %v", s.SpanKind())
	}
	if s.Status().Code != codes.Error || s.Status().Description != "kaput" {
		t.Errorf("status = %+v, want Error kaput", s.Status())
	}

	want := map[attribute.Key]attribute.Value{
		supervisor.AttrActorKind:       attribute.StringValue("connection"),
		supervisor.AttrActorPID:        attribute.StringValue(h.child.Id),
		supervisor.AttrFailureReason:   attribute.StringValue("kaput"),
		supervisor.AttrRestartCount:    attribute.IntValue(1),
		supervisor.AttrDirective:       attribute.StringValue("restart"),
		supervisor.AttrBudgetExhausted: attribute.BoolValue(false),
		"marmot.client.id":             attribute.StringValue("client-" + h.child.Id),
	}

	got := attrs(s)
	for k, v := range want {
		if got[k] != v {
			t.Errorf("attribute %s = %v, want %v", k, got[k].Emit(), v.Emit())
		}
	}

	if names := eventNames(s); strings.Join(names, ",") != "exception,"+supervisor.EventRestart {
		t.Errorf("events = %v, want [exception %s]", names, supervisor.EventRestart)
	}

	for _, e := range s.Events() {
		if e.Name != "exception" {
			continue
		}

		for _, kv := range e.Attributes {
			if kv.Key == "exception.message" && kv.Value.AsString() != "kaput" {
				t.Errorf("exception.message = %q, want kaput", kv.Value.AsString())
			}
		}
	}
}

func TestSpanForBudgetExhausted(t *testing.T) {
	tp, rec := newTracerProvider(t)

	h := start(t, supervisor.Config{MaxRestarts: -1, ActorKind: "client", TracerProvider: tp})

	h.fail(t, "kaput")
	h.probe.expect(t, evStopping, evStopped)

	s := failureSpan(t, rec)
	got := attrs(s)

	if got[supervisor.AttrDirective].AsString() != "stop" || !got[supervisor.AttrBudgetExhausted].AsBool() ||
		got[supervisor.AttrRestartCount].AsInt64() != 1 || got[supervisor.AttrActorKind].AsString() != "client" {
		t.Errorf("attributes = %v", s.Attributes())
	}

	if names := eventNames(s); len(names) != 2 || names[1] != supervisor.EventStop {
		t.Errorf("events = %v, want [exception %s]", names, supervisor.EventStop)
	}
}

func TestSpanParentedToTracedMessage(t *testing.T) {
	for _, tc := range []struct {
		name string
		send func(h *harness, msg tracedBoom)
	}{
		{name: "message", send: func(h *harness, msg tracedBoom) { h.system.Root.Send(h.child, msg) }},
		{name: "envelope", send: func(h *harness, msg tracedBoom) {
			// A request with a sender reaches the mailbox as a *MessageEnvelope.
			h.system.Root.RequestWithCustomSender(h.child, msg, h.child)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tp, rec := newTracerProvider(t)
			h := start(t, supervisor.Config{TracerProvider: tp})

			ctx, request := tp.Tracer("test").Start(context.Background(), "request")
			tc.send(h, tracedBoom{ctx: ctx, reason: "kaput"})

			o := recv(t, h.failures, "OnFailure")
			if _, ok := o.Message.(tracedBoom); !ok {
				t.Errorf("Failure.Message = %#v, want the unwrapped tracedBoom", o.Message)
			}

			h.probe.expect(t, evRestarting, evStarted)
			request.End()

			s := failureSpan(t, rec)
			want := request.SpanContext()

			if s.Parent().SpanID() != want.SpanID() || s.SpanContext().TraceID() != want.TraceID() {
				t.Errorf("span parent %v trace %v, want parent %v trace %v",
					s.Parent().SpanID(), s.SpanContext().TraceID(), want.SpanID(), want.TraceID())
			}
		})
	}
}

func TestSpanReasonTruncated(t *testing.T) {
	tp, rec := newTracerProvider(t)
	h := start(t, supervisor.Config{TracerProvider: tp})

	reason := strings.Repeat("é", supervisor.MaxReasonBytes) // 2 bytes per rune
	h.fail(t, reason)
	h.probe.expect(t, evRestarting, evStarted)

	got := attrs(failureSpan(t, rec))[supervisor.AttrFailureReason].AsString()
	if len(got) > supervisor.MaxReasonBytes || !utf8.ValidString(got) || !strings.HasPrefix(reason, got) || len(got) < supervisor.MaxReasonBytes-1 {
		t.Errorf("reason attribute has %d bytes (valid UTF-8: %v), want a %d-byte prefix",
			len(got), utf8.ValidString(got), supervisor.MaxReasonBytes)
	}
}

func TestGlobalTracerProviderByDefault(t *testing.T) {
	// Config.TracerProvider nil uses the global provider at failure time; the
	// global no-op provider must simply work.
	h := start(t, supervisor.Config{})

	if o := h.fail(t, "kaput"); o.Directive != actor.RestartDirective {
		t.Fatalf("directive = %v", o.Directive)
	}

	h.probe.expect(t, evRestarting, evStarted)
}

// recordHandler sends every record to a channel.
type recordHandler struct{ records chan slog.Record }

func (h recordHandler) Enabled(context.Context, slog.Level) bool { return true }

func (h recordHandler) Handle(_ context.Context, r slog.Record) error {
	h.records <- r.Clone()

	return nil
}

func (h recordHandler) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h recordHandler) WithGroup(string) slog.Handler      { return h }

func TestLogger(t *testing.T) {
	records := make(chan slog.Record, 8)
	h := start(t, supervisor.Config{
		ActorKind:   "connection",
		MaxRestarts: -1,
		Logger:      slog.New(recordHandler{records: records}),
	})

	const secret = "payload-that-must-not-be-logged"

	h.system.Root.Send(h.child, boom{reason: "kaput", payload: secret})

	r := recv(t, records, "log record")
	if r.Level != slog.LevelWarn {
		t.Errorf("level = %v, want WARN", r.Level)
	}

	got := map[string]string{}
	r.Attrs(func(a slog.Attr) bool {
		got[a.Key] = a.Value.String()

		return true
	})

	want := map[string]string{
		"kind":             "connection",
		"pid":              h.child.Id,
		"reason":           "kaput",
		"directive":        "stop",
		"restarts":         "1",
		"budget_exhausted": "true",
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("log attr %s = %q, want %q", k, got[k], v)
		}
	}

	for k, v := range got {
		if strings.Contains(v, secret) {
			t.Errorf("log attr %s contains the message payload", k)
		}
	}

	h.expectTerminated(t)
}
