package wsconn

import (
	"context"
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
}

// NewDialer returns a dialer that offers subprotocol (none when "") and
// gives up the opening handshake after timeout (<= 0: ctx alone bounds it).
func NewDialer(subprotocol string, timeout time.Duration, cfg Config) *Dialer {
	d := &Dialer{cfg: cfg}
	d.d = websocket.Dialer{HandshakeTimeout: timeout, ReadBufferSize: 4096, WriteBufferSize: 4096}
	if subprotocol != "" {
		d.d.Subprotocols = []string{subprotocol}
	}
	return d
}

// RefusedError is a refused upgrade: the server answered the opening
// handshake with an HTTP status other than 101.
type RefusedError = transport.RefusedError

// Dial connects to url. A refused upgrade's error is a *RefusedError.
func (d *Dialer) Dial(ctx context.Context, url string, header http.Header) (*Conn, error) {
	ws, resp, err := d.d.DialContext(ctx, url, header)
	var body []byte
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
	return newConn(ws, nil, d.cfg), nil
}
