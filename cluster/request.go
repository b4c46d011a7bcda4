package cluster

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/marmotws/marmot"
	"github.com/marmotws/marmot/cluster/internal/wire"
)

// maxNodeRequests bounds the requests a node carries out for other nodes
// at once (RequestTo): each waits on a goroutine for its client's answer.
const maxNodeRequests = 10_000

// RequestClient sends a request named name to a client of any node and
// waits for its answer, as marmot.Server.RequestClient does on one
// server: the client's reply payload, or a *marmot.RemoteError with its
// code and text. A client whose node is not a member fails with
// ErrNodeNotFound, one its node does not have with
// marmot.ErrClientNotFound (both match the latter). The wait is bounded
// by ctx and by the RequestTimeout: when either ends first the error
// matches context.DeadlineExceeded (or ctx's error), and a later answer is
// dropped.
func (n *Node) RequestClient(ctx context.Context, id marmot.ClientID, name string, payload []byte) ([]byte, error) {
	if name == "" {
		return nil, marmot.ErrEmptyCommandName
	}
	if id.Node() == n.cfg.NodeID {
		ctx, cancel := context.WithTimeout(ctx, n.cfg.RequestTimeout)
		defer cancel()
		return n.srv.RequestClient(ctx, id, name, payload)
	}
	if err := n.check(); err != nil {
		return nil, err
	}
	addr, ok := n.nodeAddress(id.Node())
	if !ok {
		return nil, fmt.Errorf("%w: client %d, node %d", ErrNodeNotFound, id, id.Node())
	}
	// The other node gives up a little before this one, so that its
	// answer (the client's, or its timeout) is what is returned.
	d := n.timeout(ctx)
	remote := d - min(d/10, 500*time.Millisecond)
	n.traffic.sent[kindSend].Add(1)
	f := n.member().sys.Root.RequestFuture(nodePID(addr), &wire.RequestTo{
		Id: uint64(id), Name: name, Data: payload, Meta: n.inject(ctx), TimeoutMs: max(remote.Milliseconds(), 1),
	}, d)
	type result struct {
		res any
		err error
	}
	done := make(chan result, 1)
	go func() { // ends when the future does, within d
		res, err := f.Result()
		done <- result{res, err}
	}()
	var r result
	select {
	case r = <-done:
	case <-ctx.Done():
		return nil, fmt.Errorf("marmot/cluster: request %q to client %d: %w", name, id, ctx.Err())
	}
	if errors.Is(r.err, actor.ErrTimeout) {
		return nil, fmt.Errorf("marmot/cluster: request %q to client %d (node %d): %w", name, id, id.Node(), context.DeadlineExceeded)
	}
	if r.err != nil {
		return nil, fmt.Errorf("marmot/cluster: node %d (%s): %w", id.Node(), addr, r.err)
	}
	res, ok := r.res.(*wire.RequestResult)
	switch {
	case !ok:
		return nil, fmt.Errorf("marmot/cluster: node %d: unexpected answer %T", id.Node(), r.res)
	case res.NotFound:
		return nil, fmt.Errorf("%w: %d", marmot.ErrClientNotFound, id)
	case res.Remote:
		return nil, &marmot.RemoteError{Code: res.Code, Message: res.Error}
	case res.Timeout:
		return nil, fmt.Errorf("marmot/cluster: request %q to client %d (node %d): %w", name, id, id.Node(), context.DeadlineExceeded)
	case res.Error != "":
		return nil, fmt.Errorf("marmot/cluster: node %d: %s", id.Node(), res.Error)
	}
	return res.Data, nil
}

// requestClient is the node actor's side of a RequestTo: the request
// waits for its client's answer on its own goroutine (the node actor goes
// on), which answers the asking node.
func (n *Node) requestClient(ctx actor.Context, m *wire.RequestTo) {
	sender := ctx.Sender()
	if sender == nil {
		return
	}
	select {
	case n.reqSlots <- struct{}{}:
	default:
		ctx.Respond(&wire.RequestResult{Error: "too many requests from other nodes"})
		return
	}
	root := ctx.ActorSystem().Root
	go func() {
		defer func() { <-n.reqSlots }()
		// The asking node's bound, within this node's own.
		d := min(time.Duration(m.TimeoutMs)*time.Millisecond, max(n.cfg.RequestTimeout, time.Millisecond))
		c, cancel := context.WithTimeout(n.extract(m.Meta), d)
		defer cancel()
		data, err := n.srv.RequestClient(c, marmot.ClientID(m.Id), m.Name, m.Data)
		res := &wire.RequestResult{Data: data}
		var re *marmot.RemoteError
		switch {
		case err == nil:
		case errors.As(err, &re):
			res = &wire.RequestResult{Remote: true, Code: re.Code, Error: re.Message}
		case errors.Is(err, marmot.ErrClientNotFound):
			res = &wire.RequestResult{NotFound: true, Error: err.Error()}
		case errors.Is(err, context.DeadlineExceeded):
			res = &wire.RequestResult{Timeout: true, Error: err.Error()}
		default:
			res = &wire.RequestResult{Error: err.Error()}
		}
		root.Send(sender, res)
	}()
}
