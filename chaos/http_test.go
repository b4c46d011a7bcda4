package chaos_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/marmotws/marmot/chaos"
)

// call sends a control request and returns the status and the decoded body.
func call(t *testing.T, srv *httptest.Server, method, path, body string) (int, map[string]any) {
	t.Helper()
	req, err := http.NewRequest(method, srv.URL+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var v map[string]any
	_ = json.Unmarshal(b, &v)
	return resp.StatusCode, v
}

func TestControlAPI(t *testing.T) {
	e := newEchoServer(t)
	p := newProxy(t, e.ln.Addr().String())
	srv := httptest.NewServer(p.Handler())
	defer srv.Close()
	c := dial(t, p.Addr().String())
	roundTrip(t, c, "x")
	id := p.Conns()[0].ID

	for _, tc := range []struct {
		method, path, body string
		status             int
		errHas             string // in the error's reason
	}{
		{"PUT", "/faults", `{"latency":"50ms","jitter":"5ms","bandwidth":65536}`, 200, ""},
		{"PUT", "/faults", `{"latency":"fast"}`, 400, `latency "fast" is not a duration`},
		{"PUT", "/faults", `{"bandwidth":-1}`, 400, "bandwidth -1 is negative"},
		{"PUT", "/faults", `{"lag":"1s"}`, 400, `unknown field "lag"`},
		{"PUT", "/faults", `{} {}`, 400, "data after the object"},
		{"PUT", "/faults", `{`, 400, "invalid faults"},
		{"PUT", "/faults", `{"latency":"` + strings.Repeat("9", 5000) + `"}`, 400, "body"},
		{"PUT", "/conns/" + itoa(id) + "/faults", `{"blackhole":true}`, 200, ""},
		{"PUT", "/conns/999/faults", `{}`, 404, "no such connection"},
		{"PUT", "/conns/abc/faults", `{}`, 400, "not a positive integer"},
		{"DELETE", "/conns/" + itoa(id) + "/faults", "", 200, ""},
		{"DELETE", "/faults", "", 200, ""},
		{"POST", "/conns/0/reset", "", 400, "not a positive integer"},
		{"POST", "/faults", "", 405, ""},
		{"POST", "/refuse", "", 200, ""},
		{"POST", "/down", "", 200, ""},
		{"POST", "/up", "", 200, ""},
	} {
		status, body := call(t, srv, tc.method, tc.path, tc.body)
		if status != tc.status {
			t.Fatalf("%s %s %s: %d %v, want %d", tc.method, tc.path, tc.body, status, body, tc.status)
		}
		if tc.errHas != "" {
			if reason, _ := body["error"].(string); !strings.Contains(reason, tc.errHas) {
				t.Fatalf("%s %s %s: reason %q, want it to say %q", tc.method, tc.path, tc.body, reason, tc.errHas)
			}
		}
	}
	// The down above reset c; a new connection is listed, then reset by id.
	c2 := dial(t, p.Addr().String())
	roundTrip(t, c2, "y")
	status, body := call(t, srv, "GET", "/", "")
	conns, _ := body["conns"].([]any)
	if status != 200 || body["mode"] != "up" || len(conns) != 1 {
		t.Fatalf("status %d %v", status, body)
	}
	id2 := p.Conns()[0].ID
	if status, _ := call(t, srv, "POST", "/conns/"+itoa(id2)+"/reset", ""); status != 200 {
		t.Fatalf("reset: %d", status)
	}
	if _, err := readErr(c2); !isReset(err) {
		t.Fatalf("after reset: %v", err)
	}
	if status, body := call(t, srv, "POST", "/reset", ""); status != 200 || body["reset"] != 0.0 {
		t.Fatalf("reset all: %d %v", status, body)
	}
	cnt := p.Counts()
	if cnt.Resets != 2 || cnt.Refused != 0 || cnt.Changes < 8 {
		t.Fatalf("counts %+v", cnt)
	}
}

func itoa(id chaos.ConnID) string { return strings.TrimSpace(string(must(json.Marshal(id)))) }

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

func TestFaultsJSON(t *testing.T) {
	f := chaos.Faults{Latency: 250 * time.Millisecond, Jitter: time.Millisecond, Bandwidth: 10, Blackhole: true, ResetAfter: 7}
	b, err := json.Marshal(f)
	if err != nil {
		t.Fatal(err)
	}
	if string(b) != `{"latency":"250ms","jitter":"1ms","bandwidth":10,"blackhole":true,"reset_after":7}` {
		t.Fatal(string(b))
	}
	var g chaos.Faults
	if err := json.Unmarshal(b, &g); err != nil || g != f {
		t.Fatalf("%+v %v", g, err)
	}
}

func FuzzDecodeFaults(f *testing.F) {
	f.Add([]byte(`{"latency":"50ms","jitter":"5ms","bandwidth":65536,"blackhole":true,"reset_after":10}`))
	f.Add([]byte(`{}`))
	f.Add([]byte(`{"latency":"-1s"}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		g, err := chaos.DecodeFaults(b)
		if err != nil {
			return
		}
		if g.Validate() != nil {
			t.Fatalf("decoded invalid faults %+v", g)
		}
		// What decodes encodes back to the same faults.
		again, err := chaos.DecodeFaults(must(json.Marshal(g)))
		if err != nil || again != g {
			t.Fatalf("%+v round trips to %+v, %v", g, again, err)
		}
	})
}
