package actorfault_test

import (
	"context"
	"log/slog"
	"os"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/marmotws/marmot"
	"github.com/marmotws/marmot/chaos/actorfault"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// guard bounds every wait on an event; only a failing test reaches it.
const guard = 20 * time.Second

func logger() *slog.Logger {
	if os.Getenv("MARMOT_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

func ctxGuard(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), guard)
	t.Cleanup(cancel)
	return ctx
}

// seen records what a server's handler saw, in order, and answers
// requests with their payload.
type seen chan string

func (s seen) handler(m *marmot.Message) {
	s <- m.Name
	if m.IsRequest() {
		_ = m.Reply(m.Payload)
	}
}

func (s seen) next(t *testing.T) string {
	t.Helper()
	select {
	case n := <-s:
		return n
	case <-time.After(guard):
		t.Fatal("timed out waiting for the handler")
	}
	return ""
}

// rig is a server running an injector's middleware and one client.
type rig struct {
	srv    *marmot.Server
	inj    *actorfault.Injector
	client *marmot.Client
	id     marmot.ClientID
	seen   seen
	errs   chan error
}

func newRig(t *testing.T, inj *actorfault.Injector, cfg marmot.ServerConfig) *rig {
	t.Helper()
	return newRigClient(t, inj, cfg, marmot.ClientConfig{})
}

// newRigClient is newRig with the client's configuration (its URL,
// subprotocol and logger are the rig's).
func newRigClient(t *testing.T, inj *actorfault.Injector, cfg marmot.ServerConfig, ccfg marmot.ClientConfig) *rig {
	t.Helper()
	r := &rig{inj: inj, seen: make(seen, 64), errs: make(chan error, 16)}
	cfg.Addr = "127.0.0.1:0"
	cfg.Logger = logger()
	cfg.ActorMiddleware = append(cfg.ActorMiddleware, inj.Middleware())
	if cfg.OnHandleCommand == nil {
		cfg.OnHandleCommand = r.seen.handler
	}
	connected := make(chan marmot.ClientID, 4)
	cfg.OnClientConnected = func(ci marmot.ClientInfo) { connected <- ci.ID }
	cfg.OnError = func(_ marmot.ClientID, err error) {
		select {
		case r.errs <- err:
		default:
		}
	}
	srv, err := marmot.NewServer(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		inj.Close()
		ctx, cancel := context.WithTimeout(context.Background(), guard)
		defer cancel()
		_ = srv.Stop(ctx)
	})
	r.srv = srv
	ccfg.URL, ccfg.Subprotocol, ccfg.Logger = srv.URL(), "marmot.v1", logger()
	c, err := marmot.NewClient(ccfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), guard)
		defer cancel()
		_ = c.Close(ctx)
	})
	if err := c.Connect(ctxGuard(t)); err != nil {
		t.Fatal(err)
	}
	r.client = c
	select {
	case r.id = <-connected:
	case <-time.After(guard):
		t.Fatal("no connection")
	}
	return r
}

func (r *rig) request(t *testing.T, name string) ([]byte, error) {
	t.Helper()
	return r.client.Request(ctxGuard(t), name, []byte(name))
}
