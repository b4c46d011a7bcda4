package actors

import (
	"errors"
	"fmt"
	"sync"
	"unicode/utf8"

	"github.com/gorilla/websocket"

	"github.com/marmotws/marmot/protocol"
)

var envelopes = sync.Pool{New: func() any { return new(protocol.Envelope) }}

// errUnexpectedFrame reports a frame type the negotiated protocol does not carry.
var errUnexpectedFrame = errors.New("marmot: frame type does not match the negotiated subprotocol")

// decodeInbound turns one data frame into a Message, stored in in itself
// (one allocation per inbound frame, not two). On error it also says which
// close code the connection must end with.
func decodeInbound(l *link, in *inbound, id ClientID) (*Message, int, error) {
	data, code, err := l.open(in)
	if err != nil {
		return nil, code, err
	}
	if l.codec == nil {
		// Compat-profile plaintext is the seed's opaque bytes, not text.
		if in.typ == websocket.TextMessage && l.compat == nil && !utf8.Valid(data) {
			return nil, CloseInvalidPayload, fmt.Errorf("%w: text frame is not valid UTF-8", protocol.ErrMalformed)
		}
		in.m = Message{ClientID: id, Kind: protocol.KindData, Type: MessageType(in.typ), Payload: data, out: l, in: in}
		return &in.m, 0, nil
	}
	if l.sess == nil && int(in.typ) != l.codec.MessageType() {
		return nil, CloseUnsupportedData, fmt.Errorf("%w: got %s frame on %s", errUnexpectedFrame, MessageType(in.typ), l.codec.Subprotocol())
	}
	// Decode's interface call makes a local Envelope escape; a pooled one
	// keeps it out of every frame's allocation.
	env := envelopes.Get().(*protocol.Envelope)
	defer func() {
		*env = protocol.Envelope{}
		envelopes.Put(env)
	}()
	if err := l.codec.Decode(data, env); err != nil {
		return nil, CloseProtocolError, err
	}
	in.m = Message{
		ClientID: id,
		Kind:     env.Kind,
		Type:     MessageType(in.typ),
		Name:     env.Name,
		Payload:  env.Payload,
		Meta:     env.Meta,
		id:       env.ID,
		code:     env.Code,
		out:      l,
		in:       in,
	}
	return &in.m, 0, nil
}

// replyOnPanic answers a request whose handler panicked, so the requester
// gets an error instead of waiting for its deadline, then lets the panic go on
// to the supervisor.
func replyOnPanic(m *Message) {
	if r := recover(); r != nil {
		if m != nil && m.IsRequest() && !m.replied {
			_ = m.ReplyError(500, "internal error: handler failed")
		}
		panic(r)
	}
}

// handle runs the application handler for m inside its process span. A
// request without a handler is answered 501; a panicking handler still
// answers a pending request (replyOnPanic), ends the span as failed and
// re-panics for the supervisor.
//
// enter and exit, when set, bracket the handler call (the hub's handler
// concurrency limit, the client's in-callback count); they are built once,
// not per message.
func handle(t *telemetry, in *inbound, m *Message, link bool, handler func(*Message), enter, exit func()) {
	ctx, span := t.startProcess(m, link)
	m.ctx = ctx // the supervisor parents a failure span to it (inbound.TraceContext)
	start := t.handlerStart()
	defer func() {
		r := recover()
		t.finishProcess(ctx, span, start, r)
		if r != nil {
			// The supervisor keeps the failed frame (its trace context),
			// so it must not be reused even if the handler released it.
			in.ref()
			panic(r)
		}
	}()
	if handler == nil {
		if m.IsRequest() {
			_ = m.ReplyError(501, "no handler")
		}
		return
	}
	if enter != nil {
		enter()
		defer exit()
	}
	defer replyOnPanic(m)
	handler(m)
}
