package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"runtime"
	"runtime/pprof"
	"sync"
	"syscall"
	"time"

	"github.com/lxzan/gws"

	"github.com/marmotws/marmot"
	"github.com/marmotws/marmot/cluster"
	"github.com/marmotws/marmot/crypto"
	"github.com/marmotws/marmot/test/internal/gorillahub"
)

// Server modes.
const (
	modeEcho      = "echo"      // every message goes back to its sender
	modeBroadcast = "broadcast" // every message goes to every other client
)

var impls = []string{"marmot", "gorilla", "gws"}

// serverOpts configures a server under test.
type serverOpts struct {
	Impl    string
	Addr    string
	Mode    string
	Encrypt bool   // marmot only: secure profile, AES-256-GCM
	Key     string // the passphrase when Encrypt
	KDFIter uint32 // PBKDF2 iterations when Encrypt; 0: marmot's default
	History int    // marmot: messages of history each room keeps (0: none)
	// Compress negotiates permessage-deflate without context takeover,
	// level 1, messages from compressThreshold bytes (gorilla: all).
	Compress bool
	Limits   bool // marmot: per-connection rate limits on, never reached
	// Cluster, when its Name is set, makes the marmot server a node of a
	// protoactor cluster (package cluster, automanaged provider).
	Cluster clusterOpts
}

// compressThreshold is the smallest message the servers (but gorilla, which
// has no threshold) and the clients compress with --compress.
const compressThreshold = 128

// testServer is one running server under test.
type testServer interface {
	URL() string
	Close()
}

func startServer(o serverOpts) (testServer, error) {
	if o.Mode != modeEcho && o.Mode != modeBroadcast {
		return nil, fmt.Errorf("unknown mode %q (echo or broadcast)", o.Mode)
	}
	if o.Encrypt && o.Impl != "marmot" {
		return nil, fmt.Errorf("--encrypt is marmot's; %s has no encryption", o.Impl)
	}
	switch o.Impl {
	case "marmot":
		return startMarmot(o)
	case "gorilla":
		return startGorilla(o)
	case "gws":
		return startGWS(o)
	}
	return nil, fmt.Errorf("unknown implementation %q (marmot, gorilla or gws)", o.Impl)
}

// serverMain is "load server": it starts one server, prints its URL on
// stdout, and runs until stdin closes or SIGINT/SIGTERM arrives.
func serverMain(args []string) error {
	fs := flag.NewFlagSet("server", flag.ContinueOnError)
	var o serverOpts
	fs.StringVar(&o.Impl, "impl", "marmot", "implementation: marmot, gorilla or gws")
	fs.StringVar(&o.Addr, "addr", "127.0.0.1:0", "listen address")
	fs.StringVar(&o.Mode, "mode", modeEcho, "echo or broadcast")
	fs.BoolVar(&o.Encrypt, "encrypt", false, "marmot: secure-profile AES-256-GCM encryption")
	fs.StringVar(&o.Key, "key", defaultKey, "marmot: encryption passphrase with --encrypt")
	fs.BoolVar(&o.Compress, "compress", false, "permessage-deflate, no context takeover, level 1")
	fs.BoolVar(&o.Limits, "limits", false, "marmot: check per-connection message and byte rates on every message (set far above the load, so only their cost shows)")
	o.Cluster.register(fs)
	fs.IntVar(&o.History, "history-size", 0, "marmot: messages of history each room keeps (rooms: clients join and publish with marmot.v1)")
	kdfIter := fs.Uint("kdf-iterations", 0, "marmot: PBKDF2 iterations with --encrypt (0: marmot's default; clients accept 100000 and up)")
	cpuProfile := fs.String("cpuprofile", "", "write a CPU profile of the server's whole run to this file")
	memProfile := fs.String("memprofile", "", "write an allocation profile (allocs) to this file on exit")
	if err := fs.Parse(args); err != nil {
		return err
	}
	o.KDFIter = uint32(*kdfIter)
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err != nil {
			return err
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer func() { pprof.StopCPUProfile(); _ = f.Close() }()
	}
	s, err := startServer(o)
	if err != nil {
		return err
	}
	fmt.Println(s.URL())

	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGINT, syscall.SIGTERM)
	stdinClosed := make(chan struct{})
	go func() { _, _ = io.Copy(io.Discard, os.Stdin); close(stdinClosed) }()
	select {
	case <-stop:
	case <-stdinClosed:
	}
	signal.Stop(stop)
	if *memProfile != "" {
		if err := writeHeapProfile(*memProfile); err != nil {
			fmt.Fprintln(os.Stderr, "memprofile:", err)
		}
	}
	s.Close()
	return nil
}

func writeHeapProfile(path string) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	runtime.GC()
	if err := pprof.Lookup("allocs").WriteTo(f, 0); err != nil {
		_ = f.Close()
		return err
	}
	return f.Close()
}

const defaultKey = "marmot-load-test-key"

// ---------------------------------------------------------------- marmot

type marmotServer struct {
	srv  *marmot.Server
	node *cluster.Node // set when the server is a cluster node
}

func startMarmot(o serverOpts) (testServer, error) {
	var srv *marmot.Server
	var node *cluster.Node
	// Like the gws handler (which closes its message), the echo gives the
	// message back for reuse once replied.
	handler := func(m *marmot.Message) { _ = m.Reply(m.Payload); m.Release() }
	if o.Mode == modeBroadcast {
		handler = func(m *marmot.Message) { _, _ = srv.BroadcastExcept(m.ClientID, m.Payload) }
		if o.Cluster.Name != "" {
			// Every client of every node, the sender included (a
			// cluster-wide broadcast has no "except").
			handler = func(m *marmot.Message) { _, _ = node.Broadcast(context.Background(), m.Payload) }
		}
	}
	cfg := marmot.ServerConfig{
		Addr:               o.Addr,
		MaxConnections:     -1,
		HandlerConcurrency: -1,
		Logger:             slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
		LogLevel:           slog.LevelWarn,
		ServerEvents:       marmot.ServerEvents{OnHandleCommand: handler},
		RoomHistory:        marmot.HistoryConfig{Size: o.History},
		Compression:        marmot.Compression{Enabled: o.Compress, Threshold: compressThreshold, Level: 1},
	}
	if o.Limits {
		cfg.Limits = marmot.Limits{MessagesPerSecond: 1e9, BytesPerSecond: 1e12}
	}
	if o.Encrypt {
		// Mode and key size are spelled out, not left to defaults: the
		// load clients accept exactly AES-256-GCM and nothing else.
		cfg.EncryptionConfig = marmot.EncryptionConfig{
			EncryptionEnabled: true,
			EncryptionKey:     o.Key,
			EncryptionProfile: "secure",
			EncryptionMode:    "gcm",
			EncryptionKeySize: 256,
			EncryptionKDF:     crypto.KDFParams{Iterations: o.KDFIter},
		}
	}
	if o.Cluster.Name != "" {
		var err error
		if node, err = o.Cluster.start(cfg); err != nil {
			return nil, err
		}
		srv = node.Server()
		return &marmotServer{srv: srv, node: node}, nil
	}
	srv, err := marmot.NewServer(cfg)
	if err != nil {
		return nil, err
	}
	if err := srv.Start(context.Background()); err != nil {
		return nil, err
	}
	return &marmotServer{srv: srv}, nil
}

func (m *marmotServer) URL() string { return m.srv.URL() }

func (m *marmotServer) Close() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if m.node != nil {
		_ = m.node.Stop(ctx)
		return
	}
	_ = m.srv.Stop(ctx)
}

// ---------------------------------------------------------------- gorilla

// maxMessage is every server's read limit.
const maxMessage = gorillahub.MaxMessage

// startGorilla starts the plain gorilla/websocket baseline (the chat
// example's design; see test/internal/gorillahub).
func startGorilla(o serverOpts) (testServer, error) {
	mode := gorillahub.Echo
	if o.Mode == modeBroadcast {
		mode = gorillahub.Relay
	}
	return gorillahub.StartWith(o.Addr, mode, gorillahub.Options{Compression: o.Compress}, func(format string, args ...any) {
		fmt.Fprintf(os.Stderr, format+"\n", args...)
	})
}

// ---------------------------------------------------------------- gws

// gwsServer is an idiomatic lxzan/gws server: an Upgrader, one ReadLoop
// goroutine per connection, echo with WriteMessage from OnMessage, broadcast
// with one gws.Broadcaster per message. A single ticker pings every client
// and a read deadline, refreshed by pongs, drops the silent ones.
type gwsServer struct {
	mode     string
	upgrader *gws.Upgrader
	srv      *http.Server
	ln       net.Listener

	mu       sync.Mutex
	sessions map[*gws.Conn]struct{}

	quit chan struct{}
	wg   sync.WaitGroup // Serve, the pinger and every ReadLoop
}

const (
	gwsPingInterval = 54 * time.Second
	gwsPongWait     = 60 * time.Second
)

func startGWS(o serverOpts) (testServer, error) {
	ln, err := net.Listen("tcp", o.Addr)
	if err != nil {
		return nil, err
	}
	s := &gwsServer{mode: o.Mode, ln: ln, sessions: make(map[*gws.Conn]struct{}), quit: make(chan struct{})}
	opt := &gws.ServerOption{ReadMaxPayloadSize: maxMessage}
	if o.Compress {
		opt.PermessageDeflate = gws.PermessageDeflate{Enabled: true, Level: 1, Threshold: compressThreshold}
	}
	s.upgrader = gws.NewUpgrader(s, opt)
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		socket, err := s.upgrader.Upgrade(w, r)
		if err != nil {
			return
		}
		s.wg.Add(1)
		go func() { defer s.wg.Done(); socket.ReadLoop() }()
	})
	s.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	s.wg.Add(2)
	go func() {
		defer s.wg.Done()
		if err := s.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			fmt.Fprintln(os.Stderr, "gws:", err)
		}
	}()
	go func() { defer s.wg.Done(); s.pinger() }()
	return s, nil
}

func (s *gwsServer) URL() string { return "ws://" + s.ln.Addr().String() + "/" }

func (s *gwsServer) pinger() {
	t := time.NewTicker(gwsPingInterval)
	defer t.Stop()
	for {
		select {
		case <-s.quit:
			return
		case <-t.C:
			for _, c := range s.snapshot() {
				_ = c.WritePing(nil)
			}
		}
	}
}

func (s *gwsServer) snapshot() []*gws.Conn {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]*gws.Conn, 0, len(s.sessions))
	for c := range s.sessions {
		out = append(out, c)
	}
	return out
}

func (s *gwsServer) OnOpen(c *gws.Conn) {
	_ = c.SetReadDeadline(time.Now().Add(gwsPongWait))
	s.mu.Lock()
	s.sessions[c] = struct{}{}
	s.mu.Unlock()
}

func (s *gwsServer) OnClose(c *gws.Conn, _ error) {
	s.mu.Lock()
	delete(s.sessions, c)
	s.mu.Unlock()
}

func (s *gwsServer) OnPing(c *gws.Conn, payload []byte) { _ = c.WritePong(payload) }

func (s *gwsServer) OnPong(c *gws.Conn, _ []byte) {
	_ = c.SetReadDeadline(time.Now().Add(gwsPongWait))
}

func (s *gwsServer) OnMessage(c *gws.Conn, m *gws.Message) {
	defer m.Close()
	if s.mode == modeEcho {
		_ = c.WriteMessage(m.Opcode, m.Bytes())
		return
	}
	b := gws.NewBroadcaster(gws.OpcodeBinary, m.Bytes())
	defer b.Close()
	s.mu.Lock()
	defer s.mu.Unlock()
	for peer := range s.sessions {
		if peer != c {
			_ = b.Broadcast(peer)
		}
	}
}

// Close stops accepting, says 1001 to every client and waits for their read
// loops, cutting the sockets that have not closed after 5 s.
func (s *gwsServer) Close() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_ = s.srv.Shutdown(ctx)
	close(s.quit)
	conns := s.snapshot()
	for _, c := range conns {
		_ = c.WriteClose(1001, nil)
	}
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		for _, c := range s.snapshot() {
			_ = c.NetConn().Close()
		}
		<-done
	}
}
