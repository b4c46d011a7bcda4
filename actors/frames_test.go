package actors_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/marmotws/marmot/actors"
)

// Data frames marmot encodes itself and the control frames gorilla writes
// (keep-alive pings here) share one socket: with several senders, a
// broadcaster and pings every second, every frame must reach a third-party
// reader whole (gorilla's client fails on a torn frame), each sender's
// messages in order and intact, across the write paths: small frames
// copied, frames over 4 KiB written with writev, frames over 32 KiB written
// around a batch.
func TestFramesStayWholeWithConcurrentWriters(t *testing.T) {
	ids := make(chan actors.ClientID, 1)
	hub := actors.NewHub(actors.HubConfig{
		KeepAlive: 2 * time.Second, // a ping every second; a shorter one closes the connection when a busy machine delays the pong
		Events: actors.ServerEvents{
			OnClientConnected: func(ci actors.ClientInfo) { ids <- ci.ID },
		},
	})
	hs := httptest.NewServer(hub)
	defer hs.Close()
	ws, _, err := websocket.DefaultDialer.Dial("ws"+strings.TrimPrefix(hs.URL, "http"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	id := <-ids

	pings := make(chan struct{}, 1024)
	ws.SetPingHandler(func(s string) error {
		pings <- struct{}{}
		return ws.WriteControl(websocket.PongMessage, []byte(s), time.Now().Add(5*time.Second))
	})

	const senders = 4
	sizes := []int{0, 100, 5000, 40000}
	payload := func(sender byte, seq uint32) []byte {
		n := sizes[int(seq)%len(sizes)]
		p := make([]byte, 5+n)
		p[0] = sender
		binary.BigEndian.PutUint32(p[1:], seq)
		for i := range n {
			p[5+i] = byte(seq) + byte(i)
		}
		return p
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	sent := make([]uint32, senders+1) // per sender; the last is the broadcaster
	// Each sender keeps at most window messages unread by the client, so
	// the backlog, and with it the delay of a pong, stays small.
	const window = 8
	credit := make([]chan struct{}, senders+1)
	for s := range credit {
		credit[s] = make(chan struct{}, window)
		for range window {
			credit[s] <- struct{}{}
		}
	}
	for s := range senders + 1 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for seq := uint32(0); ; seq++ {
				select {
				case <-stop:
					sent[s] = seq
					return
				case <-credit[s]:
				}
				var err error
				if s == senders {
					_, err = hub.Broadcast(payload(byte(s), seq))
				} else {
					err = hub.SendToClient(id, payload(byte(s), seq))
				}
				if err != nil {
					t.Errorf("sender %d: %v", s, err)
					sent[s] = seq
					return
				}
			}
		}()
	}

	next := make([]uint32, senders+1)
	received, seenPings := 0, 0
	stopped := false
	deadline := time.Now().Add(30 * time.Second)
	_ = ws.SetReadDeadline(deadline)
	for {
		if !stopped {
			for drained := false; !drained; {
				select {
				case <-pings:
					seenPings++
				default:
					drained = true
				}
			}
			if seenPings >= 3 && received >= 400 {
				close(stop)
				wg.Wait()
				stopped = true
			}
		}
		if stopped && allReceived(next, sent) {
			break
		}
		typ, got, err := ws.ReadMessage()
		if err != nil {
			t.Fatalf("after %d messages and %d pings: %v", received, seenPings, err)
		}
		if typ != websocket.BinaryMessage && typ != websocket.TextMessage || len(got) < 5 || int(got[0]) > senders {
			t.Fatalf("message %d: type %d, %d bytes", received, typ, len(got))
		}
		s, seq := got[0], binary.BigEndian.Uint32(got[1:])
		if seq != next[s] {
			t.Fatalf("sender %d: got message %d, want %d", s, seq, next[s])
		}
		if !bytes.Equal(got, payload(s, seq)) {
			t.Fatalf("sender %d message %d: payload differs (%d bytes)", s, seq, len(got))
		}
		next[s]++
		received++
		credit[s] <- struct{}{}
	}
	ws.Close() // no closing handshake for Shutdown to wait on
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := hub.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
}

func allReceived(next, sent []uint32) bool {
	for i := range next {
		if next[i] < sent[i] {
			return false
		}
	}
	return true
}
