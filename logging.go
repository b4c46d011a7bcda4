package marmot

import (
	"context"
	"log/slog"

	"go.opentelemetry.io/otel/trace"
)

// Log attribute keys NewLogHandler adds. They follow the OpenTelemetry log
// data model's field names, which log backends (Loki, Elasticsearch, Grafana)
// recognise for jumping from a log line to its trace.
const (
	LogKeyTraceID = "trace_id"
	LogKeySpanID  = "span_id"
)

// NewLogHandler wraps h, adding trace_id and span_id from the record's
// context when a valid span is there, so a log line written with a
// handler's context (logger.InfoContext(m.Context(), ...)) can be found from
// its trace and vice versa. Records logged without a context, or with one
// that carries no span, pass through unchanged and cost one context lookup.
//
// Loggers derived with With or WithGroup keep the wrapping. Inside a group
// the keys are qualified by it like any other attribute (group.trace_id),
// because slog offers no way to add top-level attributes once a group is
// open.
func NewLogHandler(h slog.Handler) slog.Handler {
	if h == nil {
		panic("marmot: NewLogHandler(nil)")
	}
	return traceLogHandler{inner: h}
}

// traceLogHandler is NewLogHandler's handler. It stores the inner handler in
// a named field rather than embedding it, so a method slog adds to Handler in
// the future cannot silently bypass the wrapping.
type traceLogHandler struct {
	inner slog.Handler
}

func (t traceLogHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return t.inner.Enabled(ctx, l)
}

func (t traceLogHandler) Handle(ctx context.Context, r slog.Record) error {
	if sc := trace.SpanContextFromContext(ctx); sc.IsValid() {
		// Other handlers may hold copies of r (a fan-out handler passes the
		// same record to each); adding to a shared record without cloning
		// would corrupt theirs.
		r = r.Clone()
		r.AddAttrs(
			slog.String(LogKeyTraceID, sc.TraceID().String()),
			slog.String(LogKeySpanID, sc.SpanID().String()),
		)
	}
	return t.inner.Handle(ctx, r)
}

func (t traceLogHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return traceLogHandler{inner: t.inner.WithAttrs(attrs)}
}

func (t traceLogHandler) WithGroup(name string) slog.Handler {
	return traceLogHandler{inner: t.inner.WithGroup(name)}
}
