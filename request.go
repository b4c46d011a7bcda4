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
// on when ctx ends or its connection does. A handler must not wait for a
// request to the client whose message it is handling (the answer would
// be read only after the handler returns): ask from another goroutine.
func (s *Server) RequestClient(ctx context.Context, id ClientID, name string, payload []byte) ([]byte, error) {
	h, err := s.current()
	if err != nil {
		return nil, err
	}
	return h.RequestClient(ctx, id, name, payload)
}
