package main

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"time"
)

// target is the server a scenario drives.
type target struct {
	URL string
	PID int // the server's process, for RSS and CPU; 0 if unknown
	// PIDs are more server processes (the other nodes of a cluster):
	// CPU and RSS are summed over PID and PIDs.
	PIDs    []int
	Impl    string
	Sources int // loopback source addresses to spread clients over
	// SourceBase is the last byte of the first source address, 127.0.0.X
	// (0: 2).
	SourceBase int
	DialConc   int // connections dialled at once
	// Secure makes every client run marmot's secure handshake and seal
	// and open every message; nil: plain frames.
	Secure *secureClient
	// Compress makes every client offer permessage-deflate (no context
	// takeover, level 1, from compressThreshold bytes).
	Compress bool
	// HTTP makes the clients speak marmot's HTTP fallback transport
	// (docs/HTTP.md) instead of WebSocket.
	HTTP bool
	// Session makes every client ask for a session and send numbered
	// marmot.v1 data envelopes (plain connections only); the server's
	// acknowledgements are read and skipped.
	Session bool
	// MaxDuration bounds the whole scenario, dialling included.
	MaxDuration time.Duration
}

func (t target) pids() []int {
	var ps []int
	for _, p := range append([]int{t.PID}, t.PIDs...) {
		if p != 0 {
			ps = append(ps, p)
		}
	}
	return ps
}

func (t target) cpu() time.Duration {
	var sum time.Duration
	for _, p := range t.pids() {
		d, _ := procCPU(p)
		sum += d
	}
	return sum
}

func (t target) rss() int64 {
	var sum int64
	for _, p := range t.pids() {
		k, _ := procRSS(p)
		sum += k
	}
	return sum
}

type echoOpts struct {
	Clients  int
	Size     int           // bytes per message, at least 16
	Window   int           // messages in flight per client
	Duration time.Duration // how long clients keep sending
	Count    int           // per client; 0: as many as Duration allows
	JSON     bool          // JSON text bodies instead of the byte pattern
}

const echoHeader = 16 // sequence number and client index

// sentinel is the sequence number of the last message a windowed client
// sends: its echo tells the reader that nothing else is outstanding.
const sentinel = ^uint64(0)

func fillEcho(b []byte, client, seq uint64, json bool) {
	binary.LittleEndian.PutUint64(b[0:], seq)
	binary.LittleEndian.PutUint64(b[8:], client)
	fillBody(b[echoHeader:], seq*7+client*13+echoHeader, json)
}

type echoClient struct {
	msgs, mismatched int64
	lat              []int64 // round trips, ns
	err              error
}

// runEcho: Clients connections each send Size-byte binary messages in a
// closed loop with Window in flight, for Duration (or Count each); every
// echo is checked byte for byte against what was sent.
func runEcho(ctx context.Context, t target, o echoOpts) *Result {
	res := &Result{Scenario: "echo", Impl: t.Impl, Clients: o.Clients, Size: o.Size, Window: o.Window}
	if o.Size < echoHeader {
		res.addErr("size %d < %d", o.Size, echoHeader)
		return res
	}
	o.Window = max(o.Window, 1)
	ctx, cancel := context.WithTimeout(ctx, t.MaxDuration)
	defer cancel()

	d := newDialer(t)
	defer d.close()
	conns := make([]*conn, o.Clients)
	err := dialAll(ctx, d, o.Clients, t.DialConc, func(i int, c *conn) { conns[i] = c })
	defer closeAll(conns)
	if err != nil {
		res.addErr("%v", err)
		return res
	}

	cpu0 := t.cpu()
	rx0, tx0 := d.wire.total()
	start := time.Now()
	deadline := start.Add(o.Duration)
	out := make([]echoClient, o.Clients)
	var wg sync.WaitGroup
	for i, c := range conns {
		wg.Go(func() {
			if o.Window == 1 {
				out[i] = echoLoop(ctx, c, uint64(i), o, deadline)
			} else {
				out[i] = echoWindow(ctx, c, uint64(i), o, deadline)
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	cpu := t.cpu() - cpu0
	rx1, tx1 := d.wire.total()
	res.RSSKiB = t.rss()

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
	res.wireBytes(rx1-rx0, tx1-tx0, res.Msgs)
	res.latencies(lat)
	if t.PID != 0 && res.Msgs > 0 {
		res.ServerCPUms = float64(cpu) / 1e6
		res.CPUPerMsgUs = float64(cpu) / 1e3 / float64(res.Msgs)
		res.ServerRSSKiB = res.RSSKiB
		res.RSSKiB = 0
	}
	return res
}

// echoLoop is the one-in-flight client: send, wait for the echo, compare.
func echoLoop(ctx context.Context, c *conn, client uint64, o echoOpts, deadline time.Time) echoClient {
	var r echoClient
	buf := make([]byte, o.Size)
	for seq := uint64(0); o.Count == 0 || seq < uint64(o.Count); seq++ {
		if time.Now().After(deadline) {
			break
		}
		fillEcho(buf, client, seq, o.JSON)
		t0 := time.Now()
		if err := c.write(ctx, buf); err != nil {
			r.err = fmt.Errorf("write #%d: %w", seq, err)
			return r
		}
		data, err := c.read(ctx)
		if err != nil {
			r.err = fmt.Errorf("read #%d: %w", seq, err)
			return r
		}
		r.lat = append(r.lat, int64(time.Since(t0)))
		r.msgs++
		if !bytes.Equal(data, buf) {
			r.mismatched++
			r.err = fmt.Errorf("echo #%d differs from what was sent (%d bytes back, %d sent)", seq, len(data), len(buf))
			return r
		}
	}
	return r
}

// echoWindow keeps Window messages in flight: a writer goroutine sends
// whenever the reader has freed a slot, and ends with a sentinel whose echo
// stops the reader.
func echoWindow(ctx context.Context, c *conn, client uint64, o echoOpts, deadline time.Time) echoClient {
	var r echoClient
	w := uint64(o.Window)
	tokens := make(chan struct{}, w)
	for range w {
		tokens <- struct{}{}
	}
	sentAt := make([]time.Time, w) // slot seq%w, owned by whoever holds its token
	werr := make(chan error, 1)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		buf := make([]byte, o.Size)
		for seq := uint64(0); ; seq++ {
			select {
			case <-tokens:
			case <-ctx.Done():
				werr <- ctx.Err()
				return
			}
			last := time.Now().After(deadline) || (o.Count > 0 && seq >= uint64(o.Count))
			if last {
				seq = sentinel
			}
			fillEcho(buf, client, seq, o.JSON)
			if !last {
				sentAt[seq%w] = time.Now()
			}
			if err := c.write(ctx, buf); err != nil {
				werr <- fmt.Errorf("write #%d: %w", seq, err)
				return
			}
			if last {
				werr <- nil
				return
			}
		}
	}()
	want := make([]byte, o.Size)
	for seq := uint64(0); ; seq++ {
		data, err := c.read(ctx)
		if err != nil {
			cancel()
			r.err = errors.Join(fmt.Errorf("read #%d: %w", seq, err), <-werr)
			return r
		}
		if len(data) >= 8 && binary.LittleEndian.Uint64(data) == sentinel {
			fillEcho(want, client, sentinel, o.JSON)
			if !bytes.Equal(data, want) {
				r.mismatched++
			}
			r.err = <-werr
			return r
		}
		r.lat = append(r.lat, int64(time.Since(sentAt[seq%w])))
		r.msgs++
		fillEcho(want, client, seq, o.JSON)
		if !bytes.Equal(data, want) {
			r.mismatched++
			cancel()
			r.err = fmt.Errorf("echo #%d differs from what was sent (%d bytes back, %d sent)", seq, len(data), len(want))
			<-werr
			return r
		}
		tokens <- struct{}{}
	}
}
