package dashboard_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestTransportColumn: a client on the HTTP fallback transport (docs/HTTP.md)
// is listed as "http". Skipped while the server has no such transport.
func TestTransportColumn(t *testing.T) {
	srv, base := startWithDashboard(t, "")
	ws := strings.Replace(srv.URL(), "ws://", "http://", 1)
	res, err := http.Post(ws+"?transport=http&subprotocol=marmot.json.v1", "application/octet-stream", nil)
	if err != nil {
		t.Fatal(err)
	}
	var open struct{ Session string }
	_ = json.NewDecoder(res.Body).Decode(&open)
	res.Body.Close()
	if res.StatusCode != http.StatusOK {
		t.Skipf("the HTTP fallback transport is not on this server yet (branch http): open answered %d", res.StatusCode)
	}
	defer func() { // close the session: a close record (1000)
		r, err := http.Post(ws+"?session="+open.Session+"&seq=1", "application/octet-stream", strings.NewReader("\x08\x00\x00\x00\x02\x03\xe8"))
		if err == nil {
			r.Body.Close()
		}
	}()
	deadline := time.Now().Add(guard)
	for {
		res, err := http.Get(base + "api/snapshot")
		if err != nil {
			t.Fatal(err)
		}
		var s struct{ Clients []struct{ Transport string } }
		_ = json.NewDecoder(res.Body).Decode(&s)
		res.Body.Close()
		if len(s.Clients) == 1 {
			if s.Clients[0].Transport != "http" {
				t.Fatalf("transport column %q, want http (marmot.clientTransport should return ClientInfo.Transport)", s.Clients[0].Transport)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the dashboard never listed the HTTP session: %+v", s)
		}
		time.Sleep(50 * time.Millisecond) // polling the server's client list: it has no event for this
	}
}
