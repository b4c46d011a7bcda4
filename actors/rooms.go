package actors

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"time"
	"unicode/utf8"

	"github.com/asynkron/protoactor-go/actor"
	"go.opentelemetry.io/otel/codes"
	semconv "go.opentelemetry.io/otel/semconv/v1.17.0"
	"go.opentelemetry.io/otel/trace"

	"github.com/marmotws/marmot/protocol"
)

// The error codes of the error envelopes that answer a client's room
// requests (see docs/PROTOCOL.md section 6.2).
const (
	RoomCodeBadRequest = 400 // no room, or an invalid room name
	RoomCodeRefused    = 403 // OnJoin or OnPublish returned an error: its text is the reason
	RoomCodeFailed     = 500 // the server could not carry it out
)

// DefaultRoomIdle is how long an empty room lives on when
// HubConfig.RoomIdle is zero.
const DefaultRoomIdle = 30 * time.Second

// ErrInvalidRoom reports an empty room name, one longer than
// protocol.MaxRoomLen bytes, or one that is not valid UTF-8.
var ErrInvalidRoom = errors.New("marmot: invalid room name")

// ErrRoomFailed reports a room whose actor stopped while it was in use:
// it failed more often than protoactor's restart budget allows (10 times
// in 10 s), or was stopped from outside (actorfault's Stop). OnError gets
// it wrapped in a *RoomError; the room's members are closed with
// CloseInternalError (see docs/ROOMS.md, "When a room fails").
var ErrRoomFailed = errors.New("marmot: room failed")

// roomCallTimeout guards the Hub's calls into a room actor. A room answers
// at once; the timeout only keeps a caller from hanging on a bug.
const roomCallTimeout = 10 * time.Second

// RoomError ties a refused or failed room operation to its room. A
// refusal by the server's OnJoin or OnPublish wraps a *RemoteError whose
// Message is the hook's reason: test with errors.As.
type RoomError struct {
	Room string
	Op   string // "join", "leave", "publish", "subscribe" or "run" (ErrRoomFailed)
	Err  error
}

// Error implements the error interface.
func (e *RoomError) Error() string { return fmt.Sprintf("marmot: %s room %q: %v", e.Op, e.Room, e.Err) }

// Unwrap returns the cause.
func (e *RoomError) Unwrap() error { return e.Err }

func checkRoom(room string) error {
	if room == "" || len(room) > protocol.MaxRoomLen || !utf8.ValidString(room) {
		return fmt.Errorf("%w: %q", ErrInvalidRoom, room)
	}
	return nil
}

func (h *Hub) roomIdle() time.Duration {
	if h.cfg.RoomIdle > 0 {
		return h.cfg.RoomIdle
	}
	return DefaultRoomIdle
}

// roomRef returns the live room called name, spawning it when create is
// set (nil, nil when it does not exist and create is not), and counts one
// message on its way to it: the caller must send it exactly one.
//
// Rooms are top-level actors of the hub's system rather than children of
// the ServerActor, so that the ServerActor can forward to them without
// waiting: spawning a child would have to happen inside its own turn.
func (h *Hub) roomRef(name string, create bool) (*roomEntry, error) {
	h.roomMu.Lock()
	defer h.roomMu.Unlock()
	if h.roomsClosed {
		return nil, ErrServerStopped
	}
	e := h.rooms[name]
	if e == nil {
		if !create {
			return nil, nil
		}
		e = &roomEntry{name: name, settled: len(h.cfg.ReceiverMiddleware) > 0}
		var mw []actor.ReceiverMiddleware
		if e.settled {
			mw = append([]actor.ReceiverMiddleware{settleRoom(e)}, h.cfg.ReceiverMiddleware...)
		}
		props := actor.PropsFromProducer(func() actor.Actor {
			return newRoomActor(h, name, e)
		}, actor.WithReceiverMiddleware(mw...))
		e.pid = h.sys.Root.SpawnPrefix(props, "room-")
		h.rooms[name] = e
	}
	e.inflight.Add(1)
	return e, nil
}

// retireRoom removes an empty, idle room from the registry unless a
// message is on its way to it, and reports whether the room may stop.
func (h *Hub) retireRoom(e *roomEntry) bool {
	h.roomMu.Lock()
	defer h.roomMu.Unlock()
	if h.rooms[e.name] != e || e.inflight.Load() != 0 {
		return false
	}
	delete(h.rooms, e.name)
	return true
}

// forgetRoom removes e from the registry if it is still there and reports
// whether it was: a room stopping while registered (neither retired nor
// shut down) has failed.
func (h *Hub) forgetRoom(e *roomEntry) bool {
	h.roomMu.Lock()
	defer h.roomMu.Unlock()
	if h.rooms[e.name] != e {
		return false
	}
	delete(h.rooms, e.name)
	return true
}

// closeRooms stops every room (Shutdown, once the connections are gone).
func (h *Hub) closeRooms() {
	h.roomMu.Lock()
	h.roomsClosed = true
	all := make([]*roomEntry, 0, len(h.rooms))
	for _, e := range h.rooms {
		all = append(all, e)
	}
	clear(h.rooms)
	h.roomMu.Unlock()
	for _, e := range all {
		_ = h.sys.Root.StopFuture(e.pid).Wait()
	}
}

// leaveRooms takes a connection that is ending out of its rooms. After it
// no room accepts the connection again (see roomActor.join).
func (h *Hub) leaveRooms(c *conn) {
	c.roomMu.Lock()
	c.roomsGone = true
	names := make([]string, 0, len(c.rooms))
	for name := range c.rooms {
		names = append(names, name)
	}
	c.roomMu.Unlock()
	for _, name := range names {
		if e, _ := h.roomRef(name, false); e != nil {
			h.sys.Root.Send(e.pid, &roomLeave{c: c})
		}
	}
}

// The prepare functions check a room operation and name the room actor
// and the message to send it; a nil entry means there is nothing to do
// (leaving or publishing to a room that does not exist).

func (h *Hub) prepJoin(id ClientID, room string) (*roomEntry, any, error) {
	if err := checkRoom(room); err != nil {
		return nil, nil, err
	}
	c, err := h.lookup(id)
	if err != nil {
		return nil, nil, err
	}
	if c.link.codec == nil {
		return nil, nil, ErrRawMode
	}
	e, err := h.roomRef(room, true)
	return e, &roomJoin{c: c}, err
}

func (h *Hub) prepLeave(id ClientID, room string) (*roomEntry, any, error) {
	if err := checkRoom(room); err != nil {
		return nil, nil, err
	}
	c, err := h.lookup(id)
	if err != nil {
		return nil, nil, err
	}
	e, err := h.roomRef(room, false)
	return e, &roomLeave{c: c}, err
}

func (h *Hub) prepPublish(room, name, key string, data []byte) (*roomEntry, any, error) {
	if err := checkRoom(room); err != nil {
		return nil, nil, err
	}
	if len(key) > MaxPublishKeyLen {
		return nil, nil, ErrInvalidPublishKey
	}
	// With a broker the room's members may be on other hubs: the local
	// room is made so that this hub's publishes reach the broker in order.
	e, err := h.roomRef(room, h.cfg.RoomBroker != nil)
	return e, &roomPublish{name: name, data: data, key: key}, err
}

// callRoom sends msg to the room and waits for its *Ack.
func (h *Hub) callRoom(e *roomEntry, msg any) *Ack {
	return ackOf(e, h.sys.Root.RequestFuture(e.pid, msg, roomCallTimeout))
}

// ackOf waits for a room's answer to f's request.
func ackOf(e *roomEntry, f *actor.Future) *Ack {
	res, err := f.Result()
	if err != nil {
		return &Ack{Err: fmt.Errorf("marmot: room %q: %w", e.name, err)}
	}
	return res.(*Ack)
}

// Join adds client id to room, creating the room on first use. It returns
// once the client is a member: every message published to the room after
// Join returns reaches it. The server's own Join is not put to OnJoin.
// Raw-mode clients cannot join (ErrRawMode): they have no envelope to carry
// the room.
func (h *Hub) Join(id ClientID, room string) error {
	e, msg, err := h.prepJoin(id, room)
	if err != nil {
		return err
	}
	return h.callRoom(e, msg).Err
}

// Leave removes client id from room; leaving a room the client is not in
// is not an error.
func (h *Hub) Leave(id ClientID, room string) error {
	e, msg, err := h.prepLeave(id, room)
	if err != nil || e == nil {
		return err
	}
	return h.callRoom(e, msg).Err
}

// Publish sends data to every member of room as a data envelope carrying
// the room and the message's offset, and returns how many members it was
// queued for (0 when the room does not exist). The data is encoded once
// per wire format. Publish does not put the message to OnPublish.
//
// With a RoomBroker that confirms its publishes (a cluster), Publish
// returns 0, nil only once the broker has ordered the message, or
// ErrPublishUnconfirmed (in a *RoomError) after the broker's
// ConfirmTimeout; see PublishContext.
func (h *Hub) Publish(room string, data []byte) (int, error) {
	return h.publish(context.Background(), room, "", "", data)
}

// PublishContext is Publish bounded by ctx: it returns ctx's error if ctx
// ends before the room has answered (with a RoomBroker, before the broker
// has confirmed the publish: the message may still be delivered).
func (h *Hub) PublishContext(ctx context.Context, room string, data []byte) (int, error) {
	return h.publish(ctx, room, "", "", data)
}

// PublishCommand is Publish as a command named name.
func (h *Hub) PublishCommand(room, name string, payload []byte) (int, error) {
	if name == "" {
		return 0, ErrEmptyCommandName
	}
	return h.publish(context.Background(), room, name, "", payload)
}

// publish runs under a "publish" producer span, which the members'
// process spans link to through the envelope's meta, as a broadcast's.
func (h *Hub) publish(wait context.Context, room, name, key string, data []byte) (n int, err error) {
	ctx, span := h.tel.tracer.Start(wait, "publish", trace.WithSpanKind(trace.SpanKindProducer),
		trace.WithAttributes(sendAttrs("publish", name, len(data), AttrRoom.String(room))...))
	defer func() {
		span.SetAttributes(AttrFanout.Int(n), semconv.MessagingBatchMessageCountKey.Int(n))
		if err != nil {
			span.RecordError(err)
			span.SetStatus(codes.Error, err.Error())
		}
		span.End()
	}()
	e, msg, err := h.prepPublish(room, name, key, data)
	if err != nil || e == nil {
		return 0, err
	}
	msg.(*roomPublish).meta = h.tel.inject(ctx, nil)
	// The room answers after the broker's confirmation timeout at the
	// latest.
	f := h.sys.Root.RequestFuture(e.pid, msg, roomCallTimeout+h.confirmWait())
	if wait.Done() == nil {
		a := ackOf(e, f)
		return a.N, a.Err
	}
	res := make(chan *Ack, 1)
	go func() { res <- ackOf(e, f) }() // ends with the future, by its timeout
	select {
	case a := <-res:
		return a.N, a.Err
	case <-wait.Done():
		return 0, wait.Err()
	}
}

// confirmWait is how long a room may wait for its broker's confirmation
// of a publish (0 without a broker that says).
func (h *Hub) confirmWait() time.Duration {
	if b, ok := h.cfg.RoomBroker.(confirmTimeouter); ok {
		return b.ConfirmTimeout()
	}
	return 0
}

// Members returns the members of room, ordered by ID (nil when the room
// does not exist).
func (h *Hub) Members(room string) []ClientID {
	e, _ := h.prepMembers(room, h.clusterView(room))
	if e == nil {
		return nil
	}
	res, err := h.sys.Root.RequestFuture(e.pid, &roomMembers{}, roomCallTimeout).Result()
	if err != nil {
		return nil
	}
	return res.(*MemberList).IDs
}

// Rooms returns the names of the live rooms, sorted. A room lives from its
// first join until it has been empty for HubConfig.RoomIdle.
func (h *Hub) Rooms() []string {
	h.roomMu.Lock()
	names := make([]string, 0, len(h.rooms))
	for name := range h.rooms {
		names = append(names, name)
	}
	h.roomMu.Unlock()
	sort.Strings(names)
	return names
}

// forwardRoom is the ServerActor's side of *JoinRoom, *LeaveRoom and
// *Publish: the room answers the original sender itself, so the
// ServerActor never waits for a room.
func forwardRoom(ctx actor.Context, e *roomEntry, msg any, err error) {
	switch {
	case err != nil || e == nil:
		if ctx.Sender() != nil {
			ctx.Respond(&Ack{Err: err})
		}
	case ctx.Sender() != nil:
		ctx.RequestWithCustomSender(e.pid, msg, ctx.Sender())
	default:
		ctx.Send(e.pid, msg)
	}
}
