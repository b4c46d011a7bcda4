package httpconn

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/marmotws/marmot/internal/transport"
)

// retryEvery spaces a client's retries of a failed send or poll.
const retryEvery = 250 * time.Millisecond

// Dialer opens client sessions.
type Dialer struct {
	sub          string
	timeout      time.Duration
	writeTimeout time.Duration
	tls          *tls.Config // https://; nil: the system's roots
	// Transport, when set, carries the requests of every session (and is
	// not closed by them); nil: each session has a transport of its own,
	// whose idle connections close with it.
	Transport http.RoundTripper
}

// NewDialer returns a dialer that offers subprotocol (none when "") and
// gives up the open after timeout (<= 0: ctx alone bounds it). Writes
// without a deadline of their own are bounded by writeTimeout (<= 0:
// none). tlsCfg configures https:// (nil: the system's roots).
func NewDialer(subprotocol string, timeout, writeTimeout time.Duration, tlsCfg *tls.Config) *Dialer {
	return &Dialer{sub: subprotocol, timeout: timeout, writeTimeout: writeTimeout, tls: tlsCfg}
}

// HTTPURL turns a ws:// or wss:// URL into the http:// or https:// one the
// HTTP transport uses (others are returned as they are).
func HTTPURL(raw string) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, err
	}
	switch strings.ToLower(u.Scheme) {
	case "ws":
		u.Scheme = "http"
	case "wss":
		u.Scheme = "https"
	case "http", "https":
	default:
		return nil, fmt.Errorf("httpconn: unsupported URL scheme %q", u.Scheme)
	}
	return u, nil
}

// Dial opens a session at rawURL (ws, wss, http or https). header goes
// with the open request. A refused open's error is a
// *transport.RefusedError.
func (d *Dialer) Dial(ctx context.Context, rawURL string, header http.Header) (*ClientConn, error) {
	u, err := HTTPURL(rawURL)
	if err != nil {
		return nil, err
	}
	if d.timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, d.timeout)
		defer cancel()
	}
	c := &ClientConn{nextSeq: 1, writeTimeout: d.writeTimeout, done: make(chan struct{})}
	c.ctx, c.cancel = context.WithCancel(context.Background())
	rt := d.Transport
	if rt == nil {
		c.own = &http.Transport{
			Proxy:               http.ProxyFromEnvironment,
			DialContext:         (&net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
			MaxIdleConnsPerHost: 4,
			IdleConnTimeout:     90 * time.Second,
			TLSClientConfig:     d.tls,
		}
		rt = c.own
	}
	c.hc = &http.Client{Transport: rt, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

	open := *u
	q := open.Query()
	q.Set(QueryTransport, transportHTTP)
	if d.sub != "" {
		q.Set(QuerySubprotocol, d.sub)
	}
	open.RawQuery = q.Encode()
	trace := &httptrace.ClientTrace{GotConn: func(info httptrace.GotConnInfo) { c.remote = info.Conn.RemoteAddr() }}
	req, err := http.NewRequestWithContext(httptrace.WithClientTrace(ctx, trace), http.MethodPost, open.String(), nil)
	if err != nil {
		c.finish()
		return nil, err
	}
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		c.finish()
		return nil, err
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, 4096))
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		c.finish()
		if len(body) > 1024 {
			body = body[:1024]
		}
		return nil, &transport.RefusedError{Response: resp, Body: body, Err: fmt.Errorf("httpconn: session open refused")}
	}
	if err != nil {
		c.finish()
		return nil, err
	}
	reply, err := decodeOpenReply(body)
	if err != nil {
		c.finish()
		return nil, err
	}
	if d.sub != "" && reply.Subprotocol != "" && reply.Subprotocol != d.sub {
		c.finish()
		return nil, fmt.Errorf("%w: server selected subprotocol %q, not offered", ErrMalformed, reply.Subprotocol)
	}
	c.sub = reply.Subprotocol
	c.respHeader = resp.Header
	c.pollTimeout = time.Duration(reply.PollTimeout) * time.Millisecond
	c.idleTimeout = time.Duration(reply.IdleTimeout) * time.Millisecond
	c.maxBody = reply.MaxBody
	q = u.Query()
	q.Set(QuerySession, reply.Session)
	u.RawQuery = q.Encode()
	c.base = u.String()
	return c, nil
}

// decodeOpenReply reads and checks an open's answer.
func decodeOpenReply(body []byte) (openReply, error) {
	var r openReply
	if err := json.Unmarshal(body, &r); err != nil {
		return r, fmt.Errorf("%w: open answer: %w", ErrMalformed, err)
	}
	switch {
	case len(r.Session) < 16 || len(r.Session) > 64:
		return r, fmt.Errorf("%w: open answer: session id of %d characters", ErrMalformed, len(r.Session))
	case r.PollTimeout <= 0 || r.IdleTimeout <= 0 || r.PollTimeout > 1<<31 || r.IdleTimeout > 1<<31:
		return r, fmt.Errorf("%w: open answer: timeouts %d and %d ms", ErrMalformed, r.PollTimeout, r.IdleTimeout)
	case r.MaxBody < recHeader+1 || r.MaxBody > 1<<40:
		return r, fmt.Errorf("%w: open answer: maxBody %d", ErrMalformed, r.MaxBody)
	}
	return r, nil
}

// ClientConn is a client's session. It implements transport.Conn: a poll
// loop is its reader, and every run of writes is one send request.
type ClientConn struct {
	hc           *http.Client
	respHeader   http.Header     // the open's response header
	own          *http.Transport // nil when the dialer's transport is shared
	base         string          // the endpoint URL with ?session=ID
	sub          string
	remote       net.Addr
	pollTimeout  time.Duration
	idleTimeout  time.Duration
	writeTimeout time.Duration
	maxBody      int64
	ctx          context.Context // ends every request
	cancel       context.CancelFunc
	recv         transport.Receiver
	done         chan struct{} // closed when the poll loop has ended

	// The reader's: the last record handed on, and records fetched ahead
	// by ReceiveNow.
	ack   uint64
	stash []record

	// The writer's (under the caller's write lock); sendMu orders the
	// send requests themselves, close records included.
	batch   []byte
	batchN  uint64 // records in batch
	wd      time.Time
	sendMu  sync.Mutex
	nextSeq uint64

	mu        sync.Mutex
	closing   // open, closing or failing, released
	started   bool
	readerEnd bool
	finished  bool
	closeBy   *time.Timer
}

// Subprotocol implements transport.Conn.
func (c *ClientConn) Subprotocol() string { return c.sub }

// RemoteAddr implements transport.Conn: the server's address.
func (c *ClientConn) RemoteAddr() net.Addr { return c.remote }

// Transport implements transport.Conn.
func (c *ClientConn) Transport() string { return transport.NameHTTP }

// ResponseHeader is the header of the server's answer to the open (the
// session token of docs/ROOMS.md travels there, as in a 101).
func (c *ClientConn) ResponseHeader() http.Header { return c.respHeader }

// Compressed is false: the HTTP transport has no permessage-deflate.
func (c *ClientConn) Compressed() bool { return false }

// fetch polls once: the records after c.ack and the number of the first.
func (c *ClientConn) fetch(ctx context.Context) (recs []record, first uint64, err error) {
	ctx, cancel := context.WithTimeout(ctx, c.pollTimeout+10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.base+"&ack="+strconv.FormatUint(c.ack, 10), nil)
	if err != nil {
		return nil, 0, err
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return nil, 0, &statusError{code: resp.StatusCode, msg: strings.TrimSpace(string(msg))}
	}
	first, err = parseSeq(resp.Header.Get(HeaderSeq))
	if err != nil {
		return nil, 0, err
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<30))
	if err != nil {
		return nil, 0, err // a cut answer: the next poll fetches it again
	}
	err = decodeRecords(body, 0, func(typ byte, data []byte) error {
		recs = append(recs, record{typ, data})
		return nil
	})
	return recs, first, err
}

// statusError is a send or poll answered with an unexpected status.
type statusError struct {
	code int
	msg  string
}

func (e *statusError) Error() string { return fmt.Sprintf("httpconn: HTTP %d: %s", e.code, e.msg) }

// Is makes a 404 ErrSessionEnded and a 413 ErrTooLarge.
func (e *statusError) Is(target error) bool {
	return target == ErrSessionEnded && e.code == http.StatusNotFound ||
		target == ErrTooLarge && e.code == http.StatusRequestEntityTooLarge
}

// retryable reports whether a failed request is worth repeating.
func retryable(err error) bool {
	var se *statusError
	if errors.As(err, &se) {
		return se.code == http.StatusConflict || se.code >= 500
	}
	return !errors.Is(err, ErrMalformed)
}

// next returns the next new record, polling as needed (the reader's).
func (c *ClientConn) next(ctx context.Context) (record, error) {
	var failing time.Time
	for {
		if len(c.stash) > 0 {
			rec := c.stash[0]
			c.stash = c.stash[1:]
			c.ack++
			return rec, nil
		}
		recs, first, err := c.fetch(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return record{}, ctx.Err()
			}
			if !retryable(err) {
				return record{}, err
			}
			if failing.IsZero() {
				// A first failure is retried at once (a poll cut on its
				// way is the common case); the next ones are spaced.
				failing = time.Now()
				continue
			} else if time.Since(failing) >= c.idleTimeout {
				return record{}, fmt.Errorf("%w: %w", transport.ErrKeepAlive, err)
			}
			select {
			case <-time.After(retryEvery):
			case <-ctx.Done():
				return record{}, ctx.Err()
			}
			continue
		}
		failing = time.Time{}
		if first == 0 || first > c.ack+1 {
			return record{}, fmt.Errorf("%w: records from %d, expected %d", ErrMalformed, first, c.ack+1)
		}
		skip := c.ack + 1 - first // already handed on: this answer repeats them
		if skip < uint64(len(recs)) {
			c.stash = append(c.stash, recs[skip:]...)
		}
	}
}

// ReceiveNow implements transport.Conn.
func (c *ClientConn) ReceiveNow(deadline time.Time) (int, []byte, error) {
	ctx, cancel := context.WithDeadline(c.ctx, deadline)
	defer cancel()
	rec, err := c.next(ctx)
	if err != nil {
		return 0, nil, err
	}
	if rec.typ == recClose {
		code, text, _ := parseClose(rec.data)
		return 0, nil, &transport.PeerClose{Code: code, Text: text}
	}
	return int(rec.typ), rec.data, nil
}

// SendNow implements transport.Conn.
func (c *ClientConn) SendNow(typ int, data []byte, deadline time.Time) error {
	return c.post(appendRecord(nil, byte(typ), data), 1, deadline)
}

// Start implements transport.Conn: the poll loop runs on a goroutine of
// its own.
func (c *ClientConn) Start(r transport.Receiver) {
	c.recv = r
	c.mu.Lock()
	c.started = true
	c.mu.Unlock()
	go c.run()
}

func (c *ClientConn) run() {
	defer close(c.done)
	err := c.read()
	if errors.Is(err, context.Canceled) {
		err = ErrSessionEnded
	}
	c.mu.Lock()
	c.readerEnd = true
	c.mu.Unlock()
	c.recv.Done(err)
	c.mu.Lock()
	last := c.phase == phaseReleased
	c.mu.Unlock()
	if last {
		c.finish()
	}
}

// read hands records on until the session ends.
func (c *ClientConn) read() error {
	for {
		rec, err := c.next(c.ctx)
		if err != nil {
			return err
		}
		if rec.typ == recClose {
			code, text, err := parseClose(rec.data)
			if err != nil {
				code, text = 1002, "malformed close record"
			}
			// Acknowledge it, so that the server need not wait for it.
			ctx, cancel := context.WithTimeout(c.ctx, time.Second)
			_, _, _ = c.fetch(ctx)
			cancel()
			return &transport.PeerClose{Code: code, Text: text}
		}
		c.mu.Lock()
		failing := c.phase == phaseFailing
		c.mu.Unlock()
		if failing {
			continue
		}
		if err := c.recv.Message(int(rec.typ), bytes.NewReader(rec.data)); err != nil {
			return err
		}
	}
}

// post sends body (n records) in one send request, repeating it (the
// server skips what it has) until deadline while it fails on the way.
func (c *ClientConn) post(body []byte, n uint64, deadline time.Time) error {
	c.sendMu.Lock()
	defer c.sendMu.Unlock()
	seq := c.nextSeq
	c.nextSeq += n
	ctx := c.ctx
	if !deadline.IsZero() {
		var cancel context.CancelFunc
		ctx, cancel = context.WithDeadline(ctx, deadline)
		defer cancel()
	}
	url := c.base + "&seq=" + strconv.FormatUint(seq, 10)
	for {
		err := c.postOnce(ctx, url, body)
		if err == nil {
			return nil
		}
		if ctx.Err() != nil || !retryable(err) {
			return err
		}
		select {
		case <-time.After(retryEvery):
		case <-ctx.Done():
			return err
		}
	}
}

func (c *ClientConn) postOnce(ctx context.Context, url string, body []byte) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/octet-stream")
	resp, err := c.hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return &statusError{code: resp.StatusCode, msg: strings.TrimSpace(string(msg))}
	}
	// A 204 has no body, and its end is not waited for: over HTTP/2 a
	// send answered while the server's handler still runs (Conn.Handoff)
	// ends its stream only when that handler returns, which may wait for
	// what this client sends next.
	return nil
}

// Handoff implements transport.Conn: it cannot. Nothing asks: a client's
// reader never runs its actor (package actors posts to it), so a callback
// that waits does not hold the poll loop.
func (c *ClientConn) Handoff() bool { return false }

// BeginWrite implements transport.Conn: the run's messages go in one send
// request (more when they exceed the server's maxBody).
//
// Without a deadline of its own a run gets the larger of the write timeout
// and the session's idle timeout: a send is answered once the server has
// handed its messages on, a round trip plus the server's own delay, which
// on a loaded server takes far longer than a WebSocket write into a socket
// buffer; the idle timeout is what the server allows a live client.
func (c *ClientConn) BeginWrite(deadline time.Time, _ bool) {
	if deadline.IsZero() && c.writeTimeout > 0 {
		deadline = time.Now().Add(max(c.writeTimeout, c.idleTimeout))
	}
	c.wd = deadline
	c.batch, c.batchN = c.batch[:0], 0
}

// flushBatch sends the records of the run so far.
func (c *ClientConn) flushBatch() error {
	if c.batchN == 0 {
		return nil
	}
	err := c.post(c.batch, c.batchN, c.wd)
	c.batch, c.batchN = c.batch[:0], 0
	return err
}

// WriteMessage implements transport.Conn.
func (c *ClientConn) WriteMessage(typ int, data []byte) error {
	if len(c.batch) > 0 && int64(len(c.batch)+recHeader+len(data)) > c.maxBody {
		if err := c.flushBatch(); err != nil {
			return err
		}
	}
	c.batch = appendRecord(c.batch, byte(typ), data)
	c.batchN++
	return nil
}

// WriteEncoded implements transport.Conn.
func (c *ClientConn) WriteEncoded(frame transport.Encoded) error {
	return c.WriteMessage(frame.Message())
}

// EndWrite implements transport.Conn: it sends the run.
func (c *ClientConn) EndWrite() error {
	err := c.flushBatch()
	if cap(c.batch) > 64<<10 {
		c.batch = nil
	}
	return err
}

// Close implements transport.Conn: a close record, and up to deadline (at
// most CloseGrace) for the server's.
func (c *ClientConn) Close(code int, text string, deadline time.Time) {
	c.mu.Lock()
	if !c.start(code, text) {
		c.mu.Unlock()
		return
	}
	deadline = closeDeadline(deadline)
	c.closeBy = time.AfterFunc(time.Until(deadline), c.cancel)
	c.mu.Unlock()
	if c.post(appendRecord(nil, recClose, closePayload(code, text)), 1, deadline) != nil {
		c.cancel()
	}
}

// AnswerClose implements transport.Conn.
func (c *ClientConn) AnswerClose(code int, deadline time.Time) {
	c.mu.Lock()
	code, ok := c.answer(code)
	c.mu.Unlock()
	if !ok {
		return
	}
	_ = c.post(appendRecord(nil, recClose, closePayload(code, "")), 1, closeDeadline(deadline))
}

// LocalClose implements transport.Conn.
func (c *ClientConn) LocalClose() (code int, text string, ok bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.local.code, c.local.text, c.local.set
}

// Release implements transport.Conn: requests end once the poll loop has
// (at once, unless this side's close record awaits the server's answer).
func (c *ClientConn) Release() {
	c.mu.Lock()
	waitClose := c.local.set && (c.phase == phaseClosing || c.phase == phaseFailing)
	c.phase = phaseReleased
	last := !c.started || c.readerEnd
	c.mu.Unlock()
	switch {
	case last:
		c.finish()
	case !waitClose:
		c.cancel() // no close handshake of ours to wait for: the poll loop ends now
	}
}

// Drop implements transport.Conn: every request ends now.
func (c *ClientConn) Drop() {
	c.mu.Lock()
	c.phase = phaseReleased
	last := !c.started || c.readerEnd
	c.mu.Unlock()
	c.cancel()
	if last {
		c.finish()
	}
}

// finish ends the session's requests and closes its own idle connections.
func (c *ClientConn) finish() {
	c.mu.Lock()
	if c.finished {
		c.mu.Unlock()
		return
	}
	c.finished = true
	if c.closeBy != nil {
		c.closeBy.Stop()
	}
	c.mu.Unlock()
	c.cancel()
	if c.own != nil {
		c.own.CloseIdleConnections()
	}
}

var _ transport.Conn = (*ClientConn)(nil)
