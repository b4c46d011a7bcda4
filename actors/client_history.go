package actors

import (
	"context"
	"time"

	"github.com/marmotws/marmot/protocol"
)

// RoomRecovered is the outcome of a client's automatic re-join of a room
// after a reconnect (ClientEvents.OnRecover; a user actor receives it as a
// message). When Recovered, the Missed messages published while the client
// was away follow, in order, before any live one: the client has every
// message of the room exactly once. Otherwise nothing was replayed, Reason
// says why (protocol.RecoverNoHistory, RecoverEpochChanged,
// RecoverOverflow, RecoverExpired, or "join refused: " and the server's
// reason, after which the client is no longer in the room), and Missed is
// how many messages were lost when the server knows, else -1.
type RoomRecovered struct {
	Room      string
	Recovered bool
	Missed    int
	Reason    string
}

// roomPos is where the client stands in a room it joined: the epoch of the
// room's run and the offset of the last message received, and the link it
// was (re-)joined on.
type roomPos struct {
	epoch  string
	offset uint64
	l      *link
	// ready, while an automatic re-join on l is unanswered, is closed by
	// its answer (err set on a refusal) or when the client stops
	// reconnecting.
	ready chan struct{}
	err   error
	// fresh: joined while reconnecting (the outbox), never answered yet:
	// its first join is not a re-join to report to OnRecover.
	fresh bool
}

// settle closes pos.ready, if open; c.mu is held.
func (pos *roomPos) settle(err error) {
	if pos.ready != nil {
		pos.err = err
		close(pos.ready)
		pos.ready = nil
	}
}

// joinReq is an unanswered join: its room and whether it is an automatic
// re-join (whose outcome goes to OnRecover).
type joinReq struct {
	room   string
	rejoin bool
}

// join sends a join of room, remembering the room for re-joins, and waits
// for the answer. A room already joined on the current connection (the
// automatic re-join got there first) is not joined twice; one joined on a
// previous connection is re-joined, recovering, as the automatic re-join
// would (its outcome goes to OnRecover).
func (c *Client) join(ctx context.Context, room string) error {
	l, err := c.envelopeLink()
	if err == ErrNotConnected && c.outboxOn() && c.queueing() {
		return c.joinLater(ctx, room)
	}
	if err != nil {
		return err
	}
	c.mu.Lock()
	if pos := c.rooms[room]; pos != nil {
		// A room the client is in, or was in before a reconnect: never a
		// fresh join, which would skip what it missed without a word.
		if pos.l != l {
			if err := c.rejoinOne(l, room, pos); err != nil {
				c.mu.Unlock()
				return err
			}
		}
		ready := pos.ready
		c.mu.Unlock()
		if ready == nil {
			return nil
		}
		return c.awaitRejoin(ctx, l, pos, ready)
	}
	if c.rooms == nil {
		c.rooms = make(map[string]*roomPos)
	}
	c.rooms[room] = &roomPos{l: l}
	c.nextReq++
	id := c.nextReq
	ch := make(chan reqResult, 1)
	c.pending[id] = ch
	c.noteJoin(id, joinReq{room: room})
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		delete(c.pending, id)
		delete(c.joins, id)
		c.mu.Unlock()
	}()
	_, err = c.awaitReply(ctx, l, ch, &protocol.Envelope{Kind: protocol.KindRequest, ID: id, Name: protocol.RequestJoin, Room: room})
	if err != nil {
		c.mu.Lock()
		if pos := c.rooms[room]; pos != nil && pos.l == l && pos.epoch == "" {
			delete(c.rooms, room)
		}
		c.mu.Unlock()
	}
	return err
}

// joinLater is a Join while the client reconnects (with the outbox): the
// room is remembered as joined and the Join waits for the automatic join
// on the next connection to be answered.
func (c *Client) joinLater(ctx context.Context, room string) error {
	c.mu.Lock()
	pos := c.rooms[room]
	if pos == nil {
		if c.rooms == nil {
			c.rooms = make(map[string]*roomPos)
		}
		pos = &roomPos{fresh: true}
		c.rooms[room] = pos
	}
	if pos.ready == nil {
		pos.ready = make(chan struct{})
	}
	if l := c.current; l != nil && pos.l != l {
		// The new connection is there (its re-joins went out before this
		// room was known), not yet announced: join on it.
		if err := c.rejoinOne(l, room, pos); err != nil {
			c.mu.Unlock()
			return err
		}
	}
	ready := pos.ready
	c.mu.Unlock()
	select {
	case <-ready:
	case <-ctx.Done():
		c.mu.Lock()
		if pos.fresh && pos.l == nil && c.rooms[room] == pos {
			delete(c.rooms, room) // never sent: given up
		}
		c.mu.Unlock()
		return ctx.Err()
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return pos.err
}

// awaitRejoin waits for the automatic re-join of pos's room on l to be
// answered, and returns its error.
func (c *Client) awaitRejoin(ctx context.Context, l *link, pos *roomPos, ready chan struct{}) error {
	if c.inCallback.Load() > 0 {
		// Called from a callback (OnConnect): the ClientActor that would
		// write the re-join is the one waiting.
		_ = l.out.flush(time.Time{}, (&ClientActor{c: c}).onSent())
	}
	select {
	case <-ready:
	case <-ctx.Done():
		return ctx.Err()
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return pos.err
}

// noteJoin records an unanswered join; c.mu is held.
func (c *Client) noteJoin(id uint64, j joinReq) {
	if c.joins == nil {
		c.joins = make(map[uint64]joinReq)
	}
	c.joins[id] = j
}

// forget stops re-joining room (Leave).
func (c *Client) forget(room string) {
	c.mu.Lock()
	delete(c.rooms, room)
	c.mu.Unlock()
}

// rejoin re-joins, on the new link l, every room joined with Join, asking
// to recover from where the client stands, and returns the errors to
// report. The ClientActor calls it, with c.mu held, when a connection
// opens, before OnConnect; the answers come to joinAnswered.
func (c *Client) rejoin(l *link) (failed []error) {
	if l.codec == nil {
		return nil
	}
	for room, pos := range c.rooms {
		if pos.l == l {
			continue
		}
		if err := c.rejoinOne(l, room, pos); err != nil {
			failed = append(failed, err)
		}
	}
	return failed
}

// rejoinOne sends the re-join of room on l, asking to recover from pos;
// c.mu is held. On failure pos is left for the next connection.
func (c *Client) rejoinOne(l *link, room string, pos *roomPos) error {
	// A Join waiting for the re-join on a lost connection goes on
	// waiting for this one.
	pos.l = l
	if pos.ready == nil {
		pos.ready = make(chan struct{})
	}
	c.nextReq++
	id := c.nextReq
	c.noteJoin(id, joinReq{room: room, rejoin: !pos.fresh})
	e := protocol.Envelope{Kind: protocol.KindRequest, ID: id, Name: protocol.RequestJoin, Room: room}
	if pos.epoch != "" {
		e.Epoch, e.Offset = pos.epoch, pos.offset
	}
	if err := l.sendEnvelope(&e); err != nil {
		delete(c.joins, id)
		pos.settle(err)
		pos.l = nil
		return &RoomError{Room: room, Op: "join", Err: err}
	}
	return nil
}

// received advances the client's position in room (the ClientActor, as
// it hands the message on).
func (c *Client) received(l *link, room string, offset uint64) {
	c.mu.Lock()
	if pos := c.rooms[room]; pos != nil && pos.l == l && offset > pos.offset {
		pos.offset = offset
	}
	c.mu.Unlock()
}

// joinAnswered updates the client's position from the answer m to a join,
// if it is one (the reader, before the ClientActor sees any message of the
// room that follows it on l: the room sends none before the answer). For an automatic re-join it returns the outcome to report.
func (c *Client) joinAnswered(l *link, m *Message) (*RoomRecovered, bool) {
	var bad error
	defer func() {
		if bad != nil {
			c.reportError(bad)
		}
	}()
	c.mu.Lock()
	defer c.mu.Unlock()
	j, ok := c.joins[m.id]
	if !ok {
		return nil, false
	}
	delete(c.joins, m.id)
	pos := c.rooms[j.room]
	if pos == nil || pos.l != l {
		return nil, true // left meanwhile
	}
	pos.fresh = false
	if m.Kind == protocol.KindError {
		pos.settle(&RemoteError{Code: m.code, Message: string(m.Payload)})
		delete(c.rooms, j.room)
		if !j.rejoin {
			return nil, true
		}
		return &RoomRecovered{Room: j.room, Missed: -1, Reason: "join refused: " + string(m.Payload)}, true
	}
	res, err := protocol.DecodeJoinResult(m.Payload)
	if err != nil {
		bad = &RoomError{Room: j.room, Op: "join", Err: err}
	}
	rec := res.Recover
	if rec == nil || !rec.Recovered {
		// Nothing is replayed: the client stands where the room is.
		pos.offset = res.Offset
	}
	pos.epoch = res.Epoch
	pos.settle(nil)
	if !j.rejoin {
		return nil, true
	}
	if rec == nil {
		// The join carried no epoch to recover from (a server without
		// history support answered the first join).
		rec = &protocol.RecoverResult{Missed: -1, Reason: protocol.RecoverNoHistory}
	}
	return &RoomRecovered{Room: j.room, Recovered: rec.Recovered, Missed: rec.Missed, Reason: rec.Reason}, true
}
