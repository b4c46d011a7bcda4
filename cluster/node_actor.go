package cluster

import (
	"errors"
	"net"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/asynkron/protoactor-go/cluster"

	"github.com/marmotws/marmot"
	"github.com/marmotws/marmot/cluster/internal/wire"
)

// nodeActor is a node's door for the other nodes (and its own room
// grains): it carries out on the local server what they ask, one message
// at a time, which keeps each room's deliveries in the grain's order.
// Each cluster member has its own (m); a replaced member's is deaf to
// topologies.
type nodeActor struct {
	n    *Node
	m    *member
	gone map[uint32]bool // nodes that left the cluster (presence.go)
}

// Receive implements actor.Actor.
func (a *nodeActor) Receive(ctx actor.Context) {
	srv := a.n.srv
	if k, ok := receivedKind(ctx.Message()); ok {
		a.n.traffic.received[k].Add(1)
	}
	switch m := ctx.Message().(type) {
	case *wire.RoomDeliverSeq:
		confirms := a.n.rb.delivered(m)
		srv.DeliverRoom(m.Room, &marmot.RoomMessage{Name: m.Name, Data: m.Data, Meta: m.Meta, Epoch: m.Epoch, Offset: m.Offset, Confirms: confirms})
	case *wire.RoomPublishDone:
		a.n.rb.publishDone(m)
	case *roomLink:
		m.tell(srv) // after the deliveries before it (rooms_attach.go)
	case *wire.RoomStateQuery:
		st := a.n.rb.state(m.Room)
		// The answer names the address the grain asked (this actor's
		// system), which it waits for: a member that is starting (a
		// node that has just come back) has no member yet to name, and
		// without it the grain waited out its take-over for an answer it
		// had (test/soak -cluster; docs/FAULTS.md).
		st.Node = ctx.ActorSystem().Address()
		if g := a.n.roomGrains.other(m.Room, st.Node, ctx.Sender()); g != nil {
			// This node hosts a grain of the room, another takes it
			// over: the grain answers, and stops (rooms_takeover.go).
			ctx.Send(g, &grainHandOff{node: st, to: ctx.Sender()})
			return
		}
		ctx.Respond(st)
	case *wire.RoomReplicate:
		a.n.rb.replicate(m.State)
	case *wire.RoomRelease:
		a.n.rb.release(m.Room)
	case *wire.Broadcast:
		var k int
		var err error
		if m.Name != "" {
			k, err = srv.BroadcastCommand(m.Name, m.Data)
		} else {
			k, err = srv.BroadcastContext(a.n.extract(m.Meta), m.Data)
		}
		ctx.Respond(ack(k, err))
	case *wire.SendTo:
		var err error
		if m.Name != "" {
			err = srv.SendCommandToClientContext(a.n.extract(m.Meta), marmot.ClientID(m.Id), m.Name, m.Data)
		} else {
			err = srv.SendToClientContext(a.n.extract(m.Meta), marmot.ClientID(m.Id), m.Data)
		}
		ctx.Respond(ack(1, err))
	case *wire.Disconnect:
		ctx.Respond(ack(1, srv.Disconnect(marmot.ClientID(m.Id), int(m.Code), m.Text)))
	case *wire.ClientsRequest:
		cs := srv.Clients()
		out := &wire.Clients{Clients: make([]*wire.ClientInfo, len(cs))}
		for i, c := range cs {
			out.Clients[i] = &wire.ClientInfo{
				Id: uint64(c.ID), RemoteAddr: addrString(c.RemoteAddr), Subprotocol: c.Subprotocol,
				ConnectedAtUnixNano: c.ConnectedAt.UnixNano(),
				BytesReceived:       c.BytesReceived, BytesSent: c.BytesSent,
				MessagesReceived: c.MessagesReceived, MessagesSent: c.MessagesSent,
			}
		}
		ctx.Respond(out)
	case *wire.StatsRequest:
		st := srv.Stats()
		ctx.Respond(&wire.Stats{
			ClientCount: int64(st.ClientCount), TotalConnections: st.TotalConnections,
			BytesReceived: st.TotalBytesReceived, BytesSent: st.TotalBytesSent,
			MessagesReceived: st.TotalMessagesReceived, MessagesSent: st.TotalMessagesSent,
			Refused: st.RefusedConnections, HandshakeFailures: st.HandshakeFailures,
			DecryptFailures: st.DecryptFailures, SlowConsumerCloses: st.SlowConsumerCloses,
			ActorRestarts: st.ActorRestarts,
		})
	case *wire.SessionMarks:
		if ids := a.n.ss.hold(m); len(ids) > 0 && ctx.Sender() != nil {
			ctx.Send(ctx.Sender(), &wire.SessionFence{Ids: ids})
		}
	case *wire.SessionFence:
		a.n.ss.fenced(m.Ids)
	case *wire.SessionTake:
		ctx.Respond(a.n.ss.takeHeld(m))
	case *wire.SessionCheck:
		ctx.Respond(&wire.SessionChecked{Taken: a.n.ss.heldTaken(m.Id)})
	case *wire.SessionHandover:
		a.n.ss.handOver(m, ctx.Sender(), ctx.ActorSystem())
	case *wire.RoomResubscribe:
		a.n.rb.grainStopped(m.Room)
	case *wire.MemberProbe:
		ctx.Respond(a.m.view())
	case *cluster.ClusterTopology:
		if a.m == nil || !a.m.left.Load() {
			a.n.noteMembers(len(m.Members))
			a.topologyPresence(m)
			a.n.rb.topologyChanged(m)
			a.n.ss.resendAll()
		}
	default:
		if !a.receiveHeld(ctx, m) { // rooms_held.go
			a.receivePresence(ctx, m)
		}
	}
}

func ack(n int, err error) *wire.Ack {
	if err != nil {
		return &wire.Ack{Error: err.Error(), NotFound: errors.Is(err, marmot.ErrClientNotFound)}
	}
	return &wire.Ack{N: int64(n)}
}

func addrString(a net.Addr) string {
	if a == nil {
		return ""
	}
	return a.String()
}

// receivedKind is the metrics' kind of a message from another node.
func receivedKind(m any) (int, bool) {
	switch m.(type) {
	case *wire.RoomDeliverSeq:
		return kindDeliver, true
	case *wire.Broadcast:
		return kindBroadcast, true
	case *wire.SendTo, *wire.Disconnect:
		return kindSend, true
	case *wire.ClientsRequest, *wire.StatsRequest:
		return kindQuery, true
	case *wire.SessionMarks, *wire.SessionTake, *wire.SessionHandover, *wire.SessionFence, *wire.SessionCheck:
		return kindSession, true
	}
	return 0, false
}
