package marmot_test

import (
	"context"
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

	"github.com/marmotws/marmot"
)

// dialStatus tries a WebSocket upgrade and returns the HTTP status it got
// (101 when it succeeded).
func dialStatus(t *testing.T, url string) int {
	t.Helper()
	d := websocket.Dialer{HandshakeTimeout: 10 * time.Second}
	ws, resp, err := d.Dial(url, nil)
	if err == nil {
		ws.Close()
		return resp.StatusCode
	}
	if resp == nil {
		t.Fatalf("dial %s: %v", url, err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// TestServerCustomPath: Start serves the configured Path, normalised to
// start with a slash, and nothing else.
func TestServerCustomPath(t *testing.T) {
	s := startServer(t, marmot.ServerConfig{Path: "api/live", ServerEvents: marmot.ServerEvents{
		OnHandleCommand: func(m *marmot.Message) { _ = m.Reply(m.Payload) },
	}})
	if p := s.Config().Path; p != "/api/live" {
		t.Fatalf("Config().Path = %q", p)
	}
	base := "ws://" + s.Addr().String()
	if u := s.URL(); u != base+"/api/live" {
		t.Fatalf("URL() = %q", u)
	}
	ws := dial(t, base+"/api/live", "")
	if err := ws.WriteMessage(websocket.TextMessage, []byte("here")); err != nil {
		t.Fatal(err)
	}
	_ = ws.SetReadDeadline(time.Now().Add(waitTimeout))
	if _, got, err := ws.ReadMessage(); err != nil || string(got) != "here" {
		t.Fatalf("echo on the custom path: %q %v", got, err)
	}
	for _, p := range []string{"/websocket", "/", "/api", "/api/live/", "/api/live/x", "/api/livex"} {
		if code := dialStatus(t, base+p); code != http.StatusNotFound {
			t.Errorf("%s: HTTP %d, want 404", p, code)
		}
	}
	if st := s.Stats(); st.TotalConnections != 1 {
		t.Fatalf("connections %d, want 1", st.TotalConnections)
	}
}

// TestClientHostPortPath: without URL the client dials Host, Port and Path
// (the path normalised like the server's); URL overrides them.
func TestClientHostPortPath(t *testing.T) {
	s := startServer(t, marmot.ServerConfig{Path: "/api/live", ServerEvents: marmot.ServerEvents{
		OnHandleCommand: func(m *marmot.Message) { _ = m.Reply(m.Payload) },
	}})
	host, portText, err := net.SplitHostPort(s.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	port, err := strconv.Atoi(portText)
	if err != nil {
		t.Fatal(err)
	}

	got := make(chan string, 1)
	c := newClient(t, marmot.ClientConfig{Host: host, Port: port, Path: "api/live", ClientEvents: marmot.ClientEvents{
		OnHandleCommand: func(m *marmot.Message) { got <- string(m.Payload) },
	}})
	if want := "ws://" + net.JoinHostPort(host, portText) + "/api/live"; c.URL() != want {
		t.Fatalf("URL() = %q, want %q", c.URL(), want)
	}
	if err := c.Connect(ctxTimeout(t)); err != nil {
		t.Fatal(err)
	}
	if err := c.Send([]byte("via host, port and path")); err != nil {
		t.Fatal(err)
	}
	if g := recv(t, got, "echo"); g != "via host, port and path" {
		t.Fatalf("echo %q", g)
	}

	// The default Path is /websocket, which this server does not serve.
	c2 := newClient(t, marmot.ClientConfig{Host: host, Port: port})
	if want := "ws://" + net.JoinHostPort(host, portText) + "/websocket"; c2.URL() != want {
		t.Fatalf("URL() = %q, want %q", c2.URL(), want)
	}
	if err := c2.Connect(ctxTimeout(t)); err == nil || !strings.Contains(err.Error(), "404") {
		t.Fatalf("connect to an unserved path: %v", err)
	}

	// URL wins over Host, Port and Path.
	c3 := newClient(t, marmot.ClientConfig{URL: s.URL(), Host: "nowhere.invalid", Port: 1, Path: "/nope"})
	if c3.URL() != s.URL() {
		t.Fatalf("URL() = %q, want %q", c3.URL(), s.URL())
	}
	if err := c3.Connect(ctxTimeout(t)); err != nil {
		t.Fatal(err)
	}

	// The defaults point at a marmot server's defaults.
	c4 := newClient(t, marmot.ClientConfig{})
	if c4.URL() != "ws://localhost:8080/websocket" {
		t.Fatalf("default URL() = %q", c4.URL())
	}
	if _, err := marmot.NewClient(marmot.ClientConfig{Port: 70000}); err == nil {
		t.Fatal("Port 70000 accepted")
	}
}

// TestHandlerConcurrency: with HandlerConcurrency N, N handlers of
// different connections run at once and an N+1st waits for one of them to
// return; with a negative value every connection's handler runs at once.
func TestHandlerConcurrency(t *testing.T) {
	const conns = 8
	for _, limit := range []int{3, 1, -1} {
		t.Run(strconv.Itoa(limit), func(t *testing.T) {
			var active, peak atomic.Int64
			var bad violations
			entered := make(chan marmot.ClientID, conns)
			received := make(chan struct{}, conns)
			release := make(chan struct{})
			var once sync.Once
			releaseAll := func() { once.Do(func() { close(release) }) }
			s := startServer(t, marmot.ServerConfig{HandlerConcurrency: limit, ServerEvents: marmot.ServerEvents{
				OnDataReceived: func(marmot.ClientID, []byte) { received <- struct{}{} },
				OnHandleCommand: func(m *marmot.Message) {
					n := active.Add(1)
					for p := peak.Load(); n > p && !peak.CompareAndSwap(p, n); p = peak.Load() {
					}
					if limit > 0 && n > int64(limit) {
						bad.add("%d handlers at once, limit %d", n, limit)
					}
					entered <- m.ClientID
					<-release
					active.Add(-1)
					_ = m.Reply(m.Payload)
				},
			}})
			t.Cleanup(releaseAll) // runs before the server stops
			ws := make([]*websocket.Conn, conns)
			for i := range ws {
				ws[i] = dial(t, s.URL(), "")
				if err := ws[i].WriteMessage(websocket.TextMessage, []byte("block")); err != nil {
					t.Fatal(err)
				}
			}
			// Every connection's actor has its message and is about to
			// run the handler.
			for range conns {
				recv(t, received, "OnDataReceived")
			}
			if limit < 0 {
				// Unbounded: all of them are inside at once (or this
				// waits forever and fails).
				for range conns {
					recv(t, entered, "handler")
				}
				releaseAll()
			} else {
				for range limit {
					recv(t, entered, "handler")
				}
				// The others must wait. Nothing signals "still waiting", so
				// this is a window: a broken limit lets them in at once.
				select {
				case id := <-entered:
					t.Fatalf("client %d's handler ran while %d others were inside", id, limit)
				case <-time.After(300 * time.Millisecond):
				}
				// Each handler that returns lets exactly one more in.
				for range conns - limit {
					release <- struct{}{}
					recv(t, entered, "the next handler")
				}
				releaseAll()
			}
			for i, c := range ws {
				_ = c.SetReadDeadline(time.Now().Add(waitTimeout))
				if _, got, err := c.ReadMessage(); err != nil || string(got) != "block" {
					t.Fatalf("conn %d reply %q %v", i, got, err)
				}
			}
			bad.check(t)
			want := int64(limit)
			if limit < 0 {
				want = conns
			}
			if p := peak.Load(); p != want {
				t.Fatalf("at most %d handlers ran at once, want %d", p, want)
			}
		})
	}
}

// TestHandlerConcurrencyUnderLoad: many connections sending many messages
// never have more than HandlerConcurrency handlers inside at once.
func TestHandlerConcurrencyUnderLoad(t *testing.T) {
	const limit, clients, msgs = 4, 16, 50
	var active, peak atomic.Int64
	var bad violations
	s := startServer(t, marmot.ServerConfig{HandlerConcurrency: limit, ServerEvents: marmot.ServerEvents{
		OnHandleCommand: func(m *marmot.Message) {
			n := active.Add(1)
			for p := peak.Load(); n > p && !peak.CompareAndSwap(p, n); p = peak.Load() {
			}
			if n > limit {
				bad.add("%d handlers at once, limit %d", n, limit)
			}
			time.Sleep(100 * time.Microsecond) // work, so handlers overlap
			active.Add(-1)
			_ = m.Reply(m.Payload)
		},
	}})
	var wg sync.WaitGroup
	errs := make(chan error, clients)
	for range clients {
		ws := dial(t, s.URL(), "")
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range msgs {
				if err := ws.WriteMessage(websocket.TextMessage, []byte(strconv.Itoa(j))); err != nil {
					errs <- err
					return
				}
			}
			_ = ws.SetReadDeadline(time.Now().Add(waitTimeout))
			for j := range msgs {
				if _, got, err := ws.ReadMessage(); err != nil || string(got) != strconv.Itoa(j) {
					errs <- errors.New("reply " + strconv.Itoa(j) + ": " + string(got))
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	bad.check(t)
	if p := peak.Load(); p < 1 || p > limit {
		t.Fatalf("peak %d handlers at once, limit %d", p, limit)
	}
	t.Logf("peak %d of %d", peak.Load(), limit)
}

// logRecorder keeps every record it is handed; it accepts every level, so
// any filtering is marmot's.
type logRecorder struct {
	mu      sync.Mutex
	records []slog.Record
}

func (r *logRecorder) Enabled(context.Context, slog.Level) bool { return true }
func (r *logRecorder) WithAttrs([]slog.Attr) slog.Handler       { return r }
func (r *logRecorder) WithGroup(string) slog.Handler            { return r }
func (r *logRecorder) Handle(_ context.Context, rec slog.Record) error {
	r.mu.Lock()
	r.records = append(r.records, rec.Clone())
	r.mu.Unlock()
	return nil
}

// levels returns the levels logged for each message.
func (r *logRecorder) levels() map[string]slog.Level {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := map[string]slog.Level{}
	for _, rec := range r.records {
		out[rec.Message] = rec.Level
	}
	return out
}

func (r *logRecorder) below(l slog.Level) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, rec := range r.records {
		if rec.Level < l {
			out = append(out, rec.Level.String()+" "+rec.Message)
		}
	}
	return out
}

// TestLogLevel: LogLevel drops the records below it and keeps the others,
// on the server and on the client; unset, it is Info.
func TestLogLevel(t *testing.T) {
	// What the scenarios log, and at which level.
	serverLogs := map[string]slog.Level{
		"server state":            slog.LevelDebug,
		"client connected":        slog.LevelDebug,
		"marmot server listening": slog.LevelInfo,
		"marmot error":            slog.LevelWarn,
	}
	// An error goes to OnError when it is set (then it is logged at Debug
	// only) and to the log at Warn when it is not; an error returned to
	// the caller (the failed Connect) is neither.
	clientLogs := map[string]slog.Level{
		"client state": slog.LevelDebug,
	}
	check := func(t *testing.T, rec *logRecorder, level slog.Level, want map[string]slog.Level) {
		t.Helper()
		if b := rec.below(level); len(b) != 0 {
			t.Errorf("records below %v kept: %v", level, b)
		}
		got := rec.levels()
		for msg, l := range want {
			if _, ok := got[msg]; ok != (l >= level) {
				t.Errorf("level %v: %q (%v) logged %v, want %v", level, msg, l, ok, l >= level)
			}
		}
	}
	for _, level := range []slog.Level{slog.LevelDebug, slog.LevelInfo, slog.LevelWarn, slog.LevelError} {
		t.Run(level.String(), func(t *testing.T) {
			// Server: start, a connection, and an error (invalid UTF-8)
			// with no OnError, so the log is its way out.
			rec := &logRecorder{}
			s := startServer(t, marmot.ServerConfig{Logger: slog.New(rec), LogLevel: level})
			ws := dial(t, s.URL(), "")
			if err := ws.WriteMessage(websocket.TextMessage, []byte{0xff}); err != nil {
				t.Fatal(err)
			}
			readClose(t, ws) // the error is logged before the close frame is written
			check(t, rec, level, serverLogs)

			// Client: a connect that fails.
			crec := &logRecorder{}
			c := newClient(t, marmot.ClientConfig{URL: "ws://" + closedAddr(t) + "/", Logger: slog.New(crec), LogLevel: level})
			if err := c.Connect(ctxTimeout(t)); err == nil {
				t.Fatal("connect to a closed port succeeded")
			}
			check(t, crec, level, clientLogs)
		})
	}
	t.Run("default", func(t *testing.T) {
		rec := &logRecorder{}
		s := startServer(t, marmot.ServerConfig{Logger: slog.New(rec)})
		if s.Config().LogLevel != slog.LevelInfo {
			t.Fatalf("default LogLevel %v", s.Config().LogLevel)
		}
		if b := rec.below(slog.LevelInfo); len(b) != 0 {
			t.Fatalf("debug records kept by default: %v", b)
		}
		if _, ok := rec.levels()["marmot server listening"]; !ok {
			t.Fatal("info record dropped by default")
		}
	})
}

// TestPanicLoggedOnce: a handler's panic is logged once, by the
// supervisor ("actor failed", with its directive and restart count), not
// a second time as "marmot error" when OnError is unset.
func TestPanicLoggedOnce(t *testing.T) {
	rec := &logRecorder{}
	s := startServer(t, marmot.ServerConfig{
		Logger: slog.New(rec),
		ServerEvents: marmot.ServerEvents{OnHandleCommand: func(m *marmot.Message) {
			if string(m.Payload) == "boom" {
				panic("boom")
			}
			_ = m.Reply(m.Payload)
		}},
	})
	ws := dial(t, s.URL(), "")
	for _, p := range []string{"boom", "ping"} {
		if err := ws.WriteMessage(websocket.TextMessage, []byte(p)); err != nil {
			t.Fatal(err)
		}
	}
	// The restarted handler answers ping, so the failure has been handled
	// (and logged) by then: the supervisor restarts before the next message.
	if _, got, err := ws.ReadMessage(); err != nil || string(got) != "ping" {
		t.Fatalf("read %q, %v", got, err)
	}
	count := map[string]int{}
	rec.mu.Lock()
	for _, r := range rec.records {
		count[r.Message]++
	}
	rec.mu.Unlock()
	if count["actor failed"] != 1 || count["marmot error"] != 0 {
		t.Fatalf(`"actor failed" logged %d times, "marmot error" %d times; want 1 and 0`, count["actor failed"], count["marmot error"])
	}
}

// closedAddr returns a loopback address nothing listens on.
func closedAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}
