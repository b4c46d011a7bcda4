package cluster

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/marmotws/marmot"
	"github.com/marmotws/marmot/cluster/internal/wire"
)

// Broadcast sends data to every client of every node, once each, and
// returns how many accepted it. A node that does not answer within the
// RequestTimeout (or ctx) is named in the error, and its clients are not
// counted; the others still get the message.
func (n *Node) Broadcast(ctx context.Context, data []byte) (int, error) {
	return n.broadcast(ctx, &wire.Broadcast{Data: data, Meta: n.inject(ctx)})
}

// BroadcastCommand is Broadcast as a command named name.
func (n *Node) BroadcastCommand(ctx context.Context, name string, payload []byte) (int, error) {
	if name == "" {
		return 0, marmot.ErrEmptyCommandName
	}
	return n.broadcast(ctx, &wire.Broadcast{Name: name, Data: payload, Meta: n.inject(ctx)})
}

func (n *Node) broadcast(ctx context.Context, m *wire.Broadcast) (int, error) {
	total := 0
	err := n.each(ctx, kindBroadcast, m, func(_ Member, res proto.Message) error {
		a, ok := res.(*wire.Ack)
		if !ok {
			return fmt.Errorf("unexpected answer %T", res)
		}
		if a.Error != "" {
			return errors.New(a.Error)
		}
		total += int(a.N)
		return nil
	})
	return total, err
}

// SendToClient sends data to one client of any node: a raw frame, or a
// data envelope, as marmot.Server.SendToClient does. A client whose node
// is not a member fails with ErrNodeNotFound, a client its node does not
// have with marmot.ErrClientNotFound (both match the latter).
func (n *Node) SendToClient(ctx context.Context, id marmot.ClientID, data []byte) error {
	if id.Node() == n.cfg.NodeID {
		return n.srv.SendToClientContext(ctx, id, data)
	}
	return n.send(ctx, id, &wire.SendTo{Id: uint64(id), Data: data, Meta: n.inject(ctx)})
}

// SendCommandToClient sends a named command to one envelope client of any
// node.
func (n *Node) SendCommandToClient(ctx context.Context, id marmot.ClientID, name string, payload []byte) error {
	if name == "" {
		return marmot.ErrEmptyCommandName
	}
	if id.Node() == n.cfg.NodeID {
		return n.srv.SendCommandToClientContext(ctx, id, name, payload)
	}
	return n.send(ctx, id, &wire.SendTo{Id: uint64(id), Name: name, Data: payload, Meta: n.inject(ctx)})
}

// Disconnect closes one client's connection, on any node, with code and
// text.
func (n *Node) Disconnect(ctx context.Context, id marmot.ClientID, code int, text string) error {
	if id.Node() == n.cfg.NodeID {
		return n.srv.Disconnect(id, code, text)
	}
	return n.send(ctx, id, &wire.Disconnect{Id: uint64(id), Code: int32(code), Text: text})
}

// send asks the node of client id to carry out m.
func (n *Node) send(ctx context.Context, id marmot.ClientID, m proto.Message) error {
	if err := n.check(); err != nil {
		return err
	}
	addr, ok := n.nodeAddress(id.Node())
	if !ok {
		return fmt.Errorf("%w: client %d, node %d", ErrNodeNotFound, id, id.Node())
	}
	n.traffic.sent[kindSend].Add(1)
	res, err := n.member().sys.Root.RequestFuture(nodePID(addr), m, n.timeout(ctx)).Result()
	if err != nil {
		return fmt.Errorf("marmot/cluster: node %d (%s): %w", id.Node(), addr, err)
	}
	a, ok := res.(*wire.Ack)
	switch {
	case !ok:
		return fmt.Errorf("marmot/cluster: node %d: unexpected answer %T", id.Node(), res)
	case a.NotFound:
		return fmt.Errorf("%w: %d", marmot.ErrClientNotFound, id)
	case a.Error != "":
		return fmt.Errorf("marmot/cluster: node %d: %s", id.Node(), a.Error)
	}
	return nil
}

// Clients returns every client of every node, ordered by ID. Clients of
// other nodes carry no PID and no Data. A node that does not answer is
// named in the error; the others' clients are returned.
func (n *Node) Clients(ctx context.Context) ([]marmot.ClientInfo, error) {
	var out []marmot.ClientInfo
	err := n.each(ctx, kindQuery, &wire.ClientsRequest{}, func(m Member, res proto.Message) error {
		cs, ok := res.(*wire.Clients)
		if !ok {
			return fmt.Errorf("unexpected answer %T", res)
		}
		for _, c := range cs.Clients {
			out = append(out, marmot.ClientInfo{
				ID: marmot.ClientID(c.Id), RemoteAddr: remoteAddr(c.RemoteAddr), Subprotocol: c.Subprotocol,
				ConnectedAt:   time.Unix(0, c.ConnectedAtUnixNano),
				BytesReceived: c.BytesReceived, BytesSent: c.BytesSent,
				MessagesReceived: c.MessagesReceived, MessagesSent: c.MessagesSent,
			})
		}
		return nil
	})
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, err
}

// ClientCount returns the number of clients of every node.
func (n *Node) ClientCount(ctx context.Context) (int, error) {
	st, err := n.Stats(ctx)
	return st.ClientCount, err
}

// Stats returns the sum of every node's counters.
func (n *Node) Stats(ctx context.Context) (marmot.Stats, error) {
	var t marmot.Stats
	err := n.each(ctx, kindQuery, &wire.StatsRequest{}, func(_ Member, res proto.Message) error {
		s, ok := res.(*wire.Stats)
		if !ok {
			return fmt.Errorf("unexpected answer %T", res)
		}
		t.ClientCount += int(s.ClientCount)
		t.TotalConnections += s.TotalConnections
		t.TotalActiveConnections += s.ClientCount
		t.TotalBytesReceived += s.BytesReceived
		t.TotalBytesSent += s.BytesSent
		t.TotalMessagesReceived += s.MessagesReceived
		t.TotalMessagesSent += s.MessagesSent
		t.RefusedConnections += s.Refused
		t.HandshakeFailures += s.HandshakeFailures
		t.DecryptFailures += s.DecryptFailures
		t.SlowConsumerCloses += s.SlowConsumerCloses
		t.ActorRestarts += s.ActorRestarts
		return nil
	})
	return t, err
}

// each asks every member's node actor m (of kind, for the metrics) at once and hands each answer to
// f; failures are joined into the error, naming their node.
func (n *Node) each(ctx context.Context, kind int, m proto.Message, f func(Member, proto.Message) error) error {
	if err := n.check(); err != nil {
		return err
	}
	members := n.Members()
	n.traffic.sent[kind].Add(int64(len(members)))
	d := n.timeout(ctx)
	type call struct {
		m   Member
		res any
		err error
	}
	calls := make([]call, len(members))
	futures := make([]func() (any, error), len(members))
	for i, mb := range members {
		futures[i] = n.member().sys.Root.RequestFuture(nodePID(mb.Address), m, d).Result
		calls[i].m = mb
	}
	var errs []error
	for i := range calls {
		calls[i].res, calls[i].err = futures[i]()
		if calls[i].err == nil {
			res, ok := calls[i].res.(proto.Message)
			if !ok {
				calls[i].err = fmt.Errorf("unexpected answer %T", calls[i].res)
			} else {
				calls[i].err = f(calls[i].m, res)
			}
		}
		if calls[i].err != nil {
			errs = append(errs, fmt.Errorf("marmot/cluster: node %d (%s): %w", calls[i].m.NodeID, calls[i].m.Address, calls[i].err))
		}
	}
	return errors.Join(errs...)
}
