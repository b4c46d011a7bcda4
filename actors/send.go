package actors

import (
	"context"
	"fmt"
	"iter"

	"github.com/marmotws/marmot/internal/wsconn"
	"github.com/marmotws/marmot/protocol"
	"go.opentelemetry.io/otel/codes"
	semconv "go.opentelemetry.io/otel/semconv/v1.17.0"
	"go.opentelemetry.io/otel/trace"
)

// SendToClient queues data for one client: a raw frame (text when data is
// valid UTF-8, else binary) or a data envelope, depending on what the client
// negotiated.
func (h *Hub) SendToClient(id ClientID, data []byte) error {
	c, err := h.recipient(id)
	if err != nil {
		return err
	}
	return c.link.sendData(data)
}

// SendToClientContext is SendToClient under a "send" producer span
// parented to ctx's span; an envelope client's process span links to it.
func (h *Hub) SendToClientContext(ctx context.Context, id ClientID, data []byte) error {
	c, err := h.recipient(id)
	if err != nil {
		return err
	}
	return c.link.sendTraced(ctx, h.tel, "", data, AttrClientID.Int64(int64(id)))
}

// SendCommandToClientContext is SendCommandToClient under a "send NAME"
// producer span parented to ctx's span; the client's process span links to
// it.
func (h *Hub) SendCommandToClientContext(ctx context.Context, id ClientID, name string, payload []byte) error {
	if name == "" {
		return ErrEmptyCommandName
	}
	c, err := h.recipient(id)
	if err != nil {
		return err
	}
	return c.link.sendTraced(ctx, h.tel, name, payload, AttrClientID.Int64(int64(id)))
}

// SendRawToClient queues a raw frame of the given type; it fails with
// ErrRawMode's opposite when the client negotiated an envelope.
func (h *Hub) SendRawToClient(id ClientID, t MessageType, data []byte) error {
	c, err := h.recipient(id)
	if err != nil {
		return err
	}
	if c.link.codec != nil {
		return fmt.Errorf("marmot: client %d speaks %s, not raw frames", id, c.link.codec.Subprotocol())
	}
	return c.link.sendRaw(t, data)
}

// SendCommandToClient queues a named command; the client must have
// negotiated an envelope subprotocol.
func (h *Hub) SendCommandToClient(id ClientID, name string, payload []byte) error {
	c, err := h.recipient(id)
	if err != nil {
		return err
	}
	return c.link.sendCommand(name, payload)
}

// Broadcast queues data for every client and returns how many accepted it.
// The data is encoded once per wire format and shared by all recipients.
func (h *Hub) Broadcast(data []byte) (int, error) {
	return h.broadcast(context.Background(), 0, "", data)
}

// BroadcastContext is Broadcast with the broadcast span parented to ctx's.
func (h *Hub) BroadcastContext(ctx context.Context, data []byte) (int, error) {
	return h.broadcast(ctx, 0, "", data)
}

// BroadcastExcept is Broadcast without the client except (usually the sender).
func (h *Hub) BroadcastExcept(except ClientID, data []byte) (int, error) {
	return h.broadcast(context.Background(), except, "", data)
}

// BroadcastCommand queues a named command for every envelope client; raw
// clients receive the payload alone.
func (h *Hub) BroadcastCommand(name string, payload []byte) (int, error) {
	if name == "" {
		return 0, ErrEmptyCommandName
	}
	return h.broadcast(context.Background(), 0, name, payload)
}

// preparedSet lazily encodes a broadcast, or a room message, once per
// wire format.
type preparedSet struct {
	name   string
	meta   map[string]string
	data   []byte
	room   string // a room message's room and offset (envelopes only)
	offset uint64
	raw    *outFrame
	byEnv  map[string]*outFrame
}

func (p *preparedSet) frameFor(codec protocol.Codec) (*outFrame, error) {
	if codec == nil {
		if p.raw == nil {
			typ := rawFrameType(0, p.data)
			p.raw = &outFrame{typ: typ, data: p.data, frame: wsconn.EncodeFrame(typ, p.data)}
		}
		return p.raw, nil
	}
	if f := p.byEnv[codec.Subprotocol()]; f != nil {
		return f, nil
	}
	env := protocol.Envelope{Kind: protocol.KindData, Payload: p.data, Meta: p.meta, Room: p.room, Offset: p.offset}
	if p.name != "" {
		env.Kind, env.Name = protocol.KindCommand, p.name
	}
	buf, err := codec.Append(nil, &env)
	if err != nil {
		return nil, err
	}
	if p.byEnv == nil {
		p.byEnv = make(map[string]*outFrame, 2)
	}
	f := &outFrame{typ: codec.MessageType(), data: buf, frame: wsconn.EncodeFrame(codec.MessageType(), buf)}
	p.byEnv[codec.Subprotocol()] = f
	return f, nil
}

func (h *Hub) broadcast(ctx context.Context, except ClientID, name string, data []byte) (n int, err error) {
	ctx, span := h.tel.tracer.Start(ctx, "broadcast", trace.WithSpanKind(trace.SpanKindProducer),
		trace.WithAttributes(sendAttrs("broadcast", name, len(data))...))
	defer func() {
		span.SetAttributes(AttrFanout.Int(n), semconv.MessagingBatchMessageCountKey.Int(n))
		if err != nil {
			span.RecordError(err)
			span.SetStatus(codes.Error, err.Error())
		}
		span.End()
		h.tel.fanout.Record(ctx, int64(n))
	}()
	// Receivers link their process spans to this one through the envelope.
	set := preparedSet{name: name, data: data, meta: h.tel.inject(ctx, nil)}
	h.regMu.RLock()
	defer h.regMu.RUnlock()
	return set.fanOut(func(yield func(*conn) bool) {
		for id, c := range h.conns {
			if id == except || c.gated.Load() {
				continue // not yet authenticated: no broadcasts
			}
			if !yield(c) {
				return
			}
		}
	})
}

// fanOut queues the set's frame, in each connection's wire format, for
// every connection of conns, and counts those that accepted it (a closing
// connection does not): a broadcast's and a room publish's delivery.
func (p *preparedSet) fanOut(conns iter.Seq[*conn]) (n int, err error) {
	for c := range conns {
		ok, err := p.sendTo(c)
		if err != nil {
			return n, err
		}
		if ok {
			n++
		}
	}
	return n, nil
}

// sendTo queues the set's frame, in c's wire format, for c; it reports
// whether c accepted it.
func (p *preparedSet) sendTo(c *conn) (bool, error) {
	f, err := p.frameFor(c.link.codec)
	if err != nil {
		return false, err
	}
	return c.link.out.send(*f) == nil, nil
}

// Disconnect closes one client's connection with code and text.
func (h *Hub) Disconnect(id ClientID, code int, text string) error {
	c, err := h.lookup(id)
	if err != nil {
		return err
	}
	h.sys.Root.Send(c.link.pid, &closeRequest{code: code, text: text})
	return nil
}

// recipient is the connection a targeted send goes to: not one still
// authenticating with its first message, which gets nothing before its
// answer (auth.go).
func (h *Hub) recipient(id ClientID) (*conn, error) {
	c, err := h.lookup(id)
	if err == nil && c.gated.Load() {
		return nil, fmt.Errorf("%w: client %d", ErrNotAuthenticated, id)
	}
	return c, err
}
