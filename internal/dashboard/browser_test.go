package dashboard_test

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/marmotws/marmot"
	"github.com/marmotws/marmot/internal/browsertest"
)

const guard = 60 * time.Second

func quietLogger() *slog.Logger {
	if os.Getenv("MARMOT_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

func recv[T any](t testing.TB, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(guard):
		t.Fatalf("timed out waiting for %s", what)
	}
	var zero T
	return zero
}

// startWithDashboard starts an echo server with the dashboard mounted at
// /dashboard/ through Server.Handle, protected by token.
func startWithDashboard(t *testing.T, token string) (*marmot.Server, string) {
	t.Helper()
	srv, err := marmot.NewServer(marmot.ServerConfig{
		Addr:   "127.0.0.1:0",
		Logger: quietLogger(),
		ServerEvents: marmot.ServerEvents{
			OnHandleCommand: func(m *marmot.Message) { _ = m.Reply(m.Payload) },
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	d := marmot.NewDashboard(srv, marmot.DashboardOptions{Token: token, Interval: 200 * time.Millisecond})
	srv.Handle("/dashboard/", http.StripPrefix("/dashboard", d))
	if err := srv.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = srv.Stop(ctx)
	})
	base := strings.Replace(strings.TrimSuffix(srv.URL(), "/websocket"), "ws://", "http://", 1) + "/dashboard/"
	return srv, base
}

// TestDashboardInBrowser: the dashboard's count follows clients as they
// come and go, its send / broadcast / disconnect act on real clients, and
// the client page (marmot.js) connects, sends and receives.
func TestDashboardInBrowser(t *testing.T) {
	b := browsertest.New(t)
	srv, base := startWithDashboard(t, "s3cret")

	dash := b.Open(t, base+"?token=s3cret")
	dash.WaitFor(`document.getElementById('clientCount').textContent === '0'`)

	// The client page connects through marmot.js and shows it.
	cp := b.Open(t, base+"client?token=s3cret")
	cp.WaitFor(`window.clientPageReady === true`)
	cp.Click("#connectBtn")
	cp.WaitFor(`document.body.dataset.state === 'connected'`)
	dash.WaitFor(`document.getElementById('clientCount').textContent === '1'`)
	cp.SetValue("#sendText", "hello from the page")
	cp.Click("#sendBtn")
	cp.WaitFor(`document.getElementById('received').textContent.includes('  hello from the page')`)
	cp.Click("#requestBtn") // "time": echoed back by this server
	cp.WaitFor(`document.getElementById('received').textContent.includes('< [reply]')`)

	// A Go client: the dashboard sees it, sends to it, broadcasts, disconnects it.
	got := make(chan string, 8)
	gone := make(chan int, 1)
	c, err := marmot.NewClient(marmot.ClientConfig{
		URL: srv.URL(), Subprotocol: "marmot.json.v1", Logger: quietLogger(),
		ClientEvents: marmot.ClientEvents{
			OnHandleCommand: func(m *marmot.Message) { got <- string(m.Payload) },
			OnDisconnect:    func(r *marmot.CloseError) { gone <- r.Code },
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(context.Background())
	ctx, cancel := context.WithTimeout(context.Background(), guard)
	defer cancel()
	if err := c.Connect(ctx); err != nil {
		t.Fatal(err)
	}
	dash.WaitFor(`document.getElementById('clientCount').textContent === '2'`)
	var id uint64
	for _, ci := range srv.Clients() {
		if ci.Subprotocol == "marmot.json.v1" && ci.ConnectedAt.After(time.Time{}) {
			id = max(id, uint64(ci.ID))
		}
	}
	dash.WaitFor(fmt.Sprintf(`document.querySelector('#clients tr[data-id="%d"]') !== null`, id))
	dash.Screenshot("dashboard.png")
	cp.Screenshot("client-page.png")

	dash.SetValue("#sendId", fmt.Sprint(id))
	dash.SetValue("#sendText", "just for you")
	dash.Click("#sendBtn")
	if m := recv(t, got, "the dashboard's send"); m != "just for you" {
		t.Fatalf("Go client got %q", m)
	}
	dash.SetValue("#broadcastText", "to everyone")
	dash.Click("#broadcastBtn")
	if m := recv(t, got, "the dashboard's broadcast"); m != "to everyone" {
		t.Fatalf("Go client got %q", m)
	}
	cp.WaitFor(`document.getElementById('received').textContent.includes('  to everyone')`)

	dash.Click(fmt.Sprintf(`#clients tr[data-id="%d"] button.disconnect`, id))
	if code := recv(t, gone, "the dashboard's disconnect"); code != 1000 {
		t.Fatalf("disconnect code %d, want 1000", code)
	}
	dash.WaitFor(`document.getElementById('clientCount').textContent === '1'`)
	dash.WaitFor(fmt.Sprintf(`document.getElementById('log').textContent.includes('disconnected client %d')`, id))
	var chartPoints int
	dash.MustEval(`fetch('api/snapshot?token=s3cret').then((r) => r.json()).then((s) => s.chart.length)`, &chartPoints)
	if chartPoints < 1 {
		t.Fatalf("chart has %d points", chartPoints)
	}
	if ex := dash.Exceptions(); len(ex) > 0 {
		t.Fatalf("dashboard threw: %v", ex)
	}
	if ex := cp.Exceptions(); len(ex) > 0 {
		t.Fatalf("client page threw: %v", ex)
	}
}
