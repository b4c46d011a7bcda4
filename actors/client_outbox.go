package actors

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"

	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/marmotws/marmot/protocol"
)

// The client outbox's errors.
var (
	// ErrOutboxFull reports a send refused because the client's outbox
	// (ClientConfig.Outbox) holds its bound of messages the server has not
	// acknowledged yet, or that wait for a reconnect.
	ErrOutboxFull = errors.New("marmot: client outbox full")
	// ErrSessionLost reports messages of uncertain fate: sent, but not
	// acknowledged, in a session the server could not resume (it expired,
	// or the server restarted). They are not sent again, which could
	// handle them twice; the server may or may not have handled them.
	ErrSessionLost = errors.New("marmot: session lost: messages sent but not acknowledged may or may not have been handled")
	// ErrReplyLost reports a request the server had handled on an earlier
	// connection of the session, whose reply was lost with it: the
	// request was not handled again (it wraps the server's 409
	// *RemoteError).
	ErrReplyLost = errors.New("marmot: request handled on an earlier connection; its reply was lost")
)

// outEntry is one message in the client's outbox: its encoding (with its
// sequence number when numbered), kept until the server acknowledges it.
type outEntry struct {
	seq    uint64
	data   []byte
	req    uint64 // the request ID of a Request or Publish; 0 otherwise
	sent   bool   // posted on a connection
	resent bool   // posted on more than one connection
	done   bool   // settled by the request's answer: not sent again
}

// clientOutbox is what the client keeps of the messages it sends with a
// session (docs/PROTOCOL.md section 8): everything the server has not
// acknowledged yet, and whatever is sent while the client reconnects. It
// is bounded in bytes; c.mu guards it.
type clientOutbox struct {
	entries []*outEntry // in order; acknowledged ones trimmed from the front
	bytes   int64       // of the entries' encodings not yet done
	seq     uint64      // the last sequence number given
	token   string      // the session's resume token ("" before the first)
	session bool        // the current (or last) connection has a session
	// byReq maps a request's ID to its entry until it is answered (or
	// given up), also once acknowledged: the answer still needs to know
	// whether the request was sent again (ErrReplyLost).
	byReq map[uint64]*outEntry
}

// outboxOn reports whether sends are kept in the outbox: an envelope
// subprotocol, AutoReconnect and ClientConfig.Outbox > 0.
func (c *Client) outboxOn() bool {
	return c.codec != nil && c.cfg.AutoReconnect && c.cfg.Outbox > 0
}

// queueing reports whether the client is between connections and will
// connect again by itself: sends then wait in the outbox.
func (c *Client) queueing() bool {
	s := c.State()
	return s == StateReconnecting || s == StateConnected
}

// sessionHeader sets the upgrade request's session header: the resume
// token, or "new".
func (c *Client) sessionHeader(h http.Header) {
	c.mu.Lock()
	tok := c.out.token
	// The highest number sent on an earlier connection: a server that
	// takes the session over from a lost one marks those it handles again
	// as possibly redelivered (protocol.HeaderSessionSent).
	var sent uint64
	for _, ent := range c.out.entries {
		if ent.seq != 0 && (ent.sent || ent.resent) {
			sent = max(sent, ent.seq)
		}
	}
	c.mu.Unlock()
	if tok == "" {
		tok = protocol.SessionNew
	}
	h.Set(protocol.HeaderSession, tok)
	if sent > 0 && tok != protocol.SessionNew {
		h.Set(protocol.HeaderSessionSent, strconv.FormatUint(sent, 10))
	}
}

// submit sends e, an application message (data, command, request or
// publish), through the outbox: numbered and kept until acknowledged when
// the connection has a session, queued while the client reconnects. Without
// the outbox it is sent on the current connection or refused with
// ErrNotConnected.
func (c *Client) submit(e *protocol.Envelope) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	l := c.current
	q := &c.out
	switch {
	case !c.outboxOn() || l != nil && !q.session:
		// No outbox, or a server that grants no session: nothing to keep.
		if l == nil || c.State() != StateConnected {
			return ErrNotConnected
		}
		return l.sendEnvelope(e)
	case l == nil && !c.queueing():
		return ErrNotConnected
	}
	if q.session {
		e.Seq = q.seq + 1
	}
	buf, err := c.codec.Append(nil, e)
	if err != nil {
		return err
	}
	if size := int64(len(buf)); q.bytes > 0 && q.bytes+size > c.cfg.Outbox {
		return fmt.Errorf("%w: %d bytes held, limit %d", ErrOutboxFull, q.bytes, c.cfg.Outbox)
	}
	if e.Seq != 0 {
		q.seq = e.Seq
	}
	ent := &outEntry{seq: e.Seq, data: buf, req: e.ID}
	q.entries = append(q.entries, ent)
	q.bytes += int64(len(buf))
	if ent.req != 0 {
		if q.byReq == nil {
			q.byReq = make(map[uint64]*outEntry)
		}
		q.byReq[ent.req] = ent
	}
	if l != nil {
		ent.sent = c.post(l, ent)
	}
	return nil
}

// post queues ent's encoding on l and reports whether l took it.
func (c *Client) post(l *link, ent *outEntry) bool {
	return l.out.post(outFrame{typ: c.codec.MessageType(), data: ent.data}, nil, false) == nil
}

// adopt starts using the outbox on the new connection l, whose upgrade
// response header is hdr; c.mu is held. When the session resumed, every
// message not acknowledged goes out again, in order; when it did not, the
// messages never sent are numbered again for the new session and sent,
// and those sent are dropped: their fate is uncertain. It returns how many
// were dropped, for ErrSessionLost.
func (c *Client) adopt(l *link, hdr http.Header) (lost int) {
	if !c.outboxOn() {
		return 0
	}
	q := &c.out
	tok := hdr.Get(protocol.HeaderSession)
	resumed := q.token != "" && tok != "" && hdr.Get(protocol.HeaderSessionResumed) == "true"
	q.token, q.session = tok, tok != ""
	if !resumed {
		keep := q.entries[:0]
		for _, ent := range q.entries {
			switch {
			case ent.done:
			case ent.sent:
				lost++
				c.settleEntry(ent, reqResult{err: ErrSessionLost})
			default:
				keep = append(keep, ent)
			}
		}
		clear(q.entries[len(keep):])
		q.entries = keep
		q.seq = 0
		for _, ent := range keep {
			var seq uint64
			if q.session {
				q.seq++
				seq = q.seq
			}
			c.renumber(ent, seq)
		}
	}
	for _, ent := range q.entries {
		if ent.done {
			continue
		}
		ent.resent = ent.resent || ent.sent
		ent.sent = c.post(l, ent)
	}
	if !q.session {
		// Nobody will acknowledge them: sent is as far as they go.
		for _, ent := range q.entries {
			c.forgetEntry(ent)
		}
		q.entries, q.bytes = nil, 0
	}
	return lost
}

// renumber re-encodes ent with sequence number seq (0: none).
func (c *Client) renumber(ent *outEntry, seq uint64) {
	if ent.seq == seq {
		return
	}
	var e protocol.Envelope
	if err := c.codec.Decode(ent.data, &e); err != nil {
		return // cannot happen: the client encoded it
	}
	e.Seq = seq
	buf, err := c.codec.Append(nil, &e)
	if err != nil {
		return
	}
	c.out.bytes += int64(len(buf) - len(ent.data))
	ent.data, ent.seq = buf, seq
}

// settleEntry ends ent: its request, if any, is answered with r. c.mu is
// held.
func (c *Client) settleEntry(ent *outEntry, r reqResult) {
	c.forgetEntry(ent)
	if ent.req == 0 {
		return
	}
	delete(c.out.byReq, ent.req)
	if ch := c.pending[ent.req]; ch != nil {
		ch <- r
		delete(c.pending, ent.req)
	}
	delete(c.publishes, ent.req)
}

// forgetEntry marks ent done and stops counting it; c.mu is held.
func (c *Client) forgetEntry(ent *outEntry) {
	if ent.done {
		return
	}
	ent.done = true
	c.out.bytes -= int64(len(ent.data))
	ent.data = nil
}

// acked drops what the server acknowledged on l (the reader, from a
// marmot.ack).
func (c *Client) acked(l *link, n uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if l != c.current {
		return // a connection already replaced, maybe of another session
	}
	q := &c.out
	i := 0
	for ; i < len(q.entries); i++ {
		ent := q.entries[i]
		if !ent.done && (ent.seq == 0 || ent.seq > n) {
			break
		}
		c.forgetEntry(ent)
	}
	clear(q.entries[:i])
	q.entries = q.entries[i:]
}

// answered settles the outbox entry of request id, answered (the reader).
// It reports whether the answer is the server's 409 for a request sent
// again after it was handled on an earlier connection.
func (c *Client) answered(id uint64, code uint32) (replyLost bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	ent := c.out.byReq[id]
	if ent == nil {
		return false
	}
	delete(c.out.byReq, id)
	c.forgetEntry(ent)
	return ent.resent && code == protocol.CodeDuplicate
}

// held reports whether request id waits in the outbox to be sent again;
// c.mu is held.
func (c *Client) held(id uint64) bool {
	ent := c.out.byReq[id]
	return ent != nil && !ent.done
}

// unqueue drops request id from the outbox if it was never sent (its
// caller gave up waiting) and neither was anything after it: the entries
// after it take their numbers one down, so that the numbers the server
// sees have no gap. Otherwise the request goes out all the same.
func (c *Client) unqueue(id uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	q := &c.out
	ent := q.byReq[id]
	if ent == nil || ent.sent || ent.resent {
		return
	}
	at := -1
	for i, e := range q.entries {
		switch {
		case e == ent:
			at = i
		case at >= 0 && (e.sent || e.resent):
			return
		}
	}
	if at < 0 {
		return
	}
	c.forgetEntry(ent)
	delete(q.byReq, id)
	q.entries = append(q.entries[:at], q.entries[at+1:]...)
	q.entries[len(q.entries):cap(q.entries)][0] = nil
	if ent.seq == 0 {
		return
	}
	for _, e := range q.entries[at:] {
		if e.seq != 0 {
			c.renumber(e, e.seq-1)
		}
	}
	q.seq--
}

// dropOutbox ends the outbox when the client stops reconnecting: what was
// never sent is reported undelivered (ErrUndelivered), and the requests
// waiting in it fail with err, as do Joins waiting for a connection. The
// session ends with it.
func (c *Client) dropOutbox(err error) {
	c.mu.Lock()
	q := &c.out
	n := 0
	for _, ent := range q.entries {
		if !ent.done && !ent.sent {
			n++
		}
		c.settleEntry(ent, reqResult{err: err})
	}
	*q = clientOutbox{}
	for room, pos := range c.rooms {
		if pos.l == nil {
			pos.settle(err)
			delete(c.rooms, room)
		}
	}
	c.mu.Unlock()
	if n > 0 {
		c.reportError(fmt.Errorf("%w: %d", ErrUndelivered, n))
	}
}

// submitTraced is submit of a data envelope (name empty) or a command,
// under a producer span whose context travels in the envelope's meta.
func (c *Client) submitTraced(ctx context.Context, name string, data []byte) (err error) {
	spanName := "send"
	if name != "" {
		spanName = "send " + name
	}
	ctx, span := c.tel.tracer.Start(ctx, spanName, trace.WithSpanKind(trace.SpanKindProducer),
		trace.WithAttributes(sendAttrs("send", name, len(data))...))
	defer func() {
		if err != nil {
			span.RecordError(err)
			span.SetStatus(codes.Error, err.Error())
		}
		span.End()
	}()
	e := protocol.Envelope{Kind: protocol.KindData, Payload: data, Meta: c.tel.inject(ctx, nil)}
	if name != "" {
		e.Kind, e.Name = protocol.KindCommand, name
	}
	return c.submit(&e)
}
