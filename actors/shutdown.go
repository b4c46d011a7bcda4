package actors

import (
	"context"
	"fmt"
	"time"
)

// Shutdown stops accepting connections, flushes every client's queue, closes
// each with 1001 Going Away and waits for them to end. When ctx expires first
// the remaining sockets are dropped; Shutdown still returns only after every
// goroutine it started has ended, with ctx's error.
func (h *Hub) Shutdown(ctx context.Context) error {
	h.lifeMu.Lock()
	if h.stopping {
		h.lifeMu.Unlock()
		return nil
	}
	h.stopping = true
	h.draining.Store(true)
	h.lifeMu.Unlock()

	deadline, ok := ctx.Deadline()
	if !ok {
		deadline = time.Now().Add(30 * time.Second)
	}
	h.regMu.RLock()
	all := make([]*conn, 0, len(h.conns))
	for _, c := range h.conns {
		all = append(all, c)
	}
	h.regMu.RUnlock()
	for _, c := range all {
		h.sys.Root.Send(c.link.pid, &shutdownRequest{deadline: deadline})
	}
	done := make(chan struct{})
	go func() { h.live.Wait(); close(done) }()
	var err error
	select {
	case <-done:
	case <-ctx.Done():
		err = ctx.Err()
		h.regMu.RLock()
		for _, c := range h.conns {
			c.link.t.Drop()
		}
		h.regMu.RUnlock()
		// Readers end with their sockets; an actor stuck in a handler
		// does not. Past the caller's deadline, wait closeGrace for them,
		// then return rather than hang: those actors finish on their own
		// once their handlers return.
		select {
		case <-done:
		case <-time.After(closeGrace):
			h.regMu.RLock()
			busy := len(h.conns)
			h.regMu.RUnlock()
			err = fmt.Errorf("%w: %d connection(s) still inside a handler", err, busy)
		}
	}
	// The connections have left their rooms; whatever rooms are still
	// waiting out their idle time end now.
	h.closeRooms()
	h.sessions.close()
	if h.metricsReg != nil {
		_ = h.metricsReg.Unregister()
	}
	select {
	case <-done:
		_ = h.sys.Root.StopFuture(h.server).Wait()
	default:
		h.sys.Root.Stop(h.server) // its stuck children would hold StopFuture
	}
	if h.ownSys {
		h.sys.Shutdown()
	}
	return err
}
