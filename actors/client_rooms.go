package actors

import (
	"context"

	"github.com/marmotws/marmot/protocol"
)

// Join asks the server to add this client to room and waits for its
// answer or for ctx. A refusal (the server's OnJoin) comes back as a
// *RoomError wrapping a *RemoteError whose Message is the reason. From the
// answer on, the room's messages arrive through OnHandleCommand (or the
// user's actor) as *Message with Room and Offset set.
//
// The client remembers the room and where it stands in it (the room's
// epoch, the offset of the last message received) until Leave: after every
// reconnect it joins again by itself, asking the server to replay what it
// missed, and reports the outcome to ClientEvents.OnRecover (a user actor
// receives a *RoomRecovered). Joining a room the client already is in on
// the current connection returns nil at once.
func (c *Client) Join(ctx context.Context, room string) error {
	if err := checkRoom(room); err != nil {
		return err
	}
	if err := c.join(ctx, room); err != nil {
		if _, remote := err.(*RemoteError); remote {
			return &RoomError{Room: room, Op: "join", Err: err}
		}
		return err
	}
	return nil
}

// Leave asks the server to remove this client from room and waits for its
// answer or for ctx. Leaving a room the client is not in is not an error.
// With the outbox, a Leave while the client reconnects returns nil at
// once: the room is not joined again on the next connection.
func (c *Client) Leave(ctx context.Context, room string) error {
	if checkRoom(room) == nil {
		c.forget(room)
		if c.outboxOn() && c.link() == nil && c.queueing() {
			return nil
		}
	}
	return c.roomRequest(ctx, protocol.RequestLeave, "leave", room)
}

func (c *Client) roomRequest(ctx context.Context, name, op, room string) error {
	if err := checkRoom(room); err != nil {
		return err
	}
	if _, err := c.request(ctx, name, room, nil); err != nil {
		if _, remote := err.(*RemoteError); remote {
			return &RoomError{Room: room, Op: op, Err: err}
		}
		return err
	}
	return nil
}

// Publish queues data for the members of room (this client included, if
// it is one); it does not wait. The server answers each publish: a
// refusal (the server's OnPublish) goes to OnError as a *RoomError
// wrapping a *RemoteError with the reason. The client need not be a member
// to publish, unless the server's OnPublish says otherwise. With the
// outbox it waits there while the client reconnects, like Send.
func (c *Client) Publish(room string, data []byte) error {
	if err := checkRoom(room); err != nil {
		return err
	}
	if c.codec == nil {
		_, err := c.envelopeLink()
		if err == nil {
			err = ErrRawMode
		}
		return err
	}
	c.mu.Lock()
	c.nextReq++
	id := c.nextReq
	if c.publishes == nil {
		c.publishes = make(map[uint64]string)
	}
	c.publishes[id] = room
	c.mu.Unlock()
	err := c.submit(&protocol.Envelope{Kind: protocol.KindRequest, ID: id, Name: protocol.RequestPublish, Room: room, Payload: data})
	if err != nil {
		c.takePublish(id)
	}
	return err
}

// isPublish reports whether id is an unanswered Publish (the reader's
// check, which leaves the entry for the actor).
func (c *Client) isPublish(id uint64) bool {
	c.mu.Lock()
	_, ok := c.publishes[id]
	c.mu.Unlock()
	return ok
}

// takePublish removes the unanswered Publish id and returns its room.
func (c *Client) takePublish(id uint64) (string, bool) {
	c.mu.Lock()
	room, ok := c.publishes[id]
	delete(c.publishes, id)
	c.mu.Unlock()
	return room, ok
}
