package chaos_test

import (
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/marmotws/marmot/chaos"
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

// echoServer echoes every connection on 127.0.0.1 until the test ends;
// each accepted connection is also sent on conns.
type echoServer struct {
	ln    net.Listener
	conns chan net.Conn
	wg    sync.WaitGroup
}

func newEchoServer(t *testing.T) *echoServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	e := &echoServer{ln: ln, conns: make(chan net.Conn, 64)}
	var mu sync.Mutex
	var all []net.Conn
	e.wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			all = append(all, c)
			mu.Unlock()
			select {
			case e.conns <- c:
			default:
			}
			e.wg.Go(func() { _, _ = io.Copy(c, c); _ = c.(*net.TCPConn).CloseWrite() })
		}
	})
	t.Cleanup(func() {
		_ = ln.Close()
		mu.Lock()
		for _, c := range all {
			_ = c.Close()
		}
		mu.Unlock()
		e.wg.Wait()
	})
	return e
}

func newProxy(t *testing.T, upstream string) *chaos.Proxy {
	t.Helper()
	p, err := chaos.NewProxy("127.0.0.1:0", upstream, chaos.Options{Logger: logger()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Close() })
	return p
}

func dial(t *testing.T, addr string) *net.TCPConn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, guard)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	_ = c.SetDeadline(time.Now().Add(guard))
	return c.(*net.TCPConn)
}

// roundTrip writes msg and reads it back.
func roundTrip(t *testing.T, c net.Conn, msg string) {
	t.Helper()
	if _, err := c.Write([]byte(msg)); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, len(msg))
	if _, err := io.ReadFull(c, buf); err != nil {
		t.Fatal(err)
	}
	if string(buf) != msg {
		t.Fatalf("echo %q, want %q", buf, msg)
	}
}

// readErr reads until an error and returns it with the byte count.
func readErr(c net.Conn) (int, error) {
	buf := make([]byte, 4096)
	total := 0
	for {
		n, err := c.Read(buf)
		total += n
		if err != nil {
			return total, err
		}
	}
}

func isReset(err error) bool { return errors.Is(err, syscall.ECONNRESET) }

var errDeadline = os.ErrDeadlineExceeded

// dialRefused dials addr, which must reset the connection before a byte
// comes back: on loopback the RST may even beat the dial's return.
func dialRefused(t *testing.T, addr string) {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, guard)
	if err == nil {
		defer c.Close()
		_ = c.SetReadDeadline(time.Now().Add(guard))
		_, _ = c.Write([]byte("?"))
		var n int
		n, err = readErr(c)
		if n != 0 {
			t.Fatalf("%d bytes came back", n)
		}
		if err == io.EOF {
			return
		}
	}
	if !isReset(err) {
		t.Fatalf("want a reset, got %v", err)
	}
}
