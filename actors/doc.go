// Package actors runs marmot's connections as protoactor-go actors: a
// ServerActor (the [Hub]) supervises one ConnectionActor per connection, and
// a ClientActor (the [Client]) owns a client connection and its reconnect
// state machine. Connections sit on a transport (internal/transport):
// WebSocket (internal/wsconn) or the HTTP fallback (internal/httpconn,
// docs/HTTP.md: a send request's records, or a poll answer's, take the
// place of the socket's frames); the connection actor never sees gorilla,
// a socket, an HTTP request or the poller. Hub.ServeHTTP opens both
// through one accept path (accept.go), so the checks before an upgrade
// apply to a session's open too.
//
// # One message, one way
//
// Inbound, from the socket to the handler; each step in its layer's file:
//
//	socket ─▶ wsconn.Conn.read          internal/wsconn/read.go      the transport's reader: gorilla frames, keep-alive
//	       ─▶ link.Message              actors/link.go               transport.Receiver: pooled frame, input budget,
//	                                                                 decrypt (encryption.go), decode (inbound.go)
//	       ─▶ connMailbox.postInline    actors/mailbox.go            the actor's mailbox; an idle actor runs on the
//	                                                                 reader's goroutine (no hand-off per message)
//	       ─▶ ConnectionActor           actors/conn_actor.go         events, counters, then the handler:
//	       ─▶ handle                    actors/dispatch.go           process span, supervision, OnHandleCommand or
//	                                                                 the user's connection actor
//
// Outbound, from the handler (or any goroutine) back to the socket:
//
//	Message.Reply / Hub.SendToClient / Broadcast
//	       ─▶ link: encode              actors/outbox.go             envelope or raw frame
//	       ─▶ outbox.post / send        actors/outbox.go             written at once when idle, else queued (bounded:
//	                                                                 4008 slow consumer) and flushed by the actor
//	       ─▶ outbox.write              actors/outbox.go             seal (encryption.go), counters, OnDataSent
//	       ─▶ transport.Conn.Write*     internal/wsconn/write.go     server frames encoded here (compressed when
//	                                                                 negotiated: compress.go), batched into one
//	                                                                 syscall (frameconn.go); clients' via gorilla
//
// No arrow runs back up: the transport calls only its transport.Receiver
// (the link), with messages in order and one Done; netpoll calls only the
// transport (netpoll.Target); the connection actor drives the transport
// through transport.Conn.
//
// # Who does what
//
//   - A connection's actor is its only writer of data (the outbox's write
//     lock makes flushes exclusive; the handler's own reply is written at
//     once when nothing is queued ahead of it). The transport writes its
//     own control frames (pings, the close handshake).
//   - The transport owns the connection's lifecycle (open, expired,
//     closing, failing, released: one phase type in wsconn) and closes the
//     socket once both its reader and the owner have let go.
//   - Idle server connections keep no goroutine: after one to two parking
//     ticks without input a reader parks, and an epoll set
//     (internal/netpoll) resumes it on a fresh goroutine when bytes arrive.
//   - Decryption and decoding run on the reader's goroutine, off the
//     actor: a session's Open must run in frame order, which the reader is.
//   - A handler that waits for a later message of its own connection (a
//     request to its own client, request_client.go) would hold the reader
//     it runs on: Hub.RequestClient writes the request at once and has
//     the reader go on on a new goroutine for the wait (link.keepReading,
//     transport.Conn.Handoff); that reader hands the answer over
//     (conn.early) and queues every other frame in the mailbox, in order,
//     within the connection's input budget.
//
// # Admission
//
// Before a connection exists, Hub.screen (screen.go) runs every check a
// new connection must pass, in one place and cheapest first: the origin,
// the per-IP connection rate and count (iplimit.go), MaxConnections and
// the Authenticate hook; any transport's accept path calls it (the
// WebSocket upgrade in accept.go; an HTTP session open the same way) and
// answers a refusal with writeRefusal. What follows admission lives in
// auth.go, on the connection's actor: its Identity, the watch that closes
// it with 4001 when the identity expires, the first-message marmot.auth
// of clients that could not send credentials in the request, and the
// slots screening took, given back at teardown. None of it runs per
// message; the per-message rate check (limits.go) runs on the reader,
// after decoding, and is a nil test when no limit is set.
//
// # Supervision
//
// A panic in OnHandleCommand, OnDataReceived or the user's connection
// actor fails the actor; the supervisor (package supervisor) records a span
// and restarts it within its budget: protoactor makes a fresh
// ConnectionActor (and a fresh user actor), while conn (transport, ID,
// counters, user data) carries on. Past the budget the connection closes
// with 1011. Panics in the other callbacks are recovered and reported to
// OnError.
//
// # Rooms
//
// A room (room.go) is a top-level actor in the hub's system, one per
// room name, spawned on first join by the hub's registry (rooms.go) and
// stopped once empty for HubConfig.RoomIdle. It holds the members by
// ClientID and fans each publish out on their outboxes, encoded once per
// wire format (the broadcast's preparedSet) and numbered with the room's
// next offset; one message at a time, so every member sees one order.
// A client's marmot.join/leave/publish requests are intercepted by its
// ConnectionActor (room_requests.go), which runs OnJoin/OnPublish and
// hands the operation to the room; the room answers the request on the
// client's link once it has taken effect. Membership lives in the room,
// so it survives connection actor restarts; teardown leaves every room.
//
// With HubConfig.RoomHistory a room also appends each publish to its
// HistoryStore (history.go), whose epoch names the room's run: in memory
// by default, or opened from HistoryConfig.Backend when the room's actor
// starts (package boltstore keeps it on disk, so that a room created
// again, after its idle end or a restart, continues its epoch and offsets).
// A join that carries an epoch and an offset is answered, in the room's
// one turn, with the outcome (protocol.JoinResult) followed by the
// replayed messages, so no live message comes between. The client side
// (client_history.go) tracks (epoch, last offset handed on) per room and
// re-joins after every reconnect, reporting
// OnRecover / *RoomRecovered from the ClientActor.
//
// Rooms for which HubConfig.RoomPresence returns true have presence
// (room_presence.go): the room itself sends the other members a
// marmot.presence command on every join and leave, in its one turn and so
// in its order, and answers a client's marmot.presence request with the
// member list; the ClientActor (client_presence.go) reports the events to
// OnPresence / *RoomPresence instead of the handler.
//
// # Sessions and the client's outbox
//
// A client with the outbox (ClientConfig.Outbox) asks for a session at
// the upgrade; the hub grants it (session.go: ServeHTTP's offer before the
// upgrade sets the resume token on the 101, attach after it) and keeps it
// past the connection for HubConfig.SessionTTL. The client numbers what it
// sends and keeps it until acknowledged (client_outbox.go: submit, adopt
// on a new connection, acked from the reader). The ConnectionActor checks
// each numbered message against the session before the handler runs
// (sequenced: a duplicate is dropped, a gap closes with 1002), holding the
// session's lock while it is handled, so that the old and the new
// connection of a session never handle one number twice; acknowledgements
// go out batched (handled, ackLater).
//
// With HubConfig.SessionStore (session_store.go; package cluster is one) a
// session also follows its client to another hub: a token this hub does
// not know is taken over through the store (Take) before the upgrade is
// answered, from the session's live hub (Hub.HandOverSession: exact) or
// from the mark the store kept for a lost one (messages the client had sent
// there are handled with Message.Redelivered). The hub saves each session
// with the store as it is taken up, and its mark as its acknowledgement
// goes out (Mark); without a store none of this runs. A store ends a
// session here without a handover (Hub.DropSession) when another hub took
// it over from its mark while this one was cut off.
//
// # Rooms across hubs
//
// With HubConfig.RoomBroker (broker.go; package cluster is one), rooms
// span hubs: a room hands each publish to the broker instead of numbering
// it, and the broker hands every hub that has the room the numbered
// message back through Hub.DeliverRoom, which the room fans out to its
// local members in the broker's order. The broker also keeps the rooms'
// history (RoomBroker.History), and a client that recovers from an offset
// the room has not reached yet waits for it (room_catchup.go), as does a
// join while the broker does not deliver to the room (Hub.DetachRoom and
// Hub.AttachRoom; room_detach.go). A
// broker's Publish may return a ticket: the room then answers the
// publisher only once a delivery's RoomMessage.Confirms reaches it, or
// with ErrPublishUnconfirmed after the broker's ConfirmTimeout
// (room_confirm.go); a broker that drops a publish as a repeat of its key,
// or fails it, says so with Hub.ConfirmRoom. A publish made for a
// client's message (Hub.PublishFor, a marmot.publish request) carries a
// key that is the same on every hub that handles the message
// (publish_key.go), so a message handled again after a failover is
// numbered once; a marmot.publish request's session acknowledgement waits
// for its answer (session_publish.go). A broker that confirms after the
// delivery (a cluster whose grain waits for a second holder) uses
// Hub.ConfirmRoom too.
// HubConfig.NodeID numbers the hub's ClientIDs apart from other hubs'.
// Without a broker none of this runs.
//
// # Receive middleware
//
// HubConfig.ReceiverMiddleware and ClientConfig.ReceiverMiddleware run in
// front of the connection, room and client actors (package
// chaos/actorfault injects faults this way). Inbound frames then leave the
// direct path and are shown to the middleware as their *Message;
// middleware.go settles each frame's bookkeeping once, whether the
// middleware drops, passes or duplicates it. Identify says which actor a
// middleware runs on.
//
// The root package marmot wraps all this behind a friendlier
// configuration; use this package directly when you want the actor PIDs.
package actors
