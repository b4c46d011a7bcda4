package wsconn

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net/http"
	"time"

	"github.com/gorilla/websocket"

	"github.com/marmotws/marmot/internal/transport"
)

// Dialer opens client connections.
type Dialer struct {
	d   websocket.Dialer
	cfg Config
	z   *deflater // the compression of a connection that negotiates it
}

// NewDialer returns a dialer that offers subprotocol (none when "") and
// gives up the opening handshake after timeout (<= 0: ctx alone bounds it);
// tlsCfg configures wss:// (nil: the system's roots).
func NewDialer(subprotocol string, timeout time.Duration, tlsCfg *tls.Config, cfg Config) *Dialer {
	d := &Dialer{cfg: cfg}
	d.d = websocket.Dialer{HandshakeTimeout: timeout, ReadBufferSize: 4096, WriteBufferSize: 4096,
		EnableCompression: cfg.Compression.Enabled, TLSClientConfig: tlsCfg}
	if subprotocol != "" {
		d.d.Subprotocols = []string{subprotocol}
	}
	if cfg.Compression.Enabled {
		d.z = newDeflater(cfg.Compression)
	}
	return d
}

// ErrUnofferedExtension is a server's answer that accepts permessage-deflate
// when the client did not offer it.
var ErrUnofferedExtension = errors.New("wsconn: server accepted permessage-deflate, which was not offered")

// RefusedError is a refused upgrade: the server answered the opening
// handshake with an HTTP status other than 101.
type RefusedError = transport.RefusedError

// Dial connects to url. A refused upgrade's error is a *RefusedError.
func (d *Dialer) Dial(ctx context.Context, url string, header http.Header) (*Conn, error) {
	ws, resp, err := d.d.DialContext(ctx, url, header)
	var body []byte
	var z *deflater
	if err == nil && deflateAccepted(resp.Header) {
		if d.z == nil {
			// RFC 6455 §4.1: an extension not asked for fails the
			// connection (gorilla would inflate and deflate anyway).
			_ = ws.NetConn().Close()
			return nil, ErrUnofferedExtension
		}
		z = d.z // gorilla checked the parameters
	}
	if resp != nil && resp.Body != nil {
		if err != nil {
			// gorilla keeps at most 1 KiB of a refusal's body.
			body, _ = io.ReadAll(io.LimitReader(resp.Body, 1024))
		}
		_ = resp.Body.Close()
	}
	if err != nil {
		if resp != nil {
			return nil, &RefusedError{Response: resp, Body: body, Err: err}
		}
		return nil, err
	}
	c := newConn(ws, nil, z, d.cfg)
	c.respHeader = resp.Header
	return c, nil
}

// ResponseHeader is the header of the server's 101 response (client
// connections; nil on the server's).
func (c *Conn) ResponseHeader() http.Header { return c.respHeader }
