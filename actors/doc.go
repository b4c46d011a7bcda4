// Package actors is where sockets meet actors: it turns gorilla/websocket
// connections into protoactor-go actors.
//
// A [Hub] owns one ServerActor, which supervises one ConnectionActor per
// accepted socket. The ConnectionActor is the socket's only writer (its mailbox
// serialises writes) and runs the user's callbacks for that connection, so the
// events of one connection arrive in order while different connections run
// concurrently. A reader turns frames into messages for its ConnectionActor
// and, when the actor is idle, runs it on its own goroutine (see connMailbox)
// rather than handing each message to another goroutine.
//
// Idle server connections keep no goroutine: after a second or so without
// input a reader parks, and an epoll set (Linux) resumes it on a fresh
// goroutine when bytes arrive. gorilla/websocket stays the frame reader; see
// frameconn.go for how the reader is stopped only between messages. A
// server's outgoing data frames (a short header and the payload, never
// masked) are written by frameConn itself, which costs a fraction of
// gorilla's writer; gorilla writes the handshake and the control frames.
//
// A [Client] owns one ClientActor, which runs the connect/reconnect state
// machine and is the client socket's only writer.
//
// The root package marmot wraps both behind a friendlier configuration; use
// this package directly when you want the actor PIDs.
package actors
