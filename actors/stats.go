package actors

import (
	"fmt"

	"net"
	"sync/atomic"
	"time"

	"github.com/asynkron/protoactor-go/actor"
)

// ClientInfo is a snapshot of one server-side connection.
type ClientInfo struct {
	ID ClientID
	// PID is the connection actor's: other actors may send it messages
	// (Push, CloseConnection, or anything the user's connection actor
	// understands).
	PID         *actor.PID
	RemoteAddr  net.Addr
	Subprotocol string // "" for raw mode
	Compressed  bool   // permessage-deflate was negotiated (see Compression)
	// Transport is how the client is connected: "websocket", or "http"
	// for the HTTP fallback (docs/HTTP.md).
	Transport        string
	ConnectedAt      time.Time
	BytesReceived    int64
	BytesSent        int64
	MessagesReceived int64
	MessagesSent     int64
	// Data is the connection's user-data slot (see Message.SetData).
	Data any
	// Identity is who the client authenticated as; nil when the server
	// does not authenticate (or, with first-message authentication, until
	// the client has).
	Identity *Identity
}

// IP returns the remote IP address as text, or "" when unknown.
func (c ClientInfo) IP() string {
	if c.RemoteAddr == nil {
		return ""
	}
	if host, _, err := net.SplitHostPort(c.RemoteAddr.String()); err == nil {
		return host
	}
	return c.RemoteAddr.String()
}

// Stats holds the seed's seven server counters and marmot's own.
type Stats struct {
	ClientCount            int   // connections open now
	TotalConnections       int64 // connections accepted since start
	TotalActiveConnections int64 // same as ClientCount, kept for the seed's name
	TotalBytesReceived     int64 // wire payload bytes of data messages received
	TotalBytesSent         int64 // wire payload bytes of data messages sent
	TotalMessagesReceived  int64
	TotalMessagesSent      int64
	// RefusedConnections counts upgrades refused because MaxConnections was reached.
	RefusedConnections int64
	// HandshakeFailures counts connections refused by the encryption
	// requirement or its handshake.
	HandshakeFailures int64
	// DecryptFailures counts encrypted frames that failed to open.
	DecryptFailures int64
	// SlowConsumerCloses counts connections closed because their queue overflowed.
	SlowConsumerCloses int64
	// ActorRestarts counts connection actor restarts after a handler panic.
	ActorRestarts int64
	// OriginRefusals counts upgrades refused (403) for their Origin.
	OriginRefusals int64
	// IPLimitRefusals counts upgrades refused (429) by the per-IP
	// connection rate or count.
	IPLimitRefusals int64
	// AuthRefusals counts connections refused by authentication: 401 or
	// 403 at the upgrade, or a failed first-message authentication (4503).
	AuthRefusals int64
	// ExpiredCloses counts connections closed because their identity
	// expired (4001).
	ExpiredCloses int64
	// RateLimited counts messages over a connection's message or byte
	// rate (each dropped, or the one that closed its connection).
	RateLimited int64
	// Sessions counts the clients' sessions kept now: attached to a
	// connection, or waiting (HubConfig.SessionTTL) for their client to
	// resume them.
	Sessions int
}

// String summarises the counters in one line, like the seed's GetServerStats.
func (st Stats) String() string {
	return fmt.Sprintf("clients=%d total_connections=%d bytes_in=%d bytes_out=%d msgs_in=%d msgs_out=%d refused=%d",
		st.ClientCount, st.TotalConnections, st.TotalBytesReceived, st.TotalBytesSent,
		st.TotalMessagesReceived, st.TotalMessagesSent, st.RefusedConnections)
}

// counters are the seed's traffic statistics; atomics so Stats never locks
// the hot path.
type counters struct {
	bytesIn, bytesOut, msgsIn, msgsOut atomic.Int64
}

// counterValues is a snapshot of counters.
type counterValues struct{ bytesIn, bytesOut, msgsIn, msgsOut int64 }

func (v *counterValues) addFrom(c *counters) {
	v.bytesIn += c.bytesIn.Load()
	v.bytesOut += c.bytesOut.Load()
	v.msgsIn += c.msgsIn.Load()
	v.msgsOut += c.msgsOut.Load()
}

// add folds another connection's final counters into c.
func (c *counters) add(o *counters) {
	c.bytesIn.Add(o.bytesIn.Load())
	c.bytesOut.Add(o.bytesOut.Load())
	c.msgsIn.Add(o.msgsIn.Load())
	c.msgsOut.Add(o.msgsOut.Load())
}
