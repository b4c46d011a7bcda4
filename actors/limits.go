package actors

import (
	"fmt"
	"math"
	"time"

	"golang.org/x/time/rate"
)

// RateLimitPolicy says what happens to a message over its connection's
// rate.
type RateLimitPolicy int

const (
	// RateLimitClose closes the connection with 1008 (policy violation)
	// and the reason "rate limit exceeded". Clients do not reconnect.
	RateLimitClose RateLimitPolicy = iota
	// RateLimitDrop drops the message and reports ErrRateLimited to
	// OnError (once per run of dropped messages); the connection stays.
	RateLimitDrop
)

// String returns the policy's name ("close", "drop").
func (p RateLimitPolicy) String() string {
	if p == RateLimitDrop {
		return "drop"
	}
	return "close"
}

// Limits protect the server from one connection or one address. Zero
// fields are off.
type Limits struct {
	// MessagesPerSecond bounds each connection's inbound messages, with
	// bursts of MessageBurst (default: one second's worth, at least 1).
	MessagesPerSecond float64
	MessageBurst      int
	// BytesPerSecond bounds each connection's inbound bytes (wire payload),
	// with bursts of ByteBurst (default: one second's worth, and at least
	// the largest message allowed, so that any message can pass).
	BytesPerSecond float64
	ByteBurst      int
	// Policy is what a message over either rate gets (default close 1008).
	Policy RateLimitPolicy
	// ConnectionsPerSecondPerIP bounds new connections per client
	// address (an IPv4 address or an IPv6 /64), with bursts of
	// ConnectionBurstPerIP (default 1); refused with HTTP 429.
	ConnectionsPerSecondPerIP float64
	ConnectionBurstPerIP      int
	// MaxConnectionsPerIP bounds the open connections per client address;
	// refused with HTTP 429.
	MaxConnectionsPerIP int
}

// connLimiter is one connection's inbound rate: a token bucket for
// messages, one for bytes. The reader checks it once per message; with no
// limits set the link has none and the check is one nil test.
type connLimiter struct {
	msgs, bytes *rate.Limiter
	drop        bool
	dropping    bool // the previous message was dropped too (reported once)
}

func newConnLimiter(l Limits, maxMessage int64) *connLimiter {
	if l.MessagesPerSecond <= 0 && l.BytesPerSecond <= 0 {
		return nil
	}
	c := &connLimiter{drop: l.Policy == RateLimitDrop}
	if l.MessagesPerSecond > 0 {
		burst := l.MessageBurst
		if burst <= 0 {
			burst = max(int(math.Ceil(l.MessagesPerSecond)), 1)
		}
		c.msgs = rate.NewLimiter(rate.Limit(l.MessagesPerSecond), burst)
	}
	if l.BytesPerSecond > 0 {
		burst := l.ByteBurst
		if burst <= 0 {
			burst = max(int(math.Min(math.Ceil(l.BytesPerSecond), math.MaxInt32)), int(min(maxMessage, math.MaxInt32)), 1)
		}
		c.bytes = rate.NewLimiter(rate.Limit(l.BytesPerSecond), burst)
	}
	return c
}

// Drop marks on an inbound frame over the rate under RateLimitDrop.
const (
	dropNone   = iota
	dropReport // the first of a run: reported
	dropQuiet  // a run goes on: counted only
)

// check takes one message of in.size bytes from the buckets. Over the
// rate it marks in: an error that closes the connection with 1008, or a
// drop. It runs on the reader, in frame order, after the frame was opened
// and decoded; it does not allocate.
func (c *connLimiter) check(in *inbound, now time.Time) bool {
	ok := (c.msgs == nil || c.msgs.AllowN(now, 1)) && (c.bytes == nil || c.bytes.AllowN(now, max(in.size, 0)))
	if ok {
		c.dropping = false
		return true
	}
	in.err = errRateLimited
	if !c.drop {
		in.code = ClosePolicyViolation
		return false
	}
	in.drop = dropReport
	if c.dropping {
		in.drop = dropQuiet
	}
	c.dropping = true
	return false
}

// errRateLimited is what a message over its rate carries to the actor.
var errRateLimited = fmt.Errorf("%w: inbound messages or bytes per second", ErrRateLimited)

// Validate reports a negative limit.
func (l Limits) Validate() error {
	if l.MessagesPerSecond < 0 || l.BytesPerSecond < 0 || l.ConnectionsPerSecondPerIP < 0 ||
		l.MessageBurst < 0 || l.ByteBurst < 0 || l.ConnectionBurstPerIP < 0 || l.MaxConnectionsPerIP < 0 {
		return fmt.Errorf("marmot: Limits must not be negative: %+v", l)
	}
	if l.Policy != RateLimitClose && l.Policy != RateLimitDrop {
		return fmt.Errorf("marmot: unknown RateLimitPolicy %d", int(l.Policy))
	}
	return nil
}
