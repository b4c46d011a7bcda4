package actors

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/marmotws/marmot/protocol"
)

// After admission: the identity a connection carries, the first-message
// authentication of clients that could not put credentials in the upgrade
// request (browsers cannot set headers), and the watch that closes a
// connection when its identity expires. All of it runs on the
// connection's actor; none of it per message once authenticated.

// Close codes of authentication (docs/PROTOCOL.md section 7).
const (
	// ClosePolicyViolation (1008) closes a connection over its message or
	// byte rate under RateLimitClose. Clients do not reconnect.
	ClosePolicyViolation = 1008
	// CloseTokenExpired (4001) closes a connection whose identity expired:
	// the client reconnects, with a fresh token (ClientConfig.Token).
	CloseTokenExpired = 4001
	// CloseUnauthorized (4503) closes a connection whose first-message
	// authentication failed, was not a marmot.auth request or did not come
	// within AuthTimeout. Clients do not reconnect.
	CloseUnauthorized = 4503
)

// AuthRequestName is the request a client sends first to authenticate
// with a token instead of the upgrade request's headers.
const AuthRequestName = protocol.AuthRequestName

// DefaultAuthTimeout is how long a connection admitted without credentials
// has to authenticate with its first message.
const DefaultAuthTimeout = 10 * time.Second

// identityExpired and authTimedOut are the watch's messages to the actor.
type identityExpired struct{}

type authTimedOut struct{}

// admit finishes the admission of c on its actor (from opened): the
// identity screening found, or the deadline of its first-message
// authentication, and the expiry watch.
func (a *ConnectionActor) admit() {
	c := a.c
	adm := c.adm
	if adm == nil {
		return
	}
	if adm.pending {
		c.authPending = true
		c.gated.Store(true)
		c.watchUntil(time.Now().Add(c.hub.authTimeout()), &authTimedOut{})
		return
	}
	if adm.ident != nil {
		c.setIdentity(adm.ident)
	}
}

func (h *Hub) authTimeout() time.Duration {
	if t := h.cfg.AuthTimeout; t > 0 {
		return t
	}
	return DefaultAuthTimeout
}

// setIdentity gives c its identity and watches its expiry.
func (c *conn) setIdentity(id *Identity) {
	c.link.ident.Store(id)
	if !id.ExpiresAt.IsZero() {
		c.watchUntil(id.ExpiresAt, &identityExpired{})
	}
}

// watchUntil sends msg to c's actor at t (replacing any earlier watch).
func (c *conn) watchUntil(t time.Time, msg any) {
	c.stopWatch()
	pid, sys := c.link.pid, c.hub.sys
	c.watch = time.AfterFunc(time.Until(t), func() { sys.Root.Send(pid, msg) })
}

func (c *conn) stopWatch() {
	if c.watch != nil {
		c.watch.Stop()
		c.watch = nil
	}
}

// expired closes c: its identity's time is up (4001) or it did not
// authenticate in time (4503).
func (a *ConnectionActor) expired(msg any) {
	c := a.c
	h := c.hub
	c.watch = nil
	switch msg.(type) {
	case *identityExpired:
		h.expiredCloses.Add(1)
		err := fmt.Errorf("%w: %s", ErrTokenExpired, c.link.ident.Load().UserID)
		h.reportError(c.id, err)
		c.link.close(CloseTokenExpired, "token expired", err, time.Time{})
	case *authTimedOut:
		if !c.authPending {
			return
		}
		h.authRefusals.Add(1)
		err := fmt.Errorf("%w within %v", ErrAuthRequired, h.authTimeout())
		h.reportError(c.id, err)
		c.link.close(CloseUnauthorized, "unauthorized: no "+AuthRequestName+" in time", err, time.Time{})
	}
}

// authenticateFirst takes the connection's first message as its
// credentials: a marmot.auth request whose payload is the token (raw
// mode: the message itself is the token). It is answered (an empty reply,
// or an error 401 and close 4503) before anything else is handled. The
// hook runs on the connection's actor, its ctx bounded by AuthTimeout.
func (a *ConnectionActor) authenticateFirst(ctx actor.Context, m *Message) {
	c := a.c
	h := c.hub
	token, err := protocol.AuthToken(m.Kind, m.Name, m.Payload, c.link.codec == nil)
	var ident *Identity
	if err == nil {
		verify := h.cfg.AuthenticateToken
		ctx, cancel := context.WithTimeout(context.Background(), h.authTimeout())
		ident, err = h.callAuth(func() (*Identity, error) { return verify(ctx, token) })
		cancel()
	}
	if err == nil && ident == nil {
		ident = &Identity{}
	}
	if err == nil && !ident.ExpiresAt.IsZero() && !ident.ExpiresAt.After(time.Now()) {
		err = ErrTokenExpired
	}
	if err != nil {
		if !errors.Is(err, ErrUnauthorized) {
			err = fmt.Errorf("%w: %w", ErrUnauthorized, err)
		}
		h.authRefusals.Add(1)
		if m.IsRequest() {
			_ = m.ReplyError(401, "unauthorized")
			a.flush(time.Time{}) // the answer goes before the close frame
		}
		h.reportError(c.id, err)
		c.link.close(CloseUnauthorized, "unauthorized", err, time.Time{})
		return
	}
	c.authPending = false
	c.stopWatch()
	c.setIdentity(ident)
	if m.IsRequest() {
		_ = m.Reply(nil)
	}
	c.gated.Store(false)
	a.announce()
	a.toUser(ctx, &Connected{Info: c.info(), Restarts: c.incarnation - 1})
}
