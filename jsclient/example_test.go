package jsclient_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"

	"github.com/marmotws/marmot/jsclient"
)

// Serving marmot.js from your own handler, under an endpoint at /ws.
func ExampleServe() {
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if name, ok := jsclient.Match("/ws", r.URL.Path); ok {
			jsclient.Serve(w, r, name)
			return
		}
		http.NotFound(w, r)
	})
	w := httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/ws/marmot.js", nil))
	fmt.Println(w.Code, w.Header().Get("Content-Type"), w.Body.Len() == len(jsclient.Script))
	// Output: 200 text/javascript; charset=utf-8 true
}
