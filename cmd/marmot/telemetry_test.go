package main

import (
	"bufio"
	"context"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"

	collectortrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/proto"
)

// scrape fetches url and returns each sample's value summed per metric name
// (labels dropped): every marmot metric has a single label set per server.
func scrape(t *testing.T, url string) map[string]float64 {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("scrape: %v", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("scrape: %s", resp.Status)
	}
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		name := line[:strings.IndexAny(line, "{ ")]
		fields := strings.Fields(line)
		v, err := strconv.ParseFloat(fields[len(fields)-1], 64)
		if err != nil {
			t.Fatalf("scrape: bad sample %q", line)
		}
		out[name] += v
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

var statsLine = regexp.MustCompile(`total_connections=(\d+) bytes_in=(\d+) bytes_out=(\d+) msgs_in=(\d+) msgs_out=(\d+) refused=(\d+)`)

// TestMetricsEndpoint runs a known workload against "serve --metrics-addr"
// and checks that /metrics says what the workload did and what the server's
// own statistics say at shutdown.
func TestMetricsEndpoint(t *testing.T) {
	srv, url := serve(t, "--metrics-addr", "127.0.0.1:0")
	metricsURL := strings.TrimPrefix(srv.stdout.expect(t, "marmot metrics on "), "marmot metrics on ")
	if !strings.HasPrefix(metricsURL, "http://127.0.0.1:") || !strings.HasSuffix(metricsURL, "/metrics") {
		t.Fatalf("unexpected metrics URL %q", metricsURL)
	}

	msgs := []string{"one", "two", "three"}
	c := connect(t, url)
	for _, m := range msgs {
		c.send(t, m)
		c.stdout.expect(t, "< "+m)
	}
	c.quit(t)
	// After the disconnect every counter is final.
	srv.stderr.expect(t, "client disconnected")

	got := scrape(t, metricsURL)
	bytes := 0
	for _, m := range msgs {
		bytes += len(m)
	}
	want := map[string]float64{
		"marmot_connections_total":              1,
		"marmot_connections_active":             0,
		"marmot_connections_refused_total":      0,
		"marmot_messages_received_total":        float64(len(msgs)),
		"marmot_messages_sent_total":            float64(len(msgs)),
		"marmot_bytes_received_total":           float64(bytes), // raw frames: payload only
		"marmot_bytes_sent_total":               float64(bytes),
		"marmot_actor_restarts_total":           0,
		"marmot_slow_consumer_closes_total":     0,
		"marmot_handler_duration_seconds_count": float64(len(msgs)),
	}
	for name, v := range want {
		if g, ok := got[name]; !ok || g != v {
			t.Errorf("%s = %v (present %v), want %v", name, g, ok, v)
		}
	}
	if _, ok := got["go_goroutines"]; !ok {
		t.Error("the Go runtime's metrics are missing")
	}

	srv.stop(t)
	m := statsLine.FindStringSubmatch(srv.stderr.expect(t, "shutting down"))
	if m == nil {
		t.Fatalf("no statistics in the shutdown line:\n%s", srv.stderr)
	}
	for i, name := range []string{"marmot_connections_total", "marmot_bytes_received_total", "marmot_bytes_sent_total",
		"marmot_messages_received_total", "marmot_messages_sent_total", "marmot_connections_refused_total"} {
		if s, _ := strconv.ParseFloat(m[i+1], 64); s != got[name] {
			t.Errorf("%s = %v, but the server's Stats say %v", name, got[name], s)
		}
	}
	// The endpoint is gone with the server.
	if resp, err := http.Get(metricsURL); err == nil {
		resp.Body.Close()
		t.Errorf("metrics endpoint still answers after exit: %s", resp.Status)
	}
}

func TestMetricsAddrInUse(t *testing.T) {
	busy := httptest.NewServer(http.NotFoundHandler())
	defer busy.Close()
	p := start(t, "serve", "--addr", "127.0.0.1:0", "--metrics-addr", strings.TrimPrefix(busy.URL, "http://"))
	if code := p.wait(t); code != exitFailure {
		t.Fatalf("exit code %d, want %d", code, exitFailure)
	}
	p.stderr.expect(t, "address already in use")
}

// otlpReceiver is an OTLP/HTTP trace endpoint that keeps what it receives.
type otlpReceiver struct {
	*httptest.Server
	mu    sync.Mutex
	spans []receivedSpan
}

type receivedSpan struct {
	service string
	span    *tracepb.Span
}

func newOTLPReceiver(t *testing.T) *otlpReceiver {
	r := &otlpReceiver{}
	r.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if req.Method != http.MethodPost || req.URL.Path != "/v1/traces" {
			http.NotFound(w, req)
			return
		}
		body, err := io.ReadAll(req.Body)
		var msg collectortrace.ExportTraceServiceRequest
		if err == nil {
			err = proto.Unmarshal(body, &msg)
		}
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		r.mu.Lock()
		for _, rs := range msg.GetResourceSpans() {
			service := ""
			for _, kv := range rs.GetResource().GetAttributes() {
				if kv.GetKey() == "service.name" {
					service = kv.GetValue().GetStringValue()
				}
			}
			for _, ss := range rs.GetScopeSpans() {
				for _, sp := range ss.GetSpans() {
					r.spans = append(r.spans, receivedSpan{service: service, span: sp})
				}
			}
		}
		r.mu.Unlock()
		w.Header().Set("Content-Type", "application/x-protobuf")
		out, _ := proto.Marshal(&collectortrace.ExportTraceServiceResponse{})
		_, _ = w.Write(out)
	}))
	t.Cleanup(r.Close)
	return r
}

// find returns the received span called name from service.
func (r *otlpReceiver) find(t *testing.T, service, name string) *tracepb.Span {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	var names []string
	for _, s := range r.spans {
		if s.service == service && s.span.GetName() == name {
			return s.span
		}
		names = append(names, s.service+"/"+s.span.GetName())
	}
	t.Fatalf("no span %s/%s received; got %v", service, name, names)
	return nil
}

// TestOTLPFromEnvironment checks the CLI's trace export wiring: with
// OTEL_EXPORTER_OTLP_TRACES_ENDPOINT set, serve and connect export their
// spans there, flush them on exit, and a request is one trace across both.
func TestOTLPFromEnvironment(t *testing.T) {
	rcv := newOTLPReceiver(t)
	t.Setenv(envOTLPTracesEndpoint, rcv.URL+"/v1/traces")
	t.Setenv("OTEL_TRACES_SAMPLER", "always_on")

	srv, url := serve(t)
	c := connect(t, url, "--subprotocol", "marmot.v1")
	c.send(t, "/req echo traced")
	c.stdout.expect(t, "< [reply] traced")
	c.quit(t)   // flushes the client's spans on exit
	srv.stop(t) // and the server's

	send := rcv.find(t, "marmot-client", "send echo")
	process := rcv.find(t, "marmot-server", "process echo")
	rcv.find(t, "marmot-client", "marmot.connect")
	rcv.find(t, "marmot-server", "marmot.upgrade")
	if hex.EncodeToString(process.GetTraceId()) != hex.EncodeToString(send.GetTraceId()) {
		t.Errorf("server span in trace %x, client span in %x", process.GetTraceId(), send.GetTraceId())
	}
	if hex.EncodeToString(process.GetParentSpanId()) != hex.EncodeToString(send.GetSpanId()) {
		t.Errorf("server span's parent %x, want the client span %x", process.GetParentSpanId(), send.GetSpanId())
	}
}

// TestTraceStdout checks that --trace-stdout prints every finished span to
// stdout, one compact JSON object per line, and nothing of it to stderr,
// which keeps the logs and connection events.
func TestTraceStdout(t *testing.T) {
	t.Setenv(envOTLPEndpoint, "")
	t.Setenv(envOTLPTracesEndpoint, "")
	srv, url := serve(t, "--trace-stdout")
	c := connect(t, url, "--trace-stdout", "--subprotocol", "marmot.v1")
	c.send(t, "/req echo traced")
	c.stdout.expect(t, "< [reply] traced")
	c.quit(t)
	srv.stderr.expect(t, "client disconnected")
	srv.stop(t)

	for _, tc := range []struct {
		p         *proc
		service   string
		spans     []string // span names that must be among the JSON lines
		otherLine string   // the prefix of stdout's other lines
	}{
		{c, "marmot-client", []string{"marmot.connect", "send echo"}, "< "},
		{srv, "marmot-server", []string{"marmot.upgrade", "process echo"}, "marmot listening on "},
	} {
		seen := map[string]bool{}
		for _, line := range tc.p.stdout.all(t) {
			if !strings.HasPrefix(line, "{") {
				if !strings.HasPrefix(line, tc.otherLine) {
					t.Errorf("%s stdout: unexpected line %q", tc.service, line)
				}
				continue
			}
			var span struct {
				Name        string
				SpanContext struct{ TraceID, SpanID string }
				Resource    []struct {
					Key   string
					Value struct{ Value any }
				}
			}
			if err := json.Unmarshal([]byte(line), &span); err != nil {
				t.Errorf("%s stdout: a line that is not one JSON span (%v): %q", tc.service, err, line)
				continue
			}
			if span.Name == "" || span.SpanContext.SpanID == "" {
				t.Errorf("%s stdout: not a span: %q", tc.service, line)
			}
			for _, kv := range span.Resource {
				if kv.Key == "service.name" && kv.Value.Value != tc.service {
					t.Errorf("%s stdout: span %q from service %v", tc.service, span.Name, kv.Value.Value)
				}
			}
			seen[span.Name] = true
		}
		for _, name := range tc.spans {
			if !seen[name] {
				t.Errorf("%s stdout: no %q span; got %v", tc.service, name, seen)
			}
		}
		for _, line := range tc.p.stderr.all(t) {
			if strings.Contains(line, `"SpanContext"`) {
				t.Errorf("%s stderr: a span: %q", tc.service, line)
			}
		}
	}
}

// TestNoExporterWithoutEndpoint checks that tracing stays off (no
// TracerProvider at all) unless an endpoint or --trace-stdout asks for it.
func TestNoExporterWithoutEndpoint(t *testing.T) {
	t.Setenv(envOTLPEndpoint, "")
	t.Setenv(envOTLPTracesEndpoint, "")
	tr, err := setupTracing(context.Background(), "x", &traceFlags{}, io.Discard, io.Discard)
	if err != nil || tr.provider() != nil {
		t.Fatalf("setupTracing = %v, %v; want no provider", tr.provider(), err)
	}
	t.Setenv(envOTLPEndpoint, "http://127.0.0.1:1")
	t.Setenv(envTracesExporter, "none")
	tr, err = setupTracing(context.Background(), "x", &traceFlags{}, io.Discard, io.Discard)
	if err != nil || tr.provider() != nil {
		t.Fatalf("with OTEL_TRACES_EXPORTER=none: %v, %v; want no provider", tr.provider(), err)
	}
}
