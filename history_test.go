package marmot_test

import (
	"encoding/json"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/gorilla/websocket"

	"github.com/marmotws/marmot"
)

// recoverRig is a server, and a client in room "r" whose reconnects wait
// for the test (gate), so that the test decides what is published while
// the client is away. Room messages and recovery outcomes arrive on one
// channel, in the order the client handled them.
type recoverRig struct {
	s    *marmot.Server
	c    *marmot.Client
	got  chan any // *marmot.Message or marmot.RoomRecovered
	gate chan struct{}
	ids  chan marmot.ClientID
	gone chan marmot.ClientID
	id   marmot.ClientID
	// With proxy the client connects through it and drop kills its TCP
	// connections instead of closing the WebSocket from the server.
	proxy *tcpProxy
}

// rigOptions vary a recoverRig: through a TCP proxy, with a user actor.
type rigOptions struct{ proxy, actor bool }

func newRecoverRig(t *testing.T, cfg marmot.ServerConfig, sub string) *recoverRig {
	t.Helper()
	return newRecoverRigWith(t, cfg, sub, rigOptions{})
}

func newRecoverRigWith(t *testing.T, cfg marmot.ServerConfig, sub string, o rigOptions) *recoverRig {
	t.Helper()
	r := &recoverRig{got: make(chan any, 4096), gate: make(chan struct{}),
		ids: make(chan marmot.ClientID, 4), gone: make(chan marmot.ClientID, 4)}
	cfg.OnClientConnected = func(info marmot.ClientInfo) { r.ids <- info.ID }
	cfg.OnClientDisconnected = func(info marmot.ClientInfo, _ *marmot.CloseError) { r.gone <- info.ID }
	r.s = startServer(t, cfg)
	url := r.s.URL()
	if o.proxy {
		r.proxy = newTCPProxy(t, r.s.Addr().String())
		url = strings.Replace(url, r.s.Addr().String(), r.proxy.ln.Addr().String(), 1)
	}
	var user actor.Producer
	onRecover := func(room string, recovered bool, missed int, reason string) {
		r.got <- marmot.RoomRecovered{Room: room, Recovered: recovered, Missed: missed, Reason: reason}
	}
	if o.actor {
		// The actor gets the outcome as a message; OnRecover would run too.
		user, onRecover = func() actor.Actor { return &roomSide{got: r.got} }, nil
	}
	r.c = newClient(t, marmot.ClientConfig{URL: url, Subprotocol: sub, AutoReconnect: true, Actor: user,
		ReconnectInterval: 10 * time.Millisecond, ClientEvents: marmot.ClientEvents{
			OnReconnecting: func(int, time.Duration) {
				select { // holds the reconnect until the test opens the gate
				case <-r.gate:
				case <-time.After(waitTimeout):
				}
			},
			OnHandleCommand: func(m *marmot.Message) { r.got <- m },
			OnRecover:       onRecover,
		}})
	if err := r.c.Connect(ctxTimeout(t)); err != nil {
		t.Fatal(err)
	}
	r.id = recv(t, r.ids, "first connection")
	if err := r.c.Join(ctxTimeout(t), "r"); err != nil {
		t.Fatal(err)
	}
	return r
}

func (r *recoverRig) publish(t *testing.T, from, to int) {
	t.Helper()
	for i := from; i <= to; i++ {
		if _, err := r.s.Publish("r", []byte(strconv.Itoa(i))); err != nil {
			t.Fatal(err)
		}
	}
}

// drop closes the client's connection from the server (1001, as a server
// going away does) and returns once it has left its rooms.
func (r *recoverRig) drop(t *testing.T) {
	t.Helper()
	if r.proxy != nil {
		r.proxy.kill()
	} else if err := r.s.Disconnect(r.id, marmot.CloseGoingAway, "bye"); err != nil {
		t.Fatal(err)
	}
	if id := recv(t, r.gone, "the connection's end"); id != r.id {
		t.Fatalf("connection %d ended, want %d", id, r.id)
	}
}

// resume lets the client reconnect and returns once the new connection is
// up (its re-join is on its way).
func (r *recoverRig) resume(t *testing.T) {
	t.Helper()
	close(r.gate)
	r.id = recv(t, r.ids, "the reconnection")
}

// next returns the next room message or recovery outcome.
func (r *recoverRig) next(t *testing.T) any {
	t.Helper()
	return recv(t, r.got, "room message or recovery")
}

// A client dropped while a publisher sends gets, after its reconnect, every
// message exactly once and in order: those it missed replayed after a
// recovered event, then the live ones, with nothing lost or doubled at the
// seam (the publisher keeps sending while the client re-joins).
func TestRoomRecoverAfterDrop(t *testing.T) {
	for _, tc := range []struct {
		name, sub string
		o         rigOptions
	}{
		{"marmot.v1", "marmot.v1", rigOptions{}},
		{"marmot.json.v1", "marmot.json.v1", rigOptions{}},
		// A killed TCP connection (1006 on both sides), and the outcome
		// and messages delivered to a user actor.
		{"killed TCP, user actor", "marmot.v1", rigOptions{proxy: true, actor: true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newRecoverRigWith(t, marmot.ServerConfig{RoomIdle: time.Hour,
				RoomHistory: marmot.HistoryConfig{Size: 1000, Bytes: 1 << 20, TTL: time.Hour}}, tc.sub, tc.o)
			const before, away, after = 50, 50, 200
			r.publish(t, 1, before)
			r.drop(t)
			r.publish(t, before+1, before+away)
			done := make(chan error, 1)
			go func() { // publishing on while the client comes back
				for i := before + away + 1; i <= before+away+after; i++ {
					if _, err := r.s.Publish("r", []byte(strconv.Itoa(i))); err != nil {
						done <- err
						return
					}
				}
				done <- nil
			}()
			r.resume(t)
			if err := recv(t, done, "the publisher"); err != nil {
				t.Fatal(err)
			}
			const end = before + away + after + 1
			r.publish(t, end, end) // a last one: anything doubled would come before it

			want, lastBefore, recovered := 1, 0, false
			for want <= end {
				switch v := r.next(t).(type) {
				case marmot.RoomRecovered:
					if recovered || v.Room != "r" || !v.Recovered || v.Reason != "" {
						t.Fatalf("recovery event %+v (after offset %d)", v, want-1)
					}
					// The client missed at least what was published while it
					// was away, and at most what came after its last message.
					if v.Missed < away || v.Missed > end-want+1 {
						t.Fatalf("missed %d, want %d..%d", v.Missed, away, end-want+1)
					}
					recovered, lastBefore = true, want-1
				case *marmot.Message:
					if v.Room != "r" || v.Offset != uint64(want) || string(v.Payload) != strconv.Itoa(want) {
						t.Fatalf("got %q offset %d in %q, want %d", v.Payload, v.Offset, v.Room, want)
					}
					want++
				}
			}
			if !recovered {
				t.Fatal("no recovery event")
			}
			if lastBefore > before {
				t.Fatalf("received offset %d before the drop, only %d were published", lastBefore, before)
			}
			select {
			case v := <-r.got:
				t.Fatalf("unexpected %+v after the last message", v)
			default:
			}
		})
	}
}

// When the gap cannot be filled the client is told, with the reason, and
// nothing is replayed: it goes on with the live messages.
func TestRoomRecoverFails(t *testing.T) {
	const ttl = 50 * time.Millisecond
	for _, tc := range []struct {
		name   string
		cfg    marmot.ServerConfig
		away   func(t *testing.T, r *recoverRig) // what happens while away
		reason string
		missed int
	}{{
		name: "overflow",
		cfg:  marmot.ServerConfig{RoomIdle: time.Hour, RoomHistory: marmot.HistoryConfig{Size: 10}},
		away: func(t *testing.T, r *recoverRig) { r.publish(t, 4, 23) }, reason: marmot.RecoverOverflow, missed: 20,
	}, {
		name: "bytes",
		cfg:  marmot.ServerConfig{RoomIdle: time.Hour, RoomHistory: marmot.HistoryConfig{Size: 100, Bytes: 20}},
		away: func(t *testing.T, r *recoverRig) { r.publish(t, 4, 23) }, reason: marmot.RecoverOverflow, missed: 20,
	}, {
		name: "expired",
		cfg:  marmot.ServerConfig{RoomIdle: time.Hour, RoomHistory: marmot.HistoryConfig{Size: 100, TTL: ttl}},
		away: func(t *testing.T, r *recoverRig) {
			r.publish(t, 4, 8)
			at := time.Now()
			waitFor(t, "the missed messages to outlive the TTL", func() bool { return time.Since(at) > ttl })
		},
		reason: marmot.RecoverExpired, missed: 5,
	}, {
		name: "room recreated",
		cfg:  marmot.ServerConfig{RoomIdle: 20 * time.Millisecond, RoomHistory: marmot.HistoryConfig{Size: 100}},
		away: func(t *testing.T, r *recoverRig) {
			waitFor(t, "the empty room to end", func() bool { return len(r.s.Rooms()) == 0 })
		},
		reason: marmot.RecoverEpochChanged, missed: -1,
	}, {
		name:   "no history",
		cfg:    marmot.ServerConfig{RoomIdle: time.Hour},
		away:   func(t *testing.T, r *recoverRig) { r.publish(t, 4, 8) },
		reason: marmot.RecoverNoHistory, missed: 5,
	}} {
		t.Run(tc.name, func(t *testing.T) {
			r := newRecoverRig(t, tc.cfg, "marmot.v1")
			r.publish(t, 1, 3)
			for i := 1; i <= 3; i++ {
				if m := r.next(t).(*marmot.Message); m.Offset != uint64(i) {
					t.Fatalf("offset %d, want %d", m.Offset, i)
				}
			}
			r.drop(t)
			tc.away(t, r)
			r.resume(t)
			v, ok := r.next(t).(marmot.RoomRecovered)
			if !ok || v.Room != "r" || v.Recovered || v.Reason != tc.reason || v.Missed != tc.missed {
				t.Fatalf("got %+v, want not recovered, missed %d, reason %q", v, tc.missed, tc.reason)
			}
			// Live again: the next message is the room's next, nothing replayed.
			if _, err := r.s.Publish("r", []byte("live")); err != nil {
				t.Fatal(err)
			}
			m, ok := r.next(t).(*marmot.Message)
			if !ok || string(m.Payload) != "live" {
				t.Fatalf("got %+v, want the live message", m)
			}
			if tc.name == "room recreated" && m.Offset != 1 {
				t.Fatalf("offset %d in the new room, want 1", m.Offset)
			}
		})
	}
}

// A client that missed nothing recovers with nothing to replay, also with
// history off; Join in OnConnect, as before history, waits for the
// automatic re-join rather than joining twice.
func TestRoomRecoverNothingMissed(t *testing.T) {
	r := newRecoverRig(t, marmot.ServerConfig{RoomIdle: time.Hour}, "marmot.json.v1")
	r.publish(t, 1, 2)
	for i := 1; i <= 2; i++ {
		r.next(t)
	}
	r.drop(t)
	r.resume(t)
	if v := r.next(t).(marmot.RoomRecovered); !v.Recovered || v.Missed != 0 {
		t.Fatalf("got %+v", v)
	}
	if err := r.c.Join(ctxTimeout(t), "r"); err != nil {
		t.Fatal(err)
	}
	if got := r.s.Members("r"); len(got) != 1 || got[0] != r.id {
		t.Fatalf("members %v, want [%d]", got, r.id)
	}
	r.publish(t, 3, 3)
	if m := r.next(t).(*marmot.Message); m.Offset != 3 {
		t.Fatalf("offset %d, want 3", m.Offset)
	}
	// Leave ends the re-joining.
	if err := r.c.Leave(ctxTimeout(t), "r"); err != nil {
		t.Fatal(err)
	}
}

// roomSide is a client's user actor that hands on room messages and
// recovery outcomes.
type roomSide struct{ got chan<- any }

func (a *roomSide) Receive(ctx actor.Context) {
	switch m := ctx.Message().(type) {
	case *marmot.Message:
		a.got <- m
	case *marmot.RoomRecovered:
		a.got <- *m
	}
}

// tcpProxy forwards TCP connections to target; kill cuts them all, as a
// network failure would, without a WebSocket close on either side.
type tcpProxy struct {
	ln     net.Listener
	target string
	wg     sync.WaitGroup
	mu     sync.Mutex
	conns  []net.Conn
}

func newTCPProxy(t *testing.T, target string) *tcpProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &tcpProxy{ln: ln, target: target}
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		for {
			down, err := ln.Accept()
			if err != nil {
				return
			}
			up, err := net.Dial("tcp", target)
			if err != nil {
				_ = down.Close()
				continue
			}
			p.mu.Lock()
			p.conns = append(p.conns, down, up)
			p.mu.Unlock()
			p.wg.Add(2)
			pipe := func(dst, src net.Conn) {
				defer p.wg.Done()
				_, _ = io.Copy(dst, src)
				_ = dst.Close()
				_ = src.Close()
			}
			go pipe(up, down)
			go pipe(down, up)
		}
	}()
	t.Cleanup(func() {
		_ = ln.Close()
		p.kill()
		p.wg.Wait()
	})
	return p
}

func (p *tcpProxy) kill() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.conns {
		_ = c.Close()
	}
	p.conns = nil
}

// Recovery as a hand-written marmot.json.v1 peer does it, following
// PROTOCOL.md section 6.5: the join's reply gives the epoch, a later join
// with (epoch, offset) gets the outcome and then the missed messages.
func TestRoomRecoverOnTheWire(t *testing.T) {
	gone := make(chan marmot.ClientID, 1)
	s := startServer(t, marmot.ServerConfig{RoomIdle: time.Hour, RoomHistory: marmot.HistoryConfig{Size: 10},
		ServerEvents: marmot.ServerEvents{
			OnClientDisconnected: func(info marmot.ClientInfo, _ *marmot.CloseError) { gone <- info.ID },
		}})
	read := func(ws *websocket.Conn) string {
		t.Helper()
		_, got, err := ws.ReadMessage()
		if err != nil {
			t.Fatal(err)
		}
		return string(got)
	}
	write := func(ws *websocket.Conn, msg string) {
		t.Helper()
		if err := ws.WriteMessage(websocket.TextMessage, []byte(msg)); err != nil {
			t.Fatal(err)
		}
	}
	ws := dial(t, s.URL(), "marmot.json.v1")
	_ = ws.SetReadDeadline(time.Now().Add(waitTimeout))
	write(ws, `{"v":1,"kind":"request","id":1,"name":"marmot.join","room":"r"}`)
	var reply struct {
		ID      uint64 `json:"id"`
		Payload string `json:"payload"`
	}
	if err := json.Unmarshal([]byte(read(ws)), &reply); err != nil || reply.ID != 1 {
		t.Fatalf("join reply %+v, %v", reply, err)
	}
	var res struct {
		Epoch  string `json:"epoch"`
		Offset uint64 `json:"offset"`
	}
	if err := json.Unmarshal([]byte(reply.Payload), &res); err != nil || res.Epoch == "" || res.Offset != 0 {
		t.Fatalf("join result %q: %+v, %v", reply.Payload, res, err)
	}
	if _, err := s.Publish("r", []byte("one")); err != nil {
		t.Fatal(err)
	}
	if got, want := read(ws), `{"v":1,"kind":"data","room":"r","offset":1,"payload":"one"}`; got != want {
		t.Fatalf("got %s, want %s", got, want)
	}
	_ = ws.Close()
	recv(t, gone, "the first connection's end")
	for _, p := range []string{"two", "three"} {
		if _, err := s.Publish("r", []byte(p)); err != nil {
			t.Fatal(err)
		}
	}

	ws2 := dial(t, s.URL(), "marmot.json.v1")
	_ = ws2.SetReadDeadline(time.Now().Add(waitTimeout))
	write(ws2, `{"v":1,"kind":"request","id":1,"name":"marmot.join","room":"r","offset":1,"epoch":"`+res.Epoch+`"}`)
	for _, want := range []string{
		`{"v":1,"kind":"reply","id":1,"payload":"{\"epoch\":\"` + res.Epoch + `\",\"offset\":3,\"recover\":{\"recovered\":true,\"missed\":2}}"}`,
		`{"v":1,"kind":"data","room":"r","offset":2,"payload":"two"}`,
		`{"v":1,"kind":"data","room":"r","offset":3,"payload":"three"}`,
	} {
		if got := read(ws2); got != want {
			t.Fatalf("got  %s\nwant %s", got, want)
		}
	}
	// A stale epoch: told, nothing replayed.
	write(ws2, `{"v":1,"kind":"request","id":2,"name":"marmot.join","room":"other","offset":1,"epoch":"stale"}`)
	if got := read(ws2); !strings.Contains(got, `\"recover\":{\"recovered\":false,\"missed\":-1,\"reason\":\"epoch changed\"}`) {
		t.Fatalf("stale epoch: got %s", got)
	}
}
