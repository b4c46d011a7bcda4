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

// Dial connects to url. A refused upgrade's error includes the HTTP status
// and, when the server gave one, its reason.
func (d *Dialer) Dial(ctx context.Context, url string, header http.Header) (*Conn, *http.Response, error) {
	ws, resp, err := d.d.DialContext(ctx, url, header)
	var body []byte
	if resp != nil && resp.Body != nil {
		body, _ = io.ReadAll(io.LimitReader(resp.Body, 512))
		_ = resp.Body.Close()
	}
	if err != nil {
		if resp != nil {
			err = fmt.Errorf("%w (HTTP %s", err, resp.Status)
			if reason := strings.TrimSpace(string(body)); reason != "" {
				err = fmt.Errorf("%w: %s", err, reason)
			}
			err = fmt.Errorf("%w)", err)
		}
		return nil, resp, err
	}
	return newConn(ws, nil, d.cfg), resp, nil
}
