// Package actors is where sockets meet actors: it turns gorilla/websocket
// connections into protoactor-go actors.
//
// A [Hub] owns one ServerActor, which supervises one ConnectionActor per
// accepted socket. The ConnectionActor is the socket's only writer (its mailbox
// serialises writes) and runs the user's callbacks for that connection, so the
// events of one connection arrive in order while different connections run
// concurrently. A reader goroutine per socket turns frames into messages for
// its ConnectionActor.
//
// A [Client] owns one ClientActor, which runs the connect/reconnect state
// machine and is the client socket's only writer.
//
// The root package marmot wraps both behind a friendlier configuration; use
// this package directly when you want the actor PIDs.
package actors
