package actors

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/marmotws/marmot/crypto"
	"github.com/marmotws/marmot/internal/transport"
	"github.com/marmotws/marmot/internal/wsconn"
	"github.com/marmotws/marmot/protocol"
)

// The client's side of TLS and authentication: certificate errors made
// recognisable, refusals (401, 403) turned into sentinels, and the token
// (ClientConfig.Token) sent in the upgrade request or as the first
// message, on every connect and reconnect.

// ErrCertificate is a TLS certificate the client does not trust (unknown
// CA, wrong host name, expired). Retrying cannot fix it: the client does
// not reconnect after it.
var ErrCertificate = errors.New("marmot: server certificate not trusted")

// certificateError wraps err in ErrCertificate when it is a certificate
// verification failure.
func certificateError(err error) error {
	var (
		verify   *tls.CertificateVerificationError
		unknown  x509.UnknownAuthorityError
		hostname x509.HostnameError
		invalid  x509.CertificateInvalidError
	)
	if errors.As(err, &verify) || errors.As(err, &unknown) || errors.As(err, &hostname) || errors.As(err, &invalid) {
		return fmt.Errorf("%w: %w", ErrCertificate, err)
	}
	return err
}

// refusalError turns a refused upgrade into the sentinel its status means.
func refusalError(refused *wsconn.RefusedError, err error) error {
	switch refused.Response.StatusCode {
	case http.StatusUnauthorized:
		return fmt.Errorf("%w: %w", ErrUnauthorized, err)
	case http.StatusForbidden:
		return fmt.Errorf("%w: %w", ErrForbidden, err)
	case http.StatusTooManyRequests:
		return fmt.Errorf("%w: %w", ErrIPLimit, err)
	}
	return err
}

// hopeless reports errors that retrying cannot fix: reconnecting would
// only hammer the server.
func hopeless(err error) bool {
	return errors.Is(err, crypto.ErrWrongKey) || errors.Is(err, crypto.ErrModeMismatch) ||
		errors.Is(err, ErrEncryptionMismatch) || errors.Is(err, ErrCertificate) ||
		errors.Is(err, ErrUnauthorized) || errors.Is(err, ErrForbidden)
}

// token asks ClientConfig.Token for this attempt's token ("" without one).
func (c *Client) token(ctx context.Context) (string, error) {
	f := c.cfg.Token
	if f == nil {
		return "", nil
	}
	tok, err := f(ctx)
	if err != nil {
		return "", fmt.Errorf("marmot: token: %w", err)
	}
	return tok, nil
}

// authenticateFirst sends the token as the connection's first message and,
// in an envelope protocol, waits for the server's answer (raw mode has
// none: a refusal closes the connection with 4503).
func authenticateFirst(t transport.Conn, sess *crypto.Session, token string, deadline time.Time) error {
	codec, _ := protocol.Lookup(t.Subprotocol())
	typ, frame := transport.TextMessage, []byte(token)
	if codec != nil {
		var err error
		typ = codec.MessageType()
		frame, err = codec.Append(nil, &protocol.Envelope{Kind: protocol.KindRequest, ID: 1, Name: protocol.AuthRequestName, Payload: []byte(token)})
		if err != nil {
			return fmt.Errorf("%w: %w", ErrUnauthorized, err)
		}
	}
	if sess != nil {
		sealed, err := sess.Seal(nil, frame)
		if err != nil {
			return err
		}
		typ, frame = transport.BinaryMessage, sealed
	}
	if err := t.SendNow(typ, frame, deadline); err != nil {
		return err
	}
	if codec == nil {
		return nil
	}
	_, data, err := t.ReceiveNow(deadline)
	if err != nil {
		var pc *transport.PeerClose
		if errors.As(err, &pc) && pc.Code == CloseUnauthorized {
			return fmt.Errorf("%w: %w", ErrUnauthorized, err)
		}
		return err
	}
	if sess != nil {
		if data, err = sess.Open(nil, data); err != nil {
			return fmt.Errorf("%w: %w", ErrDecryptFailed, err)
		}
	}
	var e protocol.Envelope
	if err := codec.Decode(data, &e); err != nil {
		return err
	}
	switch {
	case e.Kind == protocol.KindReply && e.ID == 1:
		return nil
	case e.Kind == protocol.KindError && e.ID == 1:
		return fmt.Errorf("%w: %w", ErrUnauthorized, &RemoteError{Code: e.Code, Message: string(e.Payload)})
	}
	return fmt.Errorf("%w: expected the answer to %s, got %s %q", protocol.ErrInvalidEnvelope, protocol.AuthRequestName, e.Kind, e.Name)
}
