// Chat is a chat room built from user-written connection actors: every
// connection is a protoactor actor of our own (member) that keeps its user's
// state in its fields, and one room actor fans the conversation out by
// sending *marmot.Push to the members' connection PIDs.
//
// Clients speak marmot.v1 and use these commands and requests:
//
//	nick NAME   (command) join the room as NAME
//	say TEXT    (command) everyone, sender included, gets "said" "NAME: TEXT"
//	who         (request) the reply lists the members
//	crash       (command) panic the connection's actor, to watch it restart
//
// Serve until Ctrl-C, or run a scripted conversation of three clients and
// exit:
//
//	go run ./examples/chat
//	go run ./examples/chat -demo
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/marmotws/marmot"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:8080", "listen address")
	demo := flag.Bool("demo", false, "run three scripted clients against the server, then exit")
	flag.Parse()
	if err := run(*addr, *demo); err != nil {
		slog.Error("chat", "err", err)
		os.Exit(1)
	}
}

func run(addr string, demo bool) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	c, err := startChat(ctx, addr, slog.Default())
	if err != nil {
		return err
	}
	var demoErr error
	if demo {
		// The whole demo is bounded, so a broken server cannot hang it.
		dctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		_, demoErr = runDemo(dctx, c.srv.URL(), os.Stdout, slog.Default())
		cancel()
	} else {
		slog.Info("chat room open; connect with a marmot.v1 client (see examples/client)", "url", c.srv.URL())
		<-ctx.Done()
	}
	stopCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return errors.Join(demoErr, c.stop(stopCtx))
}

// chat is a running chat server: the marmot server and the room actor that
// lives in the server's actor system.
type chat struct {
	srv  *marmot.Server
	sys  *actor.ActorSystem
	room *actor.PID
}

// startChat listens on addr (":0" picks a free port; see chat.srv.URL).
func startChat(ctx context.Context, addr string, log *slog.Logger) (*chat, error) {
	// The producer needs the room's PID, and the room lives in the actor
	// system NewServer creates. The producer only runs for connections that
	// Start accepts, so room is set by then (as srv is in
	// examples/broadcast).
	var room *actor.PID
	srv, err := marmot.NewServer(marmot.ServerConfig{
		Addr:   addr,
		Logger: log,
		// A fresh member for every connection, and again after each
		// restart: the panic in `crash` throws the old instance away.
		ConnectionActor: func() actor.Actor { return &member{room: room, log: log} },
	})
	if err != nil {
		return nil, err
	}
	sys := srv.ActorSystem()
	room = sys.Root.Spawn(actor.PropsFromProducer(newRoom))
	c := &chat{srv: srv, sys: sys, room: room}
	if err := srv.Start(ctx); err != nil {
		return nil, errors.Join(err, c.stop(context.WithoutCancel(ctx)))
	}
	return c, nil
}

// stop closes every connection (each member tells the room it leaves), then
// stops the room. The actor system is the one kept at start:
// srv.ActorSystem() is nil once Stop has shut the server's own down.
func (c *chat) stop(ctx context.Context) error {
	err := c.srv.Stop(ctx)
	if werr := c.sys.Root.StopFuture(c.room).Wait(); werr != nil {
		err = errors.Join(err, fmt.Errorf("stopping the room: %w", werr))
	}
	return err
}
