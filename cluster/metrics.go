package cluster

import (
	"context"
	"sync/atomic"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/marmotws/marmot/actors"
)

// The kinds of messages between nodes, as the metrics' marmot.cluster.kind.
const (
	kindBroadcast = iota // a cluster-wide broadcast
	kindSend             // a targeted send or disconnect
	kindQuery            // Clients, Stats
	kindPublish          // a room publish, to the room's grain
	kindDeliver          // a numbered room message, grain to node
	kindSession          // session marks, handovers and takes (sessions.go)
	kindCount
)

var kindNames = [kindCount]string{"broadcast", "send", "query", "room_publish", "room_deliver", "session"}

// traffic counts the messages a node sent to other nodes' actors and
// received from them, by kind (cluster health in /metrics).
type traffic struct {
	sent, received [kindCount]atomic.Int64
}

// registerMetrics exposes the member count and the traffic between nodes
// through mp (nil: the global MeterProvider); Stop unregisters them.
func (n *Node) registerMetrics(mp metric.MeterProvider) {
	if mp == nil {
		mp = otel.GetMeterProvider()
	}
	m := mp.Meter(actors.InstrumentationName)
	members, _ := m.Int64ObservableGauge("marmot.cluster.members", metric.WithUnit("{node}"),
		metric.WithDescription("Nodes in the cluster, as this node sees it."))
	sent, _ := m.Int64ObservableCounter("marmot.cluster.messages.sent", metric.WithUnit("{message}"),
		metric.WithDescription("Messages this node sent to other nodes' actors (and its own grains), by kind."))
	received, _ := m.Int64ObservableCounter("marmot.cluster.messages.received", metric.WithUnit("{message}"),
		metric.WithDescription("Messages this node's actor and grains received, by kind."))
	rejoins, _ := m.Int64ObservableCounter("marmot.cluster.rejoins", metric.WithUnit("{rejoin}"),
		metric.WithDescription("Times this node, left out of the cluster, rejoined it with a new member ID."))
	isolated, _ := m.Int64ObservableGauge("marmot.cluster.isolated", metric.WithUnit("1"),
		metric.WithDescription("1 while this node is cut off from the majority of its cluster, else 0."))
	var kinds [kindCount]metric.MeasurementOption
	for k := range kinds {
		kinds[k] = metric.WithAttributes(attribute.String("marmot.cluster.kind", kindNames[k]))
	}
	reg, err := m.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		o.ObserveInt64(members, int64(len(n.Members())))
		o.ObserveInt64(rejoins, n.watch.rejoins.Load())
		iso := int64(0)
		if n.watch.isolated.Load() {
			iso = 1
		}
		o.ObserveInt64(isolated, iso)
		for k := range kindCount {
			o.ObserveInt64(sent, n.traffic.sent[k].Load(), kinds[k])
			o.ObserveInt64(received, n.traffic.received[k].Load(), kinds[k])
		}
		return nil
	}, members, sent, received, rejoins, isolated)
	if err == nil {
		n.metricsReg = reg
	}
}
