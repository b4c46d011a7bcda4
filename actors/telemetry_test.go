package actors

import (
	"testing"

	"go.opentelemetry.io/otel"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	tracenoop "go.opentelemetry.io/otel/trace/noop"
)

// globalSetByTest records that the global provider is no longer the
// built-in default because this test set it.
var globalSetByTest bool

// Per-message spans are skipped only while nobody could record them, and a
// global provider installed later is honoured from then on.
func TestTelemetrySkipsSpansOnlyWhileOff(t *testing.T) {
	if !newTelemetry(tracenoop.NewTracerProvider(), nil, nil).tracesOff() {
		t.Fatal("tracesOff() = false with a noop provider")
	}
	rec := tracetest.NewSpanRecorder()
	sdk := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	if newTelemetry(sdk, nil, nil).tracesOff() {
		t.Fatal("tracesOff() = true with an SDK provider")
	}

	if globalSetByTest {
		t.Skip("the global tracer provider was set by an earlier run (-count > 1)")
	}
	global := newTelemetry(nil, nil, nil)
	if !global.tracesOff() || !global.metricsOff() {
		t.Fatalf("with unset globals: tracesOff %v, metricsOff %v; want both true (did otel rename its default provider types?)",
			global.tracesOff(), global.metricsOff())
	}
	otel.SetTracerProvider(sdk)
	globalSetByTest = true
	if global.tracesOff() {
		t.Fatal("tracesOff() still true after otel.SetTracerProvider")
	}
	_, span := global.startProcess(&Message{}, false)
	if span == nil {
		t.Fatal("no process span after otel.SetTracerProvider")
	}
	span.End()
	if got := len(rec.Ended()); got != 1 {
		t.Fatalf("recorded %d spans, want 1", got)
	}
}
