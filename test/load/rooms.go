package main

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"

	"github.com/marmotws/marmot/protocol"
)

// The rooms scenarios speak marmot.v1 envelopes over plain connections.
//
// publish: Members clients join one room on one server; a publisher
// sends Count messages to the room (marmot.publish requests), then Count
// data envelopes the server's handler broadcasts to every other client
// (the same members), alternating which goes first, for Rounds rounds: a
// room publish and a plain Broadcast, same clients, same server process,
// interleaved.
//
// recover: a client joins a room, leaves, misses Missed messages (the
// server keeps them in the room's history), and joins again asking to
// recover: the time from its join to the last replayed message, and the
// bytes it received.

const loadRoom = "load"

// Path names, as the comparison's columns.
const (
	pathPublish   = "room publish"
	pathBroadcast = "broadcast"
)

type publishOpts struct {
	Members int
	Count   int // messages per phase
	Size    int // bytes per message, at least bcHeader
	Rounds  int
	// RoomOnly runs only room-publish phases (Rounds of them), no
	// Broadcast.
	RoomOnly bool
	// Rate paces the publisher, messages per second (0: as fast as it
	// can write), so that latency is measured below saturation.
	Rate float64
}

// Labels of the results by where members are, when the target has
// several URLs (a cluster): the publisher is on the first one.
const (
	whereSame  = "same node"
	whereCross = "cross-node"
)

// kindPhase: the payload's kind byte is kindPhase plus the phase's index.
const kindPhase = 2

// pubPhase is one receiver's account of one phase.
type pubPhase = tally

type pubReceiver struct {
	phases     []pubPhase
	lastOffset uint64 // of the room's last message received
	bad        int64  // frames no phase claims
	err        error
}

// envelopeFrame encodes e as one marmot.v1 frame.
func envelopeFrame(dst []byte, e *protocol.Envelope) []byte {
	b, err := protocol.Binary.Append(dst[:0], e)
	if err != nil {
		panic(err) // the scenarios build only valid envelopes
	}
	return b
}

// joinRoom sends marmot.join (recovering from epoch and offset when epoch
// is set) and reads up to its reply; it returns the join result.
func joinRoom(ctx context.Context, c *conn, room, epoch string, offset uint64) (protocol.JoinResult, int, error) {
	e := protocol.Envelope{Kind: protocol.KindRequest, ID: 1, Name: protocol.RequestJoin, Room: room, Epoch: epoch}
	if epoch != "" {
		e.Offset = offset
	}
	if err := c.ws.Write(ctx, websocket.MessageBinary, envelopeFrame(nil, &e)); err != nil {
		return protocol.JoinResult{}, 0, err
	}
	for {
		_, data, err := c.ws.Read(ctx)
		if err != nil {
			return protocol.JoinResult{}, 0, err
		}
		var in protocol.Envelope
		if err := protocol.Binary.Decode(data, &in); err != nil {
			return protocol.JoinResult{}, 0, err
		}
		switch {
		case in.Kind == protocol.KindError && in.ID == 1:
			return protocol.JoinResult{}, 0, fmt.Errorf("join refused: %d %s", in.Code, in.Payload)
		case in.Kind == protocol.KindReply && in.ID == 1:
			r, err := protocol.DecodeJoinResult(in.Payload)
			return r, wsFrameLen(len(data)), err
		}
	}
}

// wsFrameLen is the length on the wire of a server's (unmasked) frame
// with n bytes of payload.
func wsFrameLen(n int) int {
	switch {
	case n < 126:
		return n + 2
	case n < 1<<16:
		return n + 4
	}
	return n + 10
}

// runPublish runs the publish scenario and returns one result per phase,
// Impl naming the path.
func runPublish(ctx context.Context, t target, o publishOpts) []*Result {
	paths := make([]string, 0, 2*o.Rounds)
	for round := range o.Rounds {
		if o.RoomOnly {
			paths = append(paths, pathPublish)
			continue
		}
		if round%2 == 0 {
			paths = append(paths, pathPublish, pathBroadcast)
		} else {
			paths = append(paths, pathBroadcast, pathPublish)
		}
	}
	res := make([]*Result, len(paths))
	for i, p := range paths {
		round := i/2 + 1
		if o.RoomOnly {
			round = i + 1
		}
		res[i] = &Result{Scenario: "publish", Impl: p, Round: round, Receivers: o.Members, Count: o.Count, Size: o.Size}
	}
	fail := func(format string, args ...any) []*Result {
		res[0].addErr(format, args...)
		return res
	}
	if o.Size < bcHeader {
		return fail("size %d < %d", o.Size, bcHeader)
	}
	if len(paths)+kindPhase > 255 {
		return fail("at most %d rounds", (255-kindPhase)/2)
	}
	// --max-duration bounds the dialling and each phase on its own: a
	// run has 2×Rounds phases.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	dctx, dcancel := context.WithTimeout(ctx, t.MaxDuration)
	defer dcancel()

	d := newDialer(t)
	d.envelope = true
	defer d.close()
	conns := make([]*conn, o.Members+1) // the last one publishes
	defer closeAll(conns)
	recv := make([]pubReceiver, o.Members)
	var joinErr atomic.Value
	err := dialAll(dctx, d, o.Members, t.DialConc, func(i int, c *conn) {
		conns[i] = c
		jr, _, err := joinRoom(dctx, c, loadRoom, "", 0)
		if err != nil {
			joinErr.CompareAndSwap(nil, fmt.Errorf("member %d: %w", i, err))
		}
		recv[i].lastOffset = jr.Offset
	})
	if err != nil {
		return fail("%v", err)
	}
	if err, _ := joinErr.Load().(error); err != nil {
		return fail("%v", err)
	}
	// The publisher is on the first URL (with several nodes, members on
	// it are "same node", the others "cross-node").
	pub, err := d.dialTo(dctx, d.urls[0])
	if err != nil {
		return fail("dial publisher: %v", err)
	}
	conns[o.Members] = pub
	dcancel()

	var (
		stopping atomic.Bool
		readers  sync.WaitGroup
		complete = make([]atomic.Int64, len(paths))
		done     = make([]chan struct{}, len(paths))
		replies  atomic.Int64
		refused  atomic.Int64
		// sentAt and answeredAt, by request ID (from 1): a publish's
		// send and its answer, Unix ns.
		sentAt     = make([]atomic.Int64, len(paths)*o.Count+1)
		answeredAt = make([]atomic.Int64, len(paths)*o.Count+1)
		firstReq   = make([]uint64, len(paths)) // each phase's first request ID
	)
	for i := range done {
		done[i] = make(chan struct{})
	}
	for i := range o.Members {
		c, r := conns[i], &recv[i]
		r.phases = make([]pubPhase, len(paths))
		for p := range r.phases {
			r.phases[p] = pubPhase{seen: make([]bool, o.Count), lat: make([]int64, 0, o.Count), maxSeen: -1}
		}
		readers.Go(func() {
			want := make([]byte, o.Size)
			var in protocol.Envelope
			for {
				_, data, err := c.ws.Read(ctx)
				now := time.Now()
				if err != nil {
					if !stopping.Load() {
						r.err = err
					}
					return
				}
				if protocol.Binary.Decode(data, &in) != nil || in.Kind != protocol.KindData || len(in.Payload) != o.Size {
					r.bad++
					continue
				}
				p := int(in.Payload[16]) - kindPhase
				if p < 0 || p >= len(paths) {
					r.bad++
					continue
				}
				st := &r.phases[p]
				if paths[p] == pathPublish {
					// Room messages: the room's offsets, one more each time.
					if in.Room != loadRoom || in.Offset != r.lastOffset+1 {
						st.ooo++
					}
					r.lastOffset = max(r.lastOffset, in.Offset)
				} else if in.Room != "" {
					st.bad++
					continue
				}
				seq := binary.LittleEndian.Uint64(in.Payload)
				sent := int64(binary.LittleEndian.Uint64(in.Payload[8:]))
				fillBroadcast(want, seq, in.Payload[16], sent, false)
				if seq >= uint64(o.Count) || !bytes.Equal(in.Payload, want) {
					st.bad++
					continue
				}
				if st.note(seq, sent, now, o.Count) && complete[p].Add(1) == int64(o.Members) {
					close(done[p])
				}
			}
		})
	}
	// The publisher reads the answers to its publishes.
	readers.Go(func() {
		var in protocol.Envelope
		for {
			_, data, err := pub.ws.Read(ctx)
			if err != nil {
				return
			}
			if protocol.Binary.Decode(data, &in) == nil {
				switch in.Kind {
				case protocol.KindReply:
					replies.Add(1)
					if in.ID < uint64(len(answeredAt)) {
						answeredAt[in.ID].Store(time.Now().UnixNano())
					}
				case protocol.KindError:
					refused.Add(1)
				}
			}
		}
	})
	stopAll := func() {
		stopping.Store(true)
		closeAll(conns)
		readers.Wait()
	}
	defer func() { // on early returns; harmless after the normal end
		if !stopping.Load() {
			stopAll()
		}
	}()

	starts := make([]time.Time, len(paths))
	payload := make([]byte, o.Size)
	var frame []byte
	var reqID uint64
	for p, path := range paths {
		r := res[p]
		pctx, pcancel := context.WithTimeout(ctx, t.MaxDuration)
		cpu0 := t.cpu()
		starts[p] = time.Now()
		firstReq[p] = reqID + 1
		for seq := range o.Count {
			if o.Rate > 0 {
				// Pacing, not synchronisation: message seq leaves at its
				// slot, late ones at once.
				time.Sleep(time.Until(starts[p].Add(time.Duration(float64(seq) * float64(time.Second) / o.Rate))))
			}
			fillBroadcast(payload, uint64(seq), byte(kindPhase+p), time.Now().UnixNano(), false)
			e := protocol.Envelope{Kind: protocol.KindData, Payload: payload}
			if path == pathPublish {
				reqID++
				e = protocol.Envelope{Kind: protocol.KindRequest, ID: reqID, Name: protocol.RequestPublish, Room: loadRoom, Payload: payload}
				sentAt[reqID].Store(time.Now().UnixNano())
			}
			frame = envelopeFrame(frame, &e)
			if err := pub.ws.Write(pctx, websocket.MessageBinary, frame); err != nil {
				r.addErr("send #%d: %v", seq, err)
				break
			}
		}
		timedOut := false
		select {
		case <-done[p]:
		case <-pctx.Done():
			timedOut = true
			r.addErr("%d of %d members complete when the %v limit ended the phase", complete[p].Load(), o.Members, t.MaxDuration)
		}
		pcancel()
		if t.PID != 0 {
			r.ServerCPUms = float64(t.cpu()-cpu0) / 1e6
		}
		fmt.Fprintf(os.Stderr, "phase %d/%d  %-12s done\n", p+1, len(paths), path)
		if timedOut {
			// What is still in flight would distort the next phase.
			res[p].addErr("stopped after this phase")
			break
		}
	}
	time.Sleep(100 * time.Millisecond) // room for duplicates to show up
	res[0].ServerRSSKiB = t.rss()
	stopAll()

	if n := refused.Load(); n > 0 {
		res[0].addErr("%d publishes refused", n)
	}
	// With several nodes, each phase is also summed by where the
	// members are: on the publisher's node or on another.
	var byWhere []*Result
	split := len(d.urls) > 1
	for p := range paths {
		if !split {
			break
		}
		for _, w := range []string{whereSame, whereCross} {
			r := *res[p]
			r.Impl, r.Errors, r.ServerCPUms, r.ServerRSSKiB = paths[p]+" "+w, nil, 0, 0
			var members []int
			for i := range recv {
				if (conns[i].url == d.urls[0]) == (w == whereSame) {
					members = append(members, i)
				}
			}
			r.Receivers = len(members)
			sumPhase(&r, recv, members, p, o.Count, starts[p])
			byWhere = append(byWhere, &r)
		}
	}
	for p := range paths {
		if paths[p] != pathPublish {
			continue
		}
		var ans []int64
		for id := firstReq[p]; id < firstReq[p]+uint64(o.Count) && id < uint64(len(sentAt)); id++ {
			if a, s := answeredAt[id].Load(), sentAt[id].Load(); a != 0 && s != 0 {
				ans = append(ans, a-s)
			}
		}
		res[p].answers(ans)
	}
	for p := range paths {
		r := res[p]
		all := make([]int, len(recv))
		for i := range all {
			all[i] = i
		}
		sumPhase(r, recv, all, p, o.Count, starts[p])
		if r.Deliveries > 0 && r.ServerCPUms > 0 {
			r.CPUPerMsgUs = r.ServerCPUms * 1e3 / float64(r.Deliveries)
		}
	}
	for i := range recv {
		if recv[i].err != nil {
			res[0].addErr("member %d: %v", i, recv[i].err)
		}
		res[0].Mismatched += recv[i].bad
	}
	return append(res, byWhere...)
}

// sumPhase adds up phase p of the receivers members into r: deliveries,
// losses, latencies, and the rate from start to the last delivery.
func sumPhase(r *Result, recv []pubReceiver, members []int, p, count int, start time.Time) {
	var lat []int64
	var last time.Time
	for _, i := range members {
		st := &recv[i].phases[p]
		r.Deliveries += st.unique
		r.Lost += int64(count) - st.unique
		r.Duplicated += st.dup
		r.OutOfOrder += st.ooo
		r.Mismatched += st.bad
		lat = append(lat, st.lat...)
		if st.last.After(last) {
			last = st.last
		}
	}
	if !last.IsZero() {
		elapsed := last.Sub(start)
		r.Seconds = elapsed.Seconds()
		r.DeliveriesPerSec = float64(r.Deliveries) / elapsed.Seconds()
	}
	r.latencies(lat)
}

type recoverOpts struct {
	Missed int
	Size   int
}

// runRecover runs one recovery in room: join, leave, Missed messages
// published meanwhile, join again from where the client stood.
func runRecover(ctx context.Context, t target, o recoverOpts, room string) *Result {
	res := &Result{Scenario: "recover", Impl: t.Impl, Count: o.Missed, Size: o.Size}
	if o.Size < bcHeader {
		res.addErr("size %d < %d", o.Size, bcHeader)
		return res
	}
	ctx, cancel := context.WithTimeout(ctx, t.MaxDuration)
	defer cancel()
	d := newDialer(t)
	d.envelope = true
	defer d.close()

	// 1. A member, which then goes away.
	m, err := d.dial(ctx)
	if err != nil {
		res.addErr("dial: %v", err)
		return res
	}
	jr, _, err := joinRoom(ctx, m, room, "", 0)
	_ = m.ws.Close(websocket.StatusNormalClosure, "")
	if err != nil {
		res.addErr("join: %v", err)
		return res
	}
	if jr.Epoch == "" {
		res.addErr("the server keeps no history (start it with --history-size)")
		return res
	}

	// 2. Missed messages, each answered once the room has taken it.
	pub, err := d.dial(ctx)
	if err != nil {
		res.addErr("dial publisher: %v", err)
		return res
	}
	defer func() { _ = pub.ws.Close(websocket.StatusNormalClosure, "") }()
	answered := make(chan error, 1)
	go func() {
		var in protocol.Envelope
		for n := 0; n < o.Missed; {
			_, data, err := pub.ws.Read(ctx)
			if err != nil {
				answered <- err
				return
			}
			if protocol.Binary.Decode(data, &in) == nil {
				switch in.Kind {
				case protocol.KindReply:
					n++
				case protocol.KindError:
					answered <- fmt.Errorf("publish refused: %s", in.Payload)
					return
				}
			}
		}
		answered <- nil
	}()
	payload := make([]byte, o.Size)
	var frame []byte
	for seq := range o.Missed {
		fillBroadcast(payload, uint64(seq), kindData, 0, false)
		e := protocol.Envelope{Kind: protocol.KindRequest, ID: uint64(seq + 1), Name: protocol.RequestPublish, Room: room, Payload: payload}
		frame = envelopeFrame(frame, &e)
		if err := pub.ws.Write(ctx, websocket.MessageBinary, frame); err != nil {
			res.addErr("publish #%d: %v", seq, err)
			return res
		}
	}
	if err := <-answered; err != nil {
		res.addErr("publisher: %v", err)
		return res
	}

	// 3. The member comes back (dialling is not timed) and recovers.
	m, err = d.dial(ctx)
	if err != nil {
		res.addErr("dial: %v", err)
		return res
	}
	defer func() { _ = m.ws.Close(websocket.StatusNormalClosure, "") }()
	cpu0 := t.cpu()
	start := time.Now()
	jr2, n, err := joinRoom(ctx, m, room, jr.Epoch, jr.Offset)
	if err != nil {
		res.addErr("re-join: %v", err)
		return res
	}
	res.Bytes = int64(n)
	if rec := jr2.Recover; rec == nil || !rec.Recovered || rec.Missed != o.Missed {
		res.addErr("re-join: not recovered: %+v", rec)
		return res
	}
	want := make([]byte, o.Size)
	var in protocol.Envelope
	for i := range o.Missed {
		_, data, err := m.ws.Read(ctx)
		if err != nil {
			res.addErr("after %d of %d: %v", i, o.Missed, err)
			res.Lost = int64(o.Missed - i)
			return res
		}
		res.Bytes += int64(wsFrameLen(len(data)))
		if err := protocol.Binary.Decode(data, &in); err != nil || in.Room != room {
			res.Mismatched++
			continue
		}
		if in.Offset != jr.Offset+uint64(i)+1 {
			res.OutOfOrder++
		}
		fillBroadcast(want, uint64(i), kindData, 0, false)
		if !bytes.Equal(in.Payload, want) {
			res.Mismatched++
			continue
		}
		res.Deliveries++
	}
	elapsed := time.Since(start)
	res.Seconds = elapsed.Seconds()
	res.DeliveriesPerSec = float64(res.Deliveries) / elapsed.Seconds()
	if t.PID != 0 {
		res.ServerCPUms = float64(t.cpu()-cpu0) / 1e6
	}
	res.ServerRSSKiB = t.rss()
	return res
}

// roomsMain is "load publish" and "load recover": marmot only, Rounds
// runs against one server child (started with room history for recover).
func roomsMain(scenario string, args []string) error {
	fs := flag.NewFlagSet(scenario, flag.ContinueOnError)
	var f cliFlags
	f.register(fs)
	rounds := fs.Int("rounds", 5, "publish: rounds of one room-publish and one broadcast phase each, alternating which goes first; recover: recoveries")
	missed := fs.Int("missed", 10000, "recover: messages the client misses")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *rounds < 1 {
		return errors.New("--rounds must be at least 1")
	}
	if f.compress || f.payload != payloadPattern {
		return fmt.Errorf("%s takes neither --compress nor --payload", scenario)
	}
	ctx := context.Background()
	url, pid := f.url, f.pid
	if url == "" {
		sargs := []string{"--impl", "marmot", "--mode", modeBroadcast, "--addr", "127.0.0.1:0"}
		if scenario == "recover" {
			sargs = append(sargs, "--history-size", strconv.Itoa(*missed))
		}
		sargs = append(sargs, strings.Fields(f.serverArgs)...)
		c, err := spawnServer(sargs...)
		if err != nil {
			return fmt.Errorf("marmot server: %w", err)
		}
		defer func() { _ = c.stop() }()
		url, pid = c.url, c.pid()
	}
	t, err := f.target("marmot", url, pid, false, false)
	if err != nil {
		return err
	}
	load0 := loadAvg()
	var rs []*Result
	var rw row
	var names []string
	switch scenario {
	case "publish":
		o := publishOpts{Members: f.bc.Receivers, Count: f.bc.Count, Size: f.echo.Size, Rounds: *rounds}
		rs = runPublish(ctx, t, o)
		rw = row{label: fmt.Sprintf("%d members × %d msgs of %d B", o.Members, o.Count, o.Size), scenario: "publish"}
		names = []string{pathPublish, pathBroadcast}
	case "recover":
		o := recoverOpts{Missed: *missed, Size: f.echo.Size}
		for round := range *rounds {
			r := runRecover(ctx, t, o, fmt.Sprintf("recover-%d", round))
			r.Round = round + 1
			fmt.Fprintln(os.Stderr, "round", r.Round, summary(r))
			rs = append(rs, r)
		}
		rw = row{label: fmt.Sprintf("recover %d missed × %d B", o.Missed, o.Size), scenario: "recover"}
		names = []string{"marmot"}
	}
	results := map[string]map[string][]*Result{rw.label: {}}
	for _, r := range rs {
		results[rw.label][r.Impl] = append(results[rw.label][r.Impl], r)
		if f.json {
			r.writeJSON(os.Stdout)
		}
	}
	fmt.Printf("\nload average before: %s, after: %s\n\n", load0, loadAvg())
	printComparison(os.Stdout, []row{rw}, names, results)
	return reportRuns(rs)
}

// reportRuns prints every error of every run on stderr; it fails when
// any run was not clean.
func reportRuns(rs []*Result) error {
	clean := true
	for _, r := range rs {
		for _, e := range r.Errors {
			fmt.Fprintf(os.Stderr, "%s round %d: %s\n", r.Impl, r.Round, e)
		}
		clean = clean && r.OK()
	}
	if !clean {
		return errors.New("the run was not clean (see errors above)")
	}
	return nil
}
