package actors

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/marmotws/marmot/protocol"
)

// MaxClientRequests bounds the server's requests waiting for one client's
// answers (Hub.RequestClient): one more fails with ErrTooManyRequests.
const MaxClientRequests = 1024

// ErrTooManyRequests refuses a server request to a client that already
// has MaxClientRequests unanswered.
var ErrTooManyRequests = errors.New("marmot: too many requests waiting for the client")

// serverRequests are the server's requests to one connection that wait
// for its answers. IDs count up from 1 per connection; an answer to an
// ID that was never sent is a protocol error, one to an ID whose request
// gave up waiting (ctx) is dropped.
type serverRequests struct {
	mu      sync.Mutex
	last    uint64
	pending map[uint64]chan reqResult
	closed  error // the connection ended: new requests fail with it
}

// add registers a new request and returns its ID and where its answer
// goes.
func (r *serverRequests) add() (uint64, chan reqResult, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	switch {
	case r.closed != nil:
		return 0, nil, r.closed
	case len(r.pending) >= MaxClientRequests:
		return 0, nil, ErrTooManyRequests
	}
	if r.pending == nil {
		r.pending = map[uint64]chan reqResult{}
	}
	r.last++
	ch := make(chan reqResult, 1)
	r.pending[r.last] = ch
	return r.last, ch, nil
}

func (r *serverRequests) remove(id uint64) {
	r.mu.Lock()
	delete(r.pending, id)
	r.mu.Unlock()
}

// answer hands m, a reply or error from the client, to its request. It
// reports false when m answers no request this connection was ever sent
// (a protocol error); an answer that comes after its request gave up is
// dropped.
func (r *serverRequests) answer(m *Message) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if m.id == 0 || m.id > r.last {
		return false
	}
	ch := r.pending[m.id]
	if ch == nil {
		return true
	}
	delete(r.pending, m.id)
	if m.Kind == protocol.KindError {
		ch <- reqResult{err: &RemoteError{Code: m.code, Message: string(m.Payload)}}
	} else {
		ch <- reqResult{payload: append([]byte{}, m.Payload...)} // m's storage is reused
	}
	return true
}

// close fails every waiting request with err (the connection ended).
func (r *serverRequests) close(err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.closed = err
	for id, ch := range r.pending {
		ch <- reqResult{err: err}
		delete(r.pending, id)
	}
}

// early runs on the connection's reader goroutine for every frame that
// decoded: it hands a client's answer to its waiting RequestClient there,
// so that a handler of the same connection that waits for it (its actor
// is busy; see link.keepReading) is answered, and marks the frame
// resolved for the actor. Any other frame costs one comparison.
func (c *conn) early(in *inbound) {
	if m := in.msg; m.Kind == protocol.KindReply || m.Kind == protocol.KindError {
		in.resolved = c.reqs.answer(m)
	}
}

// RequestClient sends client id a request named name and waits for its
// answer, until ctx ends: the client's reply payload, or a *RemoteError
// with the code and text its handler answered with (Message.ReplyError).
// It fails with ErrClientNotFound, ErrRawMode (a raw connection has no
// requests), ErrTooManyRequests, ErrConnectionClosed when the connection
// ends first, or ctx's error. The request runs under a "request NAME"
// producer span whose context travels in the envelope.
//
// A handler may ask the client whose message it is handling: the request
// is written at once (sendAwaited), and the connection's reader goes on
// reading while the handler waits (link.keepReading), handing the answer
// over and keeping the client's other messages, in order, for after the
// handler returns. Those wait within the connection's input budget (the
// larger of MaxMessageSize and 1 MiB): a client that sends more than that
// before its answer leaves the request to end with ctx. The HTTP
// transport answers the send the handler's message came in before the
// handler returns, so that the answer can come in the next
// (docs/HTTP.md section 4).
func (h *Hub) RequestClient(ctx context.Context, id ClientID, name string, payload []byte) (res []byte, err error) {
	if name == "" {
		return nil, ErrEmptyCommandName
	}
	c, err := h.recipient(id)
	if err != nil {
		return nil, err
	}
	if c.link.codec == nil {
		return nil, ErrRawMode
	}
	ctx, span := h.tel.tracer.Start(ctx, "request "+name, trace.WithSpanKind(trace.SpanKindProducer),
		trace.WithAttributes(sendAttrs("send", name, len(payload), AttrClientID.Int64(int64(id)))...))
	defer func() {
		if err != nil {
			span.RecordError(err)
			span.SetStatus(codes.Error, err.Error())
		}
		span.End()
	}()
	reqID, ch, err := c.reqs.add()
	if err != nil {
		return nil, err
	}
	e := protocol.Envelope{Kind: protocol.KindRequest, ID: reqID, Name: name, Payload: payload, Meta: h.tel.inject(ctx, nil)}
	if err := c.link.sendAwaited(&e); err != nil {
		c.reqs.remove(reqID)
		return nil, err
	}
	c.link.keepReading()
	select {
	case r := <-ch:
		return r.payload, r.err
	case <-ctx.Done():
		c.reqs.remove(reqID)
		return nil, fmt.Errorf("marmot: request %q to client %d: %w", name, id, ctx.Err())
	}
}
