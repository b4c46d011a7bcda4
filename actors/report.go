package actors

import (
	"errors"
	"fmt"
	"log/slog"

	"go.opentelemetry.io/otel/attribute"

	"github.com/marmotws/marmot/protocol"
)

// reporter reports the errors that have no caller to return to, for the
// server and the client alike, and runs callbacks whose panic must not fail
// their actor.
//
// The rule: an error reaches OnError when it is set, and is logged (at
// Warn) only when it is not, since then the log is its only way out; an
// error returned to a caller is neither reported nor logged. Every
// reported error is counted in marmot.errors by kind.
type reporter struct {
	log     *slog.Logger
	tel     *telemetry
	onError func(id ClientID, err error) // nil: log instead
	// enter and exit, when set, bracket every callback (the client counts
	// them, see Client.Request).
	enter, exit func()
}

// report reports err, tied to the connection id (0: none).
func (r *reporter) report(id ClientID, err error) { r.deliver(id, err, false) }

// reportLogged reports an error that is in the log already: a handler's
// panic, which the supervisor logs with its directive and restart count.
// It is counted and reaches OnError, but is not logged a second time.
func (r *reporter) reportLogged(id ClientID, err error) { r.deliver(id, err, true) }

func (r *reporter) deliver(id ClientID, err error, logged bool) {
	r.tel.countError(errorKind(err))
	if id != 0 {
		err = &ClientError{ClientID: id, Err: err}
	}
	if r.onError == nil {
		if !logged {
			r.log.Warn("marmot error", "err", err)
		}
		return
	}
	r.log.Debug("marmot error", "err", err)
	defer func() {
		if p := recover(); p != nil {
			r.log.Error("OnError callback panicked", "panic", fmt.Sprint(p), "err", err)
		}
	}()
	r.onError(id, err)
}

// safeCall runs a callback; a panic in it is reported, not escalated.
func (r *reporter) safeCall(id ClientID, what string, f func()) {
	if r.enter != nil {
		r.enter()
		defer r.exit()
	}
	defer func() {
		if p := recover(); p != nil {
			r.report(id, fmt.Errorf("%w: %s: %v", ErrHandlerPanic, what, p))
		}
	}()
	f()
}

// Error kinds, the values of marmot.error.kind.
const (
	errKindSlowConsumer   = "slow_consumer"
	errKindDecrypt        = "decrypt"
	errKindHandshake      = "handshake"
	errKindPanic          = "panic"
	errKindProtocol       = "protocol"
	errKindMaxConnections = "max_connections"
	errKindUndelivered    = "undelivered"
	errKindOrigin         = "origin"
	errKindAuth           = "auth"
	errKindLimit          = "limit"
	errKindOther          = "other"
)

// errorKind sorts an error into a bounded set of kinds for the error
// counter (an unbounded label, such as the error text, would let peers
// grow the metric without limit).
func errorKind(err error) string {
	switch {
	case errors.Is(err, ErrSlowConsumer):
		return errKindSlowConsumer
	case errors.Is(err, ErrDecryptFailed):
		return errKindDecrypt
	case errors.Is(err, ErrHandshakeFailed), errors.Is(err, ErrEncryptionRequired):
		return errKindHandshake
	case errors.Is(err, ErrHandlerPanic):
		return errKindPanic
	case errors.Is(err, ErrOriginRefused):
		return errKindOrigin
	case errors.Is(err, ErrUnauthorized), errors.Is(err, ErrForbidden), errors.Is(err, ErrTokenExpired):
		return errKindAuth
	case errors.Is(err, ErrIPLimit), errors.Is(err, ErrRateLimited):
		return errKindLimit
	case errors.Is(err, protocol.ErrMalformed), errors.Is(err, protocol.ErrUnsupportedVersion),
		errors.Is(err, protocol.ErrUnknownKind), errors.Is(err, protocol.ErrInvalidEnvelope),
		errors.Is(err, errUnexpectedFrame):
		return errKindProtocol
	case errors.Is(err, ErrMaxConnections):
		return errKindMaxConnections
	case errors.Is(err, ErrUndelivered):
		return errKindUndelivered
	}
	return errKindOther
}

// AttrErrorKind labels marmot.errors.
const AttrErrorKind = attribute.Key("marmot.error.kind")
