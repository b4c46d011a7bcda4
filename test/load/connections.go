package main

import (
	"bytes"
	"context"
	"sync"
	"sync/atomic"
	"time"
)

type connOpts struct {
	Conns  int
	Sample int           // connections that must still echo at the end
	Settle time.Duration // pause between the last dial and the RSS reading
	Size   int           // sample echo size
	// Hold, when set, is called with the result once the sample has
	// answered, before the connections close: the connections are held
	// open until it returns (cluster-connections holds every node's at
	// once).
	Hold func(*Result)
}

// runConnections ramps to Conns idle connections (the server in echo mode),
// reports the connect rate and the server's RSS growth per connection, then
// checks that an evenly spread sample of them still echoes.
func runConnections(ctx context.Context, t target, o connOpts) *Result {
	res := &Result{Scenario: "connections", Impl: t.Impl, Conns: o.Conns}
	o.Size = max(o.Size, echoHeader)
	ctx, cancel := context.WithTimeout(ctx, t.MaxDuration)
	defer cancel()

	rss0 := t.rss()
	d := newDialer(t)
	defer d.close()
	conns := make([]*conn, o.Conns)
	inbox := make([]chan []byte, o.Conns)
	var (
		stopping atomic.Bool
		readers  sync.WaitGroup
		stray    atomic.Int64
		connMu   sync.Mutex
	)
	defer func() {
		stopping.Store(true)
		connMu.Lock()
		closeAll(conns)
		connMu.Unlock()
		readers.Wait()
	}()

	start := time.Now()
	err := dialAll(ctx, d, o.Conns, t.DialConc, func(i int, c *conn) {
		ch := make(chan []byte, 1)
		connMu.Lock()
		conns[i], inbox[i] = c, ch
		connMu.Unlock()
		// Every connection keeps a reader so that it answers pings.
		readers.Go(func() {
			for {
				data, err := c.read(ctx)
				if err != nil {
					return
				}
				select {
				case ch <- bytes.Clone(data): // read may reuse its buffer
				default:
					stray.Add(1)
				}
			}
		})
	})
	elapsed := time.Since(start)
	var live []int
	for i, c := range conns {
		if c != nil {
			live = append(live, i)
		}
	}
	res.Connected = len(live)
	res.Seconds = elapsed.Seconds()
	res.ConnectPerSec = float64(res.Connected) / elapsed.Seconds()
	if err != nil {
		res.addErr("%d of %d connected: %v", res.Connected, o.Conns, err)
	}
	if res.Connected == 0 {
		return res
	}

	select {
	case <-time.After(o.Settle):
	case <-ctx.Done():
	}
	if t.PID != 0 {
		res.RSSBaseKiB, res.RSSKiB = rss0, t.rss()
		res.KiBPerConn = float64(res.RSSKiB-res.RSSBaseKiB) / float64(res.Connected)
	}

	// The sample answers, 32 at a time.
	res.Sample = min(o.Sample, len(live))
	var ok atomic.Int64
	var wg sync.WaitGroup
	sem := make(chan struct{}, 32)
	for k := range res.Sample {
		i := live[k*len(live)/res.Sample]
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			buf := make([]byte, o.Size)
			fillEcho(buf, uint64(i), 0, false)
			wctx, wcancel := context.WithTimeout(ctx, 10*time.Second)
			defer wcancel()
			if err := conns[i].write(wctx, buf); err != nil {
				return
			}
			select {
			case data := <-inbox[i]:
				if bytes.Equal(data, buf) {
					ok.Add(1)
				}
			case <-wctx.Done():
			}
		})
	}
	wg.Wait()
	res.SampleOK = int(ok.Load())
	if res.SampleOK != res.Sample {
		res.addErr("%d of %d sampled connections did not echo", res.Sample-res.SampleOK, res.Sample)
	}
	if n := stray.Load(); n > 0 {
		res.addErr("%d unexpected messages on idle connections", n)
	}
	if o.Hold != nil {
		o.Hold(res)
	}
	return res
}
