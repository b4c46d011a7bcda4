package protocol

import (
	"errors"
	"fmt"
	"strconv"
	"unicode/utf8"
)

// Version is the envelope format version carried by both codecs (the first
// byte of a marmot.v1 frame, the "v" member of a marmot.json.v1 object). A
// peer that changes the layout bumps it, so an old peer fails loudly with
// ErrUnsupportedVersion instead of misreading the frame.
const Version = 1

// Limits on envelope headers. They exist so that a hostile peer cannot make
// the receiver allocate or hash much more than the frame it actually sent, and
// they are small enough that every header field stays cheap to copy; payloads
// are bounded by the transport's read limit instead.
const (
	// MaxNameLen bounds Envelope.Name in bytes; command names are
	// identifiers, not data.
	MaxNameLen = 255
	// MaxRoomLen bounds Envelope.Room in bytes, for the same reason: a
	// room name is an identifier, and the server keys a map by it.
	MaxRoomLen = 255
	// MaxEpochLen bounds Envelope.Epoch in bytes: an epoch is an opaque
	// token the server made up, not data.
	MaxEpochLen = 64
	// MaxMetaEntries bounds len(Envelope.Meta); trace propagation needs two.
	MaxMetaEntries = 32
	// MaxMetaKeyLen bounds each Meta key in bytes.
	MaxMetaKeyLen = 64
	// MaxMetaValueLen bounds each Meta value in bytes. W3C Trace Context
	// asks propagators to keep tracestate values of at least 512
	// characters, so this leaves room without inviting bulk data into
	// headers.
	MaxMetaValueLen = 1024
)

// Sentinel errors. Every error returned by this package wraps exactly one of
// them (with context appended), so callers branch with errors.Is and log the
// full message.
var (
	// ErrMalformed reports a frame that is not a well-formed encoding at
	// all: truncated, bad varint, bad JSON, reserved bits set, invalid UTF-8
	// in a name or meta entry, non-canonical encodings. A conforming peer
	// never produces one, so it points at a buggy or hostile peer rather than
	// at an application error.
	ErrMalformed = errors.New("protocol: malformed envelope")
	// ErrUnsupportedVersion reports a message whose version is not Version.
	// The version is checked before the rest of the message is interpreted,
	// so that a newer peer gets a clear answer rather than a generic parse
	// error.
	ErrUnsupportedVersion = errors.New("protocol: unsupported version")
	// ErrUnknownKind reports a kind outside KindData..KindError. Unknown
	// kinds are rejected, never skipped: silently dropping, for example, a
	// request would leave the peer waiting for a reply forever.
	ErrUnknownKind = errors.New("protocol: unknown kind")
	// ErrInvalidEnvelope reports an envelope that is well-formed but breaks
	// the per-kind field rules or a header limit, on encode as well as on
	// decode.
	ErrInvalidEnvelope = errors.New("protocol: invalid envelope")
)

// Kind says what an envelope is for and therefore which fields it must
// carry; see the Kind constants and Envelope.Validate.
type Kind uint8

// The kinds. Their numeric values are the wire values of marmot.v1 and must
// never be renumbered.
const (
	// KindData is a plain application message: no name required, no reply
	// expected. It is what raw-mode messages become.
	KindData Kind = 1
	// KindCommand is a named, fire-and-forget message.
	KindCommand Kind = 2
	// KindRequest is a named message with a non-zero ID; the peer must answer
	// with a KindReply or KindError carrying the same ID.
	KindRequest Kind = 3
	// KindReply is the successful answer to the request with the same ID.
	KindReply Kind = 4
	// KindError is the failed answer to the request with the same ID; Code is
	// an application error code and Payload a UTF-8 error message.
	KindError Kind = 5
)

var kindNames = [...]string{
	KindData:    "data",
	KindCommand: "command",
	KindRequest: "request",
	KindReply:   "reply",
	KindError:   "error",
}

// valid reports whether k is one of the five defined kinds.
func (k Kind) valid() bool { return k >= KindData && k <= KindError }

// String returns the name used for k in marmot.json.v1 ("data", "command",
// "request", "reply", "error"), so logs and JSON frames spell kinds the same
// way; undefined kinds print as "kind(N)" rather than as an empty string.
func (k Kind) String() string {
	if k.valid() {
		return kindNames[k]
	}
	return "kind(" + strconv.Itoa(int(k)) + ")"
}

// ParseKind is the inverse of Kind.String for the five defined kinds. Names
// are case-sensitive and "kind(N)" is not accepted: these are the kind names
// of marmot.json.v1, whose decoder must reject anything a conforming peer
// would not send.
func ParseKind(s string) (Kind, error) {
	if k, ok := parseKind(s); ok {
		return k, nil
	}
	return 0, fmt.Errorf("%w: %q", ErrUnknownKind, truncateForError(s))
}

// parseKind serves ParseKind and the JSON decoder, which has bytes and must
// not allocate.
func parseKind[S ~string | ~[]byte](s S) (Kind, bool) {
	switch string(s) {
	case "data":
		return KindData, true
	case "command":
		return KindCommand, true
	case "request":
		return KindRequest, true
	case "reply":
		return KindReply, true
	case "error":
		return KindError, true
	}
	return 0, false
}

// Envelope is one application message in the envelope protocols (marmot.v1
// and marmot.json.v1). Raw mode has no envelope; the framework presents raw
// messages as KindData.
//
// The zero value is not valid (Kind 0 is undefined); Validate lists the rules.
type Envelope struct {
	// Kind selects which of the other fields are required or forbidden.
	Kind Kind
	// ID correlates a request with its reply or error. It is required
	// (non-zero) for KindRequest, KindReply and KindError and must be 0
	// otherwise, so a stray ID never suggests that a reply is expected.
	ID uint64
	// Name routes commands and requests to a handler. Required for
	// KindCommand and KindRequest, optional for KindData (a topic, say), and
	// must be empty for KindReply and KindError, which are routed by ID.
	// Valid UTF-8, at most MaxNameLen bytes.
	Name string
	// Code is the application error code of a KindError envelope; it must be
	// 0 for every other kind. 0 on a KindError means "unspecified".
	Code uint32
	// Room names the room a message belongs to: on data and command
	// envelopes from the server, the room it was published to; on the
	// room requests a client sends (RequestJoin, RequestLeave,
	// RequestPublish), the room they act on. It must be empty for
	// KindReply and KindError, which are routed by ID. Valid UTF-8, at
	// most MaxRoomLen bytes.
	Room string
	// Offset is the room message's position in its room: assigned by the
	// server, increasing by one per message published to the room, from 1.
	// On a RequestJoin it is the last offset the client received, to
	// recover from (with Epoch). It requires Room; 0 means absent.
	Offset uint64
	// Epoch names one run of a room's history: it changes whenever the
	// history is lost (the room ended and was created again, the store was
	// reset), so that an Offset is only meaningful with its Epoch. A client
	// sends it on a RequestJoin to recover what it missed since Offset;
	// servers tell it in the join's reply (JoinResult). It requires Room.
	// Valid UTF-8, at most MaxEpochLen bytes; empty means absent.
	Epoch string
	// Seq is the sequence number of a client's message within its session
	// (see docs/PROTOCOL.md section 8): 1, 2, 3... in the order the client
	// sent them, so that the server handles a message re-sent after a
	// reconnect once. 0 means absent (a client without a session). It must
	// be 0 on KindReply and KindError.
	Seq uint64
	// Ack acknowledges a session's messages: every Seq up to Ack has been
	// handled. The server sends it on an AckCommand; 0 means absent. It
	// must be 0 on KindReply and KindError.
	Ack uint64
	// Meta carries optional string headers, first of all W3C trace context
	// (traceparent/tracestate). It has the shape of an OpenTelemetry
	// propagation.MapCarrier, so propagation.MapCarrier(e.Meta) injects and
	// extracts directly (allocate the map before injecting). A nil and an
	// empty map encode the same way. Keys are non-empty; see the Max* limits.
	// Decoders always store a freshly allocated map (or nil), never one
	// shared with a previous Decode into the same Envelope.
	Meta map[string]string
	// Payload is opaque to the protocol. After Decode it may alias the
	// decoded message: the binary codec always returns a sub-slice of the
	// input frame, and the JSON codec does so when the payload string has no
	// escapes. Copy it before the frame's buffer is reused. An empty payload
	// is decoded as nil.
	Payload []byte
}

// Validate reports whether e may be sent: Kind is defined (else
// ErrUnknownKind), the per-kind rules on ID, Name and Code hold, Name and
// Meta are valid UTF-8 and within the limits (else ErrInvalidEnvelope).
// Both codecs call it in Append and apply the same rules in Decode, so a
// handler never sees an envelope that would have been refused on the way out.
func (e *Envelope) Validate() error {
	_, err := e.validate(nil, false)
	return err
}

// metaKV is one Meta entry. Encoders need the entries sorted by key; sorting
// a stack array of pairs gathered during validation saves a second pass over
// the map and a map lookup per key.
type metaKV struct{ k, v string }

// smallMeta is the encoders' stack room for Meta entries (trace context
// needs two). It is kept small on purpose: a MaxMetaEntries array is 1 KiB
// of stack, which costs a stack copy whenever an encoder runs near the top
// of a young goroutine's stack; more entries go to the heap.
const smallMeta = 4

// validate implements Validate. With collect it also returns the Meta
// entries sorted by key, appended to buf.
func (e *Envelope) validate(buf []metaKV, collect bool) ([]metaKV, error) {
	if err := e.validateKind(); err != nil {
		return nil, err
	}
	if len(e.Name) > MaxNameLen {
		return nil, fmt.Errorf("%w: name is %d bytes, limit is %d", ErrInvalidEnvelope, len(e.Name), MaxNameLen)
	}
	if !utf8.ValidString(e.Name) {
		return nil, fmt.Errorf("%w: name is not valid UTF-8", ErrInvalidEnvelope)
	}
	if err := checkRoomLen(uint64(len(e.Room))); err != nil {
		return nil, err
	}
	if !utf8.ValidString(e.Room) {
		return nil, fmt.Errorf("%w: room is not valid UTF-8", ErrInvalidEnvelope)
	}
	if err := checkEpochLen(uint64(len(e.Epoch))); err != nil {
		return nil, err
	}
	if !utf8.ValidString(e.Epoch) {
		return nil, fmt.Errorf("%w: epoch is not valid UTF-8", ErrInvalidEnvelope)
	}
	if len(e.Meta) == 0 {
		return nil, nil
	}
	if err := checkMetaCount(uint64(len(e.Meta))); err != nil {
		return nil, err
	}
	kvs := buf
	if collect && len(e.Meta) > cap(buf) {
		kvs = make([]metaKV, 0, len(e.Meta))
	}
	for k, v := range e.Meta {
		if err := checkMetaKeyLen(uint64(len(k))); err != nil {
			return nil, err
		}
		if err := checkMetaValueLen(uint64(len(v))); err != nil {
			return nil, err
		}
		if !utf8.ValidString(k) {
			return nil, fmt.Errorf("%w: meta key %q is not valid UTF-8", ErrInvalidEnvelope, k)
		}
		if !utf8.ValidString(v) {
			return nil, fmt.Errorf("%w: meta value for %q is not valid UTF-8", ErrInvalidEnvelope, k)
		}
		if collect {
			kvs = append(kvs, metaKV{k, v})
		}
	}
	// Insertion sort: at most MaxMetaEntries entries, usually one or two,
	// and no closure or interface to allocate. String comparison is
	// bytewise, the order the binary decoder demands.
	for i := 1; i < len(kvs); i++ {
		for j := i; j > 0 && kvs[j].k < kvs[j-1].k; j-- {
			kvs[j], kvs[j-1] = kvs[j-1], kvs[j]
		}
	}
	return kvs, nil
}

// validateKind checks the per-kind rules only. Decoders call it after they
// have enforced limits and UTF-8 while parsing, to avoid scanning twice.
func (e *Envelope) validateKind() error {
	switch e.Kind {
	case KindData:
		if e.ID != 0 {
			return fmt.Errorf("%w: data envelope carries an ID", ErrInvalidEnvelope)
		}
	case KindCommand:
		if e.ID != 0 {
			return fmt.Errorf("%w: command envelope carries an ID", ErrInvalidEnvelope)
		}
		if e.Name == "" {
			return fmt.Errorf("%w: command envelope without a name", ErrInvalidEnvelope)
		}
	case KindRequest:
		if e.ID == 0 {
			return fmt.Errorf("%w: request envelope without an ID", ErrInvalidEnvelope)
		}
		if e.Name == "" {
			return fmt.Errorf("%w: request envelope without a name", ErrInvalidEnvelope)
		}
	case KindReply, KindError:
		if e.ID == 0 {
			return fmt.Errorf("%w: %v envelope without an ID", ErrInvalidEnvelope, e.Kind)
		}
		if e.Name != "" {
			return fmt.Errorf("%w: %v envelope carries a name", ErrInvalidEnvelope, e.Kind)
		}
	default:
		return fmt.Errorf("%w: %d", ErrUnknownKind, uint8(e.Kind))
	}
	if e.Code != 0 && e.Kind != KindError {
		return fmt.Errorf("%w: %v envelope carries a code", ErrInvalidEnvelope, e.Kind)
	}
	if e.Room != "" && (e.Kind == KindReply || e.Kind == KindError) {
		return fmt.Errorf("%w: %v envelope carries a room", ErrInvalidEnvelope, e.Kind)
	}
	// Room is forbidden on replies and errors, so offset and epoch are too.
	if e.Offset != 0 && e.Room == "" {
		return fmt.Errorf("%w: offset without a room", ErrInvalidEnvelope)
	}
	if e.Epoch != "" && e.Room == "" {
		return fmt.Errorf("%w: epoch without a room", ErrInvalidEnvelope)
	}
	if (e.Seq != 0 || e.Ack != 0) && (e.Kind == KindReply || e.Kind == KindError) {
		return fmt.Errorf("%w: %v envelope carries a sequence number or an acknowledgement", ErrInvalidEnvelope, e.Kind)
	}
	return nil
}

func checkEpochLen(n uint64) error {
	if n > MaxEpochLen {
		return fmt.Errorf("%w: epoch is %d bytes, limit is %d", ErrInvalidEnvelope, n, MaxEpochLen)
	}
	return nil
}

func checkRoomLen(n uint64) error {
	if n > MaxRoomLen {
		return fmt.Errorf("%w: room is %d bytes, limit is %d", ErrInvalidEnvelope, n, MaxRoomLen)
	}
	return nil
}

func checkNameLen(n uint64) error {
	if n > MaxNameLen {
		return fmt.Errorf("%w: name is %d bytes, limit is %d", ErrInvalidEnvelope, n, MaxNameLen)
	}
	return nil
}

func checkMetaCount(n uint64) error {
	if n > MaxMetaEntries {
		return fmt.Errorf("%w: %d meta entries, limit is %d", ErrInvalidEnvelope, n, MaxMetaEntries)
	}
	return nil
}

func checkMetaKeyLen(n uint64) error {
	if n == 0 {
		return fmt.Errorf("%w: empty meta key", ErrInvalidEnvelope)
	}
	if n > MaxMetaKeyLen {
		return fmt.Errorf("%w: meta key is %d bytes, limit is %d", ErrInvalidEnvelope, n, MaxMetaKeyLen)
	}
	return nil
}

func checkMetaValueLen(n uint64) error {
	if n > MaxMetaValueLen {
		return fmt.Errorf("%w: meta value is %d bytes, limit is %d", ErrInvalidEnvelope, n, MaxMetaValueLen)
	}
	return nil
}

// truncateForError keeps hostile input from blowing up error messages and
// logs.
func truncateForError(s string) string {
	const max = 32
	if len(s) <= max {
		return s
	}
	return s[:max] + "..."
}
