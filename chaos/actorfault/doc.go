// Package actorfault injects faults into marmot's actors, for your tests:
// receive middleware that panics, delays, drops, duplicates or stalls
// chosen messages of chosen connection, room or client actors, and calls
// that crash or stop an actor. Every injected fault is an OpenTelemetry
// span ("chaos.actor") with a "chaos.fault" event saying what, where and
// when; a panic's supervisor failure span is its child, so one trace shows
// the fault and the restart. Wire faults (resets, latency, partitions) are
// package chaos.
//
// Install an Injector's Middleware with ServerConfig.ActorMiddleware (or
// ClientConfig.ActorMiddleware), then Add rules; with no rules the
// middleware passes every message on after one atomic load, and without
// the middleware marmot runs as if this package did not exist.
package actorfault
