// Package transport names the seam between marmot's connection layer
// (package actors) and the byte streams under it: what a connection needs
// from a transport ([Conn]) and what a transport hands up ([Receiver]).
//
// Two transports implement [Conn] and call a [Receiver] the same way:
// WebSocket (internal/wsconn) and the HTTP fallback (internal/httpconn);
// the connection actor, its statistics, supervision, encryption and tracing
// do not change with them.
package transport

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"
)

// Transport names, as Conn.Transport reports them.
const (
	NameWebSocket = "websocket"
	NameHTTP      = "http"
)

// Message types, numbered as RFC 6455 opcodes (and gorilla/websocket).
const (
	TextMessage   = 1
	BinaryMessage = 2
)

// Receiver is the connection a transport delivers to. A transport calls it
// from one goroutine at a time, in order: Message for every data message,
// then Done once.
type Receiver interface {
	// Message is one inbound data message; r reads its payload to the end.
	// It may block (that pushes back on the peer). An error ends the
	// transport's reader: Done follows with it.
	Message(typ int, r io.Reader) error
	// Done reports that the transport will deliver nothing more, and why:
	// a *PeerClose, ErrReadLimit, ErrKeepAlive, or the network error.
	Done(err error)
}

// Conn is one connection's transport, as its connection actor drives it.
//
// Writes: the caller runs BeginWrite, any number of WriteMessage and
// WriteEncoded, then EndWrite, and never two such runs at once (the
// connection's outbox holds a lock around them). Control frames the
// transport writes itself (pings, close frames) may come between them.
type Conn interface {
	// Subprotocol is the negotiated subprotocol ("" for raw frames).
	Subprotocol() string
	// Compressed reports whether messages may travel compressed (for
	// WebSocket: permessage-deflate was negotiated).
	Compressed() bool
	// RemoteAddr is the peer's address.
	RemoteAddr() net.Addr
	// Transport names the transport: NameWebSocket or NameHTTP.
	Transport() string

	// ReceiveNow and SendNow exchange messages before Start, for
	// handshakes that run before the connection has an actor.
	ReceiveNow(deadline time.Time) (typ int, data []byte, err error)
	SendNow(typ int, data []byte, deadline time.Time) error

	// Start begins delivering inbound messages to r and keeping the
	// connection alive (pings; a silent peer ends it with ErrKeepAlive).
	Start(r Receiver)
	// Handoff moves the reader to a new goroutine while a Message call
	// is in progress, for a receiver whose Message is about to wait for a
	// later message of the same connection (the connection actor's
	// handler waiting for its own client's answer): the transport goes on
	// reading and calls Message for the next messages on the new
	// goroutine, in order, while that call is still running; the
	// goroutine it runs on stops reading once it returns, and its error,
	// if any, is ignored. The caller makes sure a Message call is in
	// progress and has read its message to the end (it may call from
	// another goroutine). It reports false when the transport cannot:
	// the reader then stays in that call until it returns.
	Handoff() bool

	// BeginWrite starts a run of writes under deadline (zero: the
	// transport's write timeout); with batch, the run's frames may be
	// collected and sent together at EndWrite.
	BeginWrite(deadline time.Time, batch bool)
	// WriteMessage writes one data message.
	WriteMessage(typ int, data []byte) error
	// WriteEncoded writes frame, a message already encoded by the
	// transport's encoder (a broadcast is encoded once for many
	// connections).
	WriteEncoded(frame Encoded) error
	// EndWrite ends the run; its error is the error of every frame the
	// run batched.
	EndWrite() error

	// Close starts the closing handshake from this side: a close frame
	// with code and text, then up to deadline (at most a few seconds) for
	// the peer's answer. Only the first Close or AnswerClose counts. After
	// a Close for an error (not 1000 or 1001), input is discarded.
	Close(code int, text string, deadline time.Time)
	// AnswerClose completes a handshake the peer started.
	AnswerClose(code int, deadline time.Time)
	// LocalClose reports the Close this side started, if any.
	LocalClose() (code int, text string, ok bool)
	// Release says the owner is done: the socket closes once the reader
	// has stopped too (at once when no close frame is pending).
	Release()
	// Drop closes the socket now.
	Drop()
}

// Encoded is a message encoded once by a transport's encoder for many of
// its connections (wsconn.EncodeFrame); Message returns what it carries,
// for a connection that must encode it itself (an encrypted one).
type Encoded interface {
	Message() (typ int, data []byte)
}

// PeerClose is how a transport's reader ends when the peer closed.
type PeerClose struct {
	Code int
	Text string
}

func (e *PeerClose) Error() string {
	return fmt.Sprintf("transport: peer closed with code %d (%s)", e.Code, e.Text)
}

// Reasons a transport's reader ends besides a peer close or a network error.
var (
	ErrReadLimit = errors.New("transport: message over the read limit")
	ErrKeepAlive = errors.New("transport: peer stopped answering keep-alive pings")
)

// RefusedError is a refused connection: the server answered the opening
// request (a WebSocket upgrade, an HTTP session open) with an HTTP status
// that does not open it.
type RefusedError struct {
	Response *http.Response // its Body is closed
	Body     []byte         // the start of the response body (at most 1 KiB)
	Err      error          // the cause, as the transport saw it
}

func (e *RefusedError) Error() string {
	s := fmt.Sprintf("%v (HTTP %s", e.Err, e.Response.Status)
	if reason := strings.TrimSpace(string(e.Body)); reason != "" {
		s += ": " + reason
	}
	return s + ")"
}

func (e *RefusedError) Unwrap() error { return e.Err }
