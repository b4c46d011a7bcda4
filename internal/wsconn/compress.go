package wsconn

import (
	"bytes"
	"errors"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/klauspost/compress/flate"
)

// Compression is permessage-deflate (RFC 7692), always without context
// takeover in either direction: every message is a deflate stream of its
// own. That is the only mode gorilla's reader decompresses (it reads every
// frame, server and client), what gorilla's and most peers' clients ask for,
// and what lets a broadcast be compressed once and the same bytes go to
// every recipient (a compressor with context would make each recipient's
// bytes depend on what that recipient was sent before), at the cost of some
// ratio on streams of similar small messages.
//
// Who does what:
//
//   - Negotiation. The server's Acceptor offers permessage-deflate only to a
//     request with an offer it can honour (acceptableOffer: no
//     server_max_window_bits, no unknown or repeated parameter);
//     gorilla's compressing Upgrader then answers with
//     "server_no_context_takeover; client_no_context_takeover". What was
//     answered is read back from the 101 response itself (frameConn.Write,
//     while frameConn.offer is set), so the writer compresses exactly when
//     the peer agreed. A client
//     offers through gorilla's Dialer and reads the answer from the
//     response.
//   - Reading: gorilla inflates frames with RSV1 set. Its read limit counts
//     the compressed bytes, so the inflated ones are counted again here
//     (inflateLimit): a small message that inflates past the read limit
//     ends the connection with 1009, like any message over the limit. A
//     payload that does not inflate closes with 1007; RSV1 on a control or
//     continuation frame, which gorilla lets through, with 1002 (server
//     connections, whose frame headers frameConn sees).
//   - Writing. A server connection's data frames are marmot's own
//     (frameconn.go): a message of at least Threshold bytes is deflated
//     (deflate) and goes out with RSV1 set, unless deflating did not make it
//     smaller, in which case it goes out as it was (RFC 7692 lets each
//     message choose). A broadcast's Frame deflates once, on the first
//     recipient that wants it, and shares the result. A client's frames are
//     gorilla's (masked); it is told per message whether to compress.
//
// Performance: the flate writers (klauspost/compress: faster than
// compress/flate at level 1 on small messages, and allocation-free once
// warm; see BenchmarkDeflate) are pooled per level, since one costs about
// 475 KiB at level 1: only a connection that is writing a compressed
// message holds one. The compressed bytes are written
// into a pooled buffer, then framed like any other payload.

// Compression configures permessage-deflate on a server or a client.
type Compression struct {
	// Enabled accepts (server) or offers (client) permessage-deflate.
	Enabled bool
	// Threshold is the smallest data message that is compressed; smaller
	// ones go out as they are (deflate costs more than it saves on a few
	// bytes). 0: DefaultCompressionThreshold; negative: compress all.
	Threshold int
	// Level is the flate level, from 1 (fastest, the default when 0) to 9
	// (smallest).
	Level int
}

// DefaultCompressionThreshold is Compression.Threshold's default.
const DefaultCompressionThreshold = 128

// deflater is a connection's negotiated compression (nil: none).
type deflater struct {
	threshold int
	level     int
}

func newDeflater(c Compression) *deflater {
	z := &deflater{threshold: c.Threshold, level: c.Level}
	if z.threshold == 0 {
		z.threshold = DefaultCompressionThreshold
	}
	if z.level < flate.BestSpeed || z.level > flate.BestCompression {
		z.level = flate.BestSpeed
	}
	return z
}

// wants reports whether a message of n bytes is to be compressed.
func (z *deflater) wants(n int) bool { return z != nil && n >= z.threshold }

// deflations counts the messages this process has deflated (see Deflations).
var deflations atomic.Uint64

// Deflations reports how many messages this process has compressed for
// sending: a broadcast to many compressing connections counts once. Tests
// and benchmarks use it.
func Deflations() uint64 { return deflations.Load() }

// flateWriter is a pooled flate writer with the buffer it writes into.
type flateWriter struct {
	fw  *flate.Writer
	out []byte
}

func (w *flateWriter) Write(p []byte) (int, error) {
	w.out = append(w.out, p...)
	return len(p), nil
}

var flateWriters [flate.BestCompression + 1]sync.Pool

// deflateTail is what a sync flush ends with; RFC 7692 §7.2.1 drops it.
var deflateTail = []byte{0, 0, 0xff, 0xff}

// deflate appends data to dst as the payload of one compressed message
// (deflateAppend), and reports false, with dst as it was, when that is not
// smaller than data or failed.
func deflate(dst, data []byte, level int) ([]byte, bool) {
	out, err := deflateAppend(dst, data, level)
	if err != nil || len(out)-len(dst) >= len(data) {
		return dst, false
	}
	return out, true
}

// deflateAppend appends data to dst as the payload of one compressed
// message with no context takeover (RFC 7692 §7.2.1): a deflate stream of
// data, flushed, without its final empty stored block's 00 00 ff ff.
func deflateAppend(dst, data []byte, level int) ([]byte, error) {
	p := &flateWriters[level]
	w, _ := p.Get().(*flateWriter)
	if w == nil {
		w = &flateWriter{}
		w.fw, _ = flate.NewWriter(w, level) // level is valid (newDeflater)
	} else {
		w.fw.Reset(w)
	}
	w.out = dst
	_, err := w.fw.Write(data)
	if err == nil {
		err = w.fw.Flush()
	}
	out := w.out
	w.out = nil
	p.Put(w)
	deflations.Add(1)
	n := len(out) - len(deflateTail)
	if err == nil && (n < len(dst) || !bytes.Equal(out[n:], deflateTail)) {
		err = errors.New("wsconn: flate flush did not end with 00 00 ff ff")
	}
	if err != nil {
		return dst, err
	}
	return out[:n], nil
}

// Reading a compressed message: gorilla checks its read limit against the
// frames' (compressed) lengths, so inflateLimit counts what comes out.

// errInflateLimit ends a reader whose message inflated past the read limit.
var errInflateLimit = errors.New("wsconn: message inflates past the read limit")

// inflateLimit reads at most limit bytes of r; one more is an error.
type inflateLimit struct {
	r    io.Reader
	left int64
}

func (l *inflateLimit) Read(p []byte) (int, error) {
	if int64(len(p)) > l.left+1 {
		p = p[:l.left+1]
	}
	n, err := l.r.Read(p)
	if l.left -= int64(n); l.left < 0 {
		return n + int(l.left), errInflateLimit
	}
	return n, err
}

// Protocol errors in compressed input, which the reader turns into the
// close frame (Conn.run): RSV1 on a control or continuation frame (RFC 7692
// §6.1; seen by a server's frameConn, since gorilla allows it), and a
// payload that does not inflate (1007, as for invalid UTF-8).
var errStrayRSV1 = errors.New("wsconn: RSV1 set on a control or continuation frame")

// Negotiation.

// deflateAnswer is how gorilla's Upgrader accepts permessage-deflate in
// its 101 response (frameConn.Write looks for it).
var deflateAnswer = []byte("\r\nSec-WebSocket-Extensions: permessage-deflate")

// deflateOffered reports whether header (a request's) holds a
// permessage-deflate offer this side can accept with gorilla's answer,
// "permessage-deflate; server_no_context_takeover;
// client_no_context_takeover" (RFC 7692 §7.1): one whose parameters are
// known, not repeated, and do not include server_max_window_bits (which
// the answer would have to echo). A header that does not parse offers
// nothing.
func deflateOffered(h http.Header) bool {
	ok := false
	for _, v := range h.Values("Sec-WebSocket-Extensions") {
		for ext := range strings.SplitSeq(v, ",") {
			name, params, valid := parseExtension(ext)
			if !valid {
				return false
			}
			if name == "permessage-deflate" && acceptableOffer(params) {
				ok = true
			}
		}
	}
	return ok
}

// deflateAccepted reports whether a handshake response (h) accepted
// permessage-deflate.
func deflateAccepted(h http.Header) bool {
	for _, v := range h.Values("Sec-WebSocket-Extensions") {
		for ext := range strings.SplitSeq(v, ",") {
			if name, _, _ := parseExtension(ext); name == "permessage-deflate" {
				return true
			}
		}
	}
	return false
}

// acceptableOffer checks a permessage-deflate offer's parameters.
func acceptableOffer(params map[string]string) bool {
	for k, v := range params {
		switch k {
		case "server_no_context_takeover", "client_no_context_takeover":
			if v != "" {
				return false
			}
		case "client_max_window_bits":
			// The client's own window: ours to ignore (the answer
			// leaves it out, so the client uses what it likes).
			if v != "" && !windowBits(v) {
				return false
			}
		case "server_max_window_bits":
			// Accepting it means echoing it in the answer (RFC 7692
			// §7.1.2.1), which gorilla's fixed answer does not.
			return false
		default:
			return false
		}
	}
	return true
}

// windowBits reports whether v is a valid *_max_window_bits value.
func windowBits(v string) bool {
	switch v {
	case "8", "9", "10", "11", "12", "13", "14", "15":
		return true
	}
	return false
}

// parseExtension splits one extension of a Sec-WebSocket-Extensions list,
// `name; param; param=value; param="value"`, and reports false for a
// malformed or repeated parameter.
func parseExtension(s string) (name string, params map[string]string, ok bool) {
	parts := strings.Split(s, ";")
	name = strings.TrimSpace(parts[0])
	if !isToken(name) {
		return "", nil, false
	}
	params = make(map[string]string, len(parts)-1)
	for _, p := range parts[1:] {
		k, v, hasValue := strings.Cut(p, "=")
		k, v = strings.TrimSpace(k), strings.TrimSpace(v)
		if hasValue && len(v) >= 2 && v[0] == '"' && v[len(v)-1] == '"' {
			v = v[1 : len(v)-1]
		}
		if _, dup := params[k]; dup || !isToken(k) || hasValue && !isToken(v) {
			return "", nil, false
		}
		params[k] = v
	}
	return name, params, true
}

// isToken reports whether s is an HTTP token (RFC 9110 §5.6.2).
func isToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c <= ' ' || c >= 0x7f || strings.IndexByte(`"(),/:;<=>?@[\]{}`, c) >= 0 {
			return false
		}
	}
	return true
}
