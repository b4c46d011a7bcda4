package main

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/coder/websocket"

	"github.com/marmotws/marmot/crypto"
	"github.com/marmotws/marmot/protocol"
)

// conn is one client connection of a scenario. Plain, a message is one
// binary frame. In marmot's secure profile (sess set) it is what marmot's own
// client sends: a marmot.v1 data envelope sealed into one binary frame. Both
// go through the same coder/websocket connection, so an encrypted run
// differs from a plain one only by the envelope and the seal/open work,
// which the client pays as well as the server.
//
// Like a crypto.Session, a conn allows one writer and one reader at a time,
// concurrently with each other.
type conn struct {
	ws   *websocket.Conn
	h    *httpSession    // set instead of ws: marmot's HTTP fallback transport
	sess *crypto.Session // nil: plain frames
	url  string          // the server URL it was dialled to

	// Reused by write and by read respectively, so that sealing and
	// opening cost no allocation per message.
	out            protocol.Envelope
	envBuf, sealed []byte
	in             protocol.Envelope
	plain          []byte
	// session: plain data envelopes numbered from 1 (seq), the server's
	// acknowledgements skipped on read.
	session bool
	seq     uint64
}

// write sends p as one message. The secure profile's sequence numbers must
// reach the wire in the order they were sealed, hence one writer at a time.
func (c *conn) write(ctx context.Context, p []byte) error {
	if c.h != nil {
		return c.h.write(ctx, p)
	}
	if c.session {
		c.seq++
		c.out = protocol.Envelope{Kind: protocol.KindData, Payload: p, Seq: c.seq}
		env, err := protocol.Binary.Append(c.envBuf[:0], &c.out)
		c.out.Payload = nil
		if err != nil {
			return err
		}
		c.envBuf = env
		return c.ws.Write(ctx, websocket.MessageBinary, env)
	}
	if c.sess == nil {
		return c.ws.Write(ctx, websocket.MessageBinary, p)
	}
	c.out = protocol.Envelope{Kind: protocol.KindData, Payload: p}
	env, err := protocol.Binary.Append(c.envBuf[:0], &c.out)
	c.out.Payload = nil
	if err != nil {
		return err
	}
	c.envBuf = env
	if c.sealed, err = c.sess.Seal(c.sealed[:0], env); err != nil {
		return err
	}
	return c.ws.Write(ctx, websocket.MessageBinary, c.sealed)
}

// read returns the next message's payload. In the secure profile it is only
// valid until the next read, which reuses the buffer: callers that keep it
// must copy it.
func (c *conn) read(ctx context.Context) ([]byte, error) {
	if c.h != nil {
		return c.h.read(ctx)
	}
	typ, data, err := c.ws.Read(ctx)
	for err == nil && c.session {
		if err := protocol.Binary.Decode(data, &c.in); err != nil {
			return nil, err
		}
		switch {
		case c.in.Kind == protocol.KindCommand && c.in.Name == protocol.AckCommand:
			typ, data, err = c.ws.Read(ctx) // an acknowledgement: the next one
		case c.in.Kind != protocol.KindData:
			return nil, fmt.Errorf("%s envelope, want data", c.in.Kind)
		default:
			return c.in.Payload, nil
		}
	}
	if err != nil || c.sess == nil {
		return data, err
	}
	// As actors' link.open: sealed frames travel only as binary messages.
	if typ != websocket.MessageBinary {
		return nil, errors.New("encrypted frame in a text message")
	}
	if c.plain, err = c.sess.Open(c.plain[:0], data); err != nil {
		return nil, fmt.Errorf("open: %w", err)
	}
	if err := protocol.Binary.Decode(c.plain, &c.in); err != nil {
		return nil, err
	}
	if c.in.Kind != protocol.KindData {
		return nil, fmt.Errorf("%s envelope, want data", c.in.Kind)
	}
	return c.in.Payload, nil
}

// closeAll closes every connection with 1000, in parallel.
func closeAll(conns []*conn) {
	var wg sync.WaitGroup
	sem := make(chan struct{}, 256)
	for _, c := range conns {
		if c == nil {
			continue
		}
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			if c.h != nil {
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				defer cancel()
				_ = c.h.close(ctx)
				return
			}
			_ = c.ws.Close(websocket.StatusNormalClosure, "")
		})
	}
	wg.Wait()
}

// secureClient is the client side of marmot's secure profile, pinned to
// AES-256-GCM and to handshake version 2 (X25519, forward secrecy): with no
// allow-lists and no AllowLegacyHandshake, a server that prefers anything
// else fails the handshake instead of silently measuring another cipher or
// the legacy handshake.
type secureClient struct {
	cfg crypto.ClientConfig
}

// newSecureClient makes the client side for passphrase. Its keyring is
// shared by every connection, so the passphrase is stretched once per
// server salt, not once per dial (marmot's Client caches the same way).
func newSecureClient(passphrase string) (*secureClient, error) {
	ring, err := crypto.NewKeyring([]byte(passphrase))
	if err != nil {
		return nil, err
	}
	return &secureClient{cfg: crypto.ClientConfig{Keyring: ring, Mode: crypto.ModeGCM, KeySize: crypto.KeySize256}}, nil
}

// handshakeTimeout bounds the secure handshake, as marmot's default
// EncryptionHandshakeTimeout does.
const handshakeTimeout = 10 * time.Second

// Handshake failures, mirrored from actors/encryption.go: the close code
// that tells marmot clients not to reconnect, and the reasons that tell a
// wrong key from a mode mismatch or a refused downgrade.
const (
	closeHandshakeFailed websocket.StatusCode = 4501
	reasonWrongKey                            = "wrong key"
	reasonModeMismatch                        = "mode mismatch"
	reasonDowngrade                           = "downgrade refused"
	reasonHandshake                           = "handshake failed"
)

var errHandshake = errors.New("secure handshake failed")

// handshake runs the client's half of the secure handshake on a fresh
// connection, exactly as marmot's client does (actors' clientHandshake):
// read the ServerHello, send the ClientHello, check the ServerFinished, all
// in binary frames, each hello carrying an ephemeral X25519 key (the dial
// announced version 2 in marmot.HeaderHandshake). A failure on this side closes with 4501 and a reason.
func (s *secureClient) handshake(ctx context.Context, ws *websocket.Conn) (*crypto.Session, error) {
	if ws.Subprotocol() != protocol.SubprotocolBinary {
		return nil, fmt.Errorf("%w: server did not accept subprotocol %q", errHandshake, protocol.SubprotocolBinary)
	}
	ctx, cancel := context.WithTimeout(ctx, handshakeTimeout)
	defer cancel()
	hello, err := readHandshakeFrame(ctx, ws)
	if err != nil {
		return nil, err
	}
	hs, err := crypto.NewClientHandshake(s.cfg, hello)
	if err != nil {
		return nil, failHandshake(ws, err)
	}
	if err := ws.Write(ctx, websocket.MessageBinary, hs.Hello()); err != nil {
		return nil, fmt.Errorf("%w: %w", errHandshake, err)
	}
	fin, err := readHandshakeFrame(ctx, ws)
	if err != nil {
		return nil, err
	}
	sess, err := hs.Finish(fin)
	if err != nil {
		return nil, failHandshake(ws, err)
	}
	return sess, nil
}

// readHandshakeFrame reads one handshake message; the server's 4501 close
// comes back as an error carrying its reason ("wrong key", ...).
func readHandshakeFrame(ctx context.Context, ws *websocket.Conn) ([]byte, error) {
	typ, msg, err := ws.Read(ctx)
	if err != nil {
		var ce websocket.CloseError
		if errors.As(err, &ce) && ce.Code == closeHandshakeFailed {
			return nil, fmt.Errorf("%w: server says %s", errHandshake, ce.Reason)
		}
		return nil, fmt.Errorf("%w: %w", errHandshake, err)
	}
	if typ != websocket.MessageBinary {
		return nil, fmt.Errorf("%w: handshake message in a text frame", errHandshake)
	}
	return msg, nil
}

// failHandshake tells the server why this side gives up, then closes.
func failHandshake(ws *websocket.Conn, err error) error {
	reason := reasonHandshake
	switch {
	case errors.Is(err, crypto.ErrWrongKey), errors.Is(err, crypto.ErrAuthFailed):
		reason = reasonWrongKey
	case errors.Is(err, crypto.ErrModeMismatch):
		reason = reasonModeMismatch
	case errors.Is(err, crypto.ErrDowngrade):
		reason = reasonDowngrade
	}
	_ = ws.Close(closeHandshakeFailed, reason)
	return fmt.Errorf("%w: %w", errHandshake, err)
}
