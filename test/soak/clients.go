package main

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/marmotws/marmot"
	"github.com/marmotws/marmot/chaos/delivery"
)

// fleet is the soak's clients: receivers, each in one room, recording what
// they get, and one publisher per room; all behind the chaos proxy.
type fleet struct {
	urls []string // one per server or node
	sys  *actor.ActorSystem
	rec  *delivery.Recorder
	recv []*marmot.Client
	pubs []*marmot.Client

	recovered, notRecovered atomic.Int64
	lastReason              atomic.Value // string: the last "not recovered" reason
	sent, acked, failed     atomic.Int64
	received                atomic.Int64
}

func roomName(i int) string { return fmt.Sprintf("room-%02d", i) }

// clientConfig is the configuration of client i: the URL of server (or
// node) i modulo their number, failing over to the others in turn.
func (f *fleet) clientConfig(i int) marmot.ClientConfig {
	k := i % len(f.urls)
	var failover []string
	for j := 1; j < len(f.urls); j++ {
		failover = append(failover, f.urls[(k+j)%len(f.urls)])
	}
	return marmot.ClientConfig{
		URL:                  f.urls[k],
		FailoverURLs:         failover,
		Subprotocol:          "marmot.v1",
		AutoReconnect:        true,
		ReconnectStrategy:    marmot.ReconnectExponential,
		ReconnectInterval:    100 * time.Millisecond,
		MaxReconnectInterval: 2 * time.Second,
		ReconnectJitter:      0.3,
		RetryFirstConnect:    true,
		ConnectionTimeout:    5 * time.Second,
		ActorSystem:          f.sys,
		Logger:               slog.New(slog.DiscardHandler),
	}
}

// connect makes n receivers spread over rooms, connects them (a few at a
// time) and joins each to its room.
func (f *fleet) connect(ctx context.Context, n, rooms int) error {
	f.recv = make([]*marmot.Client, n)
	for i := range n {
		name := fmt.Sprintf("c%04d", i)
		cfg := f.clientConfig(i)
		cfg.OnHandleCommand = func(m *marmot.Message) {
			if m.Room != "" {
				f.rec.Received(name, m.Room, m.Epoch, m.Offset, m.Payload)
				f.received.Add(1)
			}
			m.Release()
		}
		cfg.OnRecover = func(room string, ok bool, _ int, reason string) {
			if ok {
				f.recovered.Add(1)
			} else {
				// The server said it cannot fill the gap: what was
				// published in it is counted apart, not as delivered.
				f.rec.NotRecovered(name, room)
				f.notRecovered.Add(1)
				f.lastReason.Store(reason)
			}
		}
		c, err := marmot.NewClient(cfg)
		if err != nil {
			return err
		}
		f.recv[i] = c
	}
	sem := make(chan struct{}, 32)
	errs := make(chan error, n)
	var wg sync.WaitGroup
	for i, c := range f.recv {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			name, room := fmt.Sprintf("c%04d", i), roomName(i%rooms)
			if err := c.Connect(ctx); err != nil {
				errs <- fmt.Errorf("%s: connect: %w", name, err)
				return
			}
			if err := c.Join(ctx, room); err != nil {
				errs <- fmt.Errorf("%s: join %s: %w", name, room, err)
				return
			}
			f.rec.Joined(name, room)
		})
	}
	wg.Wait()
	close(errs)
	return <-errs
}

// publish runs one publisher per room at rate messages per second each
// until ctx ends. A message is acked once the server's answer says the
// room took it; one without an answer (a fault in the way) is not, and
// the next one gets the next number.
func (f *fleet) publish(ctx context.Context, rooms int, rate float64) error {
	var wg sync.WaitGroup
	for r := range rooms {
		room := roomName(r)
		cfg := f.clientConfig(r)
		c, err := marmot.NewClient(cfg)
		if err != nil {
			return err
		}
		if err := c.Connect(ctx); err != nil {
			return err
		}
		f.pubs = append(f.pubs, c)
		s := f.rec.Stream("pub-"+room, room)
		wg.Go(func() {
			t := time.NewTicker(time.Duration(float64(time.Second) / rate))
			defer t.Stop()
			for {
				select {
				case <-ctx.Done():
					return
				case <-t.C:
				}
				payload, seq := s.Next(fmt.Appendf(nil, "%s message at %s", room, time.Now().Format(time.RFC3339Nano)))
				f.sent.Add(1)
				rctx, cancel := context.WithTimeout(ctx, 3*time.Second)
				_, err := c.Request(rctx, pubPrefix+room, payload)
				cancel()
				if err == nil {
					s.Acked(seq)
					f.acked.Add(1)
				} else {
					f.failed.Add(1)
				}
			}
		})
	}
	<-ctx.Done()
	wg.Wait()
	return nil
}

// connected counts the receivers connected now.
func (f *fleet) connected() int {
	n := 0
	for _, c := range f.recv {
		if c.Connected() {
			n++
		}
	}
	return n
}

func (f *fleet) close() {
	var wg sync.WaitGroup
	for _, c := range append(f.recv, f.pubs...) {
		if c == nil {
			continue
		}
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			_ = c.Close(ctx)
		})
	}
	wg.Wait()
}
