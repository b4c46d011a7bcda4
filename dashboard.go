package marmot

import (
	"net/http"

	"github.com/marmotws/marmot/internal/dashboard"
)

// DashboardOptions configure NewDashboard: Token (required from every
// request when set), LoopbackOnly, EndpointPath (default the server's
// Path), the sampling Interval (1 s) and the bounds of what it keeps.
type DashboardOptions = dashboard.Options

// NewDashboard returns the live web dashboard of s as an http.Handler:
// the seed's counters, a messages/s chart, the client list (id, IP,
// transport, connected since, bytes, rooms), send to one client,
// broadcast, disconnect, a live event log, and at "client" a page that
// talks to s through marmot.js. Mount it under a prefix ending in "/":
//
//	mux.Handle("/dashboard/", http.StripPrefix("/dashboard", marmot.NewDashboard(s, opts)))
//
// or with s.Handle before Start. It can send to anyone, so nothing serves
// it unless you mount it: protect it with opts.Token or opts.LoopbackOnly
// (docs/DASHBOARD.md). It samples Stats and Clients at most once per
// opts.Interval while a page watches, never on the message path.
func NewDashboard(s *Server, opts DashboardOptions) http.Handler {
	if opts.EndpointPath == "" {
		opts.EndpointPath = s.cfg.Path
	}
	return dashboard.New(dashSource{s}, opts)
}

// dashSource adapts a Server to what the dashboard reads and does.
type dashSource struct{ s *Server }

func (d dashSource) Stats() dashboard.Stats {
	st := d.s.Stats()
	return dashboard.Stats{
		ClientCount: st.ClientCount, TotalConnections: st.TotalConnections,
		TotalActiveConnections: st.TotalActiveConnections,
		TotalBytesReceived:     st.TotalBytesReceived, TotalBytesSent: st.TotalBytesSent,
		TotalMessagesReceived: st.TotalMessagesReceived, TotalMessagesSent: st.TotalMessagesSent,
		RefusedConnections: st.RefusedConnections, HandshakeFailures: st.HandshakeFailures,
		SlowConsumerCloses: st.SlowConsumerCloses, ActorRestarts: st.ActorRestarts,
		ConnectionsRemaining: d.s.ConnectionsRemaining(), State: d.s.StateDescription(),
	}
}

func (d dashSource) Clients() []dashboard.Client {
	cs := d.s.Clients()
	out := make([]dashboard.Client, len(cs))
	for i, c := range cs {
		out[i] = dashboard.Client{
			ID: uint64(c.ID), IP: c.IP(), Transport: clientTransport(c), Subprotocol: c.Subprotocol,
			ConnectedAt: c.ConnectedAt, BytesReceived: c.BytesReceived, BytesSent: c.BytesSent,
			MessagesIn: c.MessagesReceived, MessagesOut: c.MessagesSent,
		}
	}
	return out
}

// clientTransport names the transport a client uses.
func clientTransport(c ClientInfo) string { return c.Transport }

func (d dashSource) Rooms() []string { return d.s.Rooms() }

func (d dashSource) Members(room string) []uint64 {
	ids := d.s.Members(room)
	out := make([]uint64, len(ids))
	for i, id := range ids {
		out[i] = uint64(id)
	}
	return out
}

func (d dashSource) SendToClient(id uint64, data []byte) error {
	return d.s.SendToClient(ClientID(id), data)
}

func (d dashSource) Broadcast(data []byte) (int, error) { return d.s.Broadcast(data) }

func (d dashSource) Disconnect(id uint64, code int, reason string) error {
	return d.s.Disconnect(ClientID(id), code, reason)
}
