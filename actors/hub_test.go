package actors_test

import (
	"context"
	"log/slog"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"go.uber.org/goleak"

	"github.com/marmotws/marmot/actors"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// TestActorsRouteThroughServerActor drives a hub from another actor, the way
// an application built as an actor system would.
func TestActorsRouteThroughServerActor(t *testing.T) {
	sys := actors.NewActorSystem(slog.New(slog.DiscardHandler))
	defer sys.Shutdown()
	ids := make(chan actors.ClientID, 2)
	hub := actors.NewHub(actors.HubConfig{
		ActorSystem: sys,
		Events: actors.ServerEvents{
			OnClientConnected: func(ci actors.ClientInfo) { ids <- ci.ID },
		},
	})
	hs := httptest.NewServer(hub)
	defer hs.Close()
	url := "ws" + strings.TrimPrefix(hs.URL, "http")
	a, _, err := websocket.DefaultDialer.Dial(url, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b, _, err := websocket.DefaultDialer.Dial(url, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	<-ids
	<-ids
	// IDs are assigned after the upgrade, so learn which socket got which
	// from the hub rather than from dial order.
	byPort := map[string]actors.ClientID{}
	for _, ci := range hub.Clients() {
		byPort[ci.RemoteAddr.String()] = ci.ID
	}
	idA, idB := byPort[a.LocalAddr().String()], byPort[b.LocalAddr().String()]
	if idA == 0 || idB == 0 {
		t.Fatalf("client ids not found: %v", byPort)
	}

	res, err := sys.Root.RequestFuture(hub.PID(), &actors.Broadcast{Data: []byte("all"), Except: idB}, 10*time.Second).Result()
	if err != nil {
		t.Fatal(err)
	}
	if ack, ok := res.(*actors.Ack); !ok || ack.Err != nil {
		t.Fatalf("broadcast reply %#v", res)
	}
	sys.Root.Send(hub.PID(), &actors.SendTo{ID: idB, Data: []byte("just b")})

	_ = a.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, got, err := a.ReadMessage(); err != nil || string(got) != "all" {
		t.Fatalf("a got %q, %v", got, err)
	}
	_ = b.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, got, err := b.ReadMessage(); err != nil || string(got) != "just b" {
		t.Fatalf("b got %q, %v (Except ignored?)", got, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := hub.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
}
