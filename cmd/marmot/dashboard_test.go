package main

import (
	"net/http"
	"strings"
	"testing"
)

func get(t *testing.T, url string, hdr ...string) int {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(hdr) == 2 {
		req.Header.Set(hdr[0], hdr[1])
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	return res.StatusCode
}

// TestServeDashboard: --dashboard serves the dashboard at /dashboard/ on
// the server's address (loopback only) and prints where; with
// --dashboard-token every request needs the token; without either flag
// there is no dashboard. marmot.js is served in every case.
func TestServeDashboard(t *testing.T) {
	srv, url := serve(t, "--dashboard")
	line := srv.stdout.expect(t, "marmot dashboard on ")
	base := strings.Fields(strings.TrimPrefix(line, "marmot dashboard on "))[0]
	if want := strings.Replace(strings.TrimSuffix(url, "/websocket"), "ws://", "http://", 1) + "/dashboard/"; base != want || !strings.Contains(line, "loopback only") {
		t.Fatalf("dashboard line %q, want %s (loopback only)", line, want)
	}
	for _, path := range []string{"", "client", "api/snapshot"} {
		if code := get(t, base+path); code != http.StatusOK {
			t.Fatalf("GET %s: %d", base+path, code)
		}
	}
	srv.stop(t)

	srv, _ = serve(t, "--dashboard-token", "t0ken")
	line = srv.stdout.expect(t, "marmot dashboard on ")
	base = strings.Fields(strings.TrimPrefix(line, "marmot dashboard on "))[0]
	if code := get(t, base); code != http.StatusUnauthorized {
		t.Fatalf("no token: %d, want 401", code)
	}
	if code := get(t, base+"?token=t0ken"); code != http.StatusOK {
		t.Fatalf("token in query: %d", code)
	}
	if code := get(t, base+"api/snapshot", "Authorization", "Bearer t0ken"); code != http.StatusOK {
		t.Fatalf("bearer token: %d", code)
	}
	srv.stop(t)

	_, url = serve(t)
	plain := strings.Replace(strings.TrimSuffix(url, "/websocket"), "ws://", "http://", 1)
	if code := get(t, plain+"/dashboard/"); code != http.StatusNotFound {
		t.Fatalf("dashboard without --dashboard: %d, want 404", code)
	}
	if code := get(t, plain+"/websocket/marmot.js"); code != http.StatusOK {
		t.Fatalf("marmot.js: %d", code)
	}
}
