// Package transporttest holds what the transports' tests share: a
// transport.Receiver that records what it is handed, and a bounded wait.
package transporttest

import (
	"io"
	"testing"
	"time"
)

// Recorder is a transport.Receiver that records what it is handed: each
// message's bytes on Msgs, the reader's end on Ended.
type Recorder struct {
	Msgs  chan string
	Ended chan error
}

// NewRecorder returns a Recorder that holds up to n messages unread.
func NewRecorder(n int) *Recorder {
	return &Recorder{Msgs: make(chan string, n), Ended: make(chan error, 1)}
}

// Message implements transport.Receiver.
func (r *Recorder) Message(_ int, rd io.Reader) error {
	b, err := io.ReadAll(rd)
	if err != nil {
		return err
	}
	r.Msgs <- string(b)
	return nil
}

// Done implements transport.Receiver.
func (r *Recorder) Done(err error) { r.Ended <- err }

// Wait returns the next value on ch, failing t after d.
func Wait[T any](t testing.TB, ch <-chan T, what string, d time.Duration) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(d):
		t.Fatalf("timed out waiting for %s", what)
		panic("unreachable")
	}
}
