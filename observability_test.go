package marmot_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/marmotws/marmot"
	"github.com/marmotws/marmot/protocol"
)

// telemetryKit is one process's worth of in-memory OpenTelemetry: a
// TracerProvider whose finished spans can be awaited and a MeterProvider read
// on demand. Tests give the server and the clients separate kits, so trace
// context can only get from one to the other through the wire, as between
// real processes.
type telemetryKit struct {
	tp     *sdktrace.TracerProvider
	mp     *sdkmetric.MeterProvider
	reader *sdkmetric.ManualReader
	spans  *spanSink
}

func newTelemetryKit(t *testing.T) *telemetryKit {
	t.Helper()
	k := &telemetryKit{
		reader: sdkmetric.NewManualReader(),
		spans:  &spanSink{rec: tracetest.NewSpanRecorder(), changed: make(chan struct{})},
	}
	k.tp = sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(k.spans))
	k.mp = sdkmetric.NewMeterProvider(sdkmetric.WithReader(k.reader))
	// Registered before the servers and clients that use the kit, so it
	// runs after they have stopped (Cleanup is last-in, first-out).
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = k.tp.Shutdown(ctx)
		_ = k.mp.Shutdown(ctx)
	})
	return k
}

// spanSink records finished spans in a tracetest.SpanRecorder and wakes up
// waiters on every one, so tests wait for a span instead of sleeping: many
// spans end on actor goroutines after the reply the test waits for.
type spanSink struct {
	rec     *tracetest.SpanRecorder
	mu      sync.Mutex
	changed chan struct{} // closed and replaced on every ended span
}

func (s *spanSink) OnStart(ctx context.Context, sp sdktrace.ReadWriteSpan) { s.rec.OnStart(ctx, sp) }
func (s *spanSink) Shutdown(ctx context.Context) error                     { return s.rec.Shutdown(ctx) }
func (s *spanSink) ForceFlush(ctx context.Context) error                   { return s.rec.ForceFlush(ctx) }

func (s *spanSink) OnEnd(sp sdktrace.ReadOnlySpan) {
	s.rec.OnEnd(sp)
	s.mu.Lock()
	close(s.changed)
	s.changed = make(chan struct{})
	s.mu.Unlock()
}

// wait returns the first n ended spans that match, waiting for them.
func (s *spanSink) wait(t *testing.T, n int, what string, match func(sdktrace.ReadOnlySpan) bool) []sdktrace.ReadOnlySpan {
	t.Helper()
	timeout := time.After(waitTimeout)
	for {
		s.mu.Lock()
		ch := s.changed
		s.mu.Unlock()
		var got []sdktrace.ReadOnlySpan
		for _, sp := range s.rec.Ended() {
			if match(sp) {
				got = append(got, sp)
			}
		}
		if len(got) >= n {
			return got[:n]
		}
		select {
		case <-ch:
		case <-timeout:
			t.Fatalf("timed out waiting for %d %s span(s); have %d; all ended spans: %s", n, what, len(got), spanNames(s.rec.Ended()))
		}
	}
}

// one waits for the first ended span called name.
func (s *spanSink) one(t *testing.T, name string) sdktrace.ReadOnlySpan {
	t.Helper()
	return s.wait(t, 1, name, named(name))[0]
}

func named(name string) func(sdktrace.ReadOnlySpan) bool {
	return func(sp sdktrace.ReadOnlySpan) bool { return sp.Name() == name }
}

func spanNames(spans []sdktrace.ReadOnlySpan) string {
	names := make([]string, len(spans))
	for i, sp := range spans {
		names[i] = sp.Name()
	}
	return strings.Join(names, ", ")
}

func attr(sp sdktrace.ReadOnlySpan, key attribute.Key) (attribute.Value, bool) {
	for _, kv := range sp.Attributes() {
		if kv.Key == key {
			return kv.Value, true
		}
	}
	return attribute.Value{}, false
}

// wantAttr fails unless sp has key with the value want (compared as
// attribute.Value.Emit, so ints and strings both work).
func wantAttr(t *testing.T, sp sdktrace.ReadOnlySpan, key attribute.Key, want string) {
	t.Helper()
	v, ok := attr(sp, key)
	if !ok {
		t.Errorf("span %q: no attribute %s; have %v", sp.Name(), key, sp.Attributes())
		return
	}
	if v.Emit() != want {
		t.Errorf("span %q: %s = %s, want %s", sp.Name(), key, v.Emit(), want)
	}
}

func echoHandler(m *marmot.Message) { _ = m.Reply(m.Payload) }

// TestTraceRequestReply checks that a request and the server's handling of
// it form one trace: test span → client "send NAME" → server "process NAME",
// with trace context carried in the envelope's meta in both wire formats.
func TestTraceRequestReply(t *testing.T) {
	for _, sub := range []string{protocol.SubprotocolBinary, protocol.SubprotocolJSON} {
		t.Run(sub, func(t *testing.T) {
			serverTel, clientTel := newTelemetryKit(t), newTelemetryKit(t)
			var logs bytes.Buffer
			var logMu sync.Mutex
			handlerLog := slog.New(marmot.NewLogHandler(slog.NewJSONHandler(&lockedBuffer{b: &logs, mu: &logMu}, nil)))
			srv := startServer(t, marmot.ServerConfig{
				TracerProvider: serverTel.tp,
				ServerEvents: marmot.ServerEvents{OnHandleCommand: func(m *marmot.Message) {
					// A log line written with the message's context
					// carries the server span's IDs.
					handlerLog.InfoContext(m.Context(), "handling", "name", m.Name)
					echoHandler(m)
				}},
			})
			c := newClient(t, marmot.ClientConfig{URL: srv.URL(), Subprotocol: sub, TracerProvider: clientTel.tp})
			if err := c.Connect(ctxTimeout(t)); err != nil {
				t.Fatal(err)
			}

			ctx, root := clientTel.tp.Tracer("test").Start(ctxTimeout(t), "test request")
			reply, err := c.Request(ctx, "echo", []byte("ping"))
			root.End()
			if err != nil || string(reply) != "ping" {
				t.Fatalf("Request = %q, %v", reply, err)
			}

			send := clientTel.spans.one(t, "send echo")
			process := serverTel.spans.one(t, "process echo")
			if send.Parent().SpanID() != root.SpanContext().SpanID() {
				t.Errorf("send span's parent %s, want the test span %s", send.Parent().SpanID(), root.SpanContext().SpanID())
			}
			if send.SpanKind() != trace.SpanKindClient || process.SpanKind() != trace.SpanKindServer {
				t.Errorf("kinds: send %v, process %v; want client, server", send.SpanKind(), process.SpanKind())
			}
			if got, want := process.SpanContext().TraceID(), root.SpanContext().TraceID(); got != want {
				t.Errorf("server span in trace %s, want the client's %s", got, want)
			}
			if !process.Parent().IsRemote() || process.Parent().SpanID() != send.SpanContext().SpanID() {
				t.Errorf("server span's parent %s (remote %v), want the client's send span %s",
					process.Parent().SpanID(), process.Parent().IsRemote(), send.SpanContext().SpanID())
			}
			for _, sp := range []sdktrace.ReadOnlySpan{send, process} {
				wantAttr(t, sp, "messaging.system", "marmot")
				wantAttr(t, sp, "messaging.destination.name", "echo")
				wantAttr(t, sp, "messaging.message.body.size", "4")
			}
			wantAttr(t, process, "marmot.message.kind", "request")
			wantAttr(t, process, "marmot.client.id", "1")

			// The upgrade joins the trace of the client's connect span
			// through the traceparent header of the HTTP request.
			connect := clientTel.spans.one(t, "marmot.connect")
			upgrade := serverTel.spans.one(t, "marmot.upgrade")
			if upgrade.Parent().SpanID() != connect.SpanContext().SpanID() {
				t.Errorf("upgrade span's parent %s, want the connect span %s", upgrade.Parent().SpanID(), connect.SpanContext().SpanID())
			}
			wantAttr(t, connect, "server.address", "127.0.0.1")
			wantAttr(t, upgrade, "marmot.subprotocol", sub)

			logMu.Lock()
			line := logs.String()
			logMu.Unlock()
			var rec map[string]any
			if err := json.Unmarshal([]byte(line), &rec); err != nil {
				t.Fatalf("handler log %q: %v", line, err)
			}
			if rec["trace_id"] != process.SpanContext().TraceID().String() || rec["span_id"] != process.SpanContext().SpanID().String() {
				t.Errorf("handler log carries trace_id=%v span_id=%v, want the process span's %s %s",
					rec["trace_id"], rec["span_id"], process.SpanContext().TraceID(), process.SpanContext().SpanID())
			}
		})
	}
}

type lockedBuffer struct {
	b  *bytes.Buffer
	mu *sync.Mutex
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

// TestTraceRequestWithoutContext checks that a peer that sends no trace
// context (any non-marmot client) is served as before, its request starting
// a new trace.
func TestTraceRequestWithoutContext(t *testing.T) {
	serverTel := newTelemetryKit(t)
	srv := startServer(t, marmot.ServerConfig{
		TracerProvider: serverTel.tp,
		ServerEvents:   marmot.ServerEvents{OnHandleCommand: echoHandler},
	})
	ws := dial(t, srv.URL(), protocol.SubprotocolBinary)
	frame, err := protocol.Binary.Append(nil, &protocol.Envelope{Kind: protocol.KindRequest, ID: 7, Name: "echo", Payload: []byte("plain")})
	if err != nil {
		t.Fatal(err)
	}
	if err := ws.WriteMessage(websocket.BinaryMessage, frame); err != nil {
		t.Fatal(err)
	}
	_ = ws.SetReadDeadline(time.Now().Add(waitTimeout))
	_, data, err := ws.ReadMessage()
	if err != nil {
		t.Fatal(err)
	}
	var env protocol.Envelope
	if err := protocol.Binary.Decode(data, &env); err != nil {
		t.Fatal(err)
	}
	if env.Kind != protocol.KindReply || env.ID != 7 || string(env.Payload) != "plain" {
		t.Fatalf("reply %+v", env)
	}
	if len(env.Meta) != 0 {
		t.Errorf("reply carries meta %v; the server injects trace context only into requests it sends", env.Meta)
	}
	process := serverTel.spans.one(t, "process echo")
	if process.Parent().IsValid() {
		t.Errorf("server span has parent %v, want a root span", process.Parent())
	}
	if len(process.Links()) != 0 {
		t.Errorf("server span has links %v", process.Links())
	}
}

// TestTraceBroadcast checks that one broadcast is one producer span with its
// fan-out, and that each receiver's process span links to it (a link, not a
// parent: one send fans out into many independent traces).
func TestTraceBroadcast(t *testing.T) {
	serverTel, clientTel := newTelemetryKit(t), newTelemetryKit(t)
	connected := make(chan struct{}, 3)
	srv := startServer(t, marmot.ServerConfig{
		TracerProvider: serverTel.tp,
		ServerEvents: marmot.ServerEvents{
			OnClientConnected: func(marmot.ClientInfo) { connected <- struct{}{} },
		},
	})
	got := make(chan string, 3)
	for _, sub := range []string{protocol.SubprotocolBinary, protocol.SubprotocolJSON, protocol.SubprotocolBinary} {
		c := newClient(t, marmot.ClientConfig{URL: srv.URL(), Subprotocol: sub, TracerProvider: clientTel.tp,
			ClientEvents: marmot.ClientEvents{OnHandleCommand: func(m *marmot.Message) { got <- string(m.Payload) }}})
		if err := c.Connect(ctxTimeout(t)); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 3 {
		recv(t, connected, "connection "+string(rune('1'+i)))
	}

	ctx, parent := serverTel.tp.Tracer("test").Start(ctxTimeout(t), "test broadcast")
	n, err := srv.BroadcastContext(ctx, []byte("news"))
	parent.End()
	if n != 3 || err != nil {
		t.Fatalf("BroadcastContext = %d, %v; want 3, nil", n, err)
	}
	for range 3 {
		if p := recv(t, got, "broadcast delivery"); p != "news" {
			t.Fatalf("delivered %q", p)
		}
	}

	bc := serverTel.spans.one(t, "broadcast")
	wantAttr(t, bc, "marmot.broadcast.fanout", "3")
	wantAttr(t, bc, "messaging.system", "marmot")
	if bc.SpanKind() != trace.SpanKindProducer {
		t.Errorf("broadcast span kind %v, want producer", bc.SpanKind())
	}
	if bc.Parent().SpanID() != parent.SpanContext().SpanID() {
		t.Errorf("broadcast span's parent %s, want the context's span %s", bc.Parent().SpanID(), parent.SpanContext().SpanID())
	}
	processes := clientTel.spans.wait(t, 3, "client process", named("process"))
	for _, sp := range processes {
		if sp.SpanKind() != trace.SpanKindConsumer {
			t.Errorf("client process span kind %v, want consumer", sp.SpanKind())
		}
		if sp.Parent().IsValid() {
			t.Errorf("client process span has parent %s, want a root linked to the broadcast", sp.Parent().SpanID())
		}
		links := sp.Links()
		if len(links) != 1 || links[0].SpanContext.SpanID() != bc.SpanContext().SpanID() ||
			links[0].SpanContext.TraceID() != bc.SpanContext().TraceID() {
			t.Errorf("client process span links %v, want one link to broadcast span %s", links, bc.SpanContext().SpanID())
		}
	}
	if sp := clientTel.spans.rec.Ended(); countNamed(sp, "process") != 3 {
		t.Errorf("%d client process spans, want 3", countNamed(sp, "process"))
	}
}

// TestTraceTargetedSends checks the Context variants of the one-way sends.
// The server's send to one client is a producer span under the caller's
// span, and the client's process span links to it (a push, like a
// broadcast). The client's send is a producer span whose trace the server's
// process span continues. Raw frames carry no trace context, but the span
// is still recorded.
func TestTraceTargetedSends(t *testing.T) {
	for _, sub := range []string{protocol.SubprotocolBinary, protocol.SubprotocolJSON, ""} {
		name := sub
		if name == "" {
			name = "raw"
		}
		t.Run(name, func(t *testing.T) {
			serverTel, clientTel := newTelemetryKit(t), newTelemetryKit(t)
			ids := make(chan marmot.ClientID, 1)
			atServer := make(chan string, 4)
			srv := startServer(t, marmot.ServerConfig{
				TracerProvider: serverTel.tp,
				ServerEvents: marmot.ServerEvents{
					OnClientConnected: func(ci marmot.ClientInfo) { ids <- ci.ID },
					OnHandleCommand:   func(m *marmot.Message) { atServer <- m.Name + ":" + string(m.Payload) },
				},
			})
			atClient := make(chan string, 4)
			c := newClient(t, marmot.ClientConfig{URL: srv.URL(), Subprotocol: sub, TracerProvider: clientTel.tp,
				ClientEvents: marmot.ClientEvents{OnHandleCommand: func(m *marmot.Message) { atClient <- m.Name + ":" + string(m.Payload) }}})
			if err := c.Connect(ctxTimeout(t)); err != nil {
				t.Fatal(err)
			}
			id := recv(t, ids, "connection")
			raw := sub == ""

			// Server to client.
			ctx, parent := serverTel.tp.Tracer("test").Start(ctxTimeout(t), "test push")
			if err := srv.SendToClientContext(ctx, id, []byte("data")); err != nil {
				t.Fatal(err)
			}
			err := srv.SendCommandToClientContext(ctx, id, "notice", []byte("hi"))
			parent.End()
			if raw {
				if !errors.Is(err, marmot.ErrRawMode) {
					t.Fatalf("SendCommandToClientContext to a raw client = %v, want ErrRawMode", err)
				}
			} else if err != nil {
				t.Fatal(err)
			}
			if got := recv(t, atClient, "data at the client"); got != ":data" {
				t.Fatalf("client got %q", got)
			}
			send := serverTel.spans.one(t, "send")
			if send.Parent().SpanID() != parent.SpanContext().SpanID() || send.SpanKind() != trace.SpanKindProducer {
				t.Errorf("server send span: parent %s kind %v; want the test span %s, producer",
					send.Parent().SpanID(), send.SpanKind(), parent.SpanContext().SpanID())
			}
			wantAttr(t, send, "marmot.client.id", strconv.FormatUint(uint64(id), 10))
			wantAttr(t, send, "messaging.message.body.size", "4")
			if raw {
				failed := serverTel.spans.one(t, "send notice")
				if failed.Status().Code != codes.Error {
					t.Errorf("refused send span status %v, want error", failed.Status())
				}
			} else {
				if got := recv(t, atClient, "command at the client"); got != "notice:hi" {
					t.Fatalf("client got %q", got)
				}
				notice := serverTel.spans.one(t, "send notice")
				wantAttr(t, notice, "messaging.destination.name", "notice")
				for _, want := range []sdktrace.ReadOnlySpan{send, notice} {
					process := clientTel.spans.wait(t, 1, "client process linked to "+want.Name(), func(sp sdktrace.ReadOnlySpan) bool {
						links := sp.Links()
						return strings.HasPrefix(sp.Name(), "process") && len(links) == 1 &&
							links[0].SpanContext.SpanID() == want.SpanContext().SpanID()
					})[0]
					if process.Parent().IsValid() {
						t.Errorf("client %q span has a parent, want a root linked to the send", process.Name())
					}
				}
			}

			// Client to server.
			ctx, root := clientTel.tp.Tracer("test").Start(ctxTimeout(t), "test send")
			if err := c.SendContext(ctx, []byte("up")); err != nil {
				t.Fatal(err)
			}
			root.End()
			if got := recv(t, atServer, "data at the server"); got != ":up" {
				t.Fatalf("server got %q", got)
			}
			up := clientTel.spans.one(t, "send")
			if up.Parent().SpanID() != root.SpanContext().SpanID() {
				t.Errorf("client send span's parent %s, want the test span %s", up.Parent().SpanID(), root.SpanContext().SpanID())
			}
			process := serverTel.spans.one(t, "process")
			if raw {
				if process.SpanContext().TraceID() == root.SpanContext().TraceID() {
					t.Error("a raw frame carried trace context")
				}
				return
			}
			if !process.Parent().IsRemote() || process.Parent().SpanID() != up.SpanContext().SpanID() {
				t.Errorf("server process span's parent %s (remote %v), want the client's send span %s",
					process.Parent().SpanID(), process.Parent().IsRemote(), up.SpanContext().SpanID())
			}
			if err := c.SendCommandContext(ctxTimeout(t), "", nil); !errors.Is(err, marmot.ErrEmptyMessage) {
				t.Errorf("SendCommandContext with no name = %v, want ErrEmptyMessage", err)
			}
		})
	}
}

func countNamed(spans []sdktrace.ReadOnlySpan, name string) int {
	n := 0
	for _, sp := range spans {
		if sp.Name() == name {
			n++
		}
	}
	return n
}

// TestTraceHandlerPanic checks that a handler panic shows up as a failure
// span inside the trace of the request that caused it, child of the server's
// process span, with the supervisor's decision.
func TestTraceHandlerPanic(t *testing.T) {
	serverTel, clientTel := newTelemetryKit(t), newTelemetryKit(t)
	srv := startServer(t, marmot.ServerConfig{
		TracerProvider: serverTel.tp,
		MeterProvider:  serverTel.mp,
		ServerEvents: marmot.ServerEvents{OnHandleCommand: func(m *marmot.Message) {
			if m.Name == "boom" {
				panic("boom requested")
			}
			echoHandler(m)
		}},
	})
	c := newClient(t, marmot.ClientConfig{URL: srv.URL(), Subprotocol: protocol.SubprotocolBinary, TracerProvider: clientTel.tp})
	if err := c.Connect(ctxTimeout(t)); err != nil {
		t.Fatal(err)
	}
	_, err := c.Request(ctxTimeout(t), "boom", nil)
	var re *marmot.RemoteError
	if !errors.As(err, &re) || re.Code != 500 {
		t.Fatalf("Request(boom) error %v, want a 500 RemoteError", err)
	}

	send := clientTel.spans.one(t, "send boom")
	process := serverTel.spans.one(t, "process boom")
	failure := serverTel.spans.one(t, "marmot.actor.failure")
	if failure.Parent().SpanID() != process.SpanContext().SpanID() {
		t.Errorf("failure span's parent %s, want the process span %s", failure.Parent().SpanID(), process.SpanContext().SpanID())
	}
	if failure.SpanContext().TraceID() != send.SpanContext().TraceID() {
		t.Errorf("failure span in trace %s, want the request's %s", failure.SpanContext().TraceID(), send.SpanContext().TraceID())
	}
	wantAttr(t, failure, "marmot.supervisor.directive", "restart")
	wantAttr(t, failure, "marmot.restart.count", "1")
	wantAttr(t, failure, "marmot.actor.kind", "connection")
	wantAttr(t, failure, "marmot.client.id", "1")
	if v, _ := attr(failure, "marmot.failure.reason"); !strings.Contains(v.Emit(), "boom requested") {
		t.Errorf("failure reason %q does not name the panic", v.Emit())
	}
	if process.Status().Code != codes.Error || failure.Status().Code != codes.Error {
		t.Errorf("statuses: process %v, failure %v; want both Error", process.Status(), failure.Status())
	}

	// The restarted actor serves the same connection.
	if reply, err := c.Request(ctxTimeout(t), "echo", []byte("again")); err != nil || string(reply) != "again" {
		t.Fatalf("after restart: %q, %v", reply, err)
	}
	if got := srv.Stats().ActorRestarts; got != 1 {
		t.Errorf("ActorRestarts = %d, want 1", got)
	}
	if got := collectInt(t, serverTel, "marmot.actor.restarts"); got != 1 {
		t.Errorf("marmot.actor.restarts = %d, want 1", got)
	}
}

// TestTraceUpgradeRefused checks that a refused upgrade is recorded with its
// reason.
func TestTraceUpgradeRefused(t *testing.T) {
	serverTel := newTelemetryKit(t)
	srv := startServer(t, marmot.ServerConfig{TracerProvider: serverTel.tp, MeterProvider: serverTel.mp, MaxConnections: 1})
	dial(t, srv.URL(), "")
	_, resp, err := websocket.DefaultDialer.Dial(srv.URL(), nil)
	if err == nil {
		t.Fatal("second connection accepted over MaxConnections 1")
	}
	if resp == nil || resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("second dial: %v, response %v; want 503", err, resp)
	}
	_ = resp.Body.Close()
	refused := serverTel.spans.wait(t, 1, "refused upgrade", func(sp sdktrace.ReadOnlySpan) bool {
		_, ok := attr(sp, "marmot.refusal.reason")
		return sp.Name() == "marmot.upgrade" && ok
	})[0]
	wantAttr(t, refused, "marmot.refusal.reason", "max_connections")
	wantAttr(t, refused, "network.peer.address", "127.0.0.1")
	wantAttr(t, refused, "url.path", "/websocket")
	if refused.Status().Code != codes.Error || refused.SpanKind() != trace.SpanKindServer {
		t.Errorf("refused upgrade: status %v, kind %v; want Error, server", refused.Status(), refused.SpanKind())
	}
	if got := collectInt(t, serverTel, "marmot.connections.refused"); got != 1 || srv.Stats().RefusedConnections != 1 {
		t.Errorf("marmot.connections.refused = %d, Stats %d; want 1", got, srv.Stats().RefusedConnections)
	}
}

// TestTraceReconnectAttempts checks that every reconnect attempt is a
// marmot.connect span numbered from 1, with its delay and error.
func TestTraceReconnectAttempts(t *testing.T) {
	clientTel := newTelemetryKit(t)
	connected := make(chan marmot.ClientID, 1)
	srv, err := marmot.NewServer(marmot.ServerConfig{Logger: quietLogger(), ServerEvents: marmot.ServerEvents{
		OnClientConnected: func(info marmot.ClientInfo) { connected <- info.ID },
	}})
	if err != nil {
		t.Fatal(err)
	}
	// The test serves the server itself so it can refuse every upgrade
	// after the first: reconnects then fail with HTTP 503, without the
	// port being closed and possibly reused by another test's listener.
	var refuse atomic.Bool
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hs := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if refuse.Load() {
			http.Error(w, "refused by the test", http.StatusServiceUnavailable)
			return
		}
		srv.ServeHTTP(w, r)
	})}
	served := make(chan struct{})
	go func() { defer close(served); _ = hs.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = srv.Stop(ctx) // closes the hijacked WebSocket connections
		_ = hs.Shutdown(ctx)
		<-served
	})

	failed := make(chan int, 4)
	gaveUp := make(chan struct{})
	c := newClient(t, marmot.ClientConfig{
		URL:                  "ws://" + ln.Addr().String() + "/websocket",
		TracerProvider:       clientTel.tp,
		MeterProvider:        clientTel.mp,
		AutoReconnect:        true,
		ReconnectInterval:    20 * time.Millisecond,
		MaxReconnectAttempts: 2,
		ClientEvents: marmot.ClientEvents{
			OnReconnectFailed: func(attempt int, _ error) { failed <- attempt },
			OnStateChange: func(_, s marmot.ClientState) {
				if s == marmot.StateError {
					close(gaveUp)
				}
			},
		},
	})
	if err := c.Connect(ctxTimeout(t)); err != nil {
		t.Fatal(err)
	}
	id := recv(t, connected, "connection")
	refuse.Store(true)
	// 1001 is not a "don't come back" code, so the client reconnects.
	if err := srv.Disconnect(id, 1001, "test"); err != nil {
		t.Fatal(err)
	}
	for want := 1; want <= 2; want++ {
		if got := recv(t, failed, "failed reconnect"); got != want {
			t.Fatalf("reconnect attempt %d failed, want %d", got, want)
		}
	}
	recv(t, gaveUp, "state error after MaxReconnectAttempts")

	spans := clientTel.spans.wait(t, 3, "marmot.connect", named("marmot.connect"))
	attempts := map[string]sdktrace.ReadOnlySpan{}
	for _, sp := range spans {
		v, _ := attr(sp, "marmot.reconnect.attempt")
		attempts[v.Emit()] = sp
	}
	for _, a := range []string{"0", "1", "2"} {
		sp, ok := attempts[a]
		if !ok {
			t.Fatalf("no marmot.connect span with attempt %s; got %v", a, attempts)
		}
		if a == "0" {
			if sp.Status().Code == codes.Error {
				t.Errorf("first connect failed: %v", sp.Status())
			}
			continue
		}
		wantAttr(t, sp, "marmot.reconnect.delay_ms", "20")
		if sp.Status().Code != codes.Error || !strings.Contains(sp.Status().Description, "503") {
			t.Errorf("attempt %s: status %v, want an error naming HTTP 503", a, sp.Status())
		}
		if len(sp.Events()) == 0 || sp.Events()[0].Name != "exception" {
			t.Errorf("attempt %s: no exception event recorded", a)
		}
	}
	if got := collectInt(t, clientTel, "marmot.client.reconnect.attempts"); got != 2 || c.Stats().Reconnects != 2 {
		t.Errorf("marmot.client.reconnect.attempts = %d, Stats().Reconnects = %d; want 2", got, c.Stats().Reconnects)
	}
}

// TestMetricsMatchStats runs a known workload and checks that the metrics a
// MeterProvider receives are the server's Stats, and the workload's counts.
func TestMetricsMatchStats(t *testing.T) {
	serverTel := newTelemetryKit(t)
	connected := make(chan struct{}, 2)
	disconnected := make(chan struct{}, 2)
	srv := startServer(t, marmot.ServerConfig{
		MeterProvider: serverTel.mp,
		ServerEvents: marmot.ServerEvents{
			OnHandleCommand:      echoHandler,
			OnClientConnected:    func(marmot.ClientInfo) { connected <- struct{}{} },
			OnClientDisconnected: func(marmot.ClientInfo, *marmot.CloseError) { disconnected <- struct{}{} },
		},
	})
	const perClient = 5
	msg := []byte("metrics!") // 8 bytes
	var clients []*marmot.Client
	for _, sub := range []string{"", protocol.SubprotocolBinary} {
		got := make(chan struct{}, perClient)
		c := newClient(t, marmot.ClientConfig{URL: srv.URL(), Subprotocol: sub,
			ClientEvents: marmot.ClientEvents{OnHandleCommand: func(*marmot.Message) { got <- struct{}{} }}})
		if err := c.Connect(ctxTimeout(t)); err != nil {
			t.Fatal(err)
		}
		recv(t, connected, "connection")
		for range perClient {
			if err := c.Send(msg); err != nil {
				t.Fatal(err)
			}
			recv(t, got, "echo")
		}
		clients = append(clients, c)
	}
	if got := collectInt(t, serverTel, "marmot.connections.active"); got != 2 {
		t.Errorf("marmot.connections.active = %d with two clients, want 2", got)
	}
	// Once both connections are torn down every counter is final.
	for _, c := range clients {
		if err := c.Disconnect(ctxTimeout(t)); err != nil {
			t.Fatal(err)
		}
		recv(t, disconnected, "disconnect")
	}

	st := srv.Stats()
	rm := collect(t, serverTel)
	for _, m := range []struct {
		name  string
		stats int64
		want  int64 // from the workload; -1: whatever Stats says
	}{
		{"marmot.connections.active", int64(st.ClientCount), 0},
		{"marmot.connections.total", st.TotalConnections, 2},
		{"marmot.connections.refused", st.RefusedConnections, 0},
		{"marmot.messages.received", st.TotalMessagesReceived, 2 * perClient},
		{"marmot.messages.sent", st.TotalMessagesSent, 2 * perClient},
		// Raw frames carry 8 bytes; marmot.v1 envelopes add their header,
		// so only Stats knows the exact total.
		{"marmot.bytes.received", st.TotalBytesReceived, -1},
		{"marmot.bytes.sent", st.TotalBytesSent, -1},
		{"marmot.actor.restarts", st.ActorRestarts, 0},
		{"marmot.slow_consumer.closes", st.SlowConsumerCloses, 0},
		{"marmot.handshake.failures", st.HandshakeFailures, 0},
		{"marmot.decrypt.failures", st.DecryptFailures, 0},
		{"marmot.queue.bytes", 0, 0},
		{"marmot.sessions", int64(st.Sessions), 0},
	} {
		got, ok := int64Metric(rm, m.name)
		if !ok {
			t.Errorf("metric %s missing", m.name)
			continue
		}
		if got != m.stats || (m.want >= 0 && got != m.want) {
			t.Errorf("%s = %d; Stats says %d, workload %d", m.name, got, m.stats, m.want)
		}
	}
	if st.TotalBytesReceived <= perClient*int64(len(msg)) {
		t.Errorf("bytes received %d, want more than the raw client's %d", st.TotalBytesReceived, perClient*len(msg))
	}
	h, ok := histogram(rm, "marmot.handler.duration")
	if !ok || h.Count != 2*perClient {
		t.Errorf("marmot.handler.duration count = %d (found %v), want %d", h.Count, ok, 2*perClient)
	}
	for k, want := range map[string]string{"marmot.message.kind": "data", "marmot.side": "server", "marmot.server.name": "127.0.0.1:0"} {
		if v, ok := h.Attributes.Value(attribute.Key(k)); !ok || v.Emit() != want {
			t.Errorf("marmot.handler.duration attribute %s = %q (found %v), want %q", k, v.Emit(), ok, want)
		}
	}
}

// TestMetricsErrorsByKind: every reported error is counted in marmot.errors
// under a bounded kind.
func TestMetricsErrorsByKind(t *testing.T) {
	serverTel := newTelemetryKit(t)
	errs := make(chan error, 4)
	srv := startServer(t, marmot.ServerConfig{
		MeterProvider: serverTel.mp,
		ServerEvents: marmot.ServerEvents{
			OnHandleCommand: func(m *marmot.Message) {
				if string(m.Payload) == "panic" {
					panic("test panic")
				}
			},
			OnError: func(_ marmot.ClientID, err error) { errs <- err },
		},
	})
	ws := dial(t, srv.URL(), protocol.SubprotocolBinary)
	env, err := protocol.Binary.Append(nil, &protocol.Envelope{Kind: protocol.KindData, Payload: []byte("panic")})
	if err != nil {
		t.Fatal(err)
	}
	if err := ws.WriteMessage(websocket.BinaryMessage, env); err != nil {
		t.Fatal(err)
	}
	if err := recv(t, errs, "the panic's error"); !errors.Is(err, marmot.ErrHandlerPanic) {
		t.Fatalf("first error = %v, want ErrHandlerPanic", err)
	}
	if err := ws.WriteMessage(websocket.BinaryMessage, []byte{0xff, 0xff, 0xff}); err != nil {
		t.Fatal(err)
	}
	if err := recv(t, errs, "the protocol error"); !errors.Is(err, protocol.ErrUnsupportedVersion) && !errors.Is(err, protocol.ErrMalformed) {
		t.Fatalf("second error = %v, want a protocol error", err)
	}
	if ce := readClose(t, ws); ce.Code != marmot.CloseProtocolError {
		t.Fatalf("close code %d, want 1002", ce.Code)
	}
	byKind := map[string]int64{}
	for _, sm := range collect(t, serverTel).ScopeMetrics {
		for _, m := range sm.Metrics {
			if m.Name != "marmot.errors" {
				continue
			}
			for _, p := range m.Data.(metricdata.Sum[int64]).DataPoints {
				v, _ := p.Attributes.Value("marmot.error.kind")
				byKind[v.Emit()] += p.Value
			}
		}
	}
	if byKind["panic"] != 1 || byKind["protocol"] != 1 || len(byKind) != 2 {
		t.Fatalf("marmot.errors by kind = %v, want panic 1 and protocol 1", byKind)
	}
}

func collect(t *testing.T, k *telemetryKit) metricdata.ResourceMetrics {
	t.Helper()
	var rm metricdata.ResourceMetrics
	if err := k.reader.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	return rm
}

func collectInt(t *testing.T, k *telemetryKit, name string) int64 {
	t.Helper()
	v, ok := int64Metric(collect(t, k), name)
	if !ok {
		t.Fatalf("metric %s missing", name)
	}
	return v
}

// int64Metric sums an int64 counter's or gauge's data points.
func int64Metric(rm metricdata.ResourceMetrics, name string) (int64, bool) {
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if m.Name != name {
				continue
			}
			var sum int64
			switch d := m.Data.(type) {
			case metricdata.Sum[int64]:
				for _, p := range d.DataPoints {
					sum += p.Value
				}
			case metricdata.Gauge[int64]:
				for _, p := range d.DataPoints {
					sum += p.Value
				}
			default:
				return 0, false
			}
			return sum, true
		}
	}
	return 0, false
}

func histogram(rm metricdata.ResourceMetrics, name string) (metricdata.HistogramDataPoint[float64], bool) {
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if h, ok := m.Data.(metricdata.Histogram[float64]); ok && m.Name == name && len(h.DataPoints) == 1 {
				return h.DataPoints[0], true
			}
		}
	}
	return metricdata.HistogramDataPoint[float64]{}, false
}

// TestLogHandler checks NewLogHandler's contract: IDs with a valid span,
// nothing without, and the wrapping survives With and WithGroup.
func TestLogHandler(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(marmot.NewLogHandler(slog.NewJSONHandler(&buf, nil)))
	sc := trace.NewSpanContext(trace.SpanContextConfig{
		TraceID:    trace.TraceID{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16},
		SpanID:     trace.SpanID{1, 2, 3, 4, 5, 6, 7, 8},
		TraceFlags: trace.FlagsSampled,
	})
	ctx := trace.ContextWithSpanContext(context.Background(), sc)
	lines := func() []map[string]any {
		var out []map[string]any
		for _, l := range strings.Split(strings.TrimSpace(buf.String()), "\n") {
			var m map[string]any
			if err := json.Unmarshal([]byte(l), &m); err != nil {
				t.Fatalf("%q: %v", l, err)
			}
			out = append(out, m)
		}
		buf.Reset()
		return out
	}

	log.InfoContext(ctx, "with span")
	log.Info("without span")
	log.InfoContext(context.Background(), "without span either")
	got := lines()
	if got[0]["trace_id"] != sc.TraceID().String() || got[0]["span_id"] != sc.SpanID().String() {
		t.Errorf("with a span: %v", got[0])
	}
	for _, l := range got[1:] {
		if _, ok := l["trace_id"]; ok {
			t.Errorf("without a span: %v", l)
		}
	}

	log.With("k", "v").InfoContext(ctx, "derived")
	log.WithGroup("g").InfoContext(ctx, "grouped", "x", 1)
	got = lines()
	if got[0]["trace_id"] != sc.TraceID().String() || got[0]["k"] != "v" {
		t.Errorf("With lost the wrapping: %v", got[0])
	}
	g, _ := got[1]["g"].(map[string]any)
	if g["trace_id"] != sc.TraceID().String() {
		t.Errorf("WithGroup lost the wrapping: %v", got[1])
	}
}

// TestTracePublish: a room publish is a producer span naming the room, and
// the members' process spans link to it, as for a broadcast.
func TestTracePublish(t *testing.T) {
	serverTel, clientTel := newTelemetryKit(t), newTelemetryKit(t)
	srv := startServer(t, marmot.ServerConfig{TracerProvider: serverTel.tp})
	got := make(chan string, 2)
	for _, sub := range []string{protocol.SubprotocolBinary, protocol.SubprotocolJSON} {
		c := newClient(t, marmot.ClientConfig{URL: srv.URL(), Subprotocol: sub, TracerProvider: clientTel.tp,
			ClientEvents: marmot.ClientEvents{OnHandleCommand: func(m *marmot.Message) { got <- string(m.Payload) }}})
		if err := c.Connect(ctxTimeout(t)); err != nil {
			t.Fatal(err)
		}
		if err := c.Join(ctxTimeout(t), "lobby"); err != nil {
			t.Fatal(err)
		}
	}
	if n, err := srv.Publish("lobby", []byte("news")); n != 2 || err != nil {
		t.Fatalf("Publish = %d, %v; want 2, nil", n, err)
	}
	for range 2 {
		if p := recv(t, got, "room delivery"); p != "news" {
			t.Fatalf("delivered %q", p)
		}
	}
	pub := serverTel.spans.one(t, "publish")
	wantAttr(t, pub, "marmot.room", "lobby")
	wantAttr(t, pub, "marmot.broadcast.fanout", "2")
	if pub.SpanKind() != trace.SpanKindProducer {
		t.Errorf("publish span kind %v, want producer", pub.SpanKind())
	}
	for _, sp := range clientTel.spans.wait(t, 2, "client process", named("process")) {
		links := sp.Links()
		if len(links) != 1 || links[0].SpanContext.SpanID() != pub.SpanContext().SpanID() {
			t.Errorf("client process span links %v, want one link to publish span %s", links, pub.SpanContext().SpanID())
		}
	}
}
