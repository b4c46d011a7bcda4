// Package httpconn is marmot's HTTP fallback transport (docs/HTTP.md): a
// session opened by a POST, messages client → server in POST bodies and
// server → client in long-poll GET answers, acknowledged so that a lost
// poll loses nothing. Server sessions ([Conn]) and client connections
// ([ClientConn]) implement transport.Conn.
//
// Like internal/wsconn it knows nothing of actors, envelopes or
// encryption: it delivers data messages to a transport.Receiver, queues
// what it is given, bounds idle sessions and runs the closing handshake.
package httpconn

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Query parameters and headers of the protocol (docs/HTTP.md).
const (
	QueryTransport   = "transport"
	QuerySession     = "session"
	QuerySubprotocol = "subprotocol"
	HeaderSeq        = "X-Marmot-Seq"
	transportHTTP    = "http"
)

// Defaults of a zero Config.
const (
	DefaultIdleTimeout   = 60 * time.Second
	DefaultMaxQueueBytes = 4 << 20
	maxPollTimeout       = 25 * time.Second
	maxUnlimitedBody     = 16 << 20 // the body cap when messages are unlimited
	minBody              = 64 << 10
	pollAnswerBytes      = 1 << 20 // a poll answers with about this much at most
)

// CloseGrace bounds how long a session whose owner is done waits for its
// close record to be acknowledged.
const CloseGrace = 2 * time.Second

// Config sets a session's limits.
type Config struct {
	// WriteTimeout bounds a write waiting for the client to acknowledge
	// enough of the queue; <= 0: no bound.
	WriteTimeout time.Duration
	// IdleTimeout ends a session that has made no request for that long
	// (the connection's keep-alive); <= 0: DefaultIdleTimeout.
	IdleTimeout time.Duration
	// PollTimeout is how long a poll is held with nothing to deliver;
	// <= 0: min(25s, IdleTimeout/2).
	PollTimeout time.Duration
	// ReadLimit is the largest message; <= 0: unlimited (a send body is
	// still capped at 16 MiB).
	ReadLimit int64
	// MaxQueueBytes bounds the records the client has not acknowledged;
	// <= 0: DefaultMaxQueueBytes.
	MaxQueueBytes int64
}

func (c Config) withDefaults() Config {
	if c.IdleTimeout <= 0 {
		c.IdleTimeout = DefaultIdleTimeout
	}
	if c.PollTimeout <= 0 {
		c.PollTimeout = min(maxPollTimeout, c.IdleTimeout/2)
	}
	if c.MaxQueueBytes <= 0 {
		c.MaxQueueBytes = DefaultMaxQueueBytes
	}
	return c
}

// maxBody is the largest send body: one record of the largest message.
func (c Config) maxBody() int64 {
	if c.ReadLimit <= 0 {
		return maxUnlimitedBody
	}
	return max(c.ReadLimit+recHeader, minBody)
}

// Kind says what an HTTP request is to this transport.
type Kind int

const (
	NotHTTP Kind = iota // not this transport's: a WebSocket upgrade, or nothing
	Open                // opens a session
	Session             // a send or a poll of a session
)

// KindOf tells an HTTP-transport request from a WebSocket upgrade by its
// query (docs/HTTP.md section 1).
func KindOf(r *http.Request) Kind {
	if r.URL.RawQuery == "" {
		return NotHTTP
	}
	q := r.URL.Query()
	switch {
	case q.Has(QuerySession):
		return Session
	case q.Get(QueryTransport) == transportHTTP:
		return Open
	}
	return NotHTTP
}

// Offers reports whether an open request offers subprotocol sub.
func Offers(r *http.Request, sub string) bool {
	for _, s := range offered(r.URL.Query()) {
		if s == sub {
			return true
		}
	}
	return false
}

func offered(q url.Values) []string {
	var subs []string
	for _, v := range q[QuerySubprotocol] {
		for s := range strings.SplitSeq(v, ",") {
			if s = strings.TrimSpace(s); s != "" {
				subs = append(subs, s)
			}
		}
	}
	return subs
}

// Server holds one endpoint's sessions.
type Server struct {
	cfg          Config
	subprotocols []string
	checkOrigin  func(*http.Request) bool

	mu       sync.Mutex
	sessions map[string]*Conn
}

// NewServer returns a server offering subprotocols (in preference order).
// checkOrigin nil accepts opens without an Origin header and those whose
// Origin host equals Host, as a WebSocket upgrade does.
func NewServer(subprotocols []string, checkOrigin func(*http.Request) bool, cfg Config) *Server {
	if checkOrigin == nil {
		checkOrigin = sameOrigin
	}
	return &Server{cfg: cfg.withDefaults(), subprotocols: subprotocols, checkOrigin: checkOrigin, sessions: make(map[string]*Conn)}
}

func sameOrigin(r *http.Request) bool {
	o := r.Header.Get("Origin")
	if o == "" {
		return true
	}
	u, err := url.Parse(o)
	return err == nil && strings.EqualFold(u.Host, r.Host)
}

// Errors of Accept; the response has been written.
var (
	ErrMethod = errors.New("httpconn: wrong method")
	ErrOrigin = errors.New("httpconn: origin not allowed")
)

// openReply is the body of a successful open (docs/HTTP.md section 3).
type openReply struct {
	Session     string `json:"session"`
	Subprotocol string `json:"subprotocol"`
	PollTimeout int64  `json:"pollTimeout"`
	IdleTimeout int64  `json:"idleTimeout"`
	MaxBody     int64  `json:"maxBody"`
}

// CheckOpen answers 405 to an open that is not a POST, and reports
// whether r may go on. The hub checks it before admitting r.
func CheckOpen(w http.ResponseWriter, r *http.Request) bool {
	if r.Method == http.MethodPost {
		return true
	}
	w.Header().Set("Allow", http.MethodPost)
	http.Error(w, "marmot: an HTTP session is opened with POST", http.StatusMethodNotAllowed)
	return false
}

// Accept opens a session for r and answers it. On failure the response
// has been written.
func (s *Server) Accept(w http.ResponseWriter, r *http.Request) (*Conn, error) {
	if !CheckOpen(w, r) {
		return nil, ErrMethod
	}
	if !s.checkOrigin(r) {
		http.Error(w, "marmot: origin not allowed", http.StatusForbidden)
		return nil, ErrOrigin
	}
	sub := s.selectSubprotocol(offered(r.URL.Query()))
	var remote net.Addr
	if a, err := net.ResolveTCPAddr("tcp", r.RemoteAddr); err == nil {
		remote = a
	}
	c := newConn(s, newID(), sub, remote)
	s.mu.Lock()
	s.sessions[c.id] = c
	s.mu.Unlock()
	body, _ := json.Marshal(openReply{
		Session:     c.id,
		Subprotocol: sub,
		PollTimeout: s.cfg.PollTimeout.Milliseconds(),
		IdleTimeout: s.cfg.IdleTimeout.Milliseconds(),
		MaxBody:     s.cfg.maxBody(),
	})
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	// With its length known and flushed, the answer is complete before
	// the handler returns (the hub may run a handshake over the session
	// first): the client has it now.
	h.Set("Content-Length", strconv.Itoa(len(body)))
	// The server reads nothing more on this connection until the handler
	// returns, so the client must not send its next request on it.
	h.Set("Connection", "close")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(body)
	_ = http.NewResponseController(w).Flush()
	return c, nil
}

func (s *Server) selectSubprotocol(offers []string) string {
	for _, mine := range s.subprotocols {
		for _, o := range offers {
			if o == mine {
				return mine
			}
		}
	}
	return ""
}

// newID returns a session id: 16 bytes from crypto/rand, base64url.
func newID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // never fails (crypto/rand)
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// Serve answers a send or a poll of a session.
func (s *Server) Serve(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	s.mu.Lock()
	c := s.sessions[q.Get(QuerySession)]
	s.mu.Unlock()
	if c == nil {
		http.Error(w, "marmot: unknown or ended session", http.StatusNotFound)
		return
	}
	switch r.Method {
	case http.MethodGet:
		c.servePoll(w, r, q)
	case http.MethodPost:
		c.serveSend(w, r, q)
	default:
		w.Header().Set("Allow", "GET, POST")
		http.Error(w, "marmot: a session takes GET (poll) and POST (send)", http.StatusMethodNotAllowed)
	}
}

// Len returns the number of sessions.
func (s *Server) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.sessions)
}

func (s *Server) remove(c *Conn) {
	s.mu.Lock()
	if s.sessions[c.id] == c {
		delete(s.sessions, c.id)
	}
	s.mu.Unlock()
}
