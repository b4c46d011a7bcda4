package test

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.40.0"
	collectortrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/proto"

	"github.com/marmotws/marmot"
	"github.com/marmotws/marmot/protocol"
)

// collector is a minimal OTLP/HTTP trace receiver: it accepts
// POST /v1/traces with a protobuf ExportTraceServiceRequest, as an
// OpenTelemetry Collector or Jaeger would, and keeps the spans by service.
type collector struct {
	srv   *httptest.Server
	mu    sync.Mutex
	spans map[string][]*tracepb.Span // service.name -> spans
	bad   []string                   // requests it could not accept
}

func newCollector(t *testing.T) *collector {
	c := &collector{spans: map[string][]*tracepb.Span{}}
	c.srv = httptest.NewServer(http.HandlerFunc(c.serve))
	t.Cleanup(c.srv.Close)
	return c
}

func (c *collector) serve(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	var req collectortrace.ExportTraceServiceRequest
	if err == nil {
		err = proto.Unmarshal(body, &req)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	switch {
	case r.Method != http.MethodPost || r.URL.Path != "/v1/traces":
		c.bad = append(c.bad, r.Method+" "+r.URL.Path)
		http.NotFound(w, r)
		return
	case r.Header.Get("Content-Type") != "application/x-protobuf":
		c.bad = append(c.bad, "content type "+r.Header.Get("Content-Type"))
	case err != nil:
		c.bad = append(c.bad, err.Error())
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	for _, rs := range req.GetResourceSpans() {
		var service string
		for _, kv := range rs.GetResource().GetAttributes() {
			if kv.GetKey() == string(semconv.ServiceNameKey) {
				service = kv.GetValue().GetStringValue()
			}
		}
		for _, ss := range rs.GetScopeSpans() {
			c.spans[service] = append(c.spans[service], ss.GetSpans()...)
		}
	}
	out, _ := proto.Marshal(&collectortrace.ExportTraceServiceResponse{})
	w.Header().Set("Content-Type", "application/x-protobuf")
	_, _ = w.Write(out)
}

// span returns the span called name that service exported, or nil.
func (c *collector) span(service, name string) *tracepb.Span {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, sp := range c.spans[service] {
		if sp.GetName() == name {
			return sp
		}
	}
	return nil
}

// names lists what the collector received, for failure messages.
func (c *collector) names() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []string
	for service, spans := range c.spans {
		for _, sp := range spans {
			out = append(out, service+"/"+sp.GetName())
		}
	}
	return out
}

// otlpProvider is a TracerProvider for one service that exports to c over
// OTLP/HTTP exactly as a production deployment would (batching included).
func otlpProvider(t *testing.T, c *collector, service string) *sdktrace.TracerProvider {
	t.Helper()
	exp, err := otlptracehttp.New(context.Background(),
		otlptracehttp.WithEndpointURL(c.srv.URL+"/v1/traces"),
		otlptracehttp.WithInsecure())
	if err != nil {
		t.Fatal(err)
	}
	tp := sdktrace.NewTracerProvider(
		sdktrace.WithBatcher(exp),
		sdktrace.WithResource(resource.NewSchemaless(semconv.ServiceName(service))),
	)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := tp.Shutdown(ctx); err != nil {
			t.Errorf("shutdown %s provider: %v", service, err)
		}
	})
	return tp
}

// endWatcher is a span processor that reports when a span with a given name
// ends, so the test flushes only once the server's span is complete.
type endWatcher struct {
	name string
	done chan struct{}
	once sync.Once
}

func (e *endWatcher) OnStart(context.Context, sdktrace.ReadWriteSpan) {}
func (e *endWatcher) Shutdown(context.Context) error                  { return nil }
func (e *endWatcher) ForceFlush(context.Context) error                { return nil }
func (e *endWatcher) OnEnd(s sdktrace.ReadOnlySpan) {
	if s.Name() == e.name {
		e.once.Do(func() { close(e.done) })
	}
}

// TestOTLPExport exports a request/reply over real OTLP/HTTP from a client
// and a server with separate providers and finds one trace at the collector.
func TestOTLPExport(t *testing.T) {
	col := newCollector(t)
	serverTP := otlpProvider(t, col, "otlp-test-server")
	clientTP := otlpProvider(t, col, "otlp-test-client")
	processed := &endWatcher{name: "process echo", done: make(chan struct{})}
	serverTP.RegisterSpanProcessor(processed)

	srv := startServer(t, marmot.ServerConfig{
		TracerProvider: serverTP,
		ServerEvents:   marmot.ServerEvents{OnHandleCommand: echo},
	})
	c, err := marmot.NewClient(marmot.ClientConfig{URL: srv.URL(), Subprotocol: protocol.SubprotocolJSON,
		TracerProvider: clientTP, Logger: logger()})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = c.Close(ctx)
	}()
	ctx := timeout(t)
	if err := c.Connect(ctx); err != nil {
		t.Fatal(err)
	}
	reply, err := c.Request(ctx, "echo", []byte("over otlp"))
	if err != nil || !bytes.Equal(reply, []byte("over otlp")) {
		t.Fatalf("Request = %q, %v", reply, err)
	}
	recv(t, processed.done, "the server's process span to end")
	for _, tp := range []*sdktrace.TracerProvider{clientTP, serverTP} {
		if err := tp.ForceFlush(ctx); err != nil {
			t.Fatalf("flush: %v", err)
		}
	}

	col.mu.Lock()
	if len(col.bad) > 0 {
		t.Errorf("collector rejected: %v", col.bad)
	}
	col.mu.Unlock()
	send := col.span("otlp-test-client", "send echo")
	process := col.span("otlp-test-server", "process echo")
	if send == nil || process == nil {
		t.Fatalf("collector got send=%v process=%v; spans: %v", send != nil, process != nil, col.names())
	}
	if !bytes.Equal(process.GetTraceId(), send.GetTraceId()) || !bytes.Equal(process.GetParentSpanId(), send.GetSpanId()) {
		t.Errorf("server span (trace %x, parent %x) is not the child of the client span (trace %x, span %x)",
			process.GetTraceId(), process.GetParentSpanId(), send.GetTraceId(), send.GetSpanId())
	}
	if send.GetKind() != tracepb.Span_SPAN_KIND_CLIENT || process.GetKind() != tracepb.Span_SPAN_KIND_SERVER {
		t.Errorf("kinds: send %v, process %v", send.GetKind(), process.GetKind())
	}
	var system string
	for _, kv := range process.GetAttributes() {
		if kv.GetKey() == "messaging.system" {
			system = kv.GetValue().GetStringValue()
		}
	}
	if system != "marmot" {
		t.Errorf("server span messaging.system = %q, want marmot", system)
	}
	if col.span("otlp-test-client", "marmot.connect") == nil || col.span("otlp-test-server", "marmot.upgrade") == nil {
		t.Error("connect or upgrade span missing at the collector")
	}
}
