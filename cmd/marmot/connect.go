package main

import (
	"bufio"
	"cmp"
	"context"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/marmotws/marmot"
	"github.com/marmotws/marmot/crypto"
	"github.com/marmotws/marmot/protocol"
)

// disconnectTimeout bounds the close handshake when the user quits.
const disconnectTimeout = 10 * time.Second

// connectFlags holds "marmot connect" options.
type connectFlags struct {
	cfg            marmot.ClientConfig
	strategy       string
	transport      string
	requestTimeout time.Duration
	logLevel       logLevel
	encrypt        *encryptFlags
	compress       *compressFlags
	trace          *traceFlags
	join           joinFlag
	urls           urlsFlag
	security       *connectSecurityFlags
}

func newConnectFlags(stderr io.Writer) (*flag.FlagSet, *connectFlags) {
	// Error by default: the client logs every error it reports at warn, and
	// OnError already prints them in the session's own format.
	f := &connectFlags{logLevel: logLevel{slog.LevelError}}
	fs := flag.NewFlagSet("connect", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), `Usage: marmot connect [flags] URL
       marmot connect [flags] --url URL --url URL2 ...

Connects to a WebSocket server. Given several URLs (the positional one
first, then each --url in order), the client fails over: a failed connect
attempt or a lost connection moves it to the next URL, round again after
the last (with --auto-reconnect, after the reconnect delay; attempts count
over all URLs together). The first connect tries each URL once. A server
that does not know the session reports what it had not acknowledged as
lost ("session lost: N"); --join rooms are joined again there. Every stdin line is sent as one message
(empty lines are skipped); incoming messages are printed on stdout as
"< message" (with --trace-stdout, finished spans too, as JSON lines starting
with "{"). Connection events and logs go to stderr. EOF on stdin disconnects.

With --subprotocol marmot.v1 or marmot.json.v1 (or --encrypt-key, whose
default secure profile speaks marmot.v1), two line forms are special:
  /cmd NAME [payload]   send a named command
  /req NAME [payload]   send a request and print its reply as "< [reply] payload"
  @ROOM text            publish text to a room
("marmot serve" answers "/req time" with its time and echoes the rest).
Room messages print as "[room #offset] text". With --join the client joins
those rooms at connect and, with --auto-reconnect, joins them again after
every reconnect, recovering what it missed: "recovered room a: 3 missed",
or "not recovered room a: REASON" when the server cannot fill the gap.
Without a subprotocol (raw mode, and the compat encryption profile) every
line is sent as it is, except that /cmd and /req lines are refused with a
hint, as raw frames have no command names or requests.

Flags:
`)
		fs.PrintDefaults()
	}
	c := &f.cfg
	fs.StringVar(&f.transport, "transport", "auto", "auto: WebSocket, falling back to the HTTP transport when the upgrade is refused or stripped; websocket; or http (the HTTP fallback only, see docs/HTTP.md)")
	fs.StringVar(&c.Subprotocol, "subprotocol", "", "wire format: empty for raw frames, "+protocol.SubprotocolBinary+" or "+protocol.SubprotocolJSON)
	fs.DurationVar(&c.ConnectionTimeout, "connect-timeout", marmot.DefaultConnectionTimeout, "bound on each connect attempt, handshake included")
	fs.BoolVar(&c.AutoReconnect, "auto-reconnect", false, "reconnect after a lost connection")
	fs.BoolVar(&c.RetryFirstConnect, "retry-first-connect", false, "when the server cannot be reached yet, keep retrying the first connect with the reconnect backoff (--reconnect-strategy, --reconnect-interval) until it connects, --max-reconnect-attempts retries have failed or the user quits; a wrong key or an encryption mismatch is not retried. Without it, a failed first connect ends the command")
	fs.StringVar(&f.strategy, "reconnect-strategy", "fixed", "delay between reconnect attempts: fixed or exponential")
	fs.DurationVar(&c.ReconnectInterval, "reconnect-interval", marmot.DefaultReconnectInterval, "fixed reconnect delay, or the first exponential one")
	fs.IntVar(&c.MaxReconnectAttempts, "max-reconnect-attempts", 0, "give up after this many failed reconnect attempts (0: never)")
	fs.DurationVar(&c.KeepAlive, "keepalive", marmot.DefaultKeepAlive, "drop the connection when the server stays silent this long (noticed within 1.5 times it); pings every half of it (negative: no pings)")
	fs.Int64Var(&c.MaxMessageSize, "max-message-size", marmot.DefaultMaxMessageSize, "largest message accepted, and longest stdin line sent, in bytes")
	fs.DurationVar(&f.requestTimeout, "request-timeout", 10*time.Second, "how long /req waits for its reply")
	fs.Var(&f.logLevel, "log-level", "log `level`: debug, info, warn or error")
	fs.Var(&f.urls, "url", "a server `URL` (ws:// or wss://); repeat it for failover to the next")
	fs.Var(&f.join, "join", "join these `rooms` (comma-separated) at connect, and again after every reconnect (needs an envelope subprotocol)")
	f.compress = addCompressFlags(fs, &c.Compression)
	f.encrypt = addEncryptFlags(fs)
	f.trace = addTraceFlags(fs)
	f.security = addConnectSecurityFlags(fs)
	return fs, f
}

func runConnect(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fs, f := newConnectFlags(stderr)
	pos, code, ok := parseFlags(fs, args)
	if !ok {
		return code
	}
	if len(pos) > 1 {
		return usageError(fs, "want one URL, got %d arguments (use --url for more)", len(pos))
	}
	urls := append(pos, f.urls...)
	if len(urls) == 0 {
		return usageError(fs, "missing URL (e.g. ws://127.0.0.1:8080/websocket)")
	}
	f.cfg.URL, f.cfg.FailoverURLs = urls[0], urls[1:]
	switch f.strategy {
	case "fixed":
		f.cfg.ReconnectStrategy = marmot.ReconnectFixed
	case "exponential":
		f.cfg.ReconnectStrategy = marmot.ReconnectExponential
	default:
		return usageError(fs, "invalid value %q for flag -reconnect-strategy: want fixed or exponential", f.strategy)
	}
	transport, err := marmot.ParseTransport(f.transport)
	if err != nil {
		return usageError(fs, "invalid value %q for flag -transport: want auto, websocket or http", f.transport)
	}
	f.cfg.Transport = transport
	// As for serve: 0 would silently mean the default.
	c := &f.cfg
	for _, z := range []struct {
		name string
		bad  bool
		hint string
	}{
		{"connect-timeout", c.ConnectionTimeout <= 0, "must be positive"},
		{"reconnect-interval", c.ReconnectInterval <= 0, "must be positive"},
		{"keepalive", c.KeepAlive == 0, "0 is not allowed; use a negative value to disable pings"},
		{"max-message-size", c.MaxMessageSize <= 0, "must be positive"},
		{"request-timeout", f.requestTimeout <= 0, "must be positive"},
	} {
		if z.bad {
			return usageError(fs, "invalid value for flag -%s: %s", z.name, z.hint)
		}
	}

	if err := f.encrypt.apply(&c.EncryptionConfig); err != nil {
		return usageError(fs, "%v", err)
	}
	if err := f.compress.check(c.MaxMessageSize); err != nil {
		return usageError(fs, "%v", err)
	}
	if err := f.security.apply(c, stderr); err != nil {
		return usageError(fs, "%v", err)
	}

	s := &session{out: stdout, errw: stderr, wire: wireOf(f.cfg), ended: make(chan struct{}, 1)}
	if len(f.join) > 0 && !s.wire.envelope() {
		return usageError(fs, "flag -join needs a marmot envelope: add --subprotocol %s (or %s; not with the compat encryption profile)", protocol.SubprotocolBinary, protocol.SubprotocolJSON)
	}
	cfg := f.cfg
	cfg.Logger = newLogger(stderr, f.logLevel.level)
	cfg.LogLevel = f.logLevel.level
	tr, err := setupTracing(ctx, "marmot-client", f.trace, stdout, stderr)
	if err != nil {
		fmt.Fprintf(stderr, "marmot connect: %v\n", err)
		return exitFailure
	}
	// Deferred first, so it runs last: after Close, the client's final
	// spans (the close, a pending request) are flushed too.
	defer tr.shutdown(ctx)
	cfg.TracerProvider = tr.provider()
	cfg.Propagator = propagator
	cfg.ClientEvents = s.events()
	client, err := marmot.NewClient(cfg)
	if err != nil {
		return usageError(fs, "%v", err)
	}
	s.client = client
	defer func() {
		// Close releases the client's actor and goroutines in every case.
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), disconnectTimeout)
		defer cancel()
		_ = client.Close(cctx)
	}()

	if err := client.Connect(ctx); err != nil {
		fmt.Fprintf(stderr, "marmot connect: %v\n", err)
		if errors.Is(err, crypto.ErrDowngrade) && !cfg.EncryptionAllowLegacyHandshake {
			fmt.Fprintln(stderr, "  hint: a server from before forward secrecy needs --encrypt-allow-legacy-handshake (a leaked key then decrypts recorded traffic);"+
				" a current server says this only when something on the way removed the "+marmot.HeaderHandshake+" header")
		}
		return exitFailure
	}
	wire := s.wire.String()
	if client.Compressed() {
		wire += ", compressed"
	}
	over := ""
	if t := client.Transport(); t != "websocket" && t != "" {
		over = " over the " + t + " transport"
	}
	fmt.Fprintf(stderr, "* connected to %s (%s)%s\n", client.URL(), wire, over)
	for _, room := range f.join {
		if err := client.Join(ctx, room); err != nil {
			fmt.Fprintf(stderr, "! join %s: %v\n", room, err)
			continue
		}
		fmt.Fprintf(stderr, "* joined room %s\n", room)
	}
	return s.loop(ctx, stdin, int(cfg.MaxMessageSize), f.requestTimeout)
}

// wireFormat is what a connection carries: the subprotocol the client
// offers (encryption picks its own) and its encryption, if any.
type wireFormat struct {
	subprotocol string // "" for raw frames
	encryption  string // "" when off, else e.g. "encrypted: secure profile, AES-256-GCM"
}

// wireOf works out the wire format of a client built from cfg, which
// NewClient has accepted: without encryption it is cfg.Subprotocol; with it,
// the profile's subprotocol (marmot.v1 for secure, synopsejson for compat).
func wireOf(cfg marmot.ClientConfig) wireFormat {
	if !cfg.EncryptionEnabled {
		return wireFormat{subprotocol: cfg.Subprotocol}
	}
	w := wireFormat{subprotocol: protocol.SubprotocolBinary}
	profile, _ := crypto.ParseProfile(cfg.EncryptionProfile)
	if profile == crypto.ProfileCompat {
		w.subprotocol = marmot.SubprotocolCompat
	}
	w.encryption = "encrypted: " + profile.String() + " profile"
	mode, err1 := crypto.ParseMode(cmp.Or(cfg.EncryptionMode, "cbc"))
	size, err2 := crypto.ParseKeySize(strconv.Itoa(cmp.Or(cfg.EncryptionKeySize, 256)))
	if err1 == nil && err2 == nil {
		w.encryption += fmt.Sprintf(", AES-%s-%s", size, strings.ToUpper(mode.String()))
	}
	return w
}

// envelope reports whether the connection carries marmot envelopes, and so
// named commands and requests.
func (w wireFormat) envelope() bool {
	_, ok := protocol.Lookup(w.subprotocol)
	return ok
}

// String is the wire format as "* connected to" shows it.
func (w wireFormat) String() string {
	s := subprotocolName(w.subprotocol)
	if w.encryption != "" {
		s += ", " + w.encryption
	}
	return s
}

// session is one interactive connection: the callbacks print what happens and
// loop turns stdin lines into messages.
type session struct {
	client *marmot.Client
	out    io.Writer // incoming messages
	errw   io.Writer // connection events
	wire   wireFormat

	quitting      atomic.Bool // set once the user asked to leave
	connectedOnce atomic.Bool // set at the first StateConnected
	connects      atomic.Int64
	lastCode      atomic.Int64
	ended         chan struct{} // the connection is gone for good
}

func (s *session) events() marmot.ClientEvents {
	return marmot.ClientEvents{
		OnHandleCommand: s.print,
		OnRecover: func(room string, recovered bool, missed int, reason string) {
			printRecover(s.out, room, recovered, missed, reason)
		},
		OnDisconnect: func(r *marmot.CloseError) {
			s.lastCode.Store(int64(r.Code))
			// The error says what happened, in words and with the code:
			// "connection lost without a close frame (1006)", "you
			// disconnected (1000)", "closed by the server with code 1001
			// (server shutting down)".
			fmt.Fprintln(s.errw, "* "+strings.TrimPrefix(r.Error(), "marmot: "))
		},
		OnStateChange: func(old, new marmot.ClientState) {
			if new == marmot.StateConnected {
				s.connectedOnce.Store(true)
			}
			fmt.Fprintf(s.errw, "* state %s -> %s\n", old, new)
			// Disconnected and Error are final unless the user reconnects,
			// which this tool does not; the loop must end then.
			if new == marmot.StateDisconnected || new == marmot.StateError {
				select {
				case s.ended <- struct{}{}:
				default:
				}
			}
		},
		OnConnect: func() {
			if s.connects.Add(1) > 1 {
				fmt.Fprintf(s.errw, "* reconnected to %s\n", s.client.URL())
			}
		},
		OnReconnecting: func(attempt int, delay time.Duration) {
			to := ""
			if len(s.client.Config().FailoverURLs) > 0 {
				to = " to " + s.client.URL()
			}
			fmt.Fprintf(s.errw, "* %s attempt %d in %v%s\n", s.attemptKind(), attempt, delay.Round(time.Millisecond), to)
		},
		OnReconnectFailed: func(attempt int, err error) {
			fmt.Fprintf(s.errw, "* %s attempt %d failed: %v\n", s.attemptKind(), attempt, err)
		},
		OnError: func(err error) {
			if s.quitting.Load() && errors.Is(err, marmot.ErrDisconnected) {
				return // our own goodbye, not news
			}
			fmt.Fprintf(s.errw, "! %v\n", err)
		},
	}
}

// attemptKind names the attempts OnReconnecting and OnReconnectFailed
// report: with --retry-first-connect, those before the first connection
// are retries of the connect, attempt 0 being the first try.
func (s *session) attemptKind() string {
	if s.connectedOnce.Load() {
		return "reconnect"
	}
	return "connect"
}

// print shows one incoming message. Text goes out as it is; bytes that are
// not UTF-8 are shown in hex so the terminal stays sane.
func (s *session) print(m *marmot.Message) {
	if m.Room != "" {
		printRoom(s.out, m)
		return
	}
	var b strings.Builder
	b.WriteString("< ")
	if m.Name != "" {
		b.WriteString("[" + m.Name + "] ")
	}
	if m.IsRequest() {
		// Nothing here can answer it; an error reply beats a requester
		// waiting for its deadline.
		_ = m.ReplyError(501, "marmot connect does not answer requests")
		b.WriteString("(request, answered 501) ")
	}
	writePayload(&b, m.Payload)
	fmt.Fprintln(s.out, b.String())
}

func writePayload(b *strings.Builder, p []byte) {
	if utf8.Valid(p) {
		b.Write(p)
		return
	}
	fmt.Fprintf(b, "[%d bytes] %s", len(p), hex.EncodeToString(p))
}

// loop sends stdin lines until EOF, ctx's end or the connection's end.
func (s *session) loop(ctx context.Context, stdin io.Reader, maxLine int, reqTimeout time.Duration) int {
	lines := make(chan string)
	readDone := make(chan error, 1)
	stop := make(chan struct{})
	defer close(stop)
	// Reading stdin blocks without a way to cancel it, so it gets its own
	// goroutine; it ends at EOF, or at its next line once stop is closed.
	go func() {
		sc := bufio.NewScanner(stdin)
		sc.Buffer(make([]byte, 0, 64<<10), maxLine+1)
		for sc.Scan() {
			select {
			case lines <- sc.Text():
			case <-stop:
				return
			}
		}
		readDone <- sc.Err()
	}()

	envelope := s.wire.envelope()
	for {
		select {
		case line := <-lines:
			s.send(ctx, line, envelope, reqTimeout)
		case err := <-readDone:
			if err != nil {
				fmt.Fprintf(s.errw, "marmot connect: reading stdin: %v\n", err)
				s.disconnect(ctx)
				return exitFailure
			}
			s.disconnect(ctx)
			return exitOK
		case <-ctx.Done():
			s.disconnect(ctx)
			return exitOK
		case <-s.ended:
			if s.lastCode.Load() == marmot.CloseNormal {
				return exitOK
			}
			return exitFailure
		}
	}
}

func (s *session) disconnect(ctx context.Context) {
	s.quitting.Store(true)
	dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), disconnectTimeout)
	defer cancel()
	if err := s.client.Disconnect(dctx); err != nil {
		fmt.Fprintf(s.errw, "! disconnect: %v\n", err)
	}
}

func (s *session) send(ctx context.Context, line string, envelope bool, reqTimeout time.Duration) {
	if line == "" {
		return
	}
	if room, text, ok := strings.Cut(line, " "); strings.HasPrefix(room, "@") && ok {
		if !envelope {
			fmt.Fprintf(s.errw, "! %s not sent: %s\n", room, s.noEnvelopeHint("rooms"))
			return
		}
		// A refusal comes back later, through OnError.
		s.report("publish to "+room[1:], s.client.Publish(room[1:], []byte(text)))
		return
	}
	verb, rest, _ := strings.Cut(line, " ")
	if verb != "/cmd" && verb != "/req" {
		s.report("send", s.client.Send([]byte(line)))
		return
	}
	if !envelope {
		// Sent as data, the line would come back from an echo server as
		// if the command had been ignored; say what is missing instead.
		fmt.Fprintf(s.errw, "! %s not sent: %s\n", verb, s.noEnvelopeHint("commands and requests"))
		return
	}
	name, payload, _ := strings.Cut(rest, " ")
	if name == "" {
		fmt.Fprintf(s.errw, "! usage: %s NAME [payload]\n", verb)
		return
	}
	if verb == "/cmd" {
		s.report("send command", s.client.SendCommand(name, []byte(payload)))
		return
	}
	rctx, cancel := context.WithTimeout(ctx, reqTimeout)
	defer cancel()
	reply, err := s.client.Request(rctx, name, []byte(payload))
	if err != nil {
		s.report("request "+name, err)
		return
	}
	var b strings.Builder
	b.WriteString("< [reply] ")
	writePayload(&b, reply)
	fmt.Fprintln(s.out, b.String())
}

// noEnvelopeHint explains why what (commands and requests, rooms) cannot
// work on this connection and what to do about it.
func (s *session) noEnvelopeHint(what string) string {
	if s.wire.subprotocol == marmot.SubprotocolCompat {
		return what + " need a marmot envelope, and the compat encryption profile (" +
			marmot.SubprotocolCompat + ") carries raw messages only; use the secure profile " +
			"(--encrypt-profile secure, the default) to use them"
	}
	return what + " need a marmot envelope, and this connection is raw; " +
		"reconnect with --subprotocol " + protocol.SubprotocolBinary + " (or " + protocol.SubprotocolJSON + ") to use them"
}

func (s *session) report(what string, err error) {
	if err != nil {
		fmt.Fprintf(s.errw, "! %s: %v\n", what, err)
	}
}

// urlsFlag collects repeated --url flags.
type urlsFlag []string

func (u *urlsFlag) String() string { return strings.Join(*u, " ") }

func (u *urlsFlag) Set(v string) error {
	if v = strings.TrimSpace(v); v == "" {
		return errors.New("empty URL")
	}
	*u = append(*u, v)
	return nil
}
