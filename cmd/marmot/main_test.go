package main

import (
	"bufio"
	"context"
	"flag"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/gorilla/websocket"
	"go.uber.org/goleak"

	"github.com/marmotws/marmot"
	"github.com/marmotws/marmot/crypto"
	"github.com/marmotws/marmot/internal/testpki"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, goleak.Cleanup(func(code int) {
		removeBinary()
		os.Exit(code)
	}))
}

// guard bounds every wait; it only fires when a test is already failing.
const guard = 20 * time.Second

// lineLog collects the lines a command writes so tests can wait for one
// without ever blocking the writer.
type lineLog struct {
	name    string
	mu      sync.Mutex
	lines   []string
	next    int           // expect's cursor
	changed chan struct{} // closed and replaced on every new line
	closed  bool
}

func newLineLog(name string, r io.Reader) *lineLog {
	l := &lineLog{name: name, changed: make(chan struct{})}
	go func() {
		sc := bufio.NewScanner(r)
		for sc.Scan() {
			l.mu.Lock()
			l.lines = append(l.lines, sc.Text())
			close(l.changed)
			l.changed = make(chan struct{})
			l.mu.Unlock()
		}
		l.mu.Lock()
		l.closed = true
		close(l.changed)
		l.mu.Unlock()
	}()
	return l
}

// expect waits for a line containing want after the previous match and
// returns it.
func (l *lineLog) expect(t *testing.T, want string) string {
	t.Helper()
	timeout := time.After(guard)
	for {
		l.mu.Lock()
		for i := l.next; i < len(l.lines); i++ {
			if strings.Contains(l.lines[i], want) {
				l.next = i + 1
				line := l.lines[i]
				l.mu.Unlock()
				return line
			}
		}
		ch, closed := l.changed, l.closed
		all := strings.Join(l.lines, "\n")
		l.mu.Unlock()
		if closed {
			t.Fatalf("%s ended without a line containing %q; got:\n%s", l.name, want, all)
		}
		select {
		case <-ch:
		case <-timeout:
			t.Fatalf("timed out waiting for %s line containing %q; got:\n%s", l.name, want, all)
		}
	}
}

// all waits until the command has closed the stream and returns every line.
func (l *lineLog) all(t *testing.T) []string {
	t.Helper()
	timeout := time.After(guard)
	for {
		l.mu.Lock()
		ch, closed := l.changed, l.closed
		lines := append([]string(nil), l.lines...)
		l.mu.Unlock()
		if closed {
			return lines
		}
		select {
		case <-ch:
		case <-timeout:
			t.Fatalf("timed out waiting for the end of %s; got:\n%s", l.name, strings.Join(lines, "\n"))
		}
	}
}

func (l *lineLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(l.lines, "\n")
}

// proc is one in-process run of the command, wired to pipes.
type proc struct {
	stdin  *io.PipeWriter
	stdout *lineLog
	stderr *lineLog
	cancel context.CancelFunc
	done   chan int
}

func start(t *testing.T, args ...string) *proc {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	inR, inW := io.Pipe()
	outR, outW := io.Pipe()
	errR, errW := io.Pipe()
	p := &proc{
		stdin:  inW,
		stdout: newLineLog(args[0]+" stdout", outR),
		stderr: newLineLog(args[0]+" stderr", errR),
		cancel: cancel,
		done:   make(chan int, 1),
	}
	go func() {
		code := run(ctx, args, inR, outW, errW)
		// Closing the pipes ends the line readers, and closing stdin's read
		// side ends connect's stdin goroutine if it is still reading.
		_ = inR.Close()
		_ = outW.Close()
		_ = errW.Close()
		p.done <- code
	}()
	t.Cleanup(func() {
		cancel()
		_ = inW.Close()
		p.wait(t)
	})
	return p
}

// wait returns the exit code once the command has returned.
func (p *proc) wait(t *testing.T) int {
	t.Helper()
	select {
	case code := <-p.done:
		p.done <- code // later waits see it too
		return code
	case <-time.After(guard):
		t.Fatalf("command did not exit; stderr:\n%s", p.stderr)
		return -1
	}
}

func (p *proc) send(t *testing.T, line string) {
	t.Helper()
	if _, err := io.WriteString(p.stdin, line+"\n"); err != nil {
		t.Fatalf("writing %q to stdin: %v", line, err)
	}
}

// serve starts "marmot serve" on a free port and returns it with its URL,
// read from the line it prints on stdout.
func serve(t *testing.T, args ...string) (*proc, string) {
	t.Helper()
	p := start(t, append([]string{"serve", "--addr", "127.0.0.1:0"}, args...)...)
	line := p.stdout.expect(t, "marmot listening on ")
	url := strings.TrimPrefix(line, "marmot listening on ")
	if !strings.HasPrefix(url, "ws://127.0.0.1:") || !strings.HasSuffix(url, "/websocket") {
		t.Fatalf("unexpected URL line %q", line)
	}
	return p, url
}

// connect starts "marmot connect" and waits until it is connected.
func connect(t *testing.T, url string, args ...string) *proc {
	t.Helper()
	p := start(t, append([]string{"connect", url}, args...)...)
	p.stderr.expect(t, "* connected to ")
	return p
}

// stop cancels the command as SIGINT would and checks it exits with 0.
func (p *proc) stop(t *testing.T) {
	t.Helper()
	p.cancel()
	if code := p.wait(t); code != exitOK {
		t.Fatalf("exit code %d, want 0; stderr:\n%s", code, p.stderr)
	}
}

// quit closes stdin and checks that the command exits with 0.
func (p *proc) quit(t *testing.T) {
	t.Helper()
	_ = p.stdin.Close()
	if code := p.wait(t); code != exitOK {
		t.Fatalf("exit code %d, want 0; stderr:\n%s", code, p.stderr)
	}
}

func TestEchoRaw(t *testing.T) {
	srv, url := serve(t)
	p := start(t, "connect", url)
	if line := p.stderr.expect(t, "* connected to "); !strings.HasSuffix(line, " (raw)") {
		t.Errorf("connected line %q, want the wire format (raw)", line)
	}
	srv.stderr.expect(t, "client connected")
	for _, msg := range []string{"hello", "ünïcödé ✓", "/cmdline is no command", "time"} {
		p.send(t, msg)
		p.stdout.expect(t, "< "+msg)
	}
	p.quit(t)
	p.stderr.expect(t, "* you disconnected (1000)")
	srv.stderr.expect(t, "client disconnected")
	srv.stop(t)
	srv.stderr.expect(t, "msgs_in=4 msgs_out=4")
}

// TestRawRefusesCommands: /cmd and /req need an envelope; in raw mode they
// are not sent (the server's counters prove it) and the user is told which
// flag is missing.
func TestRawRefusesCommands(t *testing.T) {
	srv, url := serve(t)
	c := connect(t, url)
	for _, line := range []string{"/req time", "/cmd greet hello", "/req"} {
		c.send(t, line)
		verb, _, _ := strings.Cut(line, " ")
		hint := c.stderr.expect(t, "! "+verb+" not sent: ")
		if !strings.Contains(hint, "reconnect with --subprotocol marmot.v1") {
			t.Errorf("hint %q does not name the flag", hint)
		}
	}
	c.send(t, "after")
	c.stdout.expect(t, "< after") // in order: the refused lines would be first
	c.quit(t)
	srv.stderr.expect(t, "client disconnected")
	srv.stop(t)
	srv.stderr.expect(t, "msgs_in=1 msgs_out=1")
	if out := c.stdout.String(); out != "< after" {
		t.Errorf("stdout:\n%s\nwant only the echo of \"after\"", out)
	}
}

func TestEchoEnvelopes(t *testing.T) {
	srv, url := serve(t)
	for _, sub := range []string{"marmot.v1", "marmot.json.v1"} {
		t.Run(sub, func(t *testing.T) {
			c := connect(t, url, "--subprotocol", sub)
			c.send(t, "plain data")
			c.stdout.expect(t, "< plain data")
			c.send(t, "/cmd greet hello there")
			c.stdout.expect(t, "< [greet] hello there")
			c.send(t, "/req sum 1 2 3")
			c.stdout.expect(t, "< [reply] 1 2 3")
			c.send(t, "/req")
			c.stderr.expect(t, "usage: /req NAME [payload]")
			// A request named time gets the server's time; a command
			// named time is echoed like any other.
			before := time.Now().Truncate(time.Second)
			c.send(t, "/req time")
			reply := strings.TrimPrefix(c.stdout.expect(t, "< [reply] "), "< [reply] ")
			after := time.Now()
			if at, err := time.Parse(time.RFC3339, reply); err != nil || at.Before(before) || at.After(after) {
				t.Errorf("/req time answered %q (%v), want an RFC 3339 time between %s and %s",
					reply, err, before.Format(time.RFC3339), after.Format(time.RFC3339))
			}
			c.send(t, "/cmd time 12:00")
			c.stdout.expect(t, "< [time] 12:00")
			c.quit(t)
		})
	}
	srv.stop(t)
}

func TestBroadcast(t *testing.T) {
	srv, url := serve(t, "--mode", "broadcast")
	a := connect(t, url)
	b := connect(t, url, "--subprotocol", "marmot.json.v1")
	// Both handshakes are complete, but the server registers a connection
	// on its actor; wait for both registrations so neither misses the
	// broadcast.
	srv.stderr.expect(t, "client connected")
	srv.stderr.expect(t, "client connected")

	a.send(t, "hi all")
	a.stdout.expect(t, "< hi all") // the sender is included
	b.stdout.expect(t, "< hi all")

	b.send(t, "/req shout hey")
	a.stdout.expect(t, "< hey")
	// The requester learns the fan-out. Request returns as soon as the reply
	// arrives, so it may print before the broadcast queued ahead of it.
	switch first := b.stdout.expect(t, "< "); first {
	case "< hey":
		b.stdout.expect(t, "< [reply] 2")
	case "< [reply] 2":
		b.stdout.expect(t, "< hey")
	default:
		t.Fatalf("unexpected line %q", first)
	}

	a.quit(t)
	b.quit(t)
	srv.stop(t)
}

func TestReconnectShownAndStdinEOFStops(t *testing.T) {
	srv, url := serve(t)
	c := connect(t, url, "--auto-reconnect", "--reconnect-strategy", "exponential",
		"--reconnect-interval", "50ms", "--connect-timeout", "2s")
	srv.stderr.expect(t, "client connected")
	srv.stop(t) // the client gets 1001 Going Away and starts reconnecting
	c.stderr.expect(t, "closed by the server with code 1001")
	c.stderr.expect(t, "* state connected -> reconnecting")
	c.stderr.expect(t, "* reconnect attempt 1 in")
	c.stderr.expect(t, "* reconnect attempt 1 failed")
	c.quit(t) // EOF cancels reconnecting
	c.stderr.expect(t, "-> disconnected")
}

func TestConnectEndsWhenServerCloses(t *testing.T) {
	srv, url := serve(t)
	c := connect(t, url)
	srv.stderr.expect(t, "client connected")
	srv.stop(t)
	if code := c.wait(t); code != exitFailure {
		t.Fatalf("exit code %d after the server went away, want %d", code, exitFailure)
	}
	c.stderr.expect(t, "closed by the server with code 1001")
}

func TestConnectRefused(t *testing.T) {
	// A port that was free a moment ago: nothing listens there.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	_ = ln.Close()
	p := start(t, "connect", "--connect-timeout", "5s", "ws://"+addr+"/websocket")
	if code := p.wait(t); code != exitFailure {
		t.Fatalf("exit code %d, want %d", code, exitFailure)
	}
	p.stderr.expect(t, "marmot connect: ")
}

// TestRetryFirstConnect: with --retry-first-connect, connect started
// before its server keeps trying, says so, and connects once the server is
// up; the session then works as usual.
func TestRetryFirstConnect(t *testing.T) {
	// A port that was free a moment ago: the server comes up there later.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	_ = ln.Close()
	c := start(t, "connect", "--retry-first-connect", "--reconnect-interval", "50ms", "--connect-timeout", "5s",
		"ws://"+addr+"/websocket")
	// The first attempt failed (nothing listens yet) and the retries
	// started; only then does the server come up.
	c.stderr.expect(t, "* connect attempt 0 failed: ")
	c.stderr.expect(t, "* connect attempt 1 in 50ms")
	srv := start(t, "serve", "--addr", addr)
	srv.stdout.expect(t, "marmot listening on ws://"+addr+"/websocket")
	c.stderr.expect(t, "* connected to ws://"+addr+"/websocket (raw)")
	c.send(t, "hello")
	c.stdout.expect(t, "< hello")
	c.quit(t)
	srv.stop(t)
	if all := strings.Join(c.stderr.all(t), "\n"); strings.Contains(all, "reconnect attempt") {
		t.Errorf("retries of the first connect reported as reconnects:\n%s", all)
	}
}

// TestRetryFirstConnectOff: without the flag, the first failed attempt ends
// the command with no retry.
func TestRetryFirstConnectOff(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	_ = ln.Close()
	p := start(t, "connect", "--reconnect-interval", "50ms", "ws://"+addr+"/websocket")
	if code := p.wait(t); code != exitFailure {
		t.Fatalf("exit code %d, want %d", code, exitFailure)
	}
	p.stderr.expect(t, "marmot connect: ")
	if all := strings.Join(p.stderr.all(t), "\n"); strings.Contains(all, "attempt") || !strings.Contains(all, "connecting -> error") {
		t.Errorf("stderr:\n%s\nwant the error and no retry", all)
	}
}

// TestConnectionLostShown: a server that drops the socket without a close
// frame ends the session with 1006, shown in the close error's own words.
func TestConnectionLostShown(t *testing.T) {
	up := websocket.Upgrader{}
	dropped := make(chan struct{})
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ws, err := up.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		// Wait for the client's first message, then vanish.
		_, _, _ = ws.ReadMessage()
		_ = ws.NetConn().Close()
		close(dropped)
	}))
	defer hs.Close()
	c := connect(t, "ws"+strings.TrimPrefix(hs.URL, "http")+"/websocket")
	c.send(t, "bye")
	<-dropped
	if code := c.wait(t); code != exitFailure {
		t.Fatalf("exit code %d after a lost connection, want %d", code, exitFailure)
	}
	c.stderr.expect(t, "* connection lost without a close frame (1006)")
}

func TestServeAddressInUse(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	p := start(t, "serve", "--addr", ln.Addr().String())
	if code := p.wait(t); code != exitFailure {
		t.Fatalf("exit code %d, want %d", code, exitFailure)
	}
	p.stderr.expect(t, "address already in use")
}

func TestUsageErrors(t *testing.T) {
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{nil, exitUsage, "Usage:"},
		{[]string{"frobnicate"}, exitUsage, `unknown command "frobnicate"`},
		{[]string{"help"}, exitOK, "marmot serve"},
		{[]string{"serve", "-h"}, exitOK, "-max-queue-bytes"},
		{[]string{"serve", "--bogus"}, exitUsage, "flag provided but not defined: -bogus"},
		{[]string{"serve", "--mode", "shout"}, exitUsage, `invalid value "shout" for flag -mode: want echo, broadcast or rooms`},
		{[]string{"serve", "--log-level", "loud"}, exitUsage, `invalid value "loud" for flag -log-level: want debug, info, warn or error`},
		{[]string{"serve", "--max-connections", "many"}, exitUsage, `invalid value "many" for flag -max-connections`},
		{[]string{"serve", "--max-connections", "0"}, exitUsage, "-max-connections: 0 is not allowed; use a negative value for unlimited"},
		{[]string{"serve", "--keepalive", "soon"}, exitUsage, `invalid value "soon" for flag -keepalive`},
		{[]string{"serve", "--write-timeout", "-1s"}, exitUsage, "-write-timeout: must be positive"},
		{[]string{"serve", "--addr", "nowhere"}, exitUsage, `invalid Addr "nowhere"`},
		{[]string{"serve", "extra"}, exitUsage, `unexpected argument "extra"`},
		{[]string{"connect"}, exitUsage, "missing URL"},
		{[]string{"connect", "ws://127.0.0.1:1/a", "ws://127.0.0.1:1/b"}, exitUsage, "want one URL, got 2"},
		{[]string{"connect", "http://127.0.0.1:1/"}, exitUsage, "scheme must be ws or wss"},
		{[]string{"connect", "--subprotocol", "marmot.v9", "ws://127.0.0.1:1/"}, exitUsage, `unknown Subprotocol "marmot.v9"`},
		{[]string{"connect", "ws://127.0.0.1:1/", "--reconnect-strategy", "linear"}, exitUsage, `invalid value "linear" for flag -reconnect-strategy`},
		{[]string{"connect", "ws://127.0.0.1:1/", "--max-reconnect-attempts", "-1"}, exitUsage, "MaxReconnectAttempts must be >= 0"},
		{[]string{"connect", "ws://127.0.0.1:1/", "--keepalive", "0"}, exitUsage, "-keepalive: 0 is not allowed"},
		{[]string{"serve", "--compress", "--compress-level", "10"}, exitUsage, "-compress-level: want 1 to 9"},
		{[]string{"serve", "--compress", "--max-message-size", "-1"}, exitUsage, "-compress needs a bounded -max-message-size"},
		{[]string{"connect", "ws://127.0.0.1:1/", "--compress-level", "0"}, exitUsage, "-compress-level: want 1 to 9"},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			var out, errOut strings.Builder
			code := run(context.Background(), tc.args, strings.NewReader(""), &out, &errOut)
			if code != tc.code {
				t.Errorf("exit code %d, want %d; stderr:\n%s", code, tc.code, errOut.String())
			}
			if all := out.String() + errOut.String(); !strings.Contains(all, tc.want) {
				t.Errorf("output does not contain %q:\n%s", tc.want, all)
			}
		})
	}
}

func TestParseFlagsInterspersed(t *testing.T) {
	fs, f := newConnectFlags(io.Discard)
	pos, _, ok := parseFlags(fs, []string{"ws://h/x", "--subprotocol", "marmot.v1", "--", "--not-a-flag"})
	if !ok {
		t.Fatal("parse failed")
	}
	if f.cfg.Subprotocol != "marmot.v1" {
		t.Errorf("subprotocol %q, want marmot.v1", f.cfg.Subprotocol)
	}
	if want := []string{"ws://h/x", "--not-a-flag"}; strings.Join(pos, " ") != strings.Join(want, " ") {
		t.Errorf("positional %q, want %q", pos, want)
	}
}

func TestEncryptedEchoAndWrongKey(t *testing.T) {
	keyFile := filepath.Join(t.TempDir(), "key")
	if err := os.WriteFile(keyFile, []byte("MySecretKey123!\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	// The least stretching clients accept keeps the handshake well inside
	// its 10 s bound on a busy machine (the default 600,000 iterations
	// under load did not always).
	srv, url := serve(t, "--encrypt-key-file", keyFile, "--encrypt-mode", "gcm", "--encrypt-kdf-iterations", "100000")
	c := start(t, "connect", url, "--encrypt-key-file", keyFile, "--encrypt-mode", "gcm")
	// The secure profile speaks marmot.v1, so /cmd and /req work without
	// --subprotocol, and the connected line says so.
	c.stderr.expect(t, "* connected to "+url+" (marmot.v1, encrypted: secure profile, AES-256-GCM)")
	srv.stderr.expect(t, "subprotocol=marmot.v1")
	c.send(t, "secret hello")
	c.stdout.expect(t, "< secret hello")
	c.send(t, "/req echo ping")
	c.stdout.expect(t, "< [reply] ping")
	c.send(t, "/cmd greet hi")
	c.stdout.expect(t, "< [greet] hi")
	c.quit(t)

	bad := start(t, "connect", "--encrypt-key", "wrong", "--encrypt-mode", "gcm", url)
	if code := bad.wait(t); code != exitFailure {
		t.Fatalf("wrong key: exit code %d, want %d", code, exitFailure)
	}
	bad.stderr.expect(t, "wrong passphrase")
	srv.stop(t)
	if strings.Contains(srv.stderr.String(), "MySecretKey123!") || strings.Contains(bad.stderr.String(), "wrong\n") {
		t.Fatal("a passphrase appeared in the output")
	}

	both := start(t, "serve", "--encrypt-key", "a", "--encrypt-key-file", keyFile)
	if code := both.wait(t); code != exitUsage {
		t.Fatalf("both key flags: exit code %d, want %d", code, exitUsage)
	}
}

// TestCompatEncryptionWire: the compat profile speaks synopsejson, with raw
// messages inside; the connected line says so and /req is refused with a
// hint that fits.
func TestCompatEncryptionWire(t *testing.T) {
	srv, url := serve(t, "--encrypt-key", "k", "--encrypt-profile", "compat", "--encrypt-key-size", "128")
	c := start(t, "connect", url, "--encrypt-key", "k", "--encrypt-profile", "compat", "--encrypt-key-size", "128")
	c.stderr.expect(t, "* connected to "+url+" (synopsejson, encrypted: compat profile, AES-128-CBC)")
	c.send(t, "/req time")
	if hint := c.stderr.expect(t, "! /req not sent: "); !strings.Contains(hint, "compat encryption profile (synopsejson) carries raw messages only") {
		t.Errorf("hint %q does not explain the compat profile", hint)
	}
	c.send(t, "plain")
	c.stdout.expect(t, "< plain")
	c.quit(t)
	srv.stop(t)
}

// TestTLSAndJWT: serve --tls-cert/--tls-key --jwt-secret-file, connect
// --ca --token (or --token-in-message); without --ca the certificate is
// refused, without a token the connection (4503), and --insecure warns
// loudly.
func TestTLSAndJWT(t *testing.T) {
	pki := testpki.New(t)
	secretFile := filepath.Join(t.TempDir(), "secret")
	secret := "0123456789abcdef0123456789abcdef"
	if err := os.WriteFile(secretFile, []byte(secret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	srv := start(t, "serve", "--addr", "127.0.0.1:0", "--tls-cert", pki.CertFile, "--tls-key", pki.KeyFile, "--jwt-secret-file", secretFile, "--auth-timeout", "500ms")
	url := strings.TrimPrefix(srv.stdout.expect(t, "marmot listening on "), "marmot listening on ")
	if !strings.HasPrefix(url, "wss://127.0.0.1:") {
		t.Fatalf("URL %q, want wss://", url)
	}
	token, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{"sub": "cli-user"}).SignedString([]byte(secret))
	if err != nil {
		t.Fatal(err)
	}
	c := connect(t, url, "--ca", pki.CAFile, "--token", token)
	srv.stderr.expect(t, "user=cli-user")
	c.send(t, "over tls")
	c.stdout.expect(t, "< over tls")
	c.quit(t)

	inMsg := connect(t, url, "--ca", pki.CAFile, "--token", token, "--token-in-message", "--subprotocol", "marmot.v1")
	inMsg.send(t, "/req echo hi")
	inMsg.stdout.expect(t, "< [reply] hi")
	inMsg.quit(t)

	noCA := start(t, "connect", url, "--token", token)
	if code := noCA.wait(t); code != exitFailure {
		t.Fatalf("without --ca: exit code %d, want %d", code, exitFailure)
	}
	noCA.stderr.expect(t, "certificate")
	noToken := start(t, "connect", url, "--ca", pki.CAFile)
	if code := noToken.wait(t); code != exitFailure {
		t.Fatalf("without a token: exit code %d, want %d", code, exitFailure)
	}
	// No token in the upgrade: the first message must carry one.
	noToken.stderr.expect(t, "4503")
	insecure := connect(t, url, "--insecure", "--token", token)
	if !strings.Contains(insecure.stderr.String(), "WARNING: --insecure") {
		t.Fatalf("no warning for --insecure:\n%s", insecure.stderr)
	}
	insecure.quit(t)
	srv.stop(t)
	if strings.Contains(srv.stderr.String(), secret) || strings.Contains(srv.stderr.String(), token) {
		t.Fatal("the secret or the token appeared in the server's output")
	}
}

// TestRateLimitFlags: --rate-messages closes a flooding connection with
// 1008; --ip-max-connections refuses a second connection with 429.
func TestRateLimitFlags(t *testing.T) {
	_, url := serve(t, "--rate-messages", "0.001", "--ip-max-connections", "1")
	c := connect(t, url)
	c.send(t, "one")
	c.stdout.expect(t, "< one")
	second := start(t, "connect", url)
	if code := second.wait(t); code != exitFailure {
		t.Fatalf("second connection: exit code %d, want %d", code, exitFailure)
	}
	second.stderr.expect(t, "429")
	c.send(t, "two")
	c.stderr.expect(t, "1008")
}

// --encrypt-allow-legacy-handshake sets EncryptionAllowLegacyHandshake; it
// is off by default (forward secrecy required).
func TestEncryptAllowLegacyHandshakeFlag(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want bool
	}{
		{[]string{"--encrypt-key", "k"}, false},
		{[]string{"--encrypt-key", "k", "--encrypt-allow-legacy-handshake"}, true},
	} {
		fs := flag.NewFlagSet("t", flag.ContinueOnError)
		e := addEncryptFlags(fs)
		if err := fs.Parse(tc.args); err != nil {
			t.Fatal(err)
		}
		var cfg marmot.EncryptionConfig
		if err := e.apply(&cfg); err != nil {
			t.Fatal(err)
		}
		if cfg.EncryptionAllowLegacyHandshake != tc.want {
			t.Errorf("%q: EncryptionAllowLegacyHandshake %v, want %v", tc.args, cfg.EncryptionAllowLegacyHandshake, tc.want)
		}
	}
}

// A server from before forward secrecy (a version-1 ServerHello): connect
// refuses it by default, says why and how to allow it, and exits 1.
func TestConnectOldServerHint(t *testing.T) {
	up := websocket.Upgrader{Subprotocols: []string{"marmot.v1"}}
	old := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ws, err := up.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		defer ws.Close()
		sh := crypto.ServerHello{Version: crypto.HandshakeV1, Mode: crypto.ModeGCM, KeySize: crypto.KeySize256,
			KDF: crypto.KDFParams{Iterations: 100_000}, Salt: make([]byte, 16)}
		hello, _ := sh.MarshalBinary()
		_ = ws.WriteMessage(websocket.BinaryMessage, hello)
		_ = ws.SetReadDeadline(time.Now().Add(10 * time.Second))
		_, _, _ = ws.ReadMessage() // the client's close
	}))
	t.Cleanup(old.Close)
	c := start(t, "connect", "--encrypt-key", "k", "--encrypt-mode", "gcm", "ws"+strings.TrimPrefix(old.URL, "http"))
	if code := c.wait(t); code != exitFailure {
		t.Fatalf("exit code %d, want %d", code, exitFailure)
	}
	c.stderr.expect(t, "handshake without forward secrecy refused")
	c.stderr.expect(t, "hint: a server from before forward secrecy needs --encrypt-allow-legacy-handshake")
}

// TestConnectOverHTTP: --transport http talks to serve over the HTTP
// fallback and says so; serve --disable-http-fallback refuses it.
func TestConnectOverHTTP(t *testing.T) {
	srv := start(t, "serve", "--addr", "127.0.0.1:0")
	line := srv.stdout.expect(t, "marmot listening on ")
	url := line[strings.LastIndex(line, " ")+1:]
	c := start(t, "connect", "--transport", "http", url)
	c.stderr.expect(t, "* connected to "+url+" (raw) over the http transport")
	c.send(t, "hello over http")
	c.stdout.expect(t, "< hello over http")
	c.quit(t)
	srv.stop(t)

	off := start(t, "serve", "--addr", "127.0.0.1:0", "--disable-http-fallback")
	line = off.stdout.expect(t, "marmot listening on ")
	url = line[strings.LastIndex(line, " ")+1:]
	p := start(t, "connect", "--transport", "http", url)
	if code := p.wait(t); code != exitFailure {
		t.Fatalf("exit code %d, want %d", code, exitFailure)
	}
	p.stderr.expect(t, "HTTP fallback is disabled")
	off.stop(t)

	bad := start(t, "connect", "--transport", "carrier-pigeon", url)
	if code := bad.wait(t); code == 0 {
		t.Fatal("an unknown transport was accepted")
	}
}
