package marmot_test

import (
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/gorilla/websocket"

	"github.com/marmotws/marmot"
)

// counter is a user-written connection actor: its state is its fields.
type counter struct {
	n       int
	id      marmot.ClientID
	events  chan<- any
	nick    string
	started int
}

type whoAreYou struct{}

type rename struct{ nick string }

func (a *counter) Receive(ctx actor.Context) {
	switch m := ctx.Message().(type) {
	case *actor.Started:
		a.started++
	case *marmot.Connected:
		a.id = m.Info.ID
		a.events <- m
	case *marmot.Message:
		switch string(m.Payload) {
		case "boom":
			panic("boom")
		case "self":
			// The actor pushes to its own socket by message, as any other
			// actor would.
			ctx.Send(ctx.Self(), &marmot.Push{Data: []byte("pushed by " + a.nick)})
			return
		}
		a.n++
		_ = m.Reply([]byte(strconv.Itoa(a.n)))
	case *rename:
		a.nick = m.nick
		ctx.Respond(a.nick)
	case *whoAreYou:
		ctx.Respond(fmt.Sprintf("%d:%s:%d", a.id, a.nick, a.n))
	case *marmot.Disconnected:
		a.events <- m
	}
}

func echoRaw(t *testing.T, ws *websocket.Conn, msg string) string {
	t.Helper()
	if err := ws.WriteMessage(websocket.TextMessage, []byte(msg)); err != nil {
		t.Fatal(err)
	}
	_ = ws.SetReadDeadline(time.Now().Add(waitTimeout))
	_, got, err := ws.ReadMessage()
	if err != nil {
		t.Fatalf("reading the answer to %q: %v", msg, err)
	}
	return string(got)
}

// A user's connection actor keeps state in its fields; a panic restarts it
// with fresh state while the socket, ClientID and counters carry on; other
// actors message it by the PID in ClientInfo.
func TestConnectionActorStateRestartAndMessages(t *testing.T) {
	events := make(chan any, 16)
	srv := startServer(t, marmot.ServerConfig{
		MaxRestarts:     2,
		ConnectionActor: func() actor.Actor { return &counter{events: events} },
	})
	ws := dial(t, srv.URL(), "")
	first := recv(t, events, "Connected").(*marmot.Connected)
	if first.Restarts != 0 || first.Info.PID == nil {
		t.Fatalf("first Connected = %+v, want Restarts 0 and a PID", first)
	}
	for i, want := range []string{"1", "2", "3"} {
		if got := echoRaw(t, ws, "x"); got != want {
			t.Fatalf("answer %d = %q, want %q", i, got, want)
		}
	}

	// Other actors reach it by its PID, with requests it answers itself.
	root := srv.PID()
	if root == nil {
		t.Fatal("server has no PID")
	}
	sys := srv.ActorSystem()
	pid := first.Info.PID
	res, err := sys.Root.RequestFuture(pid, &rename{nick: "ada"}, waitTimeout).Result()
	if err != nil || res != "ada" {
		t.Fatalf("rename = %v, %v", res, err)
	}
	if got := echoRaw(t, ws, "self"); got != "pushed by ada" {
		t.Fatalf("self push = %q", got)
	}
	ack, err := sys.Root.RequestFuture(pid, &marmot.Push{Data: []byte("from outside")}, waitTimeout).Result()
	if err != nil || ack.(*marmot.Ack).Err != nil {
		t.Fatalf("Push = %v, %v", ack, err)
	}
	_ = ws.SetReadDeadline(time.Now().Add(waitTimeout))
	if _, got, err := ws.ReadMessage(); err != nil || string(got) != "from outside" {
		t.Fatalf("pushed message = %q, %v", got, err)
	}

	// A panic: a fresh instance, told it is a restart, same connection.
	if err := ws.WriteMessage(websocket.TextMessage, []byte("boom")); err != nil {
		t.Fatal(err)
	}
	again := recv(t, events, "Connected after the restart").(*marmot.Connected)
	if again.Restarts != 1 || again.Info.ID != first.Info.ID || !again.Info.PID.Equal(pid) {
		t.Fatalf("Connected after restart = %+v, want Restarts 1, the same ID %d and PID", again, first.Info.ID)
	}
	if got := echoRaw(t, ws, "x"); got != "1" {
		t.Fatalf("first answer after the restart = %q, want 1 (fresh state)", got)
	}
	res, err = sys.Root.RequestFuture(pid, &whoAreYou{}, waitTimeout).Result()
	if want := fmt.Sprintf("%d::1", first.Info.ID); err != nil || res != want {
		t.Fatalf("whoAreYou after restart = %v, %v; want %q (nick gone with the old instance)", res, err, want)
	}
	if st := srv.Stats(); st.ActorRestarts != 1 || st.TotalMessagesReceived != 6 {
		t.Fatalf("stats = %+v, want 1 restart and 6 messages received (counters survive)", st)
	}

	if err := ws.WriteMessage(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, "bye")); err != nil {
		t.Fatal(err)
	}
	d := recv(t, events, "Disconnected").(*marmot.Disconnected)
	if d.Reason == nil || d.Reason.Code != marmot.CloseNormal || !d.Reason.ByPeer || d.Info.ID != first.Info.ID {
		t.Fatalf("Disconnected = %+v, reason %v", d, d.Reason)
	}
}

// Past its restart budget the connection closes with 1011.
func TestConnectionActorRestartBudget(t *testing.T) {
	events := make(chan any, 16)
	srv := startServer(t, marmot.ServerConfig{
		MaxRestarts:     1,
		ConnectionActor: func() actor.Actor { return &counter{events: events} },
	})
	ws := dial(t, srv.URL(), "")
	recv(t, events, "Connected")
	for range 2 {
		if err := ws.WriteMessage(websocket.TextMessage, []byte("boom")); err != nil {
			t.Fatal(err)
		}
	}
	if ce := readClose(t, ws); ce.Code != marmot.CloseInternalError {
		t.Fatalf("close code = %d, want %d", ce.Code, marmot.CloseInternalError)
	}
}

// clientSide is a user's actor behind a Client.
type clientSide struct {
	got    int
	events chan<- any
}

func (a *clientSide) Receive(ctx actor.Context) {
	switch m := ctx.Message().(type) {
	case *marmot.Connected, *marmot.Disconnected:
		a.events <- m
	case *marmot.Message:
		if string(m.Payload) == "boom" {
			panic("boom")
		}
		a.got++
		a.events <- fmt.Sprintf("%s #%d", m.Payload, a.got)
	}
}

// The client side: the user's actor gets the connection's lifecycle and
// messages, and restarts fresh on a panic while the connection stays.
func TestClientActor(t *testing.T) {
	fromClient := make(chan string, 8)
	srv := startServer(t, marmot.ServerConfig{ServerEvents: marmot.ServerEvents{
		OnHandleCommand: func(m *marmot.Message) {
			fromClient <- string(m.Payload)
			_ = m.Reply(m.Payload) // the echo comes back to the client's actor
		},
	}})
	events := make(chan any, 16)
	c := newClient(t, marmot.ClientConfig{
		URL: srv.URL(), Subprotocol: "marmot.v1", MaxRestarts: 2,
		Actor: func() actor.Actor { return &clientSide{events: events} },
	})
	if err := c.Connect(ctxTimeout(t)); err != nil {
		t.Fatal(err)
	}
	first := recv(t, events, "Connected").(*marmot.Connected)
	if first.Restarts != 0 || !first.Info.PID.Equal(c.PID()) {
		t.Fatalf("Connected = %+v, want Restarts 0 and the client's PID", first)
	}
	for i := 1; i <= 2; i++ {
		if err := c.SendCommand("echo", []byte("hi")); err != nil {
			t.Fatal(err)
		}
		recv(t, fromClient, "the server's copy")
		if got, want := recv(t, events, "the echo"), fmt.Sprintf("hi #%d", i); got != want {
			t.Fatalf("actor got %v, want %q", got, want)
		}
	}
	if err := c.SendCommand("echo", []byte("boom")); err != nil {
		t.Fatal(err)
	}
	recv(t, fromClient, "boom at the server")
	again := recv(t, events, "Connected after the restart").(*marmot.Connected)
	if again.Restarts != 1 || !c.Connected() {
		t.Fatalf("after the panic: Connected %+v, client connected %v; want Restarts 1 on the same connection", again, c.Connected())
	}
	if err := c.SendCommand("echo", []byte("hi")); err != nil {
		t.Fatal(err)
	}
	recv(t, fromClient, "the server's copy")
	if got := recv(t, events, "the echo after the restart"); got != "hi #1" {
		t.Fatalf("actor got %v after the restart, want \"hi #1\" (fresh state)", got)
	}
	if c.Stats().Reconnects != 0 {
		t.Fatalf("%d reconnects: the panic must not touch the connection", c.Stats().Reconnects)
	}
	if err := c.Disconnect(ctxTimeout(t)); err != nil {
		t.Fatal(err)
	}
	d := recv(t, events, "Disconnected").(*marmot.Disconnected)
	if d.Reason == nil || d.Reason.Code != marmot.CloseNormal {
		t.Fatalf("Disconnected reason %v, want 1000", d.Reason)
	}
}
