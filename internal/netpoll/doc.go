// Package netpoll parks idle socket readers: a reader that has waited long
// for its next message gives up its goroutine, and an epoll set resumes it
// when its socket becomes readable (Linux only; elsewhere readers never
// park).
//
// netpoll knows nothing about WebSockets or actors. A [Target] is anything
// that waits for input and can be told to stop waiting and to resume; the
// transport in internal/wsconn is the only one.
package netpoll

import (
	"errors"
	"sync/atomic"
	"time"
)

// Target is a reader registered with a [Poller].
type Target interface {
	// IdleSince reports whether the target has been waiting for input
	// since before the poller's epoch e-1 (so for one to two ticks).
	IdleSince(e uint64) bool
	// Interrupt ends the target's wait so that it parks.
	Interrupt()
	// Wake resumes a parked target: its socket is readable or failed.
	Wake()
}

// Epoch counts poller ticks; waiting readers record the epoch they started
// in, which costs one atomic load instead of a clock read.
type Epoch struct{ atomic.Uint64 }

func (e *Epoch) next() uint64 { return e.Add(1) }

// ErrUnsupported is returned by Arm where epoll is unavailable.
var ErrUnsupported = errors.New("netpoll: parking idle readers is not supported on this platform")

// DefaultTick is how often a poller looks for idle readers: a reader parks
// after waiting one to two ticks for its next message. Busy connections
// never wait that long, so they keep their goroutine and pay nothing.
const DefaultTick = 500 * time.Millisecond
