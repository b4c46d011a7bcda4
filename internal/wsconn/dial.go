package wsconn

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/gorilla/websocket"
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
type RefusedError struct {
	Response *http.Response // its Body is closed
	Body     []byte         // the start of the response body (at most 1 KiB)
	Err      error          // gorilla's error
}

func (e *RefusedError) Error() string {
	s := fmt.Sprintf("%v (HTTP %s", e.Err, e.Response.Status)
	if reason := strings.TrimSpace(string(e.Body)); reason != "" {
		s += ": " + reason
	}
	return s + ")"
}

func (e *RefusedError) Unwrap() error { return e.Err }

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
	c := newConn(ws, nil, d.cfg)
	c.respHeader = resp.Header
	return c, nil
}

// ResponseHeader is the header of the server's 101 response (client
// connections; nil on the server's).
func (c *Conn) ResponseHeader() http.Header { return c.respHeader }
