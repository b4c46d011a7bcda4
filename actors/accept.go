package actors

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"time"

	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	semconv "go.opentelemetry.io/otel/semconv/v1.40.0"
	"go.opentelemetry.io/otel/trace"

	"github.com/marmotws/marmot/crypto"
	"github.com/marmotws/marmot/internal/httpconn"
	"github.com/marmotws/marmot/internal/transport"
)

// ServeHTTP serves the endpoint: it upgrades a request to a WebSocket
// connection, or opens an HTTP fallback session (docs/HTTP.md), and serves
// the connection until it closes; it also answers the sends and polls of
// HTTP sessions. Over MaxConnections it answers 503 without opening.
func (h *Hub) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	kind := httpconn.KindOf(r)
	if kind != httpconn.NotHTTP && h.httpSessions == nil {
		http.Error(w, "marmot: HTTP fallback is disabled", http.StatusNotFound)
		return
	}
	switch {
	case kind == httpconn.Session:
		h.httpSessions.Serve(w, r)
		return
	case kind == httpconn.Open && !httpconn.CheckOpen(w, r):
		return
	}
	h.lifeMu.Lock()
	if h.stopping {
		h.lifeMu.Unlock()
		w.Header().Set("Retry-After", "5")
		http.Error(w, "marmot: server is shutting down", http.StatusServiceUnavailable)
		return
	}
	h.live.Add(1)
	h.lifeMu.Unlock()
	defer h.live.Done()

	up := h.startUpgradeSpan(r)
	defer up.end("", nil)
	accept := h.acceptWebSocket
	if kind == httpconn.Open {
		accept = h.acceptSession
	}
	// A client session (session.go), if asked for: offered once the
	// request is admitted (a resume may take the session over from
	// another hub), its token set on the 101.
	var grant *sessionGrant
	offer := func() { grant = h.sessions.offer(h, r, w.Header()) }
	t, sess, adm, ok := h.upgrade(w, r, up, accept, offer)
	if !ok {
		h.sessions.abort(grant)
		return
	}
	c := h.newConn(t, sess, adm)
	h.totalConns.Add(1)
	h.live.Add(1) // the connection actor, until Stopped
	h.sys.Root.Send(h.server, &spawnConnection{c: c})
	<-c.ready
	up.span.SetAttributes(AttrClientID.Int64(int64(c.id)))
	if adm.ident != nil && adm.ident.UserID != "" {
		up.span.SetAttributes(semconv.EnduserIDKey.String(adm.ident.UserID))
	}
	up.end("", nil)
	h.sessions.attach(h, grant, c)
	h.live.Add(1) // the transport's reader, until it stops for good
	l := c.link
	l.start(c.id, c.early, func(err error) {
		// No answer can come any more: a handler waiting for one (its
		// actor busy, linkLost queued behind it) hears it now.
		c.reqs.close(ErrConnectionClosed)
		h.sys.Root.Send(l.pid, &linkLost{l: l, err: err})
		h.live.Done()
	})
}

// acceptFunc opens a transport for an admitted request; on failure it has
// answered the request.
type acceptFunc func(w http.ResponseWriter, r *http.Request) (transport.Conn, error)

func (h *Hub) acceptWebSocket(w http.ResponseWriter, r *http.Request) (transport.Conn, error) {
	return h.acceptor.Accept(w, r)
}

func (h *Hub) acceptSession(w http.ResponseWriter, r *http.Request) (transport.Conn, error) {
	return h.httpSessions.Accept(w, r)
}

// upgrade screens r (screen.go) and opens its transport with accept,
// running the secure handshake when the hub encrypts; offer runs once r is
// admitted, before accept answers it. Both transports come
// through here, so whatever is checked before a connection opens (origin,
// per-IP limits, MaxConnections, authentication) applies to both. A
// refusal is answered, counted, traced and reported here.
func (h *Hub) upgrade(w http.ResponseWriter, r *http.Request, up *upgradeSpan, accept acceptFunc, offer func()) (transport.Conn, *crypto.Session, *admission, bool) {
	adm, ok := h.admitRequest(w, r, up)
	if !ok {
		return nil, nil, nil, false
	}
	if reason, err := refuseEncryption(w, r, h.cfg.Encryption); err != nil {
		h.release(adm)
		h.handshakes.Add(1)
		up.end(reason, err)
		h.reportError(0, err)
		return nil, nil, nil, false
	}
	offer()
	t, err := accept(w, r)
	if err != nil {
		h.release(adm)
		up.end("upgrade_failed", err)
		h.reportError(0, fmt.Errorf("marmot: upgrade from %s failed: %w", r.RemoteAddr, err))
		return nil, nil, nil, false
	}
	up.span.SetAttributes(AttrSubprotocol.String(t.Subprotocol()), AttrEncrypted.Bool(h.cfg.Encryption != nil), AttrTransport.String(t.Transport()))
	var sess *crypto.Session
	if enc := h.cfg.Encryption; enc != nil && enc.Profile == crypto.ProfileSecure {
		var version int
		if sess, version, err = serverHandshake(t, enc, offeredHandshake(r)); err != nil {
			h.release(adm)
			h.handshakes.Add(1)
			up.end("handshake_failed", err)
			h.reportError(0, fmt.Errorf("marmot: client %s: %w", r.RemoteAddr, err))
			t.Drop()
			return nil, nil, nil, false
		}
		up.span.SetAttributes(AttrHandshakeVersion.Int(version))
	}
	return t, sess, adm, true
}

// newConn builds the connection for an upgraded transport.
func (h *Hub) newConn(t transport.Conn, sess *crypto.Session, adm *admission) *conn {
	c := &conn{
		hub:         h,
		adm:         adm,
		id:          ClientID(h.nextID.Add(1)),
		remote:      t.RemoteAddr(),
		connectedAt: time.Now(),
		ready:       make(chan struct{}),
		mbox:        newConnMailbox(),
	}
	c.mbox.direct = (&ConnectionActor{c: c}).receiveDirect
	l := newLink(t, h.sys, linkConfig{
		maxQueue: h.cfg.MaxQueueBytes,
		inflight: max(h.cfg.MaxMessageSize, 1<<20),
	})
	l.sess = sess
	l.limit = newConnLimiter(h.cfg.Limits, h.cfg.MaxMessageSize)
	l.mbox = c.mbox // before the actor is known to senders
	l.replyNow = true
	l.keepRaw = h.cfg.Events.OnDataReceived != nil
	if f := h.cfg.Events.OnDataSent; f != nil {
		id := c.id
		l.out.onSent = func(b []byte) { h.safeCall(id, "OnDataSent", func() { f(id, b) }) }
	}
	if enc := h.cfg.Encryption; enc != nil && enc.Profile == crypto.ProfileCompat {
		l.compat = enc.Compat
	}
	c.link = l
	return c
}

// upgradeSpan is the marmot.upgrade span of one request. The client's
// traceparent header, if any, puts it in the client's trace. With tracing
// off the span and its attributes are not even built (a cost per connect
// otherwise).
type upgradeSpan struct {
	span trace.Span
	done bool
}

func (h *Hub) startUpgradeSpan(r *http.Request) *upgradeSpan {
	up := &upgradeSpan{span: trace.SpanFromContext(context.Background())} // records nothing
	if !h.tel.tracesOff() {
		remote := h.tel.prop.Extract(r.Context(), propagation.HeaderCarrier(r.Header))
		_, up.span = h.tel.tracer.Start(remote, "marmot.upgrade", trace.WithSpanKind(trace.SpanKindServer),
			trace.WithAttributes(append(append(peerAttrs(remoteAddr(r.RemoteAddr)), serverAttrs(r.Host)...),
				semconv.URLPathKey.String(r.URL.Path))...))
	}
	return up
}

// end ends the span once; reason, when set, marks a refusal.
func (up *upgradeSpan) end(reason string, err error) {
	if up.done {
		return
	}
	up.done = true
	if reason != "" {
		up.span.SetAttributes(AttrRefusalReason.String(reason))
		up.span.SetStatus(codes.Error, reason)
	}
	if err != nil {
		up.span.RecordError(err)
	}
	up.span.End()
}

func remoteAddr(s string) net.Addr {
	a, err := net.ResolveTCPAddr("tcp", s)
	if err != nil {
		return nil
	}
	return a
}
