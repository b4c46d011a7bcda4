package conformance

import (
	"bufio"
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/marmotws/marmot"
)

// path is the endpoint of the server under test.
const path = "/conformance"

// disconnectMe is the message on which the server under test closes the
// connection itself (Server.Disconnect) with code 4000 and longReason,
// rather than echoing it.
const disconnectMe = "disconnect me"

// longReason is too long for a close frame (at most 123 octets), and 120
// octets, where marmot cuts it, end inside a 2-octet code point.
var longReason = "a" + strings.Repeat("\u00e9", 100)

// TestServer runs every case against a marmot server in raw mode that
// echoes every message.
func TestServer(t *testing.T) {
	var s *marmot.Server
	handle := func(m *marmot.Message) {
		if string(m.Payload) == disconnectMe {
			_ = s.Disconnect(m.ClientID, 4000, longReason)
			return
		}
		echo(m)
	}
	s, err := marmot.NewServer(marmot.ServerConfig{
		Addr:           "127.0.0.1:0",
		Path:           path,
		KeepAlive:      -1, // no pings of its own among the frames under test
		MaxMessageSize: maxMessage,
		MaxConnections: -1,
		Logger:         logger(),
		LogLevel:       slog.LevelDebug,
		ServerEvents:   marmot.ServerEvents{OnHandleCommand: handle},
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), guard)
		defer cancel()
		if err := s.Stop(ctx); err != nil {
			t.Errorf("stop: %v", err)
		}
	})
	addr := s.Addr().String()
	// The server stops (Cleanup) once the parallel subtests are done.
	for _, g := range caseGroups() {
		for i := range g.cases {
			c := &g.cases[i]
			if c.fn[asServer] == nil {
				continue
			}
			t.Run(c.id, func(t *testing.T) {
				t.Parallel()
				runCase(t, c, asServer, env{addr: addr})
			})
		}
	}
}

// dialServer opens a WebSocket connection to the server under test by hand,
// checking the server's side of the opening handshake.
func dialServer(r *run) *peer {
	r.t.Helper()
	conn, br, resp, key := upgrade(r, "")
	if resp.StatusCode != http.StatusSwitchingProtocols {
		r.fatalf("handshake: got HTTP %s, want 101", resp.Status)
	}
	checkUpgradeResponse(r, resp, key)
	return &peer{r: r, conn: conn, br: br, client: true}
}

// upgrade sends an upgrade request for path with the usual headers, except
// that extra ("Name: value" lines, "Name:" alone to drop one) replaces
// them, and reads the response.
func upgrade(r *run, extra string) (net.Conn, *bufio.Reader, *http.Response, string) {
	r.t.Helper()
	conn, err := net.DialTimeout("tcp", r.addr, guard)
	if err != nil {
		r.fatalf("dial: %v", err)
	}
	r.t.Cleanup(func() { _ = conn.Close() })
	key := newKey()
	headers := map[string]string{
		"Host":                  r.addr,
		"Upgrade":               "websocket",
		"Connection":            "Upgrade",
		"Sec-WebSocket-Key":     key,
		"Sec-WebSocket-Version": "13",
	}
	order := []string{"Host", "Upgrade", "Connection", "Sec-WebSocket-Key", "Sec-WebSocket-Version"}
	for _, line := range strings.Split(extra, "\n") {
		if name, value, ok := strings.Cut(line, ":"); ok {
			if _, known := headers[name]; !known {
				order = append(order, name)
			}
			headers[name] = strings.TrimSpace(value)
		}
	}
	var req strings.Builder
	fmt.Fprintf(&req, "GET %s HTTP/1.1\r\n", path)
	for _, name := range order {
		if v := headers[name]; v != "" {
			fmt.Fprintf(&req, "%s: %s\r\n", name, v)
		}
	}
	req.WriteString("\r\n")
	_ = conn.SetDeadline(time.Now().Add(guard))
	if _, err := conn.Write([]byte(req.String())); err != nil {
		r.fatalf("handshake: %v", err)
	}
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		r.fatalf("handshake: %v", err)
	}
	_ = conn.SetDeadline(time.Time{})
	return conn, br, resp, key
}

// checkUpgradeResponse checks a 101 answer to a raw-mode upgrade
// (RFC 6455 §4.2.2).
func checkUpgradeResponse(r *run, resp *http.Response, key string) {
	r.t.Helper()
	h := resp.Header
	switch {
	case !strings.EqualFold(h.Get("Upgrade"), "websocket"):
		r.fatalf("handshake: Upgrade %q", h.Get("Upgrade"))
	case !headerHasToken(h, "Connection", "upgrade"):
		r.fatalf("handshake: Connection %q", h.Get("Connection"))
	case h.Get("Sec-WebSocket-Accept") != acceptKey(key):
		r.fatalf("handshake: Sec-WebSocket-Accept %q, want %q", h.Get("Sec-WebSocket-Accept"), acceptKey(key))
	case h.Get("Sec-WebSocket-Protocol") != "":
		r.fatalf("handshake: subprotocol %q chosen though none was offered", h.Get("Sec-WebSocket-Protocol"))
	case h.Get("Sec-WebSocket-Extensions") != "":
		r.fatalf("handshake: extension %q chosen though none was offered", h.Get("Sec-WebSocket-Extensions"))
	}
}

func headerHasToken(h http.Header, name, token string) bool {
	for _, v := range h.Values(name) {
		for _, t := range strings.Split(v, ",") {
			if strings.EqualFold(strings.TrimSpace(t), token) {
				return true
			}
		}
	}
	return false
}

func handshakeCases() []tcase {
	refused := func(id, desc, extra string, want int) tcase {
		return tcase{id: id, desc: desc, expect: fmt.Sprintf("HTTP %d", want), fn: [2]func(r *run){
			asServer: func(r *run) {
				_, _, resp, _ := upgrade(r, extra)
				checkRefusal(r, resp, want)
			},
		}}
	}
	version := tcase{id: "M.H.2", desc: "unsupported Sec-WebSocket-Version: 8 (§4.4)",
		expect: "HTTP 426 or 400 with Sec-WebSocket-Version: 13", fn: [2]func(r *run){
			asServer: func(r *run) {
				_, _, resp, _ := upgrade(r, "Sec-WebSocket-Version: 8")
				checkRefusal(r, resp, http.StatusUpgradeRequired, http.StatusBadRequest)
				if !headerHasToken(resp.Header, "Sec-WebSocket-Version", "13") {
					r.fatalf("HTTP %d without Sec-WebSocket-Version: 13 (got %q)", resp.StatusCode, resp.Header.Values("Sec-WebSocket-Version"))
				}
			},
		}}
	valid := onWire("M.H.1", "opening handshake without subprotocol, then a text message", "101 / valid request; echo", func(p *peer) {
		p.send(text("Hello, world!"))
		p.wantMessage(opText, []byte("Hello, world!"))
		p.finish()
	})
	return []tcase{
		valid,
		version,
		refused("M.H.3", "upgrade request without Sec-WebSocket-Key", "Sec-WebSocket-Key:", http.StatusBadRequest),
		refused("M.H.4", "Sec-WebSocket-Key that is not 16 bytes in base64", "Sec-WebSocket-Key: c2hvcnQ=", http.StatusBadRequest),
		{id: "M.H.5", desc: "101 answer with a wrong Sec-WebSocket-Accept", expect: "connect fails; no frames", fn: [2]func(r *run){
			asClient: wrongAccept,
		}},
	}
}

// checkRefusal checks that resp refuses the upgrade with one of want.
func checkRefusal(r *run, resp *http.Response, want ...int) {
	r.t.Helper()
	defer resp.Body.Close()
	for _, w := range want {
		if resp.StatusCode == w {
			r.note("HTTP %d", w)
			return
		}
	}
	r.fatalf("got HTTP %s, want %v", resp.Status, want)
}
