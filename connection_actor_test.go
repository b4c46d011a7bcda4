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
