package actors

import (
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/marmotws/marmot/crypto"
	"github.com/marmotws/marmot/internal/httpconn"
	"github.com/marmotws/marmot/internal/transport"
	"github.com/marmotws/marmot/internal/wsconn"
	"github.com/marmotws/marmot/protocol"
)

// SubprotocolCompat is the subprotocol of the Delphi components; marmot
// speaks it, encrypted in the compat profile, to talk to Delphi peers.
const SubprotocolCompat = "synopsejson"

// Encryption close codes; see docs/PROTOCOL.md. 4501 is in the range that
// tells marmot clients not to reconnect: a wrong key stays wrong.
const (
	CloseDecryptFailed   = 4002
	CloseHandshakeFailed = 4501
)

// Encryption errors. Decryption and handshake errors also wrap the precise
// crypto sentinel (crypto.ErrWrongKey, crypto.ErrReplay, ...).
var (
	ErrEncryptionRequired = errors.New("marmot: this endpoint requires encryption")
	// ErrEncryptionMismatch: one side encrypts and the other does not, or
	// they use different profiles. The server refuses the upgrade with
	// HTTP 400; the client reports it and does not retry.
	ErrEncryptionMismatch = errors.New("marmot: client and server disagree on encryption")
	ErrHandshakeFailed    = errors.New("marmot: encryption handshake failed")
	ErrDecryptFailed      = errors.New("marmot: could not decrypt a frame")
)

// HeaderEncryption is the upgrade request header by which a marmot client
// says that it encrypts, and with which profile: "secure" or "compat". A
// server refuses with HTTP 400 a client whose claim does not match its own
// configuration, and names what it does in the same header of the refusal:
// "secure", "compat" or "none". See docs/PROTOCOL.md section 5.
const HeaderEncryption = "X-Marmot-Encryption"

// QueryEncryption is the query parameter that says the same as
// HeaderEncryption, for clients that cannot set headers on a WebSocket
// upgrade (browsers); the header wins when both are present.
const QueryEncryption = "marmot_encryption"

// HeaderHandshake is the upgrade request header by which a secure-profile
// client announces the highest handshake version it speaks (today "2",
// crypto.HandshakeVersion: the handshake with forward secrecy). A server
// runs version 2 for a client that announces it, and the legacy version 1
// (no forward secrecy) for one that does not, only if its configuration
// allows it; otherwise it closes with 4501 "downgrade refused". See
// docs/PROTOCOL.md section 5.
const HeaderHandshake = "X-Marmot-Handshake"

// QueryHandshake is the query parameter that says the same as
// HeaderHandshake, for browsers; the header wins when both are present.
const QueryHandshake = "marmot_handshake"

// offeredHandshake is the handshake version the client announced (0: none,
// a client from before version 2).
func offeredHandshake(r *http.Request) int {
	v := r.Header.Get(HeaderHandshake)
	if v == "" {
		v = r.URL.Query().Get(QueryHandshake)
	}
	n, err := strconv.Atoi(strings.TrimSpace(v))
	if err != nil || n < 0 {
		return 0
	}
	return n
}

// encryptionNone is HeaderEncryption's value for a server that does not
// encrypt.
const encryptionNone = "none"

// refuseEncryption checks an upgrade request against the server's
// encryption (nil: none). On a mismatch it answers HTTP 400 with a reason the
// client can show, and returns the refusal reason for the upgrade span and
// the error for OnError.
//
// marmot.v1 is offered by encrypting (secure profile) and plain clients
// alike, so the subprotocol cannot tell them apart: the client's
// HeaderEncryption does. A header-less client offering synopsejson is a
// Delphi peer, which always encrypts in the compat format.
func refuseEncryption(w http.ResponseWriter, r *http.Request, enc *Encryption) (reason string, err error) {
	claim := r.Header.Get(HeaderEncryption)
	if claim == "" {
		claim = r.URL.Query().Get(QueryEncryption)
	}
	claim = strings.ToLower(strings.TrimSpace(claim))
	var msg string
	switch {
	case enc == nil && claim == "":
		return "", nil
	case enc == nil:
		reason, msg = "encryption_mismatch", "marmot: server does not encrypt"
		err = fmt.Errorf("%w: %s encrypts (%s profile), this server does not", ErrEncryptionMismatch, r.RemoteAddr, claim)
	case claim == enc.Profile.String() && offers(r, enc.Subprotocol()),
		claim == "" && enc.Profile == crypto.ProfileCompat && offers(r, SubprotocolCompat):
		return "", nil
	case claim == "" || claim == enc.Profile.String():
		reason = "encryption_required"
		msg = fmt.Sprintf("marmot: server requires encryption (%s profile, subprotocol %s)", enc.Profile, enc.Subprotocol())
		err = fmt.Errorf("%w: %s did not say it encrypts with the %s profile (subprotocol %q)", ErrEncryptionRequired, r.RemoteAddr, enc.Profile, enc.Subprotocol())
	default:
		reason = "encryption_mismatch"
		msg = fmt.Sprintf("marmot: server encrypts with the %s profile, not %q", enc.Profile, claim)
		err = fmt.Errorf("%w: %s encrypts with the %q profile, this server with %s", ErrEncryptionMismatch, r.RemoteAddr, claim, enc.Profile)
	}
	mine := encryptionNone
	if enc != nil {
		mine = enc.Profile.String()
	}
	w.Header().Set(HeaderEncryption, mine)
	http.Error(w, msg, http.StatusBadRequest)
	return reason, err
}

// offers reports whether an upgrade or an HTTP session open offers
// subprotocol sub.
func offers(r *http.Request, sub string) bool {
	if httpconn.KindOf(r) == httpconn.Open {
		return httpconn.Offers(r, sub)
	}
	return wsconn.Offers(r, sub)
}

// mismatchError is the client's view of a refusal by refuseEncryption.
type mismatchError struct {
	msg      string
	required bool // the server encrypts and this client does not
}

func (e *mismatchError) Error() string { return "marmot: " + e.msg }

func (e *mismatchError) Unwrap() []error {
	if e.required {
		return []error{ErrEncryptionMismatch, ErrEncryptionRequired}
	}
	return []error{ErrEncryptionMismatch}
}

// encryptionRefusal turns a refused upgrade into an ErrEncryptionMismatch
// when the server refused it for encryption (enc is the client's, nil:
// none), or returns nil. body is the start of the response body: servers
// from before HeaderEncryption only say it there.
func encryptionRefusal(resp *http.Response, body []byte, enc *Encryption) error {
	if resp.StatusCode != http.StatusBadRequest {
		return nil
	}
	server := strings.ToLower(resp.Header.Get(HeaderEncryption))
	mine := encryptionNone
	if enc != nil {
		mine = enc.Profile.String()
	}
	switch {
	case server == "" && enc == nil && strings.HasPrefix(string(body), "marmot: this endpoint requires encryption"):
		// A marmot server from before HeaderEncryption.
		return &mismatchError{msg: "server requires encryption, and this client does not encrypt: configure the server's key and profile", required: true}
	case server == "" || server == mine:
		return nil
	case server == encryptionNone:
		return &mismatchError{msg: "server does not encrypt, and this client does (" + mine + " profile): disable encryption or use an encrypting server"}
	case enc == nil:
		return &mismatchError{msg: "server requires encryption (" + server + " profile), and this client does not encrypt: configure the server's key and profile", required: true}
	}
	return &mismatchError{msg: "server encrypts with the " + server + " profile, this client with the " + mine + " profile"}
}

// Encryption configures message encryption for a hub or a client. Exactly
// one profile's fields are used: Server or Client for the secure profile
// (by side), Compat for the compat profile.
type Encryption struct {
	Profile crypto.Profile
	// Server is the secure profile's server side; its MasterKey is derived
	// once, so a connection storm never runs the slow KDF.
	Server *crypto.ServerConfig
	// Client is the secure profile's client side.
	Client *crypto.ClientConfig
	// Compat seals and opens the Delphi components' format.
	Compat *crypto.CompatCodec
	// HandshakeTimeout bounds the secure handshake after the upgrade.
	HandshakeTimeout time.Duration
}

// Subprotocol returns the subprotocol that carries this profile.
func (e *Encryption) Subprotocol() string {
	if e.Profile == crypto.ProfileCompat {
		return SubprotocolCompat
	}
	return protocol.SubprotocolBinary
}

func (e *Encryption) handshakeDeadline() time.Time {
	d := e.HandshakeTimeout
	if d <= 0 {
		d = 10 * time.Second
	}
	return time.Now().Add(d)
}

// Close reasons double as a tiny vocabulary so the other side can tell a
// wrong key from a mode mismatch without either side revealing anything.
const (
	reasonWrongKey     = "wrong key"
	reasonModeMismatch = "mode mismatch"
	reasonHandshake    = "handshake failed"
	reasonDowngrade    = "downgrade refused"
)

func handshakeReason(err error) string {
	switch {
	case errors.Is(err, crypto.ErrWrongKey), errors.Is(err, crypto.ErrAuthFailed):
		return reasonWrongKey
	case errors.Is(err, crypto.ErrModeMismatch):
		return reasonModeMismatch
	case errors.Is(err, crypto.ErrDowngrade):
		return reasonDowngrade
	}
	return reasonHandshake
}

// peerHandshakeError turns the peer's 4501 close into the error it stands for.
func peerHandshakeError(err error) error {
	var pc *transport.PeerClose
	if errors.As(err, &pc) && pc.Code == CloseHandshakeFailed {
		switch pc.Text {
		case reasonWrongKey:
			return fmt.Errorf("%w: peer says %w", ErrHandshakeFailed, crypto.ErrWrongKey)
		case reasonModeMismatch:
			return fmt.Errorf("%w: peer says %w", ErrHandshakeFailed, crypto.ErrModeMismatch)
		case reasonDowngrade:
			return fmt.Errorf("%w: peer says %w", ErrHandshakeFailed, crypto.ErrDowngrade)
		}
	}
	return fmt.Errorf("%w: %w", ErrHandshakeFailed, err)
}

// failHandshake tells the peer why with a 4501 close; the caller drops the
// connection.
func failHandshake(t transport.Conn, err error) error {
	t.Close(CloseHandshakeFailed, handshakeReason(err), time.Now().Add(time.Second))
	return fmt.Errorf("%w: %w", ErrHandshakeFailed, err)
}

func readHandshakeFrame(t transport.Conn, deadline time.Time) ([]byte, error) {
	typ, msg, err := t.ReceiveNow(deadline)
	if err != nil {
		return nil, peerHandshakeError(err)
	}
	if typ != transport.BinaryMessage {
		return nil, fmt.Errorf("%w: handshake message in a text frame", ErrHandshakeFailed)
	}
	return msg, nil
}

func sendHandshakeFrame(t transport.Conn, msg []byte, deadline time.Time) error {
	if err := t.SendNow(transport.BinaryMessage, msg, deadline); err != nil {
		return fmt.Errorf("%w: %w", ErrHandshakeFailed, err)
	}
	return nil
}

// serverHandshake runs the secure handshake on a fresh connection, before
// its actor exists: ServerHello, ClientHello, ServerFinished, and returns
// the session and the handshake's version. offered is the
// handshake version the client announced (offeredHandshake): below 2, the
// legacy handshake runs if the server allows it, or the connection closes
// with 4501 "downgrade refused" before any handshake message.
func serverHandshake(t transport.Conn, enc *Encryption, offered int) (*crypto.Session, int, error) {
	start := crypto.NewServerHandshake
	if offered < crypto.HandshakeVersion {
		start = crypto.NewLegacyServerHandshake
	}
	hs, err := start(*enc.Server)
	if err != nil {
		return nil, 0, failHandshake(t, err)
	}
	deadline := enc.handshakeDeadline()
	if err := sendHandshakeFrame(t, hs.Hello(), deadline); err != nil {
		return nil, 0, err
	}
	hello, err := readHandshakeFrame(t, deadline)
	if err != nil {
		return nil, 0, err
	}
	sess, fin, err := hs.Finish(hello)
	if err != nil {
		return nil, 0, failHandshake(t, err)
	}
	if err := sendHandshakeFrame(t, fin, deadline); err != nil {
		return nil, 0, err
	}
	return sess, hs.Version(), nil
}

// clientHandshake is the client's half of serverHandshake.
func clientHandshake(t transport.Conn, enc *Encryption, deadline time.Time) (*crypto.Session, error) {
	hello, err := readHandshakeFrame(t, deadline)
	if err != nil {
		return nil, err
	}
	hs, err := crypto.NewClientHandshake(*enc.Client, hello)
	if err != nil {
		return nil, failHandshake(t, err)
	}
	if err := sendHandshakeFrame(t, hs.Hello(), deadline); err != nil {
		return nil, err
	}
	fin, err := readHandshakeFrame(t, deadline)
	if err != nil {
		return nil, err
	}
	sess, err := hs.Finish(fin)
	if err != nil {
		return nil, failHandshake(t, err)
	}
	return sess, nil
}

// seal encrypts one outbound payload; only the owning actor calls it, which
// keeps the session's sequence numbers in write order. (open runs on the
// reader goroutine: the two directions of a session are independent.)
// dst is reused storage for the sealed frame (nil: allocate).
func (l *link) seal(f *outFrame, dst []byte) (typ int, wire []byte, err error) {
	switch {
	case l.sess != nil:
		if n := l.sess.SealedSize(len(f.data)); cap(dst) < n {
			dst = make([]byte, 0, n)
		}
		wire, err = l.sess.Seal(dst[:0], f.data)
		return transport.BinaryMessage, wire, err
	case l.compat != nil:
		l.peerMu.Lock()
		set, mode, size := l.peerSet, l.peerMode, l.peerKeySize
		l.peerMu.Unlock()
		if set {
			wire, err = l.compat.SealAs(dst[:0], f.data, mode, size)
		} else {
			wire, err = l.compat.Seal(dst[:0], f.data)
		}
		// The seed sends and accepts only text frames, binary ciphertext
		// included.
		return transport.TextMessage, wire, err
	}
	return f.typ, f.data, nil
}

// open decrypts one inbound frame; on failure it also says which close code
// ends the connection.
func (l *link) open(in *inbound) ([]byte, int, error) {
	switch {
	case l.sess != nil:
		if in.typ != transport.BinaryMessage {
			return nil, CloseUnsupportedData, fmt.Errorf("%w: encrypted frames travel as binary messages", errUnexpectedFrame)
		}
		plain, err := l.sess.Open(l.plainStorage(in), in.data)
		if err != nil {
			return nil, CloseDecryptFailed, fmt.Errorf("%w: %w", ErrDecryptFailed, err)
		}
		return l.keepPlain(in, plain), 0, nil
	case l.compat != nil:
		if in.typ != transport.TextMessage {
			return nil, CloseUnsupportedData, fmt.Errorf("%w: synopsejson frames travel as text messages", errUnexpectedFrame)
		}
		plain, mode, size, err := l.compat.Open(l.plainStorage(in), in.data)
		if err != nil {
			return nil, CloseDecryptFailed, fmt.Errorf("%w: %w", ErrDecryptFailed, err)
		}
		// The seed's automatic coordination, made explicit: answer in the
		// mode the peer used (Open only accepts modes in the allow-list).
		l.peerMu.Lock()
		l.peerMode, l.peerKeySize, l.peerSet = mode, size, true
		l.peerMu.Unlock()
		return l.keepPlain(in, plain), 0, nil
	}
	return in.data, 0, nil
}

// plainStorage is where a frame's plaintext goes: the frame's own storage,
// unless that holds the ciphertext (kept for OnDataReceived).
func (l *link) plainStorage(in *inbound) []byte {
	if l.keepRaw {
		return nil
	}
	return in.buf[:0]
}

// keepPlain makes plain the frame's storage, so it is reused with the frame.
func (l *link) keepPlain(in *inbound, plain []byte) []byte {
	if !l.keepRaw {
		in.buf = plain
	}
	return plain[:len(plain):len(plain)]
}

func (l *link) encrypted() bool { return l.sess != nil || l.compat != nil }
