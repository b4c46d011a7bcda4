package actorfault_test

import (
	"errors"
	"testing"
	"time"

	"github.com/marmotws/marmot"
	"github.com/marmotws/marmot/chaos/actorfault"
)

// A client with an outbox numbers its messages in a session. A request
// that the middleware panics on, before the connection actor's turn, is
// answered 500, which the client's outbox takes as done: the session must
// count its number as handled, or the next request is a gap for good
// (the connection closed for it, and every resume hitting it again: the
// soak's publishers stopped this way).
func TestPanicOnSessionRequest(t *testing.T) {
	inj := actorfault.New(actorfault.Options{Logger: logger()})
	disconnected := make(chan struct{}, 8)
	r := newRigClient(t, inj, marmot.ServerConfig{}, marmot.ClientConfig{
		AutoReconnect: true, ReconnectInterval: 20 * time.Millisecond,
		ClientEvents: marmot.ClientEvents{OnDisconnect: func(*marmot.CloseError) { disconnected <- struct{}{} }},
	})
	if _, err := inj.Add(actorfault.Rule{Actors: actorfault.Connection(r.id), Match: actorfault.Named("b"), Times: 1, Fault: actorfault.Panic}); err != nil {
		t.Fatal(err)
	}
	if _, err := r.request(t, "a"); err != nil {
		t.Fatal(err)
	}
	_, err := r.request(t, "b")
	var re *marmot.RemoteError
	if !errors.As(err, &re) || re.Code != 500 {
		t.Fatalf("request b: %v, want a 500 error reply", err)
	}
	for _, name := range []string{"c", "d", "e"} {
		if got, err := r.request(t, name); err != nil || string(got) != name {
			t.Fatalf("request %s after the panic: %q, %v", name, got, err)
		}
	}
	select {
	case <-disconnected:
		t.Fatal("the connection was closed (a gap in the session's numbers)")
	default:
	}
}
