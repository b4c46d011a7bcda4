package main

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/marmotws/marmot"
)

// runEchoEncrypted is the echo scenario against a marmot server with
// --encrypt. The secure profile needs marmot's handshake, which
// coder/websocket does not speak, so these clients are marmot's own Client
// (GCM, one message in flight each): the numbers include marmot's client
// cost and are not comparable with the other implementations' rows.
func runEchoEncrypted(ctx context.Context, t target, o echoOpts, key string) *Result {
	res := &Result{Scenario: "echo", Impl: t.Impl + "+gcm", Clients: o.Clients, Size: o.Size, Window: 1}
	if o.Size < echoHeader {
		res.addErr("size %d < %d", o.Size, echoHeader)
		return res
	}
	ctx, cancel := context.WithTimeout(ctx, t.MaxDuration)
	defer cancel()

	clients := make([]*marmot.Client, o.Clients)
	inbox := make([]chan []byte, o.Clients)
	defer func() {
		var wg sync.WaitGroup
		for _, c := range clients {
			if c != nil {
				wg.Go(func() {
					cctx, ccancel := context.WithTimeout(context.Background(), 10*time.Second)
					defer ccancel()
					_ = c.Close(cctx)
				})
			}
		}
		wg.Wait()
	}()
	for i := range clients {
		ch := make(chan []byte, 1)
		c, err := marmot.NewClient(marmot.ClientConfig{
			URL:      t.URL,
			Logger:   slog.New(slog.DiscardHandler),
			LogLevel: slog.LevelError,
			EncryptionConfig: marmot.EncryptionConfig{
				EncryptionEnabled: true, EncryptionKey: key, EncryptionMode: "gcm",
			},
			ClientEvents: marmot.ClientEvents{OnHandleCommand: func(m *marmot.Message) { ch <- m.Payload }},
		})
		if err != nil {
			res.addErr("client %d: %v", i, err)
			return res
		}
		clients[i], inbox[i] = c, ch
		if err := c.Connect(ctx); err != nil {
			res.addErr("connect %d: %v", i, err)
			return res
		}
	}

	cpu0 := t.cpu()
	start := time.Now()
	deadline := start.Add(o.Duration)
	out := make([]echoClient, o.Clients)
	var wg sync.WaitGroup
	for i, c := range clients {
		wg.Go(func() {
			r := &out[i]
			buf := make([]byte, o.Size)
			for seq := uint64(0); o.Count == 0 || seq < uint64(o.Count); seq++ {
				if time.Now().After(deadline) {
					return
				}
				fillEcho(buf, uint64(i), seq)
				t0 := time.Now()
				if err := c.Send(bytes.Clone(buf)); err != nil {
					r.err = fmt.Errorf("send #%d: %w", seq, err)
					return
				}
				select {
				case data := <-inbox[i]:
					r.lat = append(r.lat, int64(time.Since(t0)))
					r.msgs++
					if !bytes.Equal(data, buf) {
						r.mismatched++
						r.err = fmt.Errorf("echo #%d differs from what was sent", seq)
						return
					}
				case <-ctx.Done():
					r.err = fmt.Errorf("echo #%d: %w", seq, ctx.Err())
					return
				}
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	cpu := t.cpu() - cpu0
	var lat []int64
	for i, c := range out {
		res.Msgs += c.msgs
		res.Mismatched += c.mismatched
		lat = append(lat, c.lat...)
		if c.err != nil {
			res.addErr("client %d: %v", i, c.err)
		}
	}
	res.Verified = res.Msgs - res.Mismatched
	res.Seconds = elapsed.Seconds()
	res.MsgsPerSec = float64(res.Msgs) / elapsed.Seconds()
	res.latencies(lat)
	if t.PID != 0 && res.Msgs > 0 {
		res.ServerCPUms = float64(cpu) / 1e6
		res.CPUPerMsgUs = float64(cpu) / 1e3 / float64(res.Msgs)
		res.ServerRSSKiB = t.rss()
	}
	return res
}
