package marmot

import (
	"time"

	"github.com/marmotws/marmot/actors"
	"github.com/marmotws/marmot/supervisor"
)

// Every default of the Server and the Client is here, once; the shared
// ones (KeepAlive, the limits, the restart budget) apply to both. Where the
// seed components have a default, it is theirs.

// Server defaults, matching the seed components where they have one.
const (
	DefaultAddr               = ":8080"
	DefaultPath               = "/websocket"
	DefaultMaxConnections     = 1000
	DefaultKeepAlive          = 30 * time.Second
	DefaultHandlerConcurrency = 32
	DefaultMaxMessageSize     = 1 << 20
	DefaultMaxQueueBytes      = 4 << 20
	DefaultWriteTimeout       = actors.DefaultWriteTimeout
	DefaultMaxRestarts        = supervisor.DefaultMaxRestarts
	DefaultRestartWindow      = supervisor.DefaultWindow
)

// Client defaults. Host, Port and Path point at a marmot server's defaults
// rather than the seed's localhost:80 "/", so the two work together out of
// the box.
const (
	DefaultClientHost        = "localhost"
	DefaultClientPort        = 8080
	DefaultConnectionTimeout = 30 * time.Second
	DefaultReconnectInterval = 5 * time.Second
	// DefaultMaxReconnectFactor caps exponential backoff at
	// ReconnectInterval × 1024, the seed's 2^10.
	DefaultMaxReconnectFactor = 1024
	DefaultReconnectJitter    = 0.1
	// DefaultHealthyAfter is the least time a connection must stay up
	// before reconnecting starts over from the first attempt.
	DefaultHealthyAfter = actors.DefaultHealthyAfter
	// DefaultOutboxBytes bounds the client's outbox (ClientConfig.OutboxBytes).
	DefaultOutboxBytes = 1 << 20
)

// Session defaults of the server (ServerConfig.SessionTTL, MaxSessions).
const (
	DefaultSessionTTL  = actors.DefaultSessionTTL
	DefaultMaxSessions = actors.DefaultMaxSessions
)

func defaultInt(v, def int) int {
	if v == 0 {
		return def
	}
	return v
}

func defaultInt64(v, def int64) int64 {
	if v == 0 {
		return def
	}
	return v
}

func defaultDuration(v, def time.Duration) time.Duration {
	if v == 0 {
		return def
	}
	return v
}
