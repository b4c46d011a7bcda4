package test

import (
	"bytes"
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/marmotws/marmot"
)

// Benchmark shapes. Both servers see identical load from coder/websocket
// clients, so server and client share no code and the client's cost is the
// same on both sides of the comparison.
const (
	echoConns   = 50 // concurrent connections, one message in flight each
	echoSize    = 64 // bytes per message
	bcReceivers = 200
	bcSize      = 64
	// bcBatch broadcasts go out before the benchmark waits for every
	// receiver to have them all. It bounds the backlog far below both
	// servers' per-connection limits (marmot: 4 MiB queue; gorilla: 256
	// frames), so no receiver is ever dropped as a slow consumer.
	bcBatch = 64
)

// BenchmarkEcho: echoConns clients each send a 64-byte text message and wait
// for its echo, b.N messages in all; msgs/s counts round trips.
func BenchmarkEcho(b *testing.B) {
	b.Run("marmot", func(b *testing.B) {
		srv := startServer(b, marmot.ServerConfig{ServerEvents: marmot.ServerEvents{OnHandleCommand: echo}})
		benchEcho(b, srv.URL())
	})
	b.Run("gorilla", func(b *testing.B) {
		benchEcho(b, startGorilla(b, true).URL())
	})
}

// BenchmarkBroadcast: the server broadcasts b.N 64-byte messages to
// bcReceivers clients; deliveries/s counts messages received by clients.
func BenchmarkBroadcast(b *testing.B) {
	b.Run("marmot", func(b *testing.B) {
		connected := make(chan struct{}, bcReceivers)
		srv := startServer(b, marmot.ServerConfig{ServerEvents: marmot.ServerEvents{
			OnClientConnected: func(marmot.ClientInfo) { connected <- struct{}{} },
		}})
		benchBroadcast(b, srv.URL(), connected, func(msg []byte) {
			if n, err := srv.Broadcast(msg); n != bcReceivers || err != nil {
				b.Fatalf("Broadcast = %d, %v; want %d, nil", n, err, bcReceivers)
			}
		})
	})
	b.Run("gorilla", func(b *testing.B) {
		g := startGorilla(b, false)
		benchBroadcast(b, g.URL(), g.Connected, g.Broadcast)
	})
}

// dialMany opens n coder/websocket connections and closes them when the
// benchmark ends.
func dialMany(b *testing.B, url string, n int) []*websocket.Conn {
	b.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), guard)
	defer cancel()
	conns := make([]*websocket.Conn, n)
	for i := range conns {
		c, resp, err := websocket.Dial(ctx, url, nil)
		if err != nil {
			b.Fatalf("dial #%d: %v", i, err)
		}
		if resp.Body != nil {
			_ = resp.Body.Close()
		}
		conns[i] = c
	}
	b.Cleanup(func() {
		// Closing in parallel: each close waits for the server's answer.
		var wg sync.WaitGroup
		for _, c := range conns {
			wg.Go(func() { _ = c.Close(websocket.StatusNormalClosure, "") })
		}
		wg.Wait()
	})
	return conns
}

func benchEcho(b *testing.B, url string) {
	conns := dialMany(b, url, echoConns)
	msg := bytes.Repeat([]byte("e"), echoSize)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()

	roundTrips(b, len(conns), func(i int) error {
		c := conns[i]
		if err := c.Write(ctx, websocket.MessageText, msg); err != nil {
			return fmt.Errorf("write: %w", err)
		}
		typ, data, err := c.Read(ctx)
		if err != nil {
			return fmt.Errorf("read: %w", err)
		}
		if typ != websocket.MessageText || len(data) != echoSize {
			return fmt.Errorf("echo: %v of %d bytes", typ, len(data))
		}
		return nil
	})
}

// roundTrips spreads b.N round trips over workers goroutines (worker i
// calls trip(i) until its share is done or a trip fails), reports msgs/s
// and returns the time per round trip.
func roundTrips(b *testing.B, workers int, trip func(i int) error) time.Duration {
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	var wg sync.WaitGroup
	for i := range workers {
		n := b.N / workers
		if i < b.N%workers {
			n++
		}
		wg.Go(func() {
			for range n {
				if err := trip(i); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "msgs/s")
	return elapsed / time.Duration(max(b.N, 1))
}

// benchBroadcast dials bcReceivers clients, waits for the server to have
// registered each (one value on connected per client), then broadcasts b.N
// messages, rounded up to whole batches.
func benchBroadcast(b *testing.B, url string, connected <-chan struct{}, broadcast func([]byte)) {
	conns := dialMany(b, url, bcReceivers)
	for i := range bcReceivers {
		recv(b, connected, fmt.Sprintf("registration #%d", i+1))
	}
	msg := bytes.Repeat([]byte("b"), bcSize)
	batches := (b.N + bcBatch - 1) / bcBatch
	total := batches * bcBatch
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()

	// Each receiver reports every completed batch; the broadcaster waits for
	// all reports before the next batch.
	batchDone := make(chan struct{}, bcReceivers)
	var wg sync.WaitGroup
	for _, c := range conns {
		wg.Go(func() {
			for i := 1; i <= total; i++ {
				typ, data, err := c.Read(ctx)
				if err != nil {
					b.Errorf("read #%d: %v", i, err)
					return
				}
				if typ != websocket.MessageText || len(data) != bcSize {
					b.Errorf("broadcast: %v of %d bytes", typ, len(data))
					return
				}
				if i%bcBatch == 0 {
					batchDone <- struct{}{}
				}
			}
		})
	}

	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	for range batches {
		for range bcBatch {
			broadcast(msg)
		}
		for i := range bcReceivers {
			recv(b, batchDone, fmt.Sprintf("batch from receiver %d", i+1))
		}
	}
	elapsed := time.Since(start)
	b.StopTimer()
	wg.Wait()
	b.ReportMetric(float64(total*bcReceivers)/elapsed.Seconds(), "deliveries/s")
}
