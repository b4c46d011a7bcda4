// Command load drives a WebSocket server over loopback and measures it.
//
// The client side is github.com/coder/websocket, a WebSocket implementation
// that none of the servers under test uses, so client and server share no
// bugs. Servers run in their own child process (the same binary with the
// "server" subcommand) so their RSS and CPU time can be read from /proc.
//
// Subcommands:
//
//	load server      --impl marmot|gorilla|gws --addr 127.0.0.1:0 --mode echo|broadcast
//	load echo        --impl marmot --clients 100 --size 64 --duration 5s [--window 1]
//	load http        --clients 100 --size 64 --duration 5s   (echo over marmot's HTTP fallback transport)
//	load broadcast   --impl marmot --receivers 1000 --count 200 --size 64
//	load connections --impl marmot --conns 19000 --sample 100
//	load publish     --receivers 1000 --count 200 --size 64 [--rounds 5]
//	load recover     --missed 10000 --size 64 [--rounds 5]
//	load compare     --scenario echo --clients 100 --size 64 --duration 5s [--rounds 3]
//	load compare     --all
//	load compare     --encryption [--rounds 3]
//	load compare     --compression [--rounds 3]
//	load compare     --scenario http [--rounds 3]   (marmot+http, marmot, socketio-polling)
//	load compare     --scenario cluster-publish [--nodes 3 --receivers 3000 --count 1000 --latency-receivers 30 --latency-rate 50] [--rounds 3]
//	load compare     --scenario cluster-connections [--nodes 3 --conns 19000] [--rounds 2]
//
// The cluster scenarios (clustercompare.go) start the servers themselves:
// --nodes "load server --cluster" children on 127.0.0.2, .3, ... forming
// one protoactor cluster, and a single server without --cluster, each
// fresh for every run, alternated; the clients dial from 127.0.0.5 on.
//
// --encrypt (or the implementation name marmot+gcm) runs marmot with its
// secure profile, AES-256-GCM: the same coder/websocket clients then perform
// marmot's handshake and seal and open every message (conn.go), so the
// encrypted figures are comparable with the plain ones; compare
// --encryption puts them side by side.
//
// --compress (or the implementation name X+deflate) turns permessage-deflate
// on in the server and the clients (no context takeover, level 1), and
// --payload json sends JSON text bodies instead of the byte pattern; echo and
// broadcast report the bytes the clients read and wrote at their sockets
// (wire bytes per message). compare --compression is marmot+deflate against
// marmot, gorilla+deflate and gws+deflate on 1 KiB JSON.
//
// echo, broadcast and connections take --url ws://... instead of --impl to
// drive a server that is already running (then no server RSS or CPU is
// reported unless --pid names its process). Every scenario is bounded in
// count and in time (--max-duration); --json also prints one JSON object per
// result. docs/PERFORMANCE.md has the measured numbers.
package main

import (
	"fmt"
	"os"
)

func usage() {
	fmt.Fprint(os.Stderr, `usage: load <server|echo|broadcast|connections|compare> [flags]
  load server      --impl marmot|gorilla|gws --addr 127.0.0.1:0 --mode echo|broadcast [--encrypt --key K] [--compress] [--cpuprofile F] [--memprofile F]
  load echo        (--impl X | --url ws://...) --clients 100 --size 64 --duration 5s --window 1 [--encrypt] [--compress] [--payload json]
  load http        (--url ws://...) --clients 100 --size 64 --duration 5s   (echo over marmot's HTTP fallback transport)
  load broadcast   (--impl X | --url ws://...) --receivers 1000 --count 200 --size 64 [--encrypt] [--compress] [--payload json]
  load connections (--impl X | --url ws://...) --conns 19000 --sample 100
  load publish     --receivers 1000 --count 200 --size 64 --rounds 5   (room publish and Broadcast, same clients, interleaved)
  load recover     --missed 10000 --size 64 --rounds 5
  load compare     --scenario echo|broadcast|connections [scenario flags] --rounds 3 --impls marmot,gorilla,gws
  load compare     --all
  load compare     --encryption    (marmot+gcm against marmot, 1 KiB messages)
  load compare     --compression   (marmot+deflate against marmot, gorilla+deflate, gws+deflate, 1 KiB JSON)
  load compare     --scenario http (echo over marmot+http, marmot and socketio-polling: Socket.IO forced to long-polling, in Node)
  load compare     --scenario cluster-publish      (room publish: 3 cluster nodes against 1 server; paced cross-node latency)
  load compare     --scenario cluster-connections  (--conns idle connections on each of 3 nodes at once, against 1 server)
run "load <subcommand> -h" for every flag
`)
}

func main() {
	if len(os.Args) < 2 {
		usage()
		os.Exit(2)
	}
	raiseFileLimit()
	var err error
	switch cmd, args := os.Args[1], os.Args[2:]; cmd {
	case "server":
		err = serverMain(args)
	case "echo", "broadcast", "connections", "http":
		err = scenarioMain(cmd, args)
	case "publish", "recover":
		err = roomsMain(cmd, args)
	case "compare":
		err = compareMain(args)
	case "-h", "--help", "help":
		usage()
		return
	default:
		usage()
		os.Exit(2)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "load:", err)
		os.Exit(1)
	}
}
