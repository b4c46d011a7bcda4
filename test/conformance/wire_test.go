package conformance

import (
	"bufio"
	"bytes"
	"crypto/sha1"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"syscall"
	"time"
	"unicode/utf8"
)

// Opcodes (RFC 6455 §5.2).
const (
	opCont   byte = 0x0
	opText   byte = 0x1
	opBinary byte = 0x2
	opClose  byte = 0x8
	opPing   byte = 0x9
	opPong   byte = 0xA
)

// noStatus is the close code reported for a close frame without a body
// (1005, never sent on the wire).
const noStatus = 1005

// frame is a frame the peer sends. rsv is the three reserved bits as one
// number, RSV1 being 4 (Autobahn's numbering: "RSV = 1" sets RSV3).
type frame struct {
	fin      bool
	rsv      byte
	op       byte
	payload  []byte
	flipMask bool // masked when it should not be, or the other way round
}

func text(s string) frame           { return frame{fin: true, op: opText, payload: []byte(s)} }
func textBytes(b []byte) frame      { return frame{fin: true, op: opText, payload: b} }
func binaryMsg(b []byte) frame      { return frame{fin: true, op: opBinary, payload: b} }
func ping(s string) frame           { return frame{fin: true, op: opPing, payload: []byte(s)} }
func pong(s string) frame           { return frame{fin: true, op: opPong, payload: []byte(s)} }
func frag(op byte, b []byte) frame  { return frame{op: op, payload: b} }
func cont(fin bool, b []byte) frame { return frame{fin: fin, op: opCont, payload: b} }

// closeFrame is a close frame with code and reason; code < 0 leaves the
// body empty.
func closeFrame(code int, reason string) frame {
	if code < 0 {
		return frame{fin: true, op: opClose}
	}
	b := binary16(code)
	return frame{fin: true, op: opClose, payload: append(b, reason...)}
}

func binary16(code int) []byte {
	return []byte{byte(code >> 8), byte(code)}
}

func (f frame) withRSV(rsv byte) frame { f.rsv = rsv; return f }

// appendHeader appends a frame header with first byte b0 announcing an
// n-byte payload, and a masking key when masked, which it returns.
func appendHeader(b []byte, b0 byte, n uint64, masked bool) ([]byte, [4]byte) {
	var mbit byte
	if masked {
		mbit = 0x80
	}
	switch {
	case n < 126:
		b = append(b, b0, mbit|byte(n))
	case n <= 0xffff:
		b = append(b, b0, mbit|126)
		b = binary.BigEndian.AppendUint16(b, uint16(n))
	default:
		b = append(b, b0, mbit|127)
		b = binary.BigEndian.AppendUint64(b, n)
	}
	var key [4]byte
	if masked {
		binary.LittleEndian.PutUint32(key[:], rand.Uint32()|1) // never the no-op key
		b = append(b, key[:]...)
	}
	return b, key
}

// appendFrame appends f as a frame sent by a client (masked) or a server.
func appendFrame(b []byte, f frame, client bool) []byte {
	b0 := f.op&0x0f | (f.rsv&7)<<4
	if f.fin {
		b0 |= 0x80
	}
	masked := client != f.flipMask
	b, key := appendHeader(b, b0, uint64(len(f.payload)), masked)
	start := len(b)
	b = append(b, f.payload...)
	if masked {
		for i := range b[start:] {
			b[start+i] ^= key[i&3]
		}
	}
	return b
}

// rframe is a frame read from marmot.
type rframe struct {
	fin     bool
	rsv     byte
	op      byte
	masked  bool
	payload []byte
}

func (f rframe) String() string {
	switch f.op {
	case opClose:
		code, reason, err := parseClose(f.payload)
		if err != nil {
			return fmt.Sprintf("close frame (%v)", err)
		}
		return fmt.Sprintf("close %d %q", code, reason)
	case opPing:
		return fmt.Sprintf("ping %q", clip(f.payload))
	case opPong:
		return fmt.Sprintf("pong %q", clip(f.payload))
	case opText, opBinary, opCont:
		return fmt.Sprintf("%s frame (fin %v, %d bytes)", opName(f.op), f.fin, len(f.payload))
	}
	return fmt.Sprintf("frame with opcode %d", f.op)
}

func opName(op byte) string {
	switch op {
	case opCont:
		return "continuation"
	case opText:
		return "text"
	case opBinary:
		return "binary"
	case opClose:
		return "close"
	case opPing:
		return "ping"
	case opPong:
		return "pong"
	}
	return fmt.Sprintf("opcode %d", op)
}

func clip(b []byte) []byte {
	if len(b) > 24 {
		return b[:24]
	}
	return b
}

// parseClose decodes a close frame's body; an empty body is noStatus.
func parseClose(p []byte) (code int, reason string, err error) {
	switch {
	case len(p) == 0:
		return noStatus, "", nil
	case len(p) == 1:
		return 0, "", errors.New("1-byte close body")
	case !utf8.Valid(p[2:]):
		return 0, "", errors.New("close reason is not valid UTF-8")
	}
	return int(binary.BigEndian.Uint16(p)), string(p[2:]), nil
}

// maxFrame bounds what the peer accepts in one frame from marmot.
const maxFrame = 4 << 20

// readFrame reads one frame, with guard as the read deadline.
func readFrame(c net.Conn, br *bufio.Reader) (rframe, error) {
	_ = c.SetReadDeadline(time.Now().Add(guard))
	var h [2]byte
	if _, err := io.ReadFull(br, h[:]); err != nil {
		return rframe{}, err
	}
	f := rframe{fin: h[0]&0x80 != 0, rsv: h[0] >> 4 & 7, op: h[0] & 0x0f, masked: h[1]&0x80 != 0}
	n := uint64(h[1] & 0x7f)
	switch n {
	case 126:
		var x [2]byte
		if _, err := io.ReadFull(br, x[:]); err != nil {
			return rframe{}, err
		}
		n = uint64(binary.BigEndian.Uint16(x[:]))
	case 127:
		var x [8]byte
		if _, err := io.ReadFull(br, x[:]); err != nil {
			return rframe{}, err
		}
		n = binary.BigEndian.Uint64(x[:])
	}
	if n > maxFrame {
		return rframe{}, fmt.Errorf("frame of %d bytes", n)
	}
	var key [4]byte
	if f.masked {
		if _, err := io.ReadFull(br, key[:]); err != nil {
			return rframe{}, err
		}
	}
	f.payload = make([]byte, n)
	if _, err := io.ReadFull(br, f.payload); err != nil {
		return rframe{}, err
	}
	if f.masked {
		for i := range f.payload {
			f.payload[i] ^= key[i&3]
		}
	}
	return f, nil
}

// closedErr reports whether err is how a read ends on a closed connection.
func closedErr(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET)
}

// acceptKey is the Sec-WebSocket-Accept answer to key (RFC 6455 §4.2.2).
func acceptKey(key string) string {
	h := sha1.Sum([]byte(key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"))
	return base64.StdEncoding.EncodeToString(h[:])
}

// newKey returns a fresh Sec-WebSocket-Key.
func newKey() string {
	var b [16]byte
	for i := range b {
		b[i] = byte(rand.Uint32())
	}
	return base64.StdEncoding.EncodeToString(b[:])
}

// peer is the test's end of one WebSocket connection with marmot: the
// client when marmot is the server under test, else the server.
type peer struct {
	r         *run
	conn      net.Conn
	br        *bufio.Reader
	client    bool // the peer is the client: it masks, marmot must not
	closeSent bool
}

func (p *peer) write(b []byte) {
	// A write may fail once marmot has failed the connection; what matters
	// is what marmot sent, which the reads check.
	_ = p.conn.SetWriteDeadline(time.Now().Add(guard))
	_, _ = p.conn.Write(b)
}

func (p *peer) encode(frames []frame) []byte {
	var b []byte
	for _, f := range frames {
		b = appendFrame(b, f, p.client)
		if f.op == opClose {
			p.closeSent = true
		}
	}
	return b
}

// send writes frames in one write.
func (p *peer) send(frames ...frame) { p.write(p.encode(frames)) }

// sendEach writes every frame with a write of its own ("frame-wise chops").
func (p *peer) sendEach(frames ...frame) {
	for _, f := range frames {
		p.send(f)
	}
}

// sendChops writes frames in writes of chop bytes each ("octet-wise chops"
// for chop 1).
func (p *peer) sendChops(chop int, frames ...frame) {
	b := p.encode(frames)
	for len(b) > 0 {
		n := min(chop, len(b))
		p.write(b[:n])
		b = b[n:]
	}
}

// next reads the next frame from marmot and checks what every frame from
// marmot must satisfy.
func (p *peer) next(what string) rframe {
	p.r.t.Helper()
	f, err := readFrame(p.conn, p.br)
	if err != nil {
		if closedErr(err) {
			p.r.fatalf("connection closed while waiting for %s", what)
		}
		p.r.fatalf("waiting for %s: %v", what, err)
	}
	switch {
	case f.rsv != 0:
		p.r.fatalf("marmot sent a frame with RSV %d", f.rsv)
	case f.op >= opClose && (!f.fin || len(f.payload) > 125):
		p.r.fatalf("marmot sent a bad control frame: %s, fin %v, %d bytes", opName(f.op), f.fin, len(f.payload))
	case f.masked == p.client:
		if p.client {
			p.r.fatalf("marmot's server sent a masked frame")
		}
		p.r.fatalf("marmot's client sent an unmasked frame")
	}
	return f
}

// wantMessage reads one data message (reassembling fragments) and checks
// that it is exactly op with payload.
func (p *peer) wantMessage(op byte, payload []byte) {
	p.r.t.Helper()
	p.checkMessage(p.next("the echo"), op, payload)
}

func (p *peer) checkMessage(f rframe, op byte, payload []byte) {
	p.r.t.Helper()
	if f.op != op {
		p.r.fatalf("got %s, want the %s echo", f, opName(op))
	}
	got := f.payload
	for !f.fin {
		f = p.next("the rest of the echo")
		if f.op != opCont {
			p.r.fatalf("got %s inside a fragmented echo", f)
		}
		got = append(got, f.payload...)
	}
	if len(got) != len(payload) || !bytes.Equal(got, payload) {
		p.r.fatalf("echo differs: got %d bytes %q, want %d bytes %q", len(got), clip(got), len(payload), clip(payload))
	}
}

// wantPong reads a pong with payload.
func (p *peer) wantPong(payload string) {
	p.r.t.Helper()
	f := p.next("a pong")
	if f.op != opPong {
		p.r.fatalf("got %s, want pong %q", f, clip([]byte(payload)))
	}
	if string(f.payload) != payload {
		p.r.fatalf("got pong %q, want pong %q", clip(f.payload), clip([]byte(payload)))
	}
}

// wantClose reads marmot's close frame, which must carry one of codes,
// answers it unless the peer started the closing handshake, and waits for
// marmot to close the TCP connection.
func (p *peer) wantClose(codes ...int) {
	p.r.t.Helper()
	p.checkClose(p.next("a close frame"), codes...)
}

// wantEchoThenClose is wantClose, but the exact echo of op/payload may come
// first: marmot may or may not have echoed a valid message before it
// failed the connection on the frame that followed (Autobahn: OK or
// NON-STRICT, both passing).
func (p *peer) wantEchoThenClose(op byte, payload []byte, codes ...int) {
	p.r.t.Helper()
	f := p.next("the echo or a close frame")
	if f.op != opClose {
		p.checkMessage(f, op, payload)
		f = p.next("a close frame")
	}
	p.checkClose(f, codes...)
}

func (p *peer) checkClose(f rframe, codes ...int) {
	p.r.t.Helper()
	if f.op != opClose {
		p.r.fatalf("got %s, want close %v", f, codes)
	}
	code, reason, err := parseClose(f.payload)
	if err != nil {
		p.r.fatalf("marmot sent a bad close frame: %v", err)
	}
	ok := false
	for _, c := range codes {
		ok = ok || c == code
	}
	if !ok {
		p.r.fatalf("got close %d %q, want close %v", code, reason, codes)
	}
	if len(codes) > 1 {
		p.r.note("close %d", code)
	}
	if !p.closeSent {
		answer := code
		if answer == noStatus {
			answer = 1000
		}
		p.send(closeFrame(answer, ""))
	}
	p.wantEOF()
}

// wantEOF waits for marmot to close the TCP connection: nothing more may
// arrive after its close frame.
func (p *peer) wantEOF() {
	p.r.t.Helper()
	f, err := readFrame(p.conn, p.br)
	switch {
	case err == nil:
		p.r.fatalf("got %s after the close frame", f)
	case !closedErr(err):
		p.r.fatalf("waiting for the connection to close: %v", err)
	}
}

// finish runs the closing handshake from the peer's side with 1000.
func (p *peer) finish() {
	p.r.t.Helper()
	p.send(closeFrame(1000, ""))
	p.wantClose(1000)
}
