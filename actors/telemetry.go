package actors

import (
	"context"
	"net"
	"reflect"
	"strconv"
	"time"

	"github.com/marmotws/marmot/protocol"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	metricnoop "go.opentelemetry.io/otel/metric/noop"
	"go.opentelemetry.io/otel/propagation"
	semconv "go.opentelemetry.io/otel/semconv/v1.40.0"
	"go.opentelemetry.io/otel/trace"
	tracenoop "go.opentelemetry.io/otel/trace/noop"
)

// InstrumentationName names marmot's tracer and meter.
const InstrumentationName = "github.com/marmotws/marmot"

// MessagingSystem is the messaging.system attribute of marmot's spans.
const MessagingSystem = "marmot"

// Attribute keys marmot adds where OpenTelemetry has no convention; see
// docs/OBSERVABILITY.md.
const (
	AttrClientID       = attribute.Key("marmot.client.id")
	AttrMessageKind    = attribute.Key("marmot.message.kind")
	AttrSubprotocol    = attribute.Key("marmot.subprotocol")
	AttrTransport      = attribute.Key("marmot.transport") // "websocket" or "http"
	AttrRefusalReason  = attribute.Key("marmot.refusal.reason")
	AttrFanout         = attribute.Key("marmot.broadcast.fanout")
	AttrRoom           = attribute.Key("marmot.room")
	AttrAttempt        = attribute.Key("marmot.reconnect.attempt")
	AttrDelay          = attribute.Key("marmot.reconnect.delay_ms")
	AttrServerName     = attribute.Key("marmot.server.name")
	AttrEncrypted      = attribute.Key("marmot.encrypted")
	AttrCloseCode      = attribute.Key("marmot.close.code")
	AttrMessageDropped = attribute.Key("marmot.message.dropped")
	AttrSide           = attribute.Key("marmot.side") // "server" or "client", on metrics
)

// AttrHandshakeVersion is the secure handshake's version on an accepted
// upgrade: 2, or 1 for a legacy client (no forward secrecy).
const AttrHandshakeVersion = attribute.Key("marmot.handshake.version")

// telemetry bundles a hub's or client's tracer, propagator and instruments.
// With the default no-op providers every call is a cheap no-op, and trace
// context is only injected into envelopes when a span is valid.
type telemetry struct {
	tracer     trace.Tracer
	prop       propagation.TextMapPropagator
	handlerDur metric.Float64Histogram
	fanout     metric.Int64Histogram
	reconnects metric.Int64Counter
	errors     metric.Int64Counter
	meter      metric.Meter
	// labels are on every metric this telemetry records (the server's
	// name, or the client side); durOpts holds the handler-duration
	// options per message kind, built once.
	labels  []attribute.KeyValue
	durOpts map[protocol.Kind][]metric.RecordOption

	// Per-message work is skipped while nobody could see it: the providers
	// are no-ops, or the OpenTelemetry globals still hold their built-in
	// defaults (then a later otel.SetTracerProvider turns tracing on).
	tracesOff  func() bool
	metricsOff func() bool
}

// offWhile returns a check that reports whether current still returns
// unset, the global's built-in default.
func offWhile[T comparable](unset T, current func() T) func() bool {
	return func() bool { return current() == unset }
}

func alwaysOff() bool { return true }
func neverOff() bool  { return false }

// isGlobalDefault reports whether p is the OpenTelemetry global's built-in
// delegating default (otel/internal/global), which records nothing until a
// real provider is installed.
func isGlobalDefault(p any) bool {
	n := reflect.TypeOf(p).String()
	return n == "*global.tracerProvider" || n == "*global.meterProvider"
}

func newTelemetry(tp trace.TracerProvider, mp metric.MeterProvider, prop propagation.TextMapPropagator, labels ...attribute.KeyValue) *telemetry {
	if prop == nil {
		prop = propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{})
	}
	t := &telemetry{prop: prop, tracesOff: neverOff, metricsOff: neverOff}
	if tp == nil {
		tp = otel.GetTracerProvider()
		if isGlobalDefault(tp) {
			t.tracesOff = offWhile(tp, otel.GetTracerProvider)
		}
	} else if _, ok := tp.(tracenoop.TracerProvider); ok {
		t.tracesOff = alwaysOff
	}
	if mp == nil {
		mp = otel.GetMeterProvider()
		if isGlobalDefault(mp) {
			t.metricsOff = offWhile(mp, otel.GetMeterProvider)
		}
	} else if _, ok := mp.(metricnoop.MeterProvider); ok {
		t.metricsOff = alwaysOff
	}
	t.tracer = tp.Tracer(InstrumentationName)
	t.meter = mp.Meter(InstrumentationName)
	// Instrument creation only fails on invalid names; ours are constant.
	t.handlerDur, _ = t.meter.Float64Histogram("marmot.handler.duration", metric.WithUnit("s"),
		metric.WithDescription("Time spent in OnHandleCommand per message."),
		metric.WithExplicitBucketBoundaries(handlerBuckets...))
	t.fanout, _ = t.meter.Int64Histogram("marmot.broadcast.fanout", metric.WithUnit("{connection}"),
		metric.WithDescription("Recipients per broadcast."))
	t.reconnects, _ = t.meter.Int64Counter("marmot.client.reconnect.attempts", metric.WithUnit("{attempt}"),
		metric.WithDescription("Reconnect attempts made by clients."))
	t.errors, _ = t.meter.Int64Counter("marmot.errors", metric.WithUnit("{error}"),
		metric.WithDescription("Errors reported to OnError (or logged), by kind."))
	t.labels = labels
	// Message kinds are few and fixed; command names are not labels: they
	// come from peers, and a metric label a peer chooses is a metric a peer
	// can grow without bound.
	t.durOpts = make(map[protocol.Kind][]metric.RecordOption)
	for _, k := range []protocol.Kind{protocol.KindData, protocol.KindCommand, protocol.KindRequest} {
		set := attribute.NewSet(append([]attribute.KeyValue{AttrMessageKind.String(k.String())}, labels...)...)
		t.durOpts[k] = []metric.RecordOption{metric.WithAttributeSet(set)}
	}
	return t
}

// countError counts one reported error of kind.
func (t *telemetry) countError(kind string) {
	if t.metricsOff() {
		return
	}
	t.errors.Add(context.Background(), 1, metric.WithAttributes(append([]attribute.KeyValue{AttrErrorKind.String(kind)}, t.labels...)...))
}

// handlerBuckets are marmot.handler.duration's bucket bounds in seconds. The
// SDK's default bounds (0, 5, 10, ... 10000) suit milliseconds: in seconds
// every handler would land in the first bucket. Handlers usually take
// microseconds, so the bounds start at 10µs and reach 10s for slow ones.
var handlerBuckets = []float64{
	0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005,
	0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10,
}

// inject writes ctx's trace context into meta (allocating it when needed);
// without a valid span it leaves meta alone, so tracing off costs nothing.
func (t *telemetry) inject(ctx context.Context, meta map[string]string) map[string]string {
	if !trace.SpanContextFromContext(ctx).IsValid() {
		return meta
	}
	if meta == nil {
		meta = make(map[string]string, 2)
	}
	t.prop.Inject(ctx, propagation.MapCarrier(meta))
	return meta
}

func (t *telemetry) extract(meta map[string]string) context.Context {
	if len(meta) == 0 {
		return context.Background()
	}
	return t.prop.Extract(context.Background(), propagation.MapCarrier(meta))
}

// startProcess opens the span of one inbound application message. Requests
// and direct messages continue the sender's trace; pushes from a server
// (broadcasts) link to it instead, since one send fans out to many traces.
// Attributes are only built for a recording span; with tracing off there is
// no span at all (nil), and the context is context.Background().
func (t *telemetry) startProcess(m *Message, link bool) (context.Context, trace.Span) {
	if t.tracesOff() {
		return context.Background(), nil
	}
	kind := trace.SpanKindConsumer
	if m.IsRequest() {
		kind = trace.SpanKindServer
	}
	parent := context.Background()
	var remote trace.SpanContext
	if len(m.Meta) > 0 {
		remote = trace.SpanContextFromContext(t.extract(m.Meta))
		if remote.IsValid() && !link {
			parent = trace.ContextWithRemoteSpanContext(parent, remote)
		}
	}
	name := "process"
	if m.Name != "" {
		name = "process " + m.Name
	}
	ctx, span := t.tracer.Start(parent, name, trace.WithSpanKind(kind))
	if !span.IsRecording() {
		return ctx, span
	}
	span.SetAttributes(
		semconv.MessagingSystemKey.String(MessagingSystem),
		semconv.MessagingOperationTypeProcess,
		semconv.MessagingOperationNameKey.String("process"),
		semconv.MessagingMessageBodySizeKey.Int(len(m.Payload)),
		AttrMessageKind.String(m.Kind.String()),
	)
	if m.ClientID != 0 {
		span.SetAttributes(AttrClientID.Int64(int64(m.ClientID)))
	}
	if m.Identity != nil && m.Identity.UserID != "" {
		span.SetAttributes(semconv.EnduserIDKey.String(m.Identity.UserID))
	}
	if m.Name != "" {
		span.SetAttributes(semconv.MessagingDestinationNameKey.String(m.Name))
	}
	if m.id != 0 {
		span.SetAttributes(semconv.MessagingMessageIDKey.String(strconv.FormatUint(m.id, 10)))
	}
	if link && remote.IsValid() {
		span.AddLink(trace.Link{SpanContext: remote})
	}
	return ctx, span
}

// finishProcess ends a process span, marking a panic that is on its way to
// the supervisor.
func (t *telemetry) finishProcess(ctx context.Context, span trace.Span, start time.Time, kind protocol.Kind, panicked any) {
	if span != nil {
		if panicked != nil {
			span.SetStatus(codes.Error, "handler panicked")
		}
		span.End()
	}
	if !start.IsZero() {
		t.handlerDur.Record(ctx, time.Since(start).Seconds(), t.durOpts[kind]...)
	}
}

// handlerStart is the start time for marmot.handler.duration, or zero when
// no meter would record it.
func (t *telemetry) handlerStart() time.Time {
	if t.metricsOff() {
		return time.Time{}
	}
	return time.Now()
}

// sendAttrs are the attributes of a producer span: operation is "send" or
// "broadcast", name the command's name (none for data), size the payload's
// length; extra come first.
func sendAttrs(operation, name string, size int, extra ...attribute.KeyValue) []attribute.KeyValue {
	attrs := make([]attribute.KeyValue, 0, len(extra)+5)
	attrs = append(append(attrs, extra...),
		semconv.MessagingSystemKey.String(MessagingSystem),
		semconv.MessagingOperationTypeSend,
		semconv.MessagingOperationNameKey.String(operation),
		semconv.MessagingMessageBodySizeKey.Int(size),
	)
	if name != "" {
		attrs = append(attrs, semconv.MessagingDestinationNameKey.String(name))
	}
	return attrs
}

func peerAttrs(addr net.Addr) []attribute.KeyValue {
	if addr == nil {
		return nil
	}
	host, port, err := net.SplitHostPort(addr.String())
	if err != nil {
		return []attribute.KeyValue{semconv.NetworkPeerAddressKey.String(addr.String())}
	}
	p, _ := strconv.Atoi(port)
	return []attribute.KeyValue{semconv.NetworkPeerAddressKey.String(host), semconv.NetworkPeerPortKey.Int(p)}
}

func serverAttrs(hostport string) []attribute.KeyValue {
	host, port, err := net.SplitHostPort(hostport)
	if err != nil {
		return []attribute.KeyValue{semconv.ServerAddressKey.String(hostport)}
	}
	p, _ := strconv.Atoi(port)
	return []attribute.KeyValue{semconv.ServerAddressKey.String(host), semconv.ServerPortKey.Int(p)}
}

// registerHubMetrics exposes the hub's counters as observable instruments,
// read from the same atomics as Stats so both always agree.
func (h *Hub) registerHubMetrics() {
	m := h.tel.meter
	mk := func(name, unit, desc string) metric.Int64ObservableCounter {
		c, _ := m.Int64ObservableCounter(name, metric.WithUnit(unit), metric.WithDescription(desc))
		return c
	}
	active, _ := m.Int64ObservableGauge("marmot.connections.active", metric.WithUnit("{connection}"),
		metric.WithDescription("Open connections (the seed's ClientCount)."))
	queued, _ := m.Int64ObservableGauge("marmot.queue.bytes", metric.WithUnit("By"),
		metric.WithDescription("Bytes waiting in outbound queues."))
	sessions, _ := m.Int64ObservableGauge("marmot.sessions", metric.WithUnit("{session}"),
		metric.WithDescription("Clients' sessions kept, attached or waiting to be resumed."))
	total := mk("marmot.connections.total", "{connection}", "Connections accepted (the seed's TotalConnections).")
	refused := mk("marmot.connections.refused", "{connection}", "Upgrades refused at MaxConnections.")
	bytesIn := mk("marmot.bytes.received", "By", "Wire payload bytes received (the seed's TotalBytesReceived).")
	bytesOut := mk("marmot.bytes.sent", "By", "Wire payload bytes sent (the seed's TotalBytesSent).")
	msgsIn := mk("marmot.messages.received", "{message}", "Messages received (the seed's TotalMessagesReceived).")
	msgsOut := mk("marmot.messages.sent", "{message}", "Messages sent (the seed's TotalMessagesSent).")
	slow := mk("marmot.slow_consumer.closes", "{connection}", "Connections closed as slow consumers.")
	restarts := mk("marmot.actor.restarts", "{restart}", "Connection actor restarts after handler panics.")
	handshakes := mk("marmot.handshake.failures", "{connection}", "Connections refused by the encryption requirement or handshake.")
	decrypts := mk("marmot.decrypt.failures", "{frame}", "Encrypted frames that failed to open.")
	origins := mk("marmot.origin.refusals", "{connection}", "Upgrades refused (403) for their Origin.")
	ipLimits := mk("marmot.ip_limit.refusals", "{connection}", "Upgrades refused (429) by the per-IP connection rate or count.")
	auths := mk("marmot.auth.refusals", "{connection}", "Connections refused by authentication (401, 403, 4503).")
	expired := mk("marmot.auth.expired", "{connection}", "Connections closed because their identity expired (4001).")
	limited := mk("marmot.rate_limited", "{message}", "Inbound messages over their connection's message or byte rate.")
	var attrs metric.MeasurementOption = metric.WithAttributes()
	if h.cfg.Name != "" {
		attrs = metric.WithAttributes(AttrServerName.String(h.cfg.Name))
	}
	reg, err := m.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		st := h.Stats()
		o.ObserveInt64(active, int64(st.ClientCount), attrs)
		o.ObserveInt64(total, st.TotalConnections, attrs)
		o.ObserveInt64(refused, st.RefusedConnections, attrs)
		o.ObserveInt64(bytesIn, st.TotalBytesReceived, attrs)
		o.ObserveInt64(bytesOut, st.TotalBytesSent, attrs)
		o.ObserveInt64(msgsIn, st.TotalMessagesReceived, attrs)
		o.ObserveInt64(msgsOut, st.TotalMessagesSent, attrs)
		o.ObserveInt64(slow, st.SlowConsumerCloses, attrs)
		o.ObserveInt64(restarts, st.ActorRestarts, attrs)
		o.ObserveInt64(handshakes, st.HandshakeFailures, attrs)
		o.ObserveInt64(decrypts, st.DecryptFailures, attrs)
		o.ObserveInt64(origins, st.OriginRefusals, attrs)
		o.ObserveInt64(ipLimits, st.IPLimitRefusals, attrs)
		o.ObserveInt64(auths, st.AuthRefusals, attrs)
		o.ObserveInt64(expired, st.ExpiredCloses, attrs)
		o.ObserveInt64(limited, st.RateLimited, attrs)
		o.ObserveInt64(queued, h.queuedBytes(), attrs)
		o.ObserveInt64(sessions, int64(st.Sessions), attrs)
		return nil
	}, active, queued, sessions, total, refused, bytesIn, bytesOut, msgsIn, msgsOut, slow, restarts, handshakes, decrypts,
		origins, ipLimits, auths, expired, limited)
	if err == nil {
		h.metricsReg = reg
	}
}

func (h *Hub) queuedBytes() int64 {
	var n int64
	h.regMu.RLock()
	for _, c := range h.conns {
		n += c.link.out.queued.Load()
	}
	h.regMu.RUnlock()
	return n
}
