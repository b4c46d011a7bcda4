package marmot_test

import (
	"fmt"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/marmotws/marmot"
)

// violations collects what callbacks on other goroutines found wrong; the
// test reports them once it is done.
type violations struct {
	mu    sync.Mutex
	n     int
	first []string
}

func (v *violations) add(format string, args ...any) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.n++
	if len(v.first) < 10 {
		v.first = append(v.first, fmt.Sprintf(format, args...))
	}
}

func (v *violations) check(t testing.TB) {
	t.Helper()
	v.mu.Lock()
	defer v.mu.Unlock()
	for _, s := range v.first {
		t.Error(s)
	}
	if v.n > len(v.first) {
		t.Errorf("... %d violations in all", v.n)
	}
}

// TestStatsCountBeforeOnDataSent makes this a guarantee: when OnDataSent
// runs for a message, Stats already counts it, on the server (its
// connection's ClientInfo and the server's totals) and on the client. The
// workload goes through every write path: replies written at once from the
// handler, single queued frames, coalesced bursts and broadcasts on the
// server; bursts of queued frames on the client.
func TestStatsCountBeforeOnDataSent(t *testing.T) {
	const clients, burst, rounds = 4, 100, 20
	var bad violations
	var srv atomic.Pointer[marmot.Server]

	// Per connection: messages and bytes OnDataSent has seen so far. The
	// callbacks of one connection never overlap (its writes are
	// serialised), the map is shared.
	var mu sync.Mutex
	seen := map[marmot.ClientID][2]int64{}
	var serverSent atomic.Int64
	var serverDone sync.WaitGroup
	serverDone.Add(clients * (2*burst + rounds))
	ids := make(chan marmot.ClientID, clients)
	s := startServer(t, marmot.ServerConfig{ServerEvents: marmot.ServerEvents{
		OnClientConnected: func(ci marmot.ClientInfo) { ids <- ci.ID },
		OnHandleCommand:   func(m *marmot.Message) { _ = m.Reply(m.Payload) },
		OnDataSent: func(id marmot.ClientID, d []byte) {
			defer serverDone.Done()
			n := serverSent.Add(1)
			mu.Lock()
			v := seen[id]
			v[0]++
			v[1] += int64(len(d))
			seen[id] = v
			mu.Unlock()
			s := srv.Load()
			if ci, err := s.Client(id); err != nil {
				bad.add("server OnDataSent for client %d: %v", id, err)
			} else if ci.MessagesSent < v[0] || ci.BytesSent < v[1] {
				bad.add("server OnDataSent: client %d has sent %d messages, %d bytes, but ClientInfo counts %d, %d",
					id, v[0], v[1], ci.MessagesSent, ci.BytesSent)
			}
			if st := s.Stats(); st.TotalMessagesSent < n {
				bad.add("server OnDataSent: %d messages sent, Stats counts %d", n, st.TotalMessagesSent)
			}
		},
	}})
	srv.Store(s)

	var clientDone, echoed sync.WaitGroup
	clientDone.Add(clients * burst)
	echoed.Add(clients * (2*burst + rounds))
	cs := make([]*marmot.Client, clients)
	for i := range cs {
		var self atomic.Pointer[marmot.Client]
		var msgs, bytes int64 // only the client's actor touches them
		c := newClient(t, marmot.ClientConfig{URL: s.URL(), ClientEvents: marmot.ClientEvents{
			OnHandleCommand: func(*marmot.Message) { echoed.Done() },
			OnDataSent: func(d []byte) {
				defer clientDone.Done()
				msgs++
				bytes += int64(len(d))
				if st := self.Load().Stats(); st.MessagesSent < msgs || st.BytesSent < bytes {
					bad.add("client %d OnDataSent: %d messages, %d bytes sent, Stats counts %d, %d",
						i, msgs, bytes, st.MessagesSent, st.BytesSent)
				}
			},
		}})
		self.Store(c)
		if err := c.Connect(ctxTimeout(t)); err != nil {
			t.Fatal(err)
		}
		cs[i] = c
	}
	for range clients {
		recv(t, ids, "OnClientConnected")
	}
	for i, c := range cs {
		for j := range burst {
			if err := c.Send(fmt.Appendf(nil, "c%d-%d", i, j)); err != nil {
				t.Fatal(err)
			}
		}
	}
	for _, ci := range s.Clients() {
		for j := range burst {
			if err := s.SendToClient(ci.ID, fmt.Appendf(nil, "s%d-%d", ci.ID, j)); err != nil {
				t.Fatal(err)
			}
		}
	}
	for r := range rounds {
		if n, err := s.Broadcast(fmt.Appendf(nil, "b%d", r)); err != nil || n != clients {
			t.Fatalf("broadcast reached %d: %v", n, err)
		}
	}
	waitGroup(t, &echoed, "every message to reach its client")
	waitGroup(t, &serverDone, "server OnDataSent for every message")
	waitGroup(t, &clientDone, "client OnDataSent for every message")
	bad.check(t)

	// Everything is written and reported: the counters are exact.
	if st := s.Stats(); st.TotalMessagesSent != serverSent.Load() || st.TotalMessagesSent != clients*(2*burst+rounds) {
		t.Fatalf("server sent %d messages, Stats counts %d", serverSent.Load(), st.TotalMessagesSent)
	}
	for i, c := range cs {
		if st := c.Stats(); st.MessagesSent != burst || st.MessagesReceived != 2*burst+rounds {
			t.Fatalf("client %d stats %+v", i, st)
		}
	}
}
