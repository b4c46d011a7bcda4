package cluster_test

import (
	"encoding/hex"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"

	collectortrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/proto"
)

// collector is an in-process OTLP/HTTP trace receiver: it keeps the
// spans the node processes export, by service.name, and signals every
// export on changed.
type collector struct {
	srv     *httptest.Server
	mu      sync.Mutex
	spans   map[string][]*tracepb.Span
	changed chan struct{}
}

func newCollector(t *testing.T) *collector {
	c := &collector{spans: map[string][]*tracepb.Span{}, changed: make(chan struct{}, 1)}
	c.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		var req collectortrace.ExportTraceServiceRequest
		if err == nil {
			err = proto.Unmarshal(body, &req)
		}
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		c.mu.Lock()
		for _, rs := range req.GetResourceSpans() {
			var service string
			for _, kv := range rs.GetResource().GetAttributes() {
				if kv.GetKey() == "service.name" {
					service = kv.GetValue().GetStringValue()
				}
			}
			for _, ss := range rs.GetScopeSpans() {
				c.spans[service] = append(c.spans[service], ss.GetSpans()...)
			}
		}
		c.mu.Unlock()
		select {
		case c.changed <- struct{}{}:
		default:
		}
		out, _ := proto.Marshal(&collectortrace.ExportTraceServiceResponse{})
		w.Header().Set("Content-Type", "application/x-protobuf")
		_, _ = w.Write(out)
	}))
	t.Cleanup(c.srv.Close)
	return c
}

// find returns the trace ID (hex) of the first span of service called
// name, and whether there is one; with trace set, only in that trace.
func (c *collector) find(service, name, trace string) (string, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, s := range c.spans[service] {
		id := hex.EncodeToString(s.GetTraceId())
		if s.GetName() == name && (trace == "" || id == trace) {
			return id, true
		}
	}
	return "", false
}
