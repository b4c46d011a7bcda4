package httpconn

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/marmotws/marmot/internal/transport"
)

// ErrSessionEnded is how a session's reader ends when the session was
// dropped or released; and what sends and polls of it get (as 404).
var ErrSessionEnded = errors.New("httpconn: session ended")

// errStop ends a send's delivery after a close record.
var errStop = errors.New("httpconn: input ended")

// Conn is one server session. It implements transport.Conn: its reader is
// whichever send request is delivering (one at a time, in order), and its
// writes queue records that polls deliver.
type Conn struct {
	srv    *Server
	cfg    Config
	id     string
	sub    string
	remote net.Addr

	// Inbound. Sends deliver under inMu, which also orders Done after
	// every Message.
	sending   atomic.Bool // a send request is in flight
	inMu      sync.Mutex
	current   atomic.Pointer[sendRun] // the send whose record is in Message (send.go)
	nextIn    uint64                  // the number of the next new client record
	readerEnd bool                    // the reader has ended: Done was called, or is due at Start
	doneSent  bool                    // Done was called
	endErr    error

	// The writer's run deadline, under the owner's write lock.
	wd time.Time

	mu sync.Mutex
	closing
	recv     transport.Receiver // set by Start
	inEnd    error              // the reader's end, for ReceiveNow
	early    []record           // records that came before Start
	earlyLen int64
	out      [][]byte // unacknowledged records (encoded), out[0] numbered acked+1
	acked    uint64
	nextOut  uint64
	outBytes int64
	closeSeq uint64 // our close record's number; 0: none yet
	wake     chan struct{}
	poll     chan struct{} // the pending poll's: closed to supersede it
	active   int           // requests in progress
	lastSeen time.Time
	idle     *time.Timer
	timers   [2]*time.Timer // the close deadline, the release grace
}

type record struct {
	typ  byte
	data []byte
}

func newConn(s *Server, id, sub string, remote net.Addr) *Conn {
	c := &Conn{srv: s, cfg: s.cfg, id: id, sub: sub, remote: remote, nextIn: 1, nextOut: 1,
		wake: make(chan struct{}), lastSeen: time.Now()}
	c.idle = time.AfterFunc(c.cfg.IdleTimeout, c.idleCheck)
	return c
}

// signal wakes whoever waits on the session's state (under mu).
func (c *Conn) signal() {
	close(c.wake)
	c.wake = make(chan struct{})
}

// Subprotocol implements transport.Conn.
func (c *Conn) Subprotocol() string { return c.sub }

// RemoteAddr implements transport.Conn: the address of the open request.
func (c *Conn) RemoteAddr() net.Addr { return c.remote }

// Transport implements transport.Conn.
func (c *Conn) Transport() string { return transport.NameHTTP }

// Compressed is false: the HTTP transport has no permessage-deflate.
func (c *Conn) Compressed() bool { return false }

// ID returns the session id.
func (c *Conn) ID() string { return c.id }

// begin and end bracket a request, for the idle timeout.
func (c *Conn) begin() {
	c.mu.Lock()
	c.active++
	c.lastSeen = time.Now()
	c.mu.Unlock()
}

func (c *Conn) end() {
	c.mu.Lock()
	c.active--
	c.lastSeen = time.Now()
	c.mu.Unlock()
}

// idleCheck ends a session that has made no request for IdleTimeout, as a
// WebSocket whose peer stopped answering pings.
func (c *Conn) idleCheck() {
	c.mu.Lock()
	if c.phase == phaseGone {
		c.mu.Unlock()
		return
	}
	if left := c.cfg.IdleTimeout - time.Since(c.lastSeen); c.active > 0 || left > 0 {
		c.idle.Reset(max(left, c.cfg.PollTimeout/4, 10*time.Millisecond))
		c.mu.Unlock()
		return
	}
	c.mu.Unlock()
	c.endReader(transport.ErrKeepAlive)
}

// endReader ends the reader with err: Done, unless it has ended already
// (or, before Start, when Start comes). It waits for a send being
// delivered; call it from a goroutine of its own where that could block
// the caller's own progress.
func (c *Conn) endReader(err error) {
	c.inMu.Lock()
	defer c.inMu.Unlock()
	c.endReaderLocked(err)
}

func (c *Conn) endReaderLocked(err error) {
	if c.readerEnd {
		return
	}
	c.readerEnd, c.endErr = true, err
	c.mu.Lock()
	c.inEnd = err
	r := c.recv
	c.early, c.earlyLen = nil, 0
	c.signal()
	c.mu.Unlock()
	if r != nil {
		c.doneSent = true
		r.Done(err)
	}
}

// ReceiveNow implements transport.Conn.
func (c *Conn) ReceiveNow(deadline time.Time) (int, []byte, error) {
	var timer <-chan time.Time
	if !deadline.IsZero() {
		t := time.NewTimer(time.Until(deadline))
		defer t.Stop()
		timer = t.C
	}
	c.mu.Lock()
	for {
		if len(c.early) > 0 {
			rec := c.early[0]
			c.early = c.early[1:]
			c.earlyLen -= int64(len(rec.data))
			c.signal()
			c.mu.Unlock()
			if rec.typ == recClose {
				code, text, _ := parseClose(rec.data)
				return 0, nil, &transport.PeerClose{Code: code, Text: text}
			}
			return int(rec.typ), rec.data, nil
		}
		if c.inEnd != nil {
			err := c.inEnd
			c.mu.Unlock()
			return 0, nil, err
		}
		wake := c.wake
		c.mu.Unlock()
		select {
		case <-wake:
		case <-timer:
			return 0, nil, os.ErrDeadlineExceeded
		}
		c.mu.Lock()
	}
}

// SendNow implements transport.Conn.
func (c *Conn) SendNow(typ int, data []byte, deadline time.Time) error {
	return c.enqueue(byte(typ), data, deadline)
}

// Start implements transport.Conn: records that came before it are
// delivered first.
func (c *Conn) Start(r transport.Receiver) {
	c.mu.Lock()
	c.recv = r
	c.mu.Unlock()
	go func() {
		c.inMu.Lock()
		if c.readerEnd {
			// Ended before Start, or between Start and here (then
			// endReaderLocked has called Done already).
			if !c.doneSent {
				c.doneSent = true
				r.Done(c.endErr)
			}
			c.inMu.Unlock()
			return
		}
		// A run of its own, without a request, so that a Handoff can
		// move it too (send.go); it lets inMu go when done.
		(&sendRun{c: c, early: c.takeEarly()}).deliver(0)
	}()
}

// takeEarly takes the records that came before Start (under inMu, after
// Start), to be delivered before any other.
func (c *Conn) takeEarly() []record {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.early) == 0 {
		return nil
	}
	early := c.early
	c.early, c.earlyLen = nil, 0
	c.signal()
	return early
}

// beforeStart keeps one new client record for after Start while there is
// no receiver yet (under inMu), at most one body's worth (waiting for room
// until req ends): kept reports it did. It reports false and no error
// once started.
func (c *Conn) beforeStart(req *http.Request, typ byte, data []byte) (kept bool, err error) {
	c.mu.Lock()
	for c.recv == nil {
		// Before Start: the records wait (a handshake's ReceiveNow takes
		// them).
		if c.inEnd != nil || c.phase >= phaseReleased {
			err := c.inEnd
			c.mu.Unlock()
			if err == nil {
				err = ErrSessionEnded
			}
			return false, err
		}
		if c.earlyLen+int64(len(data)) <= c.cfg.maxBody() || len(c.early) == 0 {
			c.early = append(c.early, record{typ, bytes.Clone(data)})
			c.earlyLen += int64(len(data))
			c.signal()
			c.mu.Unlock()
			if typ == recClose {
				return true, errStop
			}
			return true, nil
		}
		wake := c.wake
		c.mu.Unlock()
		select {
		case <-wake:
		case <-req.Context().Done():
			return false, req.Context().Err()
		}
		c.mu.Lock()
	}
	c.mu.Unlock()
	return false, nil
}

// deliverNow hands a record of run s to the receiver (under inMu, after
// Start), from the goroutine of s's generation gen. It returns
// errHandedOff when a Handoff moved the run to another goroutine
// meanwhile.
func (c *Conn) deliverNow(typ byte, data []byte, s *sendRun, gen uint64) error {
	if c.readerEnd {
		return c.endErr
	}
	if typ == recClose {
		code, text, err := parseClose(data)
		if err != nil {
			code, text = 1002, "malformed close record"
		}
		c.endReaderLocked(&transport.PeerClose{Code: code, Text: text})
		return errStop
	}
	c.mu.Lock()
	discard := c.phase == phaseFailing
	c.mu.Unlock()
	if discard {
		return nil // after an error close, input is garbage until the peer answers
	}
	c.current.Store(s) // what a Handoff moves
	err := c.recv.Message(int(typ), bytes.NewReader(data))
	if s.gen.Load() != gen {
		return errHandedOff // the run goes on elsewhere; err is ignored
	}
	c.current.Store(nil)
	if err != nil {
		c.endReaderLocked(err)
		return err
	}
	return nil
}

// bodies recycles send bodies.
var bodies = sync.Pool{New: func() any { b := make([]byte, 0, 4096); return &b }}

// readBody reads r into buf, up to limit bytes (ErrTooLarge past it).
func readBody(buf []byte, r io.Reader, limit int64) ([]byte, error) {
	for {
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)]
		}
		n, err := r.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if int64(len(buf)) > limit {
			return buf, fmt.Errorf("%w: body over %d bytes", ErrTooLarge, limit)
		}
		if err == io.EOF {
			return buf, nil
		}
		if err != nil {
			return buf, err
		}
	}
}

// tooLarge answers 413 and ends the session as a WebSocket ends on a
// message over its read limit: 1009.
func (c *Conn) tooLarge(w http.ResponseWriter, err error) {
	http.Error(w, "marmot: "+err.Error(), http.StatusRequestEntityTooLarge)
	c.mu.Lock()
	if c.phase < phaseClosing {
		c.phase = phaseFailing
		c.appendLocked(recClose, closePayload(1009, "message too big"))
		c.closeSeq = c.nextOut - 1
	}
	c.mu.Unlock()
	go c.endReader(transport.ErrReadLimit)
}

// servePoll answers GET ?session=ID&ack=N (docs/HTTP.md section 5).
func (c *Conn) servePoll(w http.ResponseWriter, r *http.Request, q url.Values) {
	ack, err := parseSeq(q.Get("ack"))
	if err != nil {
		http.Error(w, "marmot: a poll needs ack, the number of the last record received (0: none)", http.StatusBadRequest)
		return
	}
	c.begin()
	defer c.end()
	c.mu.Lock()
	if ack >= c.nextOut {
		c.mu.Unlock()
		http.Error(w, fmt.Sprintf("marmot: ack %d is beyond the last record sent (%d)", ack, c.nextOut-1), http.StatusBadRequest)
		return
	}
	c.ackLocked(ack)
	if c.phase == phaseGone || c.closeSeq != 0 && c.acked >= c.closeSeq {
		c.mu.Unlock()
		http.Error(w, "marmot: unknown or ended session", http.StatusNotFound)
		return
	}
	if c.poll != nil {
		close(c.poll)
	}
	mine := make(chan struct{})
	c.poll = mine
	var timer *time.Timer
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	for len(c.out) == 0 && c.phase != phaseGone {
		if timer == nil {
			timer = time.NewTimer(c.cfg.PollTimeout)
		}
		wake := c.wake
		c.mu.Unlock()
		select {
		case <-wake:
		case <-mine:
			http.Error(w, "marmot: superseded by a newer poll of this session", http.StatusConflict)
			return
		case <-timer.C:
			c.mu.Lock()
			c.answerLocked(w, mine, 0)
			return
		case <-r.Context().Done():
			c.mu.Lock()
			if c.poll == mine {
				c.poll = nil
			}
			c.mu.Unlock()
			return
		}
		c.mu.Lock()
	}
	if c.phase == phaseGone {
		c.mu.Unlock()
		http.Error(w, "marmot: unknown or ended session", http.StatusNotFound)
		return
	}
	c.answerLocked(w, mine, pollAnswerBytes)
}

// answerLocked answers a poll with up to max bytes of records (at least
// one, if any); it unlocks mu.
func (c *Conn) answerLocked(w http.ResponseWriter, mine chan struct{}, max int) {
	if c.poll == mine {
		c.poll = nil
	}
	first := c.acked + 1
	var recs [][]byte
	size := 0
	for _, rec := range c.out {
		if len(recs) > 0 && size+len(rec) > max {
			break
		}
		recs = append(recs, rec)
		size += len(rec)
	}
	c.mu.Unlock()
	h := w.Header()
	h.Set("Content-Type", "application/octet-stream")
	h.Set("Cache-Control", "no-store")
	h.Set(HeaderSeq, strconv.FormatUint(first, 10))
	h.Set("Content-Length", strconv.Itoa(size))
	w.WriteHeader(http.StatusOK)
	for _, rec := range recs {
		if _, err := w.Write(rec); err != nil {
			return // the next poll fetches them again
		}
	}
}

// ackLocked forgets the records up to ack (under mu).
func (c *Conn) ackLocked(ack uint64) {
	if ack <= c.acked {
		return
	}
	n := min(int(ack-c.acked), len(c.out))
	for _, rec := range c.out[:n] {
		c.outBytes -= int64(len(rec))
	}
	clear(c.out[:n])
	c.out = c.out[n:]
	c.acked = ack
	c.signal()
	if c.closeSeq != 0 && c.acked >= c.closeSeq && c.phase == phaseReleased {
		c.forgetLocked()
	}
}

// appendLocked queues one record (under mu).
func (c *Conn) appendLocked(typ byte, data []byte) {
	rec := appendRecord(make([]byte, 0, recHeader+len(data)), typ, data)
	c.out = append(c.out, rec)
	c.outBytes += int64(len(rec))
	c.nextOut++
	c.signal()
}

// enqueue queues a data record, waiting until deadline for the client to
// acknowledge enough of the queue.
func (c *Conn) enqueue(typ byte, data []byte, deadline time.Time) error {
	var timer <-chan time.Time
	c.mu.Lock()
	for {
		switch {
		case c.phase >= phaseReleased:
			c.mu.Unlock()
			return ErrSessionEnded
		case len(c.out) == 0 || c.outBytes+int64(len(data)) <= c.cfg.MaxQueueBytes:
			c.appendLocked(typ, data)
			c.mu.Unlock()
			return nil
		}
		if timer == nil && !deadline.IsZero() {
			t := time.NewTimer(time.Until(deadline))
			defer t.Stop()
			timer = t.C
		}
		wake := c.wake
		c.mu.Unlock()
		select {
		case <-wake:
		case <-timer:
			return fmt.Errorf("httpconn: %d bytes unacknowledged: %w", c.cfg.MaxQueueBytes, os.ErrDeadlineExceeded)
		}
		c.mu.Lock()
	}
}

// BeginWrite implements transport.Conn.
func (c *Conn) BeginWrite(deadline time.Time, _ bool) {
	if deadline.IsZero() && c.cfg.WriteTimeout > 0 {
		deadline = time.Now().Add(c.cfg.WriteTimeout)
	}
	c.wd = deadline
}

// WriteMessage implements transport.Conn: it queues the message for the
// next poll.
func (c *Conn) WriteMessage(typ int, data []byte) error { return c.enqueue(byte(typ), data, c.wd) }

// WriteEncoded implements transport.Conn; a WebSocket frame is of no use
// here, the message is queued as a record.
func (c *Conn) WriteEncoded(frame transport.Encoded) error { return c.WriteMessage(frame.Message()) }

// EndWrite implements transport.Conn.
func (c *Conn) EndWrite() error { return nil }

// Close implements transport.Conn: a close record, and up to deadline (at
// most CloseGrace) for the client's.
func (c *Conn) Close(code int, text string, deadline time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.start(code, text) {
		return
	}
	c.appendLocked(recClose, closePayload(code, text))
	c.closeSeq = c.nextOut - 1
	c.timers[0] = time.AfterFunc(time.Until(closeDeadline(deadline)), func() { c.endReader(os.ErrDeadlineExceeded) })
}

// AnswerClose implements transport.Conn: it echoes code (a close without
// a status is answered with 1000).
func (c *Conn) AnswerClose(code int, _ time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	code, ok := c.answer(code)
	if !ok {
		return
	}
	c.appendLocked(recClose, closePayload(code, ""))
	c.closeSeq = c.nextOut - 1
}

// LocalClose implements transport.Conn.
func (c *Conn) LocalClose() (code int, text string, ok bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.local.code, c.local.text, c.local.set
}

// Release implements transport.Conn. The session lingers until its close
// record is acknowledged (at most CloseGrace); without one, it ends now.
func (c *Conn) Release() { c.let(false) }

// Drop implements transport.Conn: input ends now; a queued close record
// still gets its CloseGrace to be fetched.
func (c *Conn) Drop() { c.let(true) }

func (c *Conn) let(drop bool) {
	c.mu.Lock()
	if c.phase >= phaseReleased {
		c.mu.Unlock()
		if drop {
			go c.endReader(ErrSessionEnded)
		}
		return
	}
	closing := c.closeSeq != 0
	c.phase = phaseReleased
	c.signal()
	switch {
	case !closing:
		c.forgetLocked()
	case c.acked >= c.closeSeq:
		c.forgetLocked()
	default:
		c.timers[1] = time.AfterFunc(CloseGrace, c.forget)
	}
	c.mu.Unlock()
	if drop || !closing {
		// No close handshake to wait for: the reader ends now (on its own
		// goroutine: a send may be delivering to the owner calling this).
		go c.endReader(ErrSessionEnded)
	}
}

func (c *Conn) forget() {
	c.mu.Lock()
	c.forgetLocked()
	c.mu.Unlock()
	c.endReader(ErrSessionEnded)
}

// forgetLocked removes the session (under mu): every request gets 404.
func (c *Conn) forgetLocked() {
	if c.phase == phaseGone {
		return
	}
	c.phase = phaseGone
	c.idle.Stop()
	for _, t := range c.timers {
		if t != nil {
			t.Stop()
		}
	}
	c.out, c.outBytes = nil, 0
	c.signal()
	c.srv.remove(c)
}

var _ transport.Conn = (*Conn)(nil)
