package actors

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"path"
	"strconv"
	"strings"
	"time"
)

// Screening: every check a new connection must pass before it is
// upgraded, in one function (Hub.screen) that any transport's accept path
// calls (the WebSocket upgrade here; a long-poll session open the same
// way), and the post-admission bits (the identity, the expiry watch, the
// per-IP slot) in one place (Hub.admit, auth.go). Nothing here runs per
// message.

// Identity is who a connection authenticated as (ServerConfig.Authenticate
// or the first-message token): in ClientInfo, on every Message, in the
// rooms' OnJoin/OnPublish hooks (through ClientInfo), and, as enduser.id,
// on the connection's spans (the user id only, never the claims).
type Identity struct {
	// UserID names the user; it is what spans carry.
	UserID string
	// Claims are whatever the authenticator keeps (a JWT's claims).
	Claims map[string]any
	// ExpiresAt, when set, ends the connection with CloseTokenExpired
	// (4001) once it passes: the client reconnects with a fresh token.
	ExpiresAt time.Time
}

// Screening errors, testable with errors.Is. An Authenticate hook returns
// ErrForbidden (HTTP 403) or anything else (HTTP 401), ErrNoCredentials to
// let the client authenticate with its first message instead.
var (
	ErrOriginRefused = errors.New("marmot: origin not allowed")
	ErrUnauthorized  = errors.New("marmot: unauthorized")
	ErrForbidden     = errors.New("marmot: forbidden")
	ErrNoCredentials = fmt.Errorf("%w: no credentials", ErrUnauthorized)
	ErrTokenExpired  = errors.New("marmot: token expired")
	ErrIPLimit       = errors.New("marmot: too many connections from this address")
	ErrRateLimited   = errors.New("marmot: rate limit exceeded")
	// ErrNotAuthenticated: a send to a connection that has not finished
	// its first-message authentication.
	ErrNotAuthenticated = errors.New("marmot: client has not authenticated yet")
	ErrAuthRequired     = fmt.Errorf("%w: the first message must be a %s request", ErrUnauthorized, AuthRequestName)
	errOriginMalformed  = fmt.Errorf("%w: not a URL with a host", ErrOriginRefused)
)

// refusal is a connection screen turned away: the HTTP answer, the reason
// label for spans and metrics, and the error for OnError.
type refusal struct {
	status     int
	reason     string // marmot.refusal.reason
	text       string // the response body: says why, never secrets
	err        error
	retryAfter int // seconds, for 429 and 503
}

// admission is what screening let through: the slots it holds (given back
// by Hub.release) and who the client is.
type admission struct {
	slot    bool // a MaxConnections slot
	ip      ipKey
	ipHeld  bool
	ident   *Identity
	pending bool // the identity comes with the first message (auth.go)
}

// screen runs the checks of a new connection, cheapest first: origin,
// per-IP connection rate and count, MaxConnections, then authentication
// (so that failed attempts spend the address's rate). On a refusal every
// slot taken is given back.
func (h *Hub) screen(r *http.Request) (*admission, *refusal) {
	if ref := h.checkOrigin(r); ref != nil {
		h.originRefusals.Add(1)
		return nil, ref
	}
	adm := &admission{}
	if h.ips != nil {
		key, ref := h.ips.take(r.RemoteAddr)
		if ref != nil {
			h.ipRefusals.Add(1)
			return nil, ref
		}
		adm.ip, adm.ipHeld = key, true
	}
	if !h.admitSlot() {
		h.release(adm)
		h.refused.Add(1)
		return nil, &refusal{
			status: http.StatusServiceUnavailable, reason: "max_connections", retryAfter: 5,
			text: fmt.Sprintf("marmot: server at capacity (%d connections)", h.cfg.MaxConnections),
			err:  fmt.Errorf("%w: refused %s (limit %d)", ErrMaxConnections, r.RemoteAddr, h.cfg.MaxConnections),
		}
	}
	adm.slot = true
	if ref := h.authenticate(r, adm); ref != nil {
		h.release(adm)
		h.authRefusals.Add(1)
		return nil, ref
	}
	return adm, nil
}

// admitRequest screens r for any transport's accept path: admitted, or
// refused here (answered, traced on up, reported to OnError; screen has
// counted it). The caller gives the admission's slots back with release
// if it fails later, and hands it to the connection (teardown gives them
// back then).
func (h *Hub) admitRequest(w http.ResponseWriter, r *http.Request, up *upgradeSpan) (*admission, bool) {
	adm, ref := h.screen(r)
	if ref != nil {
		up.end(ref.reason, ref.err)
		writeRefusal(w, ref)
		h.reportError(0, ref.err)
		return nil, false
	}
	return adm, true
}

// release gives back the slots adm holds; a second call does nothing.
func (h *Hub) release(adm *admission) {
	if adm == nil {
		return
	}
	if adm.slot {
		adm.slot = false
		h.admitted.Add(-1)
	}
	if adm.ipHeld {
		adm.ipHeld = false
		h.ips.release(adm.ip)
	}
}

// writeRefusal answers a refused request.
func writeRefusal(w http.ResponseWriter, ref *refusal) {
	if ref.retryAfter > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(ref.retryAfter))
	}
	if ref.status == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Bearer realm="marmot"`)
	}
	http.Error(w, ref.text, ref.status)
}

// authenticate runs the Authenticate hook. Without one every client is
// let in anonymously, unless AuthenticateToken asks for a first-message
// token from everyone.
func (h *Hub) authenticate(r *http.Request, adm *admission) *refusal {
	a := h.cfg.Authenticate
	if a == nil {
		adm.pending = h.cfg.AuthenticateToken != nil
		return nil
	}
	ident, err := h.callAuth(func() (*Identity, error) { return a(r) })
	if err == nil && ident == nil {
		ident = &Identity{}
	}
	if err == nil && !ident.ExpiresAt.IsZero() && !ident.ExpiresAt.After(time.Now()) {
		err = fmt.Errorf("%w: %w", ErrUnauthorized, ErrTokenExpired)
	}
	if errors.Is(err, ErrNoCredentials) && h.cfg.AuthenticateToken != nil {
		adm.pending = true
		return nil
	}
	if err != nil {
		return authRefusal(r, err)
	}
	adm.ident = ident
	return nil
}

// callAuth runs an authentication hook; a panic is a refusal, not a crash.
func (h *Hub) callAuth(f func() (*Identity, error)) (ident *Identity, err error) {
	defer func() {
		if p := recover(); p != nil {
			ident, err = nil, fmt.Errorf("%w: authentication hook panicked: %v", ErrUnauthorized, p)
		}
	}()
	return f()
}

func authRefusal(r *http.Request, err error) *refusal {
	if errors.Is(err, ErrForbidden) {
		return &refusal{status: http.StatusForbidden, reason: "forbidden",
			text: "marmot: forbidden", err: fmt.Errorf("marmot: %s: %w", r.RemoteAddr, err)}
	}
	if !errors.Is(err, ErrUnauthorized) {
		err = fmt.Errorf("%w: %w", ErrUnauthorized, err)
	}
	text := "marmot: unauthorized"
	if errors.Is(err, ErrTokenExpired) {
		text = "marmot: unauthorized: token expired"
	}
	return &refusal{status: http.StatusUnauthorized, reason: "unauthorized", text: text,
		err: fmt.Errorf("marmot: %s: %w", r.RemoteAddr, err)}
}

// checkOrigin applies HubConfig.CheckOrigin, else the AllowedOrigins
// patterns, else same-origin: a request without Origin (not a browser) or
// whose Origin host is the Host header passes.
func (h *Hub) checkOrigin(r *http.Request) *refusal {
	if f := h.cfg.CheckOrigin; f != nil {
		if f(r) {
			return nil
		}
		return originRefusal(r, ErrOriginRefused)
	}
	if err := AuthorizeOrigin(r, h.cfg.AllowedOrigins); err != nil {
		return originRefusal(r, err)
	}
	return nil
}

func originRefusal(r *http.Request, err error) *refusal {
	origin := r.Header.Get("Origin")
	return &refusal{
		status: http.StatusForbidden, reason: "origin",
		text: fmt.Sprintf("marmot: origin %q not allowed", origin),
		err:  fmt.Errorf("%w: %q from %s (Host %q)", err, origin, r.RemoteAddr, r.Host),
	}
}

// AuthorizeOrigin checks r's Origin header with coder/websocket's
// OriginPatterns semantics: no Origin (not a browser) and an Origin whose
// host equals the Host header pass; otherwise one of patterns must match
// the Origin's host (path.Match, case-insensitive: "example.com",
// "*.example.com"), or its scheme://host when the pattern has "://". The
// error wraps ErrOriginRefused.
func AuthorizeOrigin(r *http.Request, patterns []string) error {
	origin := r.Header.Get("Origin")
	if origin == "" {
		return nil
	}
	u, err := url.Parse(origin)
	if err != nil || u.Host == "" {
		return errOriginMalformed
	}
	if strings.EqualFold(r.Host, u.Host) {
		return nil
	}
	for _, p := range patterns {
		target := u.Host
		if strings.Contains(p, "://") {
			target = u.Scheme + "://" + u.Host
		}
		if ok, _ := path.Match(strings.ToLower(p), strings.ToLower(target)); ok {
			return nil
		}
	}
	return ErrOriginRefused
}

// ValidateOriginPatterns reports the first malformed pattern.
func ValidateOriginPatterns(patterns []string) error {
	for _, p := range patterns {
		if _, err := path.Match(p, ""); err != nil {
			return fmt.Errorf("marmot: bad origin pattern %q: %w", p, err)
		}
	}
	return nil
}

func (h *Hub) admitSlot() bool {
	for {
		n := h.admitted.Load()
		if h.cfg.MaxConnections > 0 && n >= int64(h.cfg.MaxConnections) {
			return false
		}
		if h.admitted.CompareAndSwap(n, n+1) {
			return true
		}
	}
}
