// Package dashboard is the live web dashboard of a marmot server: the
// seed's counters, a messages/s chart, the client list, send / broadcast /
// disconnect, an event log, and a client page that uses marmot.js. The
// root package's NewDashboard adapts a *marmot.Server to Source.
//
// Nothing here runs on the message path: the dashboard samples Source (its
// atomic counters and client list) at most once per Interval, and only
// while a page is watching; its memory is bounded (History samples, Events
// log entries, MaxClients rows, MaxRooms rooms scanned).
package dashboard

import (
	"crypto/subtle"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Stats are the counters the dashboard shows (the seed's and marmot's).
type Stats struct {
	ClientCount            int    `json:"clientCount"`
	TotalConnections       int64  `json:"totalConnections"`
	TotalActiveConnections int64  `json:"totalActiveConnections"`
	TotalBytesReceived     int64  `json:"totalBytesReceived"`
	TotalBytesSent         int64  `json:"totalBytesSent"`
	TotalMessagesReceived  int64  `json:"totalMessagesReceived"`
	TotalMessagesSent      int64  `json:"totalMessagesSent"`
	RefusedConnections     int64  `json:"refusedConnections"`
	HandshakeFailures      int64  `json:"handshakeFailures"`
	SlowConsumerCloses     int64  `json:"slowConsumerCloses"`
	ActorRestarts          int64  `json:"actorRestarts"`
	ConnectionsRemaining   int    `json:"connectionsRemaining"`
	State                  string `json:"state"`
}

// Client is one row of the client list.
type Client struct {
	ID            uint64    `json:"id"`
	IP            string    `json:"ip"`
	Transport     string    `json:"transport"`
	Subprotocol   string    `json:"subprotocol"`
	ConnectedAt   time.Time `json:"connectedAt"`
	BytesReceived int64     `json:"bytesReceived"`
	BytesSent     int64     `json:"bytesSent"`
	MessagesIn    int64     `json:"messagesReceived"`
	MessagesOut   int64     `json:"messagesSent"`
	Rooms         []string  `json:"rooms"`
}

// Source is what the dashboard needs from a server.
type Source interface {
	Stats() Stats
	Clients() []Client
	Rooms() []string
	Members(room string) []uint64
	SendToClient(id uint64, data []byte) error
	Broadcast(data []byte) (int, error)
	Disconnect(id uint64, code int, reason string) error
}

// Options configure a dashboard.
type Options struct {
	// Token, when set, is required from every request: the header
	// "Authorization: Bearer TOKEN", or the query parameter token (the
	// pages carry it in their links and their own requests).
	Token string
	// LoopbackOnly refuses (403) requests whose peer address is not a
	// loopback address.
	LoopbackOnly bool
	// EndpointPath is the server's WebSocket path, which the client page
	// connects to and loads marmot.js from. Default "/websocket".
	EndpointPath string
	// Interval between samples while a page watches. Default 1s.
	Interval time.Duration
	// History is how many samples the messages/s chart keeps. Default 120.
	History int
	// Events is how many log entries are kept. Default 200.
	Events int
	// MaxClients bounds the rows of the client list. Default 500.
	MaxClients int
	// MaxRooms bounds the rooms scanned for the clients' memberships. Default 200.
	MaxRooms int
}

// Event is one entry of the live log.
type Event struct {
	Seq  uint64    `json:"seq"`
	Time time.Time `json:"time"`
	Text string    `json:"text"`
}

// Point is one sample of the chart.
type Point struct {
	Time  time.Time `json:"time"`
	InPS  float64   `json:"in"`  // messages received per second
	OutPS float64   `json:"out"` // messages sent per second
}

// Snapshot is what a page receives on every sample.
type Snapshot struct {
	Stats     Stats    `json:"stats"`
	Clients   []Client `json:"clients"`
	Truncated bool     `json:"truncated"`
	Chart     []Point  `json:"chart"`
	Events    []Event  `json:"events"`
}

// Dashboard is an http.Handler serving the pages and their API under
// whatever prefix it is mounted at (use http.StripPrefix).
type Dashboard struct {
	src  Source
	opts Options

	mu       sync.Mutex
	last     time.Time // of the last sample
	lastSt   Stats
	snap     Snapshot
	known    map[uint64]Client
	chart    []Point
	events   []Event
	eventSeq uint64
}

// New returns a dashboard over src.
func New(src Source, opts Options) *Dashboard {
	if opts.EndpointPath == "" {
		opts.EndpointPath = "/websocket"
	}
	if opts.Interval <= 0 {
		opts.Interval = time.Second
	}
	if opts.History <= 0 {
		opts.History = 120
	}
	if opts.Events <= 0 {
		opts.Events = 200
	}
	if opts.MaxClients <= 0 {
		opts.MaxClients = 500
	}
	if opts.MaxRooms <= 0 {
		opts.MaxRooms = 200
	}
	return &Dashboard{src: src, opts: opts}
}

//go:embed dashboard.html
var dashboardPage []byte

//go:embed client.html
var clientPage []byte

// commonStyle is the two pages' shared CSS, put in their <style> when served.
//
//go:embed common.css
var commonStyle string

// ServeHTTP routes: "/" the dashboard, "/client" the client page,
// "/api/snapshot" (GET, ?since=event seq), "/api/stream" (GET, Server-Sent
// Events, a snapshot per sample), "/api/send", "/api/broadcast",
// "/api/disconnect" (POST, JSON, header X-Marmot-Dashboard: 1).
func (d *Dashboard) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !d.allowed(w, r) {
		return
	}
	path := "/" + strings.TrimLeft(r.URL.Path, "/")
	switch path {
	case "/", "/index.html":
		d.page(w, r, dashboardPage)
	case "/client":
		d.page(w, r, clientPage)
	case "/api/snapshot":
		if !method(w, r, http.MethodGet) {
			return
		}
		since, _ := strconv.ParseUint(r.URL.Query().Get("since"), 10, 64)
		writeJSON(w, http.StatusOK, d.snapshot(since))
	case "/api/stream":
		if !method(w, r, http.MethodGet) {
			return
		}
		d.stream(w, r)
	case "/api/send", "/api/broadcast", "/api/disconnect":
		d.action(w, r, strings.TrimPrefix(path, "/api/"))
	default:
		http.NotFound(w, r)
	}
}

// allowed applies LoopbackOnly and Token; it answers refusals itself.
func (d *Dashboard) allowed(w http.ResponseWriter, r *http.Request) bool {
	if d.opts.LoopbackOnly && !loopback(r.RemoteAddr) {
		http.Error(w, "marmot: the dashboard answers only on loopback (give it a token to open it wider)", http.StatusForbidden)
		return false
	}
	if d.opts.Token == "" {
		return true
	}
	got := r.URL.Query().Get("token")
	if h, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer "); ok {
		got = h
	}
	if subtle.ConstantTimeCompare([]byte(got), []byte(d.opts.Token)) != 1 {
		w.Header().Set("WWW-Authenticate", `Bearer realm="marmot dashboard"`)
		http.Error(w, "marmot: dashboard token required", http.StatusUnauthorized)
		return false
	}
	return true
}

func loopback(remote string) bool {
	host, _, err := net.SplitHostPort(remote)
	if err != nil {
		host = remote
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func method(w http.ResponseWriter, r *http.Request, m string) bool {
	if r.Method == m || (m == http.MethodGet && r.Method == http.MethodHead) {
		return true
	}
	w.Header().Set("Allow", m)
	http.Error(w, "marmot: method not allowed", http.StatusMethodNotAllowed)
	return false
}

// page serves an embedded page with the endpoint path filled in.
func (d *Dashboard) page(w http.ResponseWriter, r *http.Request, body []byte) {
	if !method(w, r, http.MethodGet) {
		return
	}
	ep, _ := json.Marshal(d.opts.EndpointPath)
	out := strings.ReplaceAll(string(body), `"__ENDPOINT__"`, string(ep))
	out = strings.Replace(out, "/*__STYLE__*/", commonStyle, 1)
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Referrer-Policy", "no-referrer") // the token may be in the URL
	_, _ = w.Write([]byte(out))
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// sample refreshes the shared snapshot when it is older than half the
// interval, so any number of watching pages cost one sample per interval.
func (d *Dashboard) sample(now time.Time) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if !d.last.IsZero() && now.Sub(d.last) < d.opts.Interval/2 {
		return
	}
	st := d.src.Stats()
	clients := d.src.Clients()
	sort.Slice(clients, func(i, j int) bool { return clients[i].ID < clients[j].ID })
	truncated := len(clients) > d.opts.MaxClients
	if truncated {
		clients = clients[:d.opts.MaxClients]
	}
	d.fillRooms(clients)
	if !d.last.IsZero() {
		dt := now.Sub(d.last).Seconds()
		if dt > 0 {
			d.chart = append(d.chart, Point{Time: now,
				InPS:  max(0, float64(st.TotalMessagesReceived-d.lastSt.TotalMessagesReceived)/dt),
				OutPS: max(0, float64(st.TotalMessagesSent-d.lastSt.TotalMessagesSent)/dt)})
			if len(d.chart) > d.opts.History {
				d.chart = append(d.chart[:0], d.chart[len(d.chart)-d.opts.History:]...)
			}
		}
	}
	d.diffClients(clients, truncated)
	d.last, d.lastSt = now, st
	d.snap = Snapshot{Stats: st, Clients: clients, Truncated: truncated}
}

// fillRooms sets each client's rooms from at most MaxRooms rooms.
func (d *Dashboard) fillRooms(clients []Client) {
	rooms := d.src.Rooms()
	if len(rooms) > d.opts.MaxRooms {
		rooms = rooms[:d.opts.MaxRooms]
	}
	idx := make(map[uint64]int, len(clients))
	for i := range clients {
		idx[clients[i].ID] = i
	}
	for _, room := range rooms {
		for _, id := range d.src.Members(room) {
			if i, ok := idx[id]; ok {
				clients[i].Rooms = append(clients[i].Rooms, room)
			}
		}
	}
}

// diffClients logs the connections and disconnections seen since the
// last sample (one that came and went between two samples is not seen).
func (d *Dashboard) diffClients(clients []Client, truncated bool) {
	now := make(map[uint64]Client, len(clients))
	for _, c := range clients {
		now[c.ID] = c
	}
	if d.known != nil {
		for _, c := range clients {
			if _, ok := d.known[c.ID]; !ok {
				d.logLocked(fmt.Sprintf("client %d connected from %s (%s, %s)", c.ID, c.IP, c.Transport, subName(c.Subprotocol)))
			}
		}
		if !truncated {
			gone := make([]uint64, 0)
			for id := range d.known {
				if _, ok := now[id]; !ok {
					gone = append(gone, id)
				}
			}
			sort.Slice(gone, func(i, j int) bool { return gone[i] < gone[j] })
			for _, id := range gone {
				d.logLocked(fmt.Sprintf("client %d disconnected", id))
			}
		}
	}
	d.known = now
}

func subName(s string) string {
	if s == "" {
		return "raw"
	}
	return s
}

// Log adds an entry to the live event log.
func (d *Dashboard) Log(text string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.logLocked(text)
}

func (d *Dashboard) logLocked(text string) {
	d.eventSeq++
	d.events = append(d.events, Event{Seq: d.eventSeq, Time: time.Now(), Text: text})
	if len(d.events) > d.opts.Events {
		d.events = append(d.events[:0], d.events[len(d.events)-d.opts.Events:]...)
	}
}

// snapshot samples (if due) and returns the state, with the events after since.
func (d *Dashboard) snapshot(since uint64) Snapshot {
	d.sample(time.Now())
	d.mu.Lock()
	defer d.mu.Unlock()
	s := d.snap
	s.Chart = append([]Point(nil), d.chart...)
	for _, e := range d.events {
		if e.Seq > since {
			s.Events = append(s.Events, e)
		}
	}
	return s
}

// stream sends a snapshot as a Server-Sent Event every Interval until the
// page goes away.
func (d *Dashboard) stream(w http.ResponseWriter, r *http.Request) {
	rc := http.NewResponseController(w)
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	var since uint64
	t := time.NewTicker(d.opts.Interval)
	defer t.Stop()
	for {
		s := d.snapshot(since)
		if n := len(s.Events); n > 0 {
			since = s.Events[n-1].Seq
		}
		b, _ := json.Marshal(s)
		if _, err := fmt.Fprintf(w, "data: %s\n\n", b); err != nil {
			return
		}
		if err := rc.Flush(); err != nil {
			return
		}
		select {
		case <-r.Context().Done():
			return
		case <-t.C:
		}
	}
}

// actionRequest is the body of the POST actions.
type actionRequest struct {
	ID   uint64 `json:"id"`
	Text string `json:"text"`
}

// ErrBadAction is returned (as a 400's text) for an action the dashboard cannot carry out.
var ErrBadAction = errors.New("marmot: bad dashboard action")

func (d *Dashboard) action(w http.ResponseWriter, r *http.Request, name string) {
	if !method(w, r, http.MethodPost) {
		return
	}
	// A custom header cannot be sent cross-site without a CORS preflight,
	// which the dashboard never grants: this stops forged form posts.
	if r.Header.Get("X-Marmot-Dashboard") != "1" {
		http.Error(w, "marmot: missing X-Marmot-Dashboard header", http.StatusForbidden)
		return
	}
	var req actionRequest
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<20)).Decode(&req); err != nil {
		http.Error(w, fmt.Sprintf("%v: %v", ErrBadAction, err), http.StatusBadRequest)
		return
	}
	var (
		err error
		n   int
		log string
	)
	switch name {
	case "send":
		err = d.src.SendToClient(req.ID, []byte(req.Text))
		log = fmt.Sprintf("sent %d bytes to client %d", len(req.Text), req.ID)
	case "broadcast":
		n, err = d.src.Broadcast([]byte(req.Text))
		log = fmt.Sprintf("broadcast %d bytes to %d clients", len(req.Text), n)
	case "disconnect":
		err = d.src.Disconnect(req.ID, 1000, "disconnected from the dashboard")
		log = fmt.Sprintf("disconnected client %d", req.ID)
	}
	if err != nil {
		d.Log(fmt.Sprintf("%s failed: %v", name, err))
		http.Error(w, err.Error(), http.StatusNotFound)
		return
	}
	d.Log(log)
	writeJSON(w, http.StatusOK, map[string]int{"reached": n})
}
