package dashboard_test

import (
	"net/http"
	"net/url"
	"testing"

	"github.com/marmotws/marmot/internal/dashboard"
)

// FuzzAction: whatever body and path a request carries, an action is
// answered with a clear status and never panics.
func FuzzAction(f *testing.F) {
	f.Add("send", `{"id":1,"text":"hi"}`)
	f.Add("broadcast", `{"text":"x"}`)
	f.Add("disconnect", `{"id":18446744073709551615}`)
	f.Add("send", `{"id":-1}`)
	f.Add("broadcast", `[`)
	f.Add("nope", `{}`)
	d := dashboard.New(&fake{}, dashboard.Options{})
	f.Fuzz(func(t *testing.T, action, body string) {
		w := do(d, "POST", "/api/"+url.PathEscape(action), "127.0.0.1:1", map[string]string{"X-Marmot-Dashboard": "1"}, body)
		switch w.Code {
		case http.StatusOK, http.StatusBadRequest, http.StatusNotFound:
		default:
			t.Fatalf("POST /api/%q %q: status %d", action, body, w.Code)
		}
	})
}
