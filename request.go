package marmot

import (
	"context"

	"github.com/marmotws/marmot/actors"
)

// MaxClientRequests bounds the server's requests waiting for one
// client's answers (Server.RequestClient).
const MaxClientRequests = actors.MaxClientRequests

// ErrTooManyRequests refuses a RequestClient to a client that already
// has MaxClientRequests unanswered.
var ErrTooManyRequests = actors.ErrTooManyRequests

// RequestClient sends client id a request named name and waits, until
// ctx ends, for the client's answer: its handler's Message.Reply payload,
// or a *RemoteError with the code and text of its Message.ReplyError. It
// fails with ErrClientNotFound, ErrRawMode (raw connections have no
// requests), ErrTooManyRequests, ErrConnectionClosed when the connection
// ends first, or ctx's error (an answer that comes later is dropped).
// Bound it with a deadline: a client that never answers is only given up
// on when ctx ends or its connection does.
//
// A handler may ask the client whose message it is handling and wait for
// the answer: the request goes out at once, the connection goes on reading
// while the handler waits, and the client's other messages are handled
// after the handler returns, in the order sent. They wait within the
// connection's input budget (the larger of MaxMessageSize and 1 MiB): a
// client that sends more than that before answering leaves the request
// to end with ctx. Over the HTTP transport too (docs/HTTP.md section 4).
func (s *Server) RequestClient(ctx context.Context, id ClientID, name string, payload []byte) ([]byte, error) {
	h, err := s.current()
	if err != nil {
		return nil, err
	}
	return h.RequestClient(ctx, id, name, payload)
}
