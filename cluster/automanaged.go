package cluster

import (
	"io"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/asynkron/protoactor-go/cluster/clusterproviders/automanaged"
	"github.com/labstack/echo"
)

// The automanaged provider's health endpoint, quiet.
//
// protoactor's automanaged provider serves the /_health endpoint the
// members poll with an echo server it makes itself, which prints
// "⇨ http server started on [::]:PORT" to the process's stdout (it hides
// echo's banner but not that line, and echo's logger writes to stdout):
// a library must not write to its user's stdout. The provider takes no
// logger or option for it; its one constructor that takes the echo server
// is NewWithTesting (named for protoactor's own tests, but otherwise
// NewWithConfig: the flag it sets only keeps the provider from making its
// own server). marmot makes the server instead, silent: no port line, no
// banner, echo's logger discarded and net/http's errors to the node's
// logger at debug level, with the same /_health answer as protoactor's
// (the member as automanaged.NodeModel, read from the member's cluster
// when asked).
//
// The server also serves a listener marmot opens (echo serves
// Echo.Listener when it is set, and ignores the address protoactor starts
// it on, "0.0.0.0:PORT"): on the Bind host only, not every interface, and
// opened before the member starts, so that a port that is taken fails
// Node.Start rather than leave the node running invisible to the others
// (protoactor's goroutine only logs its listen error).

// newAutomanaged is automanaged.NewWithConfig with a quiet health server
// for sys's member on ln (its port is the health port).
func newAutomanaged(sys *actor.ActorSystem, log *slog.Logger, refreshTTL time.Duration, ln net.Listener, hosts ...string) *automanaged.AutoManagedProvider {
	port := ln.Addr().(*net.TCPAddr).Port
	e := newHealthServer(sys, log, port)
	e.Listener = ln
	return automanaged.NewWithTesting(refreshTTL, port, e, hosts...)
}

// newHealthServer is the echo server of the /_health endpoint.
func newHealthServer(sys *actor.ActorSystem, log *slog.Logger, port int) *echo.Echo {
	e := echo.New()
	e.HideBanner, e.HidePort = true, true
	e.Logger.SetOutput(io.Discard)
	e.StdLogger = slog.NewLogLogger(log.Handler(), slog.LevelDebug)
	e.GET("/_health", func(ctx echo.Context) error {
		c := grainCluster(sys) // nil until the member has started
		if c == nil {
			return ctx.NoContent(http.StatusServiceUnavailable)
		}
		host, memberPort, err := sys.GetHostPort()
		if err != nil {
			return ctx.NoContent(http.StatusServiceUnavailable)
		}
		return ctx.JSON(http.StatusOK, automanaged.NewNode(c.Config.Name, sys.ID, host, memberPort, port, c.GetClusterKinds()))
	})
	return e
}
