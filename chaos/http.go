package chaos

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
)

// maxBody bounds a control request's body.
const maxBody = 4 << 10

// Handler returns the injector's HTTP control API; JSON in and out, the
// same operations as the Go API:
//
//	GET    /                   Status: mode, faults for all, connections, counts
//	GET    /conns              the connections ([]ConnInfo)
//	PUT    /faults             set the faults for all (body: a Faults object)
//	DELETE /faults             clear them
//	PUT    /conns/{id}/faults  set one connection's own faults
//	DELETE /conns/{id}/faults  give it back the faults for all
//	POST   /conns/{id}/reset   reset one connection now (RST)
//	POST   /reset              reset every connection now
//	POST   /refuse             refuse new connections
//	POST   /down               reset every connection, refuse new ones
//	POST   /up                 accept new connections again
//
// A Faults object is {"latency":"100ms","jitter":"20ms","bandwidth":65536,
// "blackhole":false,"reset_after":0} (bandwidth in bytes per second, each
// member optional). Errors are {"error": "reason"} with 400 for bad input
// (the reason says what), 404 for an unknown connection, 405 for a wrong
// method and 500 when Up cannot listen again. Mount it under a prefix with
// http.StripPrefix.
func (i *Injector) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, _ *http.Request) { reply(w, i.Status()) })
	mux.HandleFunc("GET /conns", func(w http.ResponseWriter, _ *http.Request) { reply(w, i.Conns()) })
	mux.HandleFunc("PUT /faults", func(w http.ResponseWriter, r *http.Request) {
		f, ok := readFaults(w, r)
		if ok {
			answer(w, i.Set(f), i.Faults())
		}
	})
	mux.HandleFunc("DELETE /faults", func(w http.ResponseWriter, _ *http.Request) {
		answer(w, i.Set(Faults{}), i.Faults())
	})
	mux.HandleFunc("PUT /conns/{id}/faults", func(w http.ResponseWriter, r *http.Request) {
		id, ok := connID(w, r)
		if !ok {
			return
		}
		if f, ok := readFaults(w, r); ok {
			answer(w, i.SetConn(id, f), f)
		}
	})
	mux.HandleFunc("DELETE /conns/{id}/faults", func(w http.ResponseWriter, r *http.Request) {
		if id, ok := connID(w, r); ok {
			answer(w, i.ClearConn(id), i.Faults())
		}
	})
	mux.HandleFunc("POST /conns/{id}/reset", func(w http.ResponseWriter, r *http.Request) {
		if id, ok := connID(w, r); ok {
			answer(w, i.Reset(id), map[string]int{"reset": 1})
		}
	})
	mux.HandleFunc("POST /reset", func(w http.ResponseWriter, _ *http.Request) {
		reply(w, map[string]int{"reset": i.ResetAll()})
	})
	for path, op := range map[string]func() error{"/refuse": i.Refuse, "/down": i.Down, "/up": i.Up} {
		mux.HandleFunc("POST "+path, func(w http.ResponseWriter, _ *http.Request) {
			answer(w, op(), map[string]Mode{"mode": i.Mode()})
		})
	}
	return mux
}

// readFaults decodes a request's Faults, answering 400 with the reason
// when it cannot.
func readFaults(w http.ResponseWriter, r *http.Request) (Faults, bool) {
	b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
	if err != nil {
		fail(w, http.StatusBadRequest, fmt.Errorf("%w: body: %v", ErrBadFaults, err))
		return Faults{}, false
	}
	f, err := DecodeFaults(b)
	if err != nil {
		fail(w, http.StatusBadRequest, err)
		return Faults{}, false
	}
	return f, true
}

func connID(w http.ResponseWriter, r *http.Request) (ConnID, bool) {
	s := r.PathValue("id")
	id, err := strconv.ParseUint(s, 10, 64)
	if err != nil || id == 0 {
		fail(w, http.StatusBadRequest, fmt.Errorf("chaos: connection id %q is not a positive integer", s))
		return 0, false
	}
	return ConnID(id), true
}

// answer replies v, or the error with its status.
func answer(w http.ResponseWriter, err error, v any) {
	switch {
	case err == nil:
		reply(w, v)
	case errors.Is(err, ErrNoConn):
		fail(w, http.StatusNotFound, err)
	case errors.Is(err, ErrBadFaults):
		fail(w, http.StatusBadRequest, err)
	default:
		fail(w, http.StatusInternalServerError, err)
	}
}

func reply(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}

func fail(w http.ResponseWriter, status int, err error) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]string{"error": err.Error()})
}
