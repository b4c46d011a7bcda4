package conformance

import (
	"bufio"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/marmotws/marmot"
	"github.com/marmotws/marmot/actors"
)

// TestClient runs every case against a marmot client in raw mode that
// echoes every message, connected to a hand-written server.
func TestClient(t *testing.T) {
	// One actor system for all the clients: creating one costs more than
	// a case.
	sys := actors.NewActorSystem(logger())
	t.Cleanup(sys.Shutdown) // once the parallel subtests are done
	for _, g := range caseGroups() {
		for i := range g.cases {
			c := &g.cases[i]
			if c.fn[asClient] == nil {
				continue
			}
			t.Run(c.id, func(t *testing.T) {
				t.Parallel()
				runCase(t, c, asClient, env{sys: sys})
			})
		}
	}
}

// upgradeResponse is the server's 101 answer to a request with key.
func upgradeResponse(key string) string {
	return "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Accept: " + acceptKey(key) + "\r\n\r\n"
}

// acceptClient connects a marmot client to a hand-written server and
// returns the server's end.
func acceptClient(r *run) *peer {
	r.t.Helper()
	p, err := connectClient(r, upgradeResponse)
	if err != nil {
		r.fatalf("connect: %v", err)
	}
	return p
}

// connectClient starts a marmot client (closed when the test ends) and has
// it connect to a listener that checks its upgrade request and answers it
// with respond(key). It returns the server's end of the connection and
// Connect's error.
func connectClient(r *run, respond func(key string) string) (*peer, error) {
	r.t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		r.fatalf("listen: %v", err)
	}
	type accepted struct {
		p   *peer
		err error
	}
	ch := make(chan accepted, 1)
	go func() {
		conn, err := ln.Accept()
		if err != nil {
			ch <- accepted{err: err}
			return
		}
		_ = conn.SetDeadline(time.Now().Add(guard))
		br := bufio.NewReader(conn)
		req, err := http.ReadRequest(br)
		if err == nil {
			err = checkUpgradeRequest(req)
		}
		if err == nil {
			_, err = io.WriteString(conn, respond(req.Header.Get("Sec-WebSocket-Key")))
		}
		if err != nil {
			_ = conn.Close()
			ch <- accepted{err: err}
			return
		}
		_ = conn.SetDeadline(time.Time{})
		ch <- accepted{p: &peer{r: r, conn: conn, br: br}}
	}()
	c, err := marmot.NewClient(marmot.ClientConfig{
		URL:               "ws://" + ln.Addr().String() + path,
		KeepAlive:         -1,
		MaxMessageSize:    maxMessage,
		ConnectionTimeout: guard,
		ActorSystem:       r.sys,
		Logger:            logger(),
		LogLevel:          slog.LevelDebug,
		ClientEvents:      marmot.ClientEvents{OnHandleCommand: echo},
	})
	if err != nil {
		_ = ln.Close()
		<-ch
		r.fatalf("client: %v", err)
	}
	r.t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), guard)
		defer cancel()
		if err := c.Close(ctx); err != nil {
			r.t.Errorf("closing the client: %v", err)
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), guard)
	defer cancel()
	cerr := c.Connect(ctx)
	_ = ln.Close()
	a := <-ch
	if a.p != nil {
		// Runs before the client's Close (cleanups run last first): a
		// client whose case failed half-way sees the connection drop.
		r.t.Cleanup(func() { _ = a.p.conn.Close() })
	}
	if a.err != nil {
		r.fatalf("the client's upgrade request: %v", a.err)
	}
	return a.p, cerr
}

// checkUpgradeRequest checks a raw-mode client's opening handshake
// (RFC 6455 §4.1).
func checkUpgradeRequest(req *http.Request) error {
	h := req.Header
	key, err := base64.StdEncoding.DecodeString(h.Get("Sec-WebSocket-Key"))
	switch {
	case req.Method != http.MethodGet || req.ProtoMajor != 1 || req.ProtoMinor < 1:
		return fmt.Errorf("%s %s", req.Method, req.Proto)
	case req.Host == "":
		return errors.New("no Host")
	case !strings.EqualFold(h.Get("Upgrade"), "websocket"):
		return fmt.Errorf("Upgrade %q", h.Get("Upgrade"))
	case !headerHasToken(h, "Connection", "upgrade"):
		return fmt.Errorf("Connection %q", h.Get("Connection"))
	case err != nil || len(key) != 16:
		return fmt.Errorf("Sec-WebSocket-Key %q", h.Get("Sec-WebSocket-Key"))
	case h.Get("Sec-WebSocket-Version") != "13":
		return fmt.Errorf("Sec-WebSocket-Version %q", h.Get("Sec-WebSocket-Version"))
	case h.Get("Sec-WebSocket-Protocol") != "":
		return fmt.Errorf("raw mode offered subprotocol %q", h.Get("Sec-WebSocket-Protocol"))
	}
	return nil
}

// wrongAccept answers the client's upgrade with a wrong accept key: the
// client must refuse the connection without sending a frame.
func wrongAccept(r *run) {
	p, err := connectClient(r, func(key string) string { return upgradeResponse(key + "x") })
	if err == nil {
		r.fatalf("Connect succeeded")
	}
	r.note("connect refused")
	p.wantEOF()
}
