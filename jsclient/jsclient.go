// Package jsclient holds marmot.js, the browser client, and its TypeScript
// declarations, embedded in the binary: a marmot server serves them at
// <path>/marmot.js and <path>/marmot.d.ts (docs/BROWSER.md).
package jsclient

import (
	_ "embed"
	"net/http"
	"strconv"
	"strings"
)

// Script is marmot.js, an ES module with no dependencies.
//
//go:embed marmot.js
var Script []byte

// Types is marmot.d.ts, the declarations of marmot.js for editors.
//
//go:embed marmot.d.ts
var Types []byte

// File names under the endpoint's path.
const (
	ScriptName = "marmot.js"
	TypesName  = "marmot.d.ts"
)

// Match reports whether a request for urlPath asks for one of the files
// served under the endpoint base (a path such as "/websocket"), and which.
func Match(base, urlPath string) (name string, ok bool) {
	rest, found := strings.CutPrefix(urlPath, strings.TrimSuffix(base, "/")+"/")
	if !found || (rest != ScriptName && rest != TypesName) {
		return "", false
	}
	return rest, true
}

// Serve answers a GET or HEAD for name (ScriptName or TypesName); other
// methods get 405.
func Serve(w http.ResponseWriter, r *http.Request, name string) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "marmot: method not allowed", http.StatusMethodNotAllowed)
		return
	}
	body, ctype := Script, "text/javascript; charset=utf-8"
	if name == TypesName {
		body, ctype = Types, "application/typescript; charset=utf-8"
	}
	h := w.Header()
	h.Set("Content-Type", ctype)
	h.Set("Content-Length", strconv.Itoa(len(body)))
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Content-Type-Options", "nosniff")
	if r.Method == http.MethodHead {
		return
	}
	_, _ = w.Write(body)
}
