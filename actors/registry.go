package actors

import (
	"fmt"
	"sort"
)

// register adds c to the registry and reports whether the hub is already
// draining. Shutdown sets draining before it snapshots the registry, so a
// connection either is in that snapshot or sees draining here: none is missed.
func (h *Hub) register(c *conn) (draining bool) {
	h.byPID.Store(c.link.pid.Id, c)
	h.regMu.Lock()
	h.conns[c.id] = c
	draining = h.draining.Load()
	h.regMu.Unlock()
	return draining
}

func (h *Hub) unregister(c *conn) {
	h.regMu.Lock()
	delete(h.conns, c.id)
	h.closedTotals.add(&c.link.out.stats) // final: the actor has stopped
	h.regMu.Unlock()
	h.byPID.Delete(c.link.pid.Id)
	h.release(c.adm)
}

func (h *Hub) lookup(id ClientID) (*conn, error) {
	h.regMu.RLock()
	c := h.conns[id]
	h.regMu.RUnlock()
	if c == nil {
		return nil, fmt.Errorf("%w: %d", ErrClientNotFound, id)
	}
	return c, nil
}

// ClientCount returns the number of open connections.
func (h *Hub) ClientCount() int {
	h.regMu.RLock()
	defer h.regMu.RUnlock()
	return len(h.conns)
}

// ClientIP returns a client's remote IP address.
func (h *Hub) ClientIP(id ClientID) (string, error) {
	c, err := h.lookup(id)
	if err != nil {
		return "", err
	}
	return c.info().IP(), nil
}

// Client returns a snapshot of one client.
func (h *Hub) Client(id ClientID) (ClientInfo, error) {
	c, err := h.lookup(id)
	if err != nil {
		return ClientInfo{}, err
	}
	return c.info(), nil
}

// Clients returns a snapshot of every open connection, ordered by ID.
func (h *Hub) Clients() []ClientInfo {
	h.regMu.RLock()
	out := make([]ClientInfo, 0, len(h.conns))
	for _, c := range h.conns {
		out = append(out, c.info())
	}
	h.regMu.RUnlock()
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// Stats returns the counters; it reads atomics and never blocks senders.
//
// The traffic totals are summed over the open connections (plus those
// already closed) rather than kept in hub-wide counters: a counter every
// connection bumps per message is one cache line fought over by every core.
func (h *Hub) Stats() Stats {
	h.regMu.RLock()
	n := len(h.conns)
	var t counterValues
	t.addFrom(&h.closedTotals)
	for _, c := range h.conns {
		t.addFrom(&c.link.out.stats)
	}
	h.regMu.RUnlock()
	return Stats{
		ClientCount:            n,
		TotalConnections:       h.totalConns.Load(),
		TotalActiveConnections: int64(n),
		TotalBytesReceived:     t.bytesIn,
		TotalBytesSent:         t.bytesOut,
		TotalMessagesReceived:  t.msgsIn,
		TotalMessagesSent:      t.msgsOut,
		RefusedConnections:     h.refused.Load(),
		HandshakeFailures:      h.handshakes.Load(),
		DecryptFailures:        h.decrypts.Load(),
		SlowConsumerCloses:     h.slowCloses.Load(),
		ActorRestarts:          h.restarts.Load(),
		OriginRefusals:         h.originRefusals.Load(),
		IPLimitRefusals:        h.ipRefusals.Load(),
		AuthRefusals:           h.authRefusals.Load(),
		ExpiredCloses:          h.expiredCloses.Load(),
		RateLimited:            h.rateLimited.Load(),
		Sessions:               h.sessions.count(),
	}
}
