package actors

// How a client opens a transport: WebSocket, the HTTP fallback, or both
// in turn (ClientConfig.Transport), and what the server's answer says.

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	"github.com/marmotws/marmot/internal/transport"
)

// open opens a transport as ClientConfig.Transport says: WebSocket, the
// HTTP fallback, or (auto) WebSocket and the fallback when the upgrade was
// refused or stripped. A refusal for encryption is an
// ErrEncryptionMismatch; one the HTTP open would meet the same (503, and
// the screening's 401/403/429) is not retried over HTTP.
func (c *Client) open(ctx context.Context, target string, header http.Header) (transport.Conn, error) {
	if c.cfg.Transport == TransportHTTP {
		return c.openHTTP(ctx, target, header)
	}
	ws, err := c.dialer.Dial(ctx, target, header)
	if err == nil {
		return ws, nil
	}
	var refused *transport.RefusedError
	if !errors.As(err, &refused) {
		return nil, certificateError(err)
	}
	if mismatch := encryptionRefusal(refused.Response, refused.Body, c.cfg.Encryption); mismatch != nil {
		return nil, fmt.Errorf("%w (HTTP %s)", mismatch, refused.Response.Status)
	}
	switch refused.Response.StatusCode {
	case http.StatusServiceUnavailable, http.StatusUnauthorized, http.StatusForbidden, http.StatusTooManyRequests:
		return nil, refusalError(refused, err)
	}
	if c.cfg.Transport != TransportAuto {
		return nil, refusalError(refused, err)
	}
	t, herr := c.openHTTP(ctx, target, header)
	if herr != nil {
		return nil, fmt.Errorf("%w; and the HTTP fallback: %w", err, herr)
	}
	return t, nil
}

func (c *Client) openHTTP(ctx context.Context, target string, header http.Header) (transport.Conn, error) {
	t, err := c.http.Dial(ctx, target, header)
	var refused *transport.RefusedError
	if errors.As(err, &refused) {
		if mismatch := encryptionRefusal(refused.Response, refused.Body, c.cfg.Encryption); mismatch != nil {
			return nil, fmt.Errorf("%w (HTTP %s)", mismatch, refused.Response.Status)
		}
		return nil, refusalError(refused, err)
	}
	if err != nil {
		return nil, certificateError(err)
	}
	return t, nil
}

// responseHeader is the header of the server's answer that opened t: the
// 101 of a WebSocket, the 200 of an HTTP session open.
func responseHeader(t transport.Conn) http.Header {
	if h, ok := t.(interface{ ResponseHeader() http.Header }); ok {
		return h.ResponseHeader()
	}
	return nil
}
