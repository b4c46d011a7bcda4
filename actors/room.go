package actors

import (
	"bytes"
	"errors"
	"fmt"
	"maps"
	"sync/atomic"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/marmotws/marmot/protocol"
)

// roomActor is one room: its members and the offset of its last message.
// All of a room's traffic runs through it, one message at a time, which is
// what makes a room's order the same for every member and its offsets
// increase without gaps: the fan-out of message k is queued on every
// member's outbox before message k+1 is looked at.
//
// Members are kept here, keyed by ClientID, and not in the connection
// actor, so that membership survives that actor's restarts (the conn, and
// with it the link the room writes to, outlives them). A connection's own
// list of rooms (conn.rooms) only serves to leave them on disconnect.
type roomActor struct {
	h       *Hub
	name    string
	entry   *roomEntry
	members map[ClientID]*conn
	offset  uint64 // of the last message published

	// epoch names this run of the room; hist, when history is on, holds
	// its last messages (and then makes the epoch and the first offset).
	// histErr is why a store that history needs could not be opened: the
	// room's publishes fail with it.
	epoch   string
	hist    HistoryStore
	histErr error

	// presence: members are told of joins and leaves (HubConfig.RoomPresence;
	// see room_presence.go).
	presence bool
	// view is every hub's members, under a PresenceBroker in a room with
	// presence (nil otherwise; see broker_presence.go).
	view *presenceView

	// The idle timer runs while the room is empty. It is the room's own
	// rather than protoactor's ReceiveTimeout, whose timer goroutine
	// writes the actor's context while the actor runs (a data race under
	// -race). gen tells a stale tick from the current one.
	idle    *time.Timer
	idleGen uint64
	// started is set by the first Started: a restarted room keeps its
	// state (see Restarting).
	started bool
	// parked are joins that wait for the room to reach the client's
	// position, or for its broker to deliver to it again (with a broker;
	// room_catchup.go). parkTimer ticks at parkDue, the first one's time.
	parked    []parkedJoin
	parkTimer *time.Timer
	parkDue   time.Time
	// detached is when the broker stopped delivering to the room
	// (Hub.DetachRoom); zero while it delivers (room_detach.go).
	detached time.Time
	// awaiting are publishes whose answer waits for the broker's
	// confirmation (room_confirm.go).
	awaiting     []awaitedPublish
	confirmTimer *time.Timer // ticks for the awaited head's deadline (room_confirm.go)
}

// roomIdleTick is the idle timer's message to its room.
type roomIdleTick struct{ gen uint64 }

// The room actor's messages. reqID, when non-zero, is the ID of the
// client's own marmot.* request, answered on its link by the room once the
// operation has taken effect: a join's reply is thus queued before the
// first room message the new member receives.
type (
	roomJoin struct {
		c     *conn
		reqID uint64
		// recover: the client asks for what it missed after from, of
		// epoch (a client's re-join after a reconnect).
		recover bool
		epoch   string
		from    uint64
	}
	roomLeave struct {
		c     *conn
		reqID uint64
	}
	roomPublish struct {
		name  string
		data  []byte
		meta  map[string]string
		from  *conn // the publishing client, when reqID is set
		reqID uint64
		owned bool   // data is the room's to keep (else history copies it)
		key   string // names the publish across nodes (publish_key.go); "" none
		// sess and seq: a publish request whose session acknowledgement
		// waits for its answer (session_publish.go); nil otherwise.
		sess *session
		seq  uint64
	}
	// roomMembers asks who is in the room: a client's marmot.presence
	// (c and reqID set; answered on its link), or an actor (answered with
	// a *MemberList).
	roomMembers struct {
		c     *conn
		reqID uint64
		local bool // only this hub's members (Hub.LocalMembers)
	}
)

// Receive implements actor.Actor.
func (r *roomActor) Receive(ctx actor.Context) {
	switch m := ctx.Message().(type) {
	case *actor.Started:
		if !r.started { // not after a restart: the state carries on
			r.started = true
			r.openHistory()
			r.presence = r.h.presenceOn(r.name)
			if r.h.cfg.RoomBroker != nil {
				r.subscribe()
				r.startPresence()
			}
		}
		r.armIdle(ctx)
	case *actor.Restarting:
		// A panic (a bug, or an injected fault) restarts the room. Its
		// members do not know, so the next instance is this one, members,
		// epoch, offset and history kept, rather than an empty room they
		// would wait on forever. The message it failed on is lost (its
		// sender's call times out).
		r.disarmIdle()
		r.entry.failed = r
	case *roomDeliver:
		r.entry.received()
		r.deliver(ctx, m.m)
		if m.m.Confirms != 0 {
			r.confirm(ctx, m.m.Confirms)
		}
	case *roomJoin:
		r.entry.received()
		if r.park(ctx, m) {
			break // answered when the room catches up (room_catchup.go)
		}
		r.admit(ctx, m, ctx.Sender())
	case *roomParkTick:
		r.unpark(ctx)
	case *roomDetach:
		r.entry.received()
		r.detach()
	case *roomAttach:
		r.entry.received()
		r.attach(ctx, m.pos)
	case *roomConfirmTick:
		r.expire(ctx, false)
	case *roomSettle:
		r.entry.received()
		r.settle(ctx, m.ticket, m.err)
	case *roomLeave:
		r.entry.received()
		if r.leave(m.c) {
			r.announce(m.c, protocol.PresenceLeave)
		}
		r.armIdle(ctx)
		r.answer(ctx, m.c, m.reqID, 0, nil)
	case *roomPublish:
		r.entry.received()
		if r.h.cfg.RoomBroker != nil {
			r.brokerPublish(ctx, m)
			r.armIdle(ctx)
			break
		}
		n, err := r.publish(m)
		r.armIdle(ctx)
		r.answer(ctx, m.from, m.reqID, n, err)
	case *roomMembers:
		r.entry.received()
		r.answerMembers(ctx, m)
		r.armIdle(ctx)
	case *roomPresence:
		r.entry.received()
		r.applyPresence(m.u)
	case *roomResync:
		r.entry.received()
		r.resync()
	case *roomIdleTick:
		if m.gen != r.idleGen || r.busy() {
			return // stale: the room was used since
		}
		r.entry.idleChecks.Add(1)
		// Empty and idle: end, unless a message is on its way (the
		// registry counts them; see Hub.roomRef); then wait again.
		if r.h.retireRoom(r.entry) {
			r.disarmIdle()
			ctx.Stop(ctx.Self())
		} else {
			r.armIdle(ctx)
		}
	case *actor.Stopping:
		r.disarmIdle()
		r.dropParked(ctx)
		r.expire(ctx, true)
		// A room that stops while still registered was not retired (idle)
		// nor shut down: it failed. It leaves the registry first, so the
		// next use of its name makes a new room rather than going to this
		// dead actor.
		if r.h.forgetRoom(r.entry) {
			r.lost()
		}
		if b := r.h.cfg.RoomBroker; b != nil {
			b.Unsubscribe(r.name)
		}
	}
}

// lost ends a room that stopped while in use: protoactor's supervisor
// stopped it after more failures than its restart budget allows (10 in
// 10 s), or something stopped it from outside. Its members, who would
// otherwise wait on it forever, are closed with CloseInternalError: a
// marmot client reconnects, re-joins and is told by OnRecover whether it
// got what it missed (as after a server restart: in memory the new room
// has a new epoch). OnError gets ErrRoomFailed once for the room.
func (r *roomActor) lost() {
	r.h.reportError(0, &RoomError{Room: r.name, Op: "run", Err: ErrRoomFailed})
	for _, c := range r.members {
		r.leave(c)
		if r.view != nil { // the other hubs' members are told (before Unsubscribe)
			r.publishPresence(c.id, protocol.PresenceLeave)
		}
		r.h.sys.Root.Send(c.link.pid, &closeRequest{code: CloseInternalError, text: "room failed"})
	}
}

// armIdle starts the idle wait again when the room is empty (any message
// to an empty room restarts it) and stops it when the room has members.
func (r *roomActor) armIdle(ctx actor.Context) {
	if r.busy() {
		r.disarmIdle()
		return
	}
	r.idleGen++
	gen, pid, root := r.idleGen, ctx.Self(), ctx.ActorSystem().Root
	if r.idle != nil {
		r.idle.Stop()
	}
	r.idle = time.AfterFunc(r.h.roomIdle(), func() { root.Send(pid, &roomIdleTick{gen: gen}) })
}

func (r *roomActor) disarmIdle() {
	r.idleGen++
	if r.idle != nil {
		r.idle.Stop()
		r.idle = nil
	}
}

// newRoomActor makes a room's actor; its history opens when it starts.
func newRoomActor(h *Hub, name string, e *roomEntry) *roomActor {
	if r := e.failed; r != nil {
		e.failed = nil
		return r
	}
	return &roomActor{h: h, name: name, entry: e, members: make(map[ClientID]*conn)}
}

// openHistory opens the room's history store when history is on, which
// gives the room its epoch and last offset: in memory a fresh run, from a
// persistent backend the run the room was in when it last ended. Without
// history, or when the store cannot be opened, the room starts a fresh
// epoch from offset 0.
func (r *roomActor) openHistory() {
	r.epoch = NewEpoch()
	cfg := r.h.cfg.RoomHistory
	if !cfg.enabled() || r.h.cfg.RoomBroker != nil {
		return // a broker keeps the history (RoomBroker.History)
	}
	if cfg.Backend == nil {
		r.hist = NewMemoryHistory(cfg)
	} else if r.hist, r.histErr = cfg.Backend.Open(r.name, cfg); r.histErr != nil {
		r.hist = nil
		r.histErr = fmt.Errorf("marmot: room %q: open history: %w", r.name, r.histErr)
		r.h.reportError(0, r.histErr)
		return
	}
	r.epoch, r.offset = r.hist.Epoch(), r.hist.Last()
}

// admit carries out a join: the client becomes a member and is answered
// (sender, when set, gets an *Ack).
func (r *roomActor) admit(ctx actor.Context, m *roomJoin, sender *actor.PID) {
	was := r.members[m.c.id] == m.c
	err := r.join(m.c)
	r.armIdle(ctx)
	if err == nil && !was {
		r.announce(m.c, protocol.PresenceJoin)
	}
	if err != nil || m.reqID == 0 {
		r.answerTo(ctx, sender, m.c, m.reqID, 0, err)
		return
	}
	r.answerJoin(ctx, m, sender)
}

// answerJoin answers a client's join with the room's epoch and offset and,
// when it asked to recover, the outcome, followed by the messages it
// missed. All of it is queued on the member's link in this one turn, so no
// live message can come between the reply, the replay and what follows.
func (r *roomActor) answerJoin(ctx actor.Context, m *roomJoin, sender *actor.PID) {
	res := protocol.JoinResult{Epoch: r.epoch, Offset: r.offset}
	var replay []HistoryEntry
	if m.recover {
		res.Recover, replay = r.recovery(m)
	}
	e := protocol.Envelope{Kind: protocol.KindReply, ID: m.reqID, Payload: protocol.AppendJoinResult(nil, &res)}
	_ = m.c.link.sendEnvelope(&e)
	for i := range replay {
		he := &replay[i]
		set := preparedSet{name: he.Name, data: he.Data, room: r.name, offset: he.Offset}
		if _, err := set.sendTo(m.c); err != nil {
			break
		}
	}
	if sender != nil {
		ctx.Send(sender, &Ack{})
	}
}

// recovery decides whether a re-joining client can be given every message
// after m.from, and returns the outcome and those messages.
func (r *roomActor) recovery(m *roomJoin) (*protocol.RecoverResult, []HistoryEntry) {
	switch {
	case m.epoch != r.epoch:
		return &protocol.RecoverResult{Missed: -1, Reason: protocol.RecoverEpochChanged}, nil
	case m.from > r.offset:
		return &protocol.RecoverResult{Missed: -1, Reason: protocol.RecoverAhead}, nil
	case m.from == r.offset:
		return &protocol.RecoverResult{Recovered: true}, nil
	}
	missed := int(r.offset - m.from)
	var es []HistoryEntry
	var err error
	switch b := r.h.cfg.RoomBroker; {
	case b != nil && r.h.cfg.RoomHistory.enabled():
		es, err = b.History(r.name, r.epoch, m.from, r.offset)
	case r.hist == nil:
		return &protocol.RecoverResult{Missed: missed, Reason: protocol.RecoverNoHistory}, nil
	default:
		es, err = r.hist.Since(m.from, time.Now())
	}
	if err != nil {
		reason := err.Error()
		var gap *HistoryGap
		if errors.As(err, &gap) {
			reason = gap.Reason
		}
		return &protocol.RecoverResult{Missed: missed, Reason: reason}, nil
	}
	if len(es) != missed {
		// A store that lost entries without saying so: never short silently.
		return &protocol.RecoverResult{Missed: missed, Reason: protocol.RecoverOverflow}, nil
	}
	return &protocol.RecoverResult{Recovered: true, Missed: missed}, es
}

func (r *roomActor) join(c *conn) error {
	c.roomMu.Lock()
	defer c.roomMu.Unlock()
	if c.roomsGone {
		// The connection has ended (or is ending) and has already left
		// its rooms: adding it now would keep a dead member forever.
		return ErrConnectionClosed
	}
	if c.rooms == nil {
		c.rooms = make(map[string]struct{})
	}
	c.rooms[r.name] = struct{}{}
	r.members[c.id] = c
	return nil
}

// leave removes c and reports whether it was a member.
func (r *roomActor) leave(c *conn) bool {
	if r.members[c.id] != c {
		return false
	}
	delete(r.members, c.id)
	c.roomMu.Lock()
	delete(c.rooms, r.name)
	c.roomMu.Unlock()
	return true
}

// publish fans one message out, encoded once per wire format (the
// broadcast's preparedSet), and returns how many members it was queued for.
//
// With history on, the message is appended first; when that fails the
// publish fails (reported, and returned to the publisher) and nothing is
// delivered, so every offset a member receives is one the history holds
// and a recovery is never silently short.
func (r *roomActor) publish(m *roomPublish) (int, error) {
	if r.histErr != nil {
		return 0, r.histErr
	}
	if r.hist != nil {
		data := m.data
		if !m.owned {
			data = bytes.Clone(data)
		}
		if err := r.hist.Append(HistoryEntry{Offset: r.offset + 1, Name: m.name, Data: data, At: time.Now()}); err != nil {
			err = fmt.Errorf("marmot: room %q history: %w", r.name, err)
			r.h.reportError(0, err)
			return 0, err
		}
	}
	r.offset++
	set := preparedSet{name: m.name, data: m.data, meta: m.meta, room: r.name, offset: r.offset}
	return set.fanOut(maps.Values(r.members))
}

// answer tells whoever asked: the client's marmot.* request on its link,
// and an actor that sent with a sender (the Hub's calls among them) with
// an *Ack.
func (r *roomActor) answer(ctx actor.Context, c *conn, reqID uint64, n int, err error) {
	r.answerTo(ctx, ctx.Sender(), c, reqID, n, err)
}

// answerTo is answer to an actor other than the current message's sender
// (a join that waited; see room_catchup.go).
func (r *roomActor) answerTo(ctx actor.Context, sender *actor.PID, c *conn, reqID uint64, n int, err error) {
	if reqID != 0 && c != nil {
		e := protocol.Envelope{Kind: protocol.KindReply, ID: reqID}
		if err != nil {
			e = protocol.Envelope{Kind: protocol.KindError, ID: reqID, Code: RoomCodeFailed, Payload: []byte(err.Error())}
		}
		_ = c.link.sendEnvelope(&e)
	}
	if sender != nil {
		ctx.Send(sender, &Ack{Err: err, N: n})
	}
}

// roomEntry is the registry's record of a live room actor. inflight counts
// the messages sent to it through the registry and not yet received: a
// room ends only when none is on its way, so no message meets a stopped
// room.
type roomEntry struct {
	name     string
	pid      *actor.PID
	inflight atomic.Int64
	// settled is set when the room runs behind receive middleware: the
	// count is then settled by settleRoom, in front of the middleware,
	// rather than by Receive (see there).
	settled bool
	// idleChecks counts the idle timeouts the room has acted on; tests
	// wait on it rather than on the clock.
	idleChecks atomic.Int64
	// failed is the room's actor after a panic, until protoactor makes the
	// next instance (see Restarting): written and read on the room's own
	// turn.
	failed *roomActor
}

// received settles one counted message on the room's turn (Receive), unless
// settleRoom already has.
func (e *roomEntry) received() {
	if !e.settled {
		e.inflight.Add(-1)
	}
}

// counted reports whether msg is one of those the registry counts on their
// way to a room (Hub.roomRef).
func counted(msg any) bool {
	switch msg.(type) {
	case *roomJoin, *roomLeave, *roomPublish, *roomMembers, *roomDeliver, *roomPresence, *roomResync, *roomSettle, *roomDetach, *roomAttach:
		return true
	}
	return false
}

// settleRoom is the outermost receive middleware of a room that has any:
// it settles each counted message's in-flight count once, as it arrives,
// before the middleware behind it can lose the message (a dropped one, or
// one it panics on: the room would never end) or repeat it (a duplicate:
// the count would go below zero, and the room would never end either).
// Without middleware nothing can, and Receive settles the count itself,
// which keeps protoactor's middleware chain off the room's path.
func settleRoom(e *roomEntry) actor.ReceiverMiddleware {
	return func(next actor.ReceiverFunc) actor.ReceiverFunc {
		return func(c actor.ReceiverContext, env *actor.MessageEnvelope) {
			if counted(env.Message) {
				e.inflight.Add(-1)
			}
			next(c, env)
		}
	}
}
