package dashboard_test

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/marmotws/marmot/internal/dashboard"
)

// fake is a Source without a server.
type fake struct {
	stats   dashboard.Stats
	clients []dashboard.Client
	sent    []string
}

func (f *fake) Stats() dashboard.Stats      { return f.stats }
func (f *fake) Clients() []dashboard.Client { return append([]dashboard.Client(nil), f.clients...) }
func (f *fake) Rooms() []string             { return []string{"lobby"} }
func (f *fake) Members(string) []uint64     { return []uint64{2} }
func (f *fake) Broadcast(d []byte) (int, error) {
	f.sent = append(f.sent, "*:"+string(d))
	return len(f.clients), nil
}
func (f *fake) SendToClient(id uint64, d []byte) error {
	f.sent = append(f.sent, string(d))
	return nil
}
func (f *fake) Disconnect(uint64, int, string) error { return nil }

func do(h http.Handler, method, target, remote string, hdr map[string]string, body string) *httptest.ResponseRecorder {
	r := httptest.NewRequest(method, target, strings.NewReader(body))
	r.RemoteAddr = remote
	for k, v := range hdr {
		r.Header.Set(k, v)
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w
}

func TestProtection(t *testing.T) {
	f := &fake{}
	loop := dashboard.New(f, dashboard.Options{LoopbackOnly: true})
	if w := do(loop, "GET", "/", "192.0.2.7:5000", nil, ""); w.Code != http.StatusForbidden {
		t.Fatalf("non-loopback peer: %d, want 403", w.Code)
	}
	if w := do(loop, "GET", "/", "127.0.0.1:5000", nil, ""); w.Code != http.StatusOK {
		t.Fatalf("loopback peer: %d", w.Code)
	}
	if w := do(loop, "GET", "/", "[::1]:5000", nil, ""); w.Code != http.StatusOK {
		t.Fatalf("loopback v6 peer: %d", w.Code)
	}
	tok := dashboard.New(f, dashboard.Options{Token: "abc"})
	for _, c := range []struct {
		target string
		hdr    map[string]string
		want   int
	}{
		{"/", nil, http.StatusUnauthorized},
		{"/?token=abd", nil, http.StatusUnauthorized},
		{"/?token=abc", nil, http.StatusOK},
		{"/api/snapshot", map[string]string{"Authorization": "Bearer abc"}, http.StatusOK},
		{"/api/snapshot", map[string]string{"Authorization": "Bearer nope"}, http.StatusUnauthorized},
		{"/nothing?token=abc", nil, http.StatusNotFound},
	} {
		if w := do(tok, "GET", c.target, "192.0.2.7:5000", c.hdr, ""); w.Code != c.want {
			t.Errorf("GET %s %v: %d, want %d", c.target, c.hdr, w.Code, c.want)
		}
	}
	// Actions need POST, the anti-forgery header and a JSON body.
	open := dashboard.New(f, dashboard.Options{})
	if w := do(open, "GET", "/api/broadcast", "127.0.0.1:1", nil, ""); w.Code != http.StatusMethodNotAllowed {
		t.Errorf("GET action: %d", w.Code)
	}
	if w := do(open, "POST", "/api/broadcast", "127.0.0.1:1", nil, `{"text":"x"}`); w.Code != http.StatusForbidden {
		t.Errorf("action without header: %d", w.Code)
	}
	if w := do(open, "POST", "/api/broadcast", "127.0.0.1:1", map[string]string{"X-Marmot-Dashboard": "1"}, `{"text":`); w.Code != http.StatusBadRequest {
		t.Errorf("bad JSON: %d", w.Code)
	}
	if w := do(open, "POST", "/api/send", "127.0.0.1:1", map[string]string{"X-Marmot-Dashboard": "1"}, `{"id":2,"text":"hi"}`); w.Code != http.StatusOK || len(f.sent) != 1 {
		t.Errorf("send: %d %v", w.Code, f.sent)
	}
}

// TestBounded: the event log, the chart and the client list keep at most
// what the options say, however many samples and clients come.
func TestBounded(t *testing.T) {
	f := &fake{}
	d := dashboard.New(f, dashboard.Options{Interval: time.Nanosecond, History: 5, Events: 7, MaxClients: 3})
	for i := range 20 {
		f.clients = append(f.clients, dashboard.Client{ID: uint64(i + 1), IP: "127.0.0.1"})
		f.stats.TotalMessagesReceived += 10
		if w := do(d, "GET", "/api/snapshot", "127.0.0.1:1", nil, ""); w.Code != 200 {
			t.Fatal(w.Code)
		}
	}
	w := do(d, "GET", "/api/snapshot", "127.0.0.1:1", nil, "")
	body := w.Body.String()
	var s dashboard.Snapshot
	if err := jsonUnmarshal(body, &s); err != nil {
		t.Fatal(err)
	}
	if len(s.Chart) != 5 || len(s.Events) > 7 || len(s.Clients) != 3 || !s.Truncated {
		t.Fatalf("chart %d, events %d, clients %d truncated %v", len(s.Chart), len(s.Events), len(s.Clients), s.Truncated)
	}
	if got := s.Clients[1].Rooms; len(got) != 1 || got[0] != "lobby" {
		t.Fatalf("client 2 rooms %v", got)
	}
}
