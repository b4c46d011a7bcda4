package main

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

type broadcastOpts struct {
	Receivers int
	Count     int     // sequenced messages the sender sends
	Size      int     // bytes per message, at least 17
	Rate      float64 // messages per second; 0: as fast as the socket takes them
	JSON      bool    // JSON text bodies instead of the byte pattern
}

// Broadcast payload: sequence number, send time (Unix ns), kind, pattern.
const (
	bcHeader = 17
	kindData = 0
	// kindProbe messages go out before the sequence until every receiver
	// has seen one, so that no server can lose a message to a receiver it
	// has not finished registering; they are not counted.
	kindProbe = 1
)

func fillBroadcast(b []byte, seq uint64, kind byte, sent int64, json bool) {
	binary.LittleEndian.PutUint64(b[0:], seq)
	binary.LittleEndian.PutUint64(b[8:], uint64(sent))
	b[16] = kind
	fillBody(b[bcHeader:], seq*11+bcHeader, json)
}

// tally is one receiver's account of a numbered sequence: what arrived,
// twice, out of order or damaged, and each message's latency. The
// broadcast and publish scenarios keep one per receiver (per phase).
type tally struct {
	seen                           []bool
	unique, dup, ooo, bad, maxSeen int64
	lat                            []int64 // send to delivery, ns
	last                           time.Time
}

// note counts message seq, sent at sent (ns), whose frame matched what
// was sent; it reports whether it completed the sequence of count.
func (t *tally) note(seq uint64, sent int64, now time.Time, count int) bool {
	if t.seen[seq] {
		t.dup++
		return false
	}
	t.seen[seq] = true
	t.unique++
	if int64(seq) < t.maxSeen {
		t.ooo++
	}
	t.maxSeen = max(t.maxSeen, int64(seq))
	t.lat = append(t.lat, now.UnixNano()-sent)
	t.last = now
	return t.unique == int64(count)
}

// bcReceiver is one receiver's account of the sequence.
type bcReceiver struct {
	tally
	err error
}

// runBroadcast: Receivers connections that never send, and one sender whose
// Count sequenced messages the server relays to every other client. Each
// receiver counts what it lost, got twice or got out of order, and checks
// every payload byte for byte.
func runBroadcast(ctx context.Context, t target, o broadcastOpts) *Result {
	res := &Result{Scenario: "broadcast", Impl: t.Impl, Receivers: o.Receivers, Count: o.Count, Size: o.Size}
	if o.Size < bcHeader {
		res.addErr("size %d < %d", o.Size, bcHeader)
		return res
	}
	ctx, cancel := context.WithTimeout(ctx, t.MaxDuration)
	defer cancel()

	d := newDialer(t)
	defer d.close()
	conns := make([]*conn, o.Receivers+1) // the last one sends
	defer closeAll(conns)
	if err := dialAll(ctx, d, o.Receivers, t.DialConc, func(i int, c *conn) { conns[i] = c }); err != nil {
		res.addErr("%v", err)
		return res
	}
	sender, err := d.dial(ctx)
	if err != nil {
		res.addErr("dial sender: %v", err)
		return res
	}
	conns[o.Receivers] = sender
	sender.ws.CloseRead(ctx) // answers pings; the sender is sent nothing

	var (
		stopping        atomic.Bool
		ready, complete atomic.Int64
		allComplete     = make(chan struct{})
		readers         sync.WaitGroup
		recv            = make([]bcReceiver, o.Receivers)
	)
	for i := range o.Receivers {
		c, r := conns[i], &recv[i]
		r.seen = make([]bool, o.Count)
		r.lat = make([]int64, 0, o.Count)
		r.maxSeen = -1
		readers.Go(func() {
			isReady := false
			want := make([]byte, o.Size)
			for {
				data, err := c.read(ctx)
				now := time.Now()
				if err != nil {
					if !stopping.Load() {
						r.err = err
					}
					return
				}
				if len(data) != o.Size {
					r.bad++
					continue
				}
				seq := binary.LittleEndian.Uint64(data)
				sent := int64(binary.LittleEndian.Uint64(data[8:]))
				if data[16] == kindProbe {
					if !isReady {
						isReady = true
						ready.Add(1)
					}
					continue
				}
				fillBroadcast(want, seq, kindData, sent, o.JSON)
				if seq >= uint64(o.Count) || !bytes.Equal(data, want) {
					r.bad++
					continue
				}
				if r.note(seq, sent, now, o.Count) && complete.Add(1) == int64(o.Receivers) {
					close(allComplete)
				}
			}
		})
	}
	defer func() { // on early returns; harmless after the normal end
		stopping.Store(true)
		closeAll(conns)
		readers.Wait()
	}()

	// Probe until every receiver is registered.
	probe := make([]byte, o.Size)
	barrier := time.Now().Add(30 * time.Second)
	for ready.Load() < int64(o.Receivers) {
		if time.Now().After(barrier) || ctx.Err() != nil {
			res.addErr("only %d of %d receivers got a probe within 30s", ready.Load(), o.Receivers)
			return res
		}
		fillBroadcast(probe, 0, kindProbe, time.Now().UnixNano(), o.JSON)
		if err := sender.write(ctx, probe); err != nil {
			res.addErr("probe: %v", err)
			return res
		}
		time.Sleep(20 * time.Millisecond)
	}

	cpu0 := t.cpu()
	rx0, _ := d.wire.total()
	start := time.Now()
	buf := make([]byte, o.Size)
	for seq := range o.Count {
		if o.Rate > 0 {
			if d := time.Until(start.Add(time.Duration(float64(seq) / o.Rate * float64(time.Second)))); d > 0 {
				time.Sleep(d)
			}
		}
		fillBroadcast(buf, uint64(seq), kindData, time.Now().UnixNano(), o.JSON)
		if err := sender.write(ctx, buf); err != nil {
			res.addErr("send #%d: %v", seq, err)
			break
		}
	}
	select {
	case <-allComplete:
		time.Sleep(100 * time.Millisecond) // room for duplicates to show up
	case <-ctx.Done():
		res.addErr("%d of %d receivers complete when the %v limit ended the run", complete.Load(), o.Receivers, t.MaxDuration)
	}
	cpu := t.cpu() - cpu0
	rx1, _ := d.wire.total()
	res.ServerRSSKiB = t.rss()
	stopping.Store(true)
	closeAll(conns)
	readers.Wait()

	var lat []int64
	var last time.Time
	worst, worstN := -1, int64(0)
	for i := range recv {
		r := &recv[i]
		lost := int64(o.Count) - r.unique
		res.Deliveries += r.unique
		res.Lost += lost
		res.Duplicated += r.dup
		res.OutOfOrder += r.ooo
		res.Mismatched += r.bad
		lat = append(lat, r.lat...)
		if r.last.After(last) {
			last = r.last
		}
		if n := lost + r.dup + r.ooo + r.bad; n > worstN {
			worst, worstN = i, n
		}
		if r.err != nil {
			res.addErr("receiver %d: %v", i, r.err)
		}
	}
	if worst >= 0 {
		r := &recv[worst]
		res.WorstClient = fmt.Sprintf("receiver %d: lost %d, dup %d, ooo %d, bad %d", worst, int64(o.Count)-r.unique, r.dup, r.ooo, r.bad)
	}
	if !last.IsZero() {
		elapsed := last.Sub(start)
		res.Seconds = elapsed.Seconds()
		res.DeliveriesPerSec = float64(res.Deliveries) / elapsed.Seconds()
	}
	res.latencies(lat)
	res.wireBytes(rx1-rx0, 0, res.Deliveries) // what the receivers read
	if t.PID != 0 && res.Deliveries > 0 {
		res.ServerCPUms = float64(cpu) / 1e6
		res.CPUPerMsgUs = float64(cpu) / 1e3 / float64(res.Deliveries)
	}
	return res
}
