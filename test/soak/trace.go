package main

import (
	"context"
	"io"
	"net"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	collectortrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/protobuf/proto"
)

// The soak's trace: the proxy (wire faults), the soak itself (kills) and
// every server process (actor faults) export their spans over OTLP/HTTP,
// as a deployment would to a collector, to a receiver in the soak
// process. The receiver keeps no spans, only the count of "chaos.fault"
// events by kind, which the verdict compares with the faults injected:
// a fault that is not in the trace fails the run.

// Trace kinds: the value of a "chaos.fault" event's attribute of the same
// name, with a wire "shape" split by what it put on the connection.
const (
	traceReset     = "reset"     // a connection reset by the proxy
	traceBlackhole = "blackhole" // a connection blackholed (shape, chaos.blackhole)
	traceBandwidth = "bandwidth" // a connection capped (shape, chaos.bandwidth)
	tracePanic     = "panic"     // an actor panic (actorfault)
	traceKill      = "kill"      // a server or node SIGKILLed (the soak's own span)
)

// traceSink is the in-process OTLP/HTTP trace receiver.
type traceSink struct {
	srv    *http.Server
	url    string // http://ADDR/v1/traces
	mu     sync.Mutex
	counts map[string]int64
	spans  int64
	bad    int64 // requests it could not decode
}

func newTraceSink() (*traceSink, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	s := &traceSink{counts: map[string]int64{}, url: "http://" + ln.Addr().String() + "/v1/traces"}
	s.srv = &http.Server{Handler: http.HandlerFunc(s.serve), ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = s.srv.Serve(ln) }()
	return s, nil
}

func (s *traceSink) close() { _ = s.srv.Close() }

func (s *traceSink) serve(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(io.LimitReader(r.Body, 64<<20))
	var req collectortrace.ExportTraceServiceRequest
	if err == nil {
		err = proto.Unmarshal(body, &req)
	}
	if r.Method != http.MethodPost || r.URL.Path != "/v1/traces" || err != nil {
		s.mu.Lock()
		s.bad++
		s.mu.Unlock()
		http.Error(w, "bad export", http.StatusBadRequest)
		return
	}
	s.mu.Lock()
	for _, rs := range req.GetResourceSpans() {
		for _, ss := range rs.GetScopeSpans() {
			for _, sp := range ss.GetSpans() {
				s.spans++
				for _, ev := range sp.GetEvents() {
					if ev.GetName() != "chaos.fault" {
						continue
					}
					attrs := map[string]any{}
					for _, kv := range ev.GetAttributes() {
						v := kv.GetValue()
						switch {
						case v.GetStringValue() != "":
							attrs[kv.GetKey()] = v.GetStringValue()
						case v.GetIntValue() != 0:
							attrs[kv.GetKey()] = v.GetIntValue()
						default:
							attrs[kv.GetKey()] = v.GetBoolValue()
						}
					}
					s.counts[traceKind(attrs)]++
				}
			}
		}
	}
	s.mu.Unlock()
	out, _ := proto.Marshal(&collectortrace.ExportTraceServiceResponse{})
	w.Header().Set("Content-Type", "application/x-protobuf")
	_, _ = w.Write(out)
}

// traceKind names a chaos.fault event from its attributes.
func traceKind(attrs map[string]any) string {
	kind, _ := attrs["chaos.fault"].(string)
	if kind != "shape" {
		return kind
	}
	switch {
	case attrs["chaos.blackhole"] == true:
		return traceBlackhole
	case attrs["chaos.bandwidth"] != nil && attrs["chaos.bandwidth"] != false:
		return traceBandwidth
	}
	return kind
}

// snapshot returns the counts so far.
func (s *traceSink) snapshot() (counts map[string]int64, spans, bad int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	counts = make(map[string]int64, len(s.counts))
	for k, v := range s.counts {
		counts[k] = v
	}
	return counts, s.spans, s.bad
}

// tracerProvider makes a provider for service that exports to url
// (OTLP/HTTP), batching for at most 200 ms: a process that is SIGKILLed
// has exported what it recorded more than that long before.
func tracerProvider(url, service string) (*sdktrace.TracerProvider, error) {
	exp, err := otlptracehttp.New(context.Background(), otlptracehttp.WithEndpointURL(url), otlptracehttp.WithInsecure())
	if err != nil {
		return nil, err
	}
	return sdktrace.NewTracerProvider(
		sdktrace.WithBatcher(exp, sdktrace.WithBatchTimeout(200*time.Millisecond), sdktrace.WithMaxQueueSize(1<<16)),
		sdktrace.WithResource(resource.NewSchemaless(attribute.String("service.name", service))),
	), nil
}

// recordKill records a kill as the soak's own span, with the same event
// the chaos packages use.
func recordKill(tr trace.Tracer, target string) {
	_, span := tr.Start(context.Background(), "soak.kill", trace.WithAttributes(attribute.String("soak.target", target)))
	span.AddEvent("chaos.fault", trace.WithAttributes(attribute.String("chaos.fault", traceKill), attribute.String("soak.target", target)))
	span.End()
}

// traceCheck compares what the trace shows with what was injected and
// returns what is missing; empty: every fault is in the trace.
func (r *result) traceCheck() []string {
	var out []string
	if r.trace == nil {
		return []string{"no trace was collected"}
	}
	want := func(kind string, injected int64, exact bool) {
		got := r.trace[kind]
		switch {
		case injected > 0 && got == 0:
			out = append(out, "no "+kind+" fault in the trace ("+itoa(injected)+" injected)")
		case exact && got != injected:
			out = append(out, kind+" faults in the trace "+itoa(got)+", injected "+itoa(injected))
		}
	}
	want(traceReset, r.proxy.Resets, true)
	want(traceBlackhole, r.faults[faultBlackhole], false)
	want(traceBandwidth, r.faults[faultBandwidth], false)
	want(tracePanic, r.serverPanics, true)
	want(traceKill, r.faults[faultKill], true)
	if r.traceBad > 0 {
		out = append(out, itoa(r.traceBad)+" trace exports could not be read")
	}
	return out
}

// traceLine is the summary's row of trace counts.
func (r *result) traceLine() string {
	keys := make([]string, 0, len(r.trace))
	for k := range r.trace {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = k + " " + itoa(r.trace[k])
	}
	return strings.Join(parts, ", ") + " (" + itoa(r.traceSpans) + " spans)"
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }
