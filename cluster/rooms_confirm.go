package cluster

import (
	"time"

	"github.com/marmotws/marmot/cluster/internal/wire"
)

// A room publish on a node is acknowledged (the client's marmot.publish
// reply, Server.Publish's return) only once the room's grain has numbered
// it and two nodes hold it: the node sees its own (origin, seq) come
// back in a delivery (roomBroker.delivered), and hands the seq to the local room as the
// delivery's RoomMessage.Confirms; the room answers every publish whose
// ticket (its seq, from roomBroker.Publish) is at or below it. Until then
// the publish exists only in the node's unconfirmed queue: a node killed
// in that window loses it, but nobody was told it was taken. A publish
// not confirmed within ConfirmTimeout is answered with
// marmot.ErrPublishUnconfirmed; the node still holds it and sends it
// again, so it may yet be delivered: a publisher that retries may publish
// it twice (the grain drops a publish it has numbered by its (origin,
// seq), but a retry is a new publish with a new seq).
//
// When the grain runs on this node, a delivery of this node's own publish
// does not confirm it: the grain holds it back until another node holds
// the message too, and confirms it then (rooms_held.go).

// ConfirmTimeout bounds how long a room waits for the confirmation of a
// publish (marmot's RoomBroker contract): Config.RequestTimeout.
func (b *roomBroker) ConfirmTimeout() time.Duration { return b.n.cfg.RequestTimeout }

// continueSeq makes a room that starts on the node number its publishes
// on from the highest seq of this node's run that the grain has numbered
// (b.mu held). A room that ended here (idle) and starts again while the
// grain lives on would otherwise number from 1, and the grain would drop
// those publishes as ones it has numbered.
func (b *roomBroker) continueSeq(r *brokerRoom, st *wire.RoomState) {
	if s := st.Seqs[b.origin]; s > r.seq {
		r.seq = s
	}
	if s := r.hist.seqs[b.origin]; s > r.seq {
		r.seq = s
	}
}
