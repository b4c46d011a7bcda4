package jsclient_test

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/marmotws/marmot"
	"github.com/marmotws/marmot/internal/browsertest"
)

// guard bounds every wait on an event; it only fires when a test is failing.
const guard = 60 * time.Second

func quietLogger() *slog.Logger {
	if os.Getenv("MARMOT_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

// site serves a test page and a marmot server on one origin (so the page
// imports marmot.js from the server itself): "/" is the page, "/websocket"
// the endpoint. The server behind it can be replaced (a restart).
type site struct {
	t    testing.TB
	url  string // http://127.0.0.1:port
	cur  atomic.Pointer[marmot.Server]
	cfg  marmot.ServerConfig
	http *http.Server
	ln   net.Listener
	done chan struct{}
	// wrap, when set, sees every request first (a test proxy's behaviour).
	wrap atomic.Pointer[func(w http.ResponseWriter, r *http.Request) bool]
}

// testPage loads marmot.js; ?nows removes WebSocket from the page first.
const testPage = `<!doctype html><html><head><meta charset="utf-8"><title>marmot.js test</title>
<style>body{font:16px sans-serif;margin:2em;background:#fff}#state{padding:.3em;background:#dfd}</style></head>
<body><h1>marmot.js test page</h1><p>state: <span id="state">-</span></p><pre id="log"></pre>
<script>if (location.search.includes('nows')) { delete window.WebSocket; window.WebSocket = undefined; }</script>
<script type="module">
import * as marmot from '/websocket/marmot.js';
window.marmot = marmot;
window.log = (s) => { document.getElementById('log').textContent += s + '\n'; };
window.marmotReady = true;
</script></body></html>`

func newSite(t testing.TB, cfg marmot.ServerConfig) *site {
	t.Helper()
	cfg.Addr = "127.0.0.1:0"
	cfg.Logger = quietLogger()
	s := &site{t: t, cfg: cfg, done: make(chan struct{})}
	s.start()
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		_, _ = w.Write([]byte(testPage))
	})
	ep := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if f := s.wrap.Load(); f != nil && (*f)(w, r) {
			return
		}
		if srv := s.cur.Load(); srv != nil {
			srv.ServeHTTP(w, r)
			return
		}
		http.Error(w, "restarting", http.StatusServiceUnavailable)
	})
	mux.Handle("/websocket", ep)
	mux.Handle("/websocket/", ep)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s.ln = ln
	s.url = "http://" + ln.Addr().String()
	s.http = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		defer close(s.done)
		_ = s.http.Serve(ln)
	}()
	t.Cleanup(func() {
		s.stop()
		// Close, not Shutdown: Chromium opens speculative connections that
		// Shutdown would wait 5 s for.
		_ = s.http.Close()
		<-s.done
	})
	return s
}

// start makes a new marmot server (served through ServeHTTP, not Start).
func (s *site) start() {
	srv, err := marmot.NewServer(s.cfg)
	if err != nil {
		s.t.Fatal(err)
	}
	s.cur.Store(srv)
}

// stop stops the current server: its clients get 1001.
// Like a server behind its own listener, it answers HTTP-transport
// requests while it stops (their sessions fetch their 1001) and 503 after.
func (s *site) stop() {
	srv := s.cur.Load()
	if srv == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_ = srv.Stop(ctx)
	s.cur.Store(nil)
}

func (s *site) server() *marmot.Server { return s.cur.Load() }

func (s *site) wsURL() string { return "ws" + strings.TrimPrefix(s.url, "http") + "/websocket" }

// open opens the test page (query: "" or "?nows") and waits for marmot.js.
func (s *site) open(b *browsertest.Browser, query string) *browsertest.Page {
	s.t.Helper()
	p := b.Open(s.t, s.url+"/"+query)
	p.WaitFor("window.marmotReady === true")
	return p
}

// httpFallbackAvailable reports whether the server speaks the HTTP
// transport (docs/HTTP.md): its open answers 200.
func (s *site) httpFallbackAvailable() (bool, string) {
	q := "/websocket?transport=http&subprotocol=marmot.json.v1"
	if s.cfg.EncryptionEnabled {
		q = "/websocket?transport=http&subprotocol=marmot.v1&marmot_encryption=secure"
	}
	res, err := http.Post(s.url+q, "application/octet-stream", nil)
	if err != nil {
		return false, err.Error()
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		return false, fmt.Sprintf("the server answers the HTTP open with %d", res.StatusCode)
	}
	// Close the session this probe opened.
	var o struct{ Session string }
	_ = jsonDecode(res.Body, &o)
	if o.Session != "" {
		body := []byte{8, 0, 0, 0, 2, 0x03, 0xe8}
		r2, err := http.Post(s.url+"/websocket?session="+o.Session+"&seq=1", "application/octet-stream", strings.NewReader(string(body)))
		if err == nil {
			r2.Body.Close()
		}
	}
	return true, ""
}

func recv[T any](t testing.TB, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(guard):
		t.Fatalf("timed out waiting for %s", what)
	}
	var zero T
	return zero
}
