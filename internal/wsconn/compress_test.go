package wsconn

import (
	"bufio"
	"bytes"
	"compress/flate"
	"context"
	"crypto/rand"
	"crypto/sha1"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/marmotws/marmot/internal/transport"
)

// compressible is a 1 KiB JSON-like text that deflates well.
var compressible = []byte(strings.Repeat(`{"id":42,"name":"marmot","tags":["a","b"]},`, 24))

// The encoder's output is RFC 7692 §7.2.3's "Hello" examples, byte for
// byte: klauspost's fast levels store so short a message (§7.2.3.3, "using
// no compression"), its slow ones Huffman-code it (§7.2.3.1).
func TestDeflateMatchesRFC7692Examples(t *testing.T) {
	for _, tc := range []struct {
		level int
		want  []byte // the whole frame, as the RFC writes it
	}{
		{1, []byte{0xc1, 0x0b, 0x00, 0x05, 0x00, 0xfa, 0xff, 0x48, 0x65, 0x6c, 0x6c, 0x6f, 0x00}},
		{9, []byte{0xc1, 0x07, 0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00}},
	} {
		payload, err := deflateAppend(nil, []byte("Hello"), tc.level)
		if err != nil {
			t.Fatal(err)
		}
		// The frame as writeData sends a compressed payload.
		cc := &countingConn{}
		fc := &frameConn{Conn: cc}
		if err := fc.writePayload(websocket.TextMessage|rsv1, payload, time.Time{}); err != nil {
			t.Fatal(err)
		}
		if got := cc.joined(); !bytes.Equal(got, tc.want) {
			t.Fatalf("level %d: Hello's frame is % x; want % x", tc.level, got, tc.want)
		}
	}
	// Neither is smaller than "Hello": such a message goes out as it is.
	if _, ok := deflate(nil, []byte("Hello"), 9); ok {
		t.Fatal("deflate reports a gain on a message it made longer")
	}
}

// inflate is RFC 7692 §7.2.2's decoder: the payload, then 00 00 ff ff.
func inflate(t *testing.T, payload []byte) []byte {
	t.Helper()
	r := flate.NewReader(io.MultiReader(bytes.NewReader(payload), bytes.NewReader([]byte{0, 0, 0xff, 0xff})))
	var out bytes.Buffer
	if _, err := io.Copy(&out, r); err != nil && !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("inflate: %v", err)
	}
	return out.Bytes()
}

// A server frame over the threshold is compressed (RSV1, FIN, opcode kept)
// and inflates back to the message; one under it is not; a shared Frame is
// the same bytes whichever connection writes it, compressed once.
func TestServerFramesCompressed(t *testing.T) {
	z := newDeflater(Compression{Enabled: true, Threshold: 200})
	for _, tc := range []struct {
		name     string
		msg      []byte
		compress bool
	}{
		{"over the threshold", compressible, true},
		{"at the threshold", compressible[:200], true},
		{"under the threshold", compressible[:199], false},
		{"incompressible", []byte(base64.StdEncoding.EncodeToString(noise(300))), false},
	} {
		cc := &countingConn{}
		fc := &frameConn{Conn: cc, z: z}
		if err := fc.writeData(websocket.TextMessage, tc.msg, time.Time{}); err != nil {
			t.Fatal(err)
		}
		frame := cc.joined()
		checkFrame(t, tc.name, frame, tc.msg, tc.compress)
		before := Deflations()
		f := EncodeFrame(websocket.TextMessage, tc.msg)
		for range 3 {
			if got := f.forConn(z); !bytes.Equal(got, frame) {
				t.Fatalf("%s: the shared frame is % x..., the connection's % x...", tc.name, got[:8], frame[:8])
			}
		}
		if !bytes.Equal(f.forConn(nil), encodeFrame(true, 1, tc.msg, false)) {
			t.Fatalf("%s: a connection without compression gets a compressed frame", tc.name)
		}
		want := uint64(0)
		if len(tc.msg) >= 200 {
			want = 1
		}
		if got := Deflations() - before; got != want {
			t.Fatalf("%s: a Frame written 3 times was deflated %d times, want %d", tc.name, got, want)
		}
	}
}

// noise is n bytes that do not compress.
func noise(n int) []byte {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return b
}

// checkFrame checks one unmasked server text frame carrying msg.
func checkFrame(t *testing.T, name string, frame, msg []byte, compressed bool) {
	t.Helper()
	hl := 2
	switch frame[1] {
	case 126:
		hl = 4
	case 127:
		hl = 10
	}
	checkPayload(t, name, frame[0], frame[hl:], msg, compressed)
}

// checkPayload checks a text frame's first byte b0 and its payload.
func checkPayload(t *testing.T, name string, b0 byte, payload, msg []byte, compressed bool) {
	t.Helper()
	if b0&0x80 == 0 || b0&0x0f != 1 || b0&0x30 != 0 {
		t.Fatalf("%s: frame starts % x: want FIN, text, RSV2/3 clear", name, b0)
	}
	if got := b0&rsv1 != 0; got != compressed {
		t.Fatalf("%s: RSV1 = %v, want %v", name, got, compressed)
	}
	if compressed {
		payload = inflate(t, payload)
	}
	if !bytes.Equal(payload, msg) {
		t.Fatalf("%s: the frame carries %d bytes, not the message's %d", name, len(payload), len(msg))
	}
}

// rawPeer is a client that speaks the wire itself, to offer extensions
// gorilla does not and to see the server's frames as they are.
type rawPeer struct {
	net.Conn
	br   *bufio.Reader
	resp *http.Response
}

func dialRaw(t *testing.T, url, extensions string) *rawPeer {
	t.Helper()
	c, err := net.Dial("tcp", strings.TrimPrefix(url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	_ = c.SetDeadline(time.Now().Add(guard))
	req := "GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
	if extensions != "" {
		req += "Sec-WebSocket-Extensions: " + extensions + "\r\n"
	}
	if _, err := io.WriteString(c, req+"\r\n"); err != nil {
		t.Fatal(err)
	}
	p := &rawPeer{Conn: c, br: bufio.NewReader(c)}
	if p.resp, err = http.ReadResponse(p.br, nil); err != nil {
		t.Fatal(err)
	}
	if p.resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("upgrade answered %s", p.resp.Status)
	}
	return p
}

// readFrame reads one unmasked server frame whole.
func (p *rawPeer) readFrame(t *testing.T) []byte {
	t.Helper()
	hdr := make([]byte, 2, 10)
	if _, err := io.ReadFull(p.br, hdr); err != nil {
		t.Fatal(err)
	}
	n := int(hdr[1] & 0x7f)
	switch n {
	case 126:
		hdr = hdr[:4]
		if _, err := io.ReadFull(p.br, hdr[2:]); err != nil {
			t.Fatal(err)
		}
		n = int(hdr[2])<<8 | int(hdr[3])
	case 127:
		t.Fatal("unexpectedly long frame")
	}
	body := make([]byte, n)
	if _, err := io.ReadFull(p.br, body); err != nil {
		t.Fatal(err)
	}
	return append(hdr, body...)
}

// serveRaw serves connections accepted with cfg, started with a recorder
// each; it returns the server's URL and the recorders.
func serveRaw(t *testing.T, cfg Config) (string, <-chan *Conn) {
	t.Helper()
	a := NewAcceptor(nil, nil, nil, cfg)
	conns := make(chan *Conn, 8)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if c, err := a.Accept(w, r); err == nil {
			conns <- c
		}
	}))
	t.Cleanup(srv.Close)
	return srv.URL, conns
}

// The server accepts the offers it can honour and answers them as RFC 7692
// §7.1 asks; it declines the others, and offers nothing when it is off.
func TestServerNegotiation(t *testing.T) {
	on := Config{Compression: Compression{Enabled: true}}
	const answer = "permessage-deflate; server_no_context_takeover; client_no_context_takeover"
	for _, tc := range []struct {
		cfg    Config
		offer  string
		accept bool
	}{
		{on, "permessage-deflate", true},
		{on, "permessage-deflate; client_max_window_bits", true},
		{on, "permessage-deflate; client_max_window_bits=10; server_no_context_takeover", true},
		{on, "permessage-deflate; server_max_window_bits=15", false},
		{on, `permessage-deflate; server_max_window_bits="15"`, false},
		{on, "permessage-deflate; server_max_window_bits=10", false},
		{on, "permessage-deflate; server_max_window_bits=10, permessage-deflate", true},
		{on, "permessage-deflate; server_no_context_takeover; server_no_context_takeover", false},
		{on, "permessage-deflate; mystery", false},
		{on, "permessage-deflate; client_max_window_bits=16", false},
		{on, "x-webkit-deflate-frame", false},
		{on, "", false},
		{Config{}, "permessage-deflate", false},
	} {
		url, conns := serveRaw(t, tc.cfg)
		p := dialRaw(t, url, tc.offer)
		c := wait(t, conns, "the accepted connection")
		got := p.resp.Header.Get("Sec-WebSocket-Extensions")
		if tc.accept && got != answer || !tc.accept && got != "" {
			t.Fatalf("offer %q (enabled %v) answered %q", tc.offer, tc.cfg.Compression.Enabled, got)
		}
		if c.Compressed() != tc.accept {
			t.Fatalf("offer %q: Compressed() = %v, want %v", tc.offer, c.Compressed(), tc.accept)
		}
		c.Drop()
	}
}

// Server on/off × client on/off over real sockets: compression is on only
// when both want it, and messages cross both ways either way, compressed
// (server frames checked on the wire by the raw peer elsewhere) or not.
func TestNegotiationMatrix(t *testing.T) {
	for _, server := range []bool{false, true} {
		for _, client := range []bool{false, true} {
			url, conns := serveRaw(t, Config{Compression: Compression{Enabled: server, Threshold: -1}})
			d := NewDialer("", guard, nil, Config{Compression: Compression{Enabled: client, Threshold: -1}})
			cc, err := d.Dial(context.Background(), "ws"+strings.TrimPrefix(url, "http"), nil)
			if err != nil {
				t.Fatal(err)
			}
			sc := wait(t, conns, "the accepted connection")
			if want := server && client; sc.Compressed() != want || cc.Compressed() != want {
				t.Fatalf("server %v, client %v: Compressed() = %v (server), %v (client), want %v",
					server, client, sc.Compressed(), cc.Compressed(), want)
			}
			sr, cr := newRecorder(), newRecorder()
			sc.Start(sr)
			cc.Start(cr)
			for _, dir := range []struct {
				from *Conn
				to   *recorder
			}{{cc, sr}, {sc, cr}} {
				dir.from.BeginWrite(time.Time{}, false)
				if err := dir.from.WriteMessage(websocket.TextMessage, compressible); err != nil {
					t.Fatal(err)
				}
				if err := dir.from.WriteEncoded(EncodeFrame(websocket.TextMessage, compressible[:200])); err != nil {
					t.Fatal(err)
				}
				_ = dir.from.EndWrite()
				if got := wait(t, dir.to.Msgs, "a message"); got != string(compressible) {
					t.Fatalf("server %v, client %v: got %d bytes, want %d", server, client, len(got), len(compressible))
				}
				if got := wait(t, dir.to.Msgs, "an encoded message"); got != string(compressible[:200]) {
					t.Fatalf("server %v, client %v: got %d bytes, want 200", server, client, len(got))
				}
			}
			cc.Close(websocket.CloseNormalClosure, "", time.Time{})
			var pc *transport.PeerClose
			if err := wait(t, sr.Ended, "the server's reader"); !errors.As(err, &pc) {
				t.Fatalf("server reader ended with %v", err)
			}
			sc.AnswerClose(pc.Code, time.Time{})
			wait(t, cr.Ended, "the client's reader")
			sc.Release()
			cc.Release()
		}
	}
}

// RFC 7692 §7.2.3's "Hello" messages, sent by a client, reach the receiver
// as "Hello": compressed, stored, with BFINAL, in two blocks, fragmented.
// The server's own compressed frames carry RSV1 and inflate to the message.
func TestServerReadsRFC7692Examples(t *testing.T) {
	url, conns := serveRaw(t, Config{Compression: Compression{Enabled: true, Threshold: 1}})
	p := dialRaw(t, url, "permessage-deflate")
	c := wait(t, conns, "the accepted connection")
	r := newRecorder()
	c.Start(r)
	masked := func(fin bool, op byte, payload ...byte) []byte {
		for i := range payload {
			payload[i] ^= []byte{9, 8, 7, 6}[i%4] // encodeFrame's mask
		}
		return encodeFrame(fin, op, payload, true)
	}
	frames := [][]byte{
		masked(true, 0x41, 0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00),                                     // §7.2.3.1
		masked(true, 0x41, 0x00, 0x05, 0x00, 0xfa, 0xff, 0x48, 0x65, 0x6c, 0x6c, 0x6f, 0x00),             // §7.2.3.3
		masked(true, 0x41, 0xf3, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00, 0x00),                               // §7.2.3.4
		masked(true, 0x41, 0xf2, 0x48, 0x05, 0x00, 0x00, 0x00, 0xff, 0xff, 0xca, 0xc9, 0xc9, 0x07, 0x00), // §7.2.3.5
		append(masked(false, 0x41, 0xf2, 0x48, 0xcd), masked(true, 0x00, 0xc9, 0xc9, 0x07, 0x00)...),     // §7.2.3.1, fragmented
		masked(true, 0x01, []byte("Hello")...),                                                           // uncompressed
	}
	for i, f := range frames {
		if _, err := p.Write(f); err != nil {
			t.Fatal(err)
		}
		if got := wait(t, r.Msgs, fmt.Sprintf("example %d's Hello", i)); got != "Hello" {
			t.Fatalf("example %d read as %q", i, got)
		}
	}
	c.BeginWrite(time.Time{}, true)
	_ = c.WriteMessage(websocket.TextMessage, compressible)
	_ = c.WriteMessage(websocket.TextMessage, []byte("Hello")) // deflating does not pay: plain
	if err := c.EndWrite(); err != nil {
		t.Fatal(err)
	}
	checkFrame(t, "1 KiB", p.readFrame(t), compressible, true)
	checkFrame(t, "Hello", p.readFrame(t), []byte("Hello"), false)
	c.Drop()
	wait(t, r.Ended, "the reader's end")
}

// A small compressed message that inflates past the read limit (a
// decompression bomb) ends the connection with 1009 and ErrReadLimit,
// having inflated no more than the limit; one at the limit passes.
func TestInflatedMessageBoundedByReadLimit(t *testing.T) {
	const limit = 64 << 10
	url, conns := serveRaw(t, Config{ReadLimit: limit, Compression: Compression{Enabled: true}})
	d := websocket.Dialer{EnableCompression: true}
	ws, _, err := d.Dial("ws"+strings.TrimPrefix(url, "http"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	c := wait(t, conns, "the accepted connection")
	var got []int
	sizes := make(chan int, 4)
	done := make(chan error, 1)
	c.Start(receiverFunc{
		msg: func(_ int, r io.Reader) error {
			n, err := io.Copy(io.Discard, r)
			sizes <- int(n)
			return err
		},
		done: func(err error) { done <- err },
	})
	if err := ws.WriteMessage(websocket.BinaryMessage, make([]byte, limit)); err != nil {
		t.Fatal(err)
	}
	got = append(got, wait(t, sizes, "the message at the limit"))
	bomb := make([]byte, 100*limit) // 6.4 MB of zeros, about 6 KiB deflated
	if err := ws.WriteMessage(websocket.BinaryMessage, bomb); err != nil {
		t.Fatal(err)
	}
	got = append(got, wait(t, sizes, "the bomb"))
	if got[0] != limit || got[1] > limit {
		t.Fatalf("read %v bytes, want %d then at most %d", got, limit, limit)
	}
	if err := wait(t, done, "the reader's end"); !errors.Is(err, transport.ErrReadLimit) {
		t.Fatalf("reader ended with %v, want ErrReadLimit", err)
	}
	_ = ws.SetReadDeadline(time.Now().Add(guard))
	_, _, err = ws.ReadMessage()
	var ce *websocket.CloseError
	if !errors.As(err, &ce) || ce.Code != websocket.CloseMessageTooBig {
		t.Fatalf("peer read %v, want close 1009", err)
	}
	if code, _, ok := c.LocalClose(); !ok || code != websocket.CloseMessageTooBig {
		t.Fatalf("LocalClose = %d, %v; want 1009", code, ok)
	}
	c.Release()
}

type receiverFunc struct {
	msg  func(int, io.Reader) error
	done func(error)
}

func (r receiverFunc) Message(typ int, rd io.Reader) error { return r.msg(typ, rd) }
func (r receiverFunc) Done(err error)                      { r.done(err) }

// A client's frames follow its threshold: under it RSV1 is clear, at it
// set. A raw server sees them as they are on the wire.
func TestClientThreshold(t *testing.T) {
	frames := make(chan []byte, 2)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		defer c.Close()
		h := sha1.Sum([]byte(r.Header.Get("Sec-WebSocket-Key") + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"))
		_, _ = io.WriteString(c, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
			"Sec-WebSocket-Accept: "+base64.StdEncoding.EncodeToString(h[:])+"\r\n"+
			"Sec-WebSocket-Extensions: permessage-deflate; server_no_context_takeover; client_no_context_takeover\r\n\r\n")
		for range 2 {
			hdr := make([]byte, 2)
			if _, err := io.ReadFull(brw, hdr); err != nil {
				return
			}
			n := int(hdr[1] & 0x7f)
			if n == 126 {
				var ext [2]byte
				_, _ = io.ReadFull(brw, ext[:])
				n = int(ext[0])<<8 | int(ext[1])
			}
			body := make([]byte, n+4) // the mask, then the payload
			if _, err := io.ReadFull(brw, body); err != nil {
				return
			}
			for i := range n {
				body[4+i] ^= body[i%4]
			}
			frames <- append([]byte{hdr[0]}, body[4:]...)
		}
	}))
	defer srv.Close()
	d := NewDialer("", guard, nil, Config{Compression: Compression{Enabled: true, Threshold: 200}})
	c, err := d.Dial(context.Background(), "ws"+strings.TrimPrefix(srv.URL, "http"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Drop()
	for _, msg := range [][]byte{compressible[:199], compressible[:200]} {
		c.BeginWrite(time.Time{}, false)
		if err := c.WriteMessage(websocket.TextMessage, msg); err != nil {
			t.Fatal(err)
		}
		_ = c.EndWrite()
		f := wait(t, frames, "a client frame") // its first byte, then its payload unmasked
		checkPayload(t, "client", f[0], f[1:], msg, len(msg) >= 200)
	}
}

// A server that accepts permessage-deflate when the client did not offer
// it fails the dial.
func TestClientRefusesUnofferedCompression(t *testing.T) {
	a := NewAcceptor(nil, nil, nil, Config{Compression: Compression{Enabled: true}})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r.Header.Set("Sec-WebSocket-Extensions", "permessage-deflate") // as if offered
		if c, err := a.Accept(w, r); err == nil {
			c.Drop()
		}
	}))
	defer srv.Close()
	d := NewDialer("", guard, nil, Config{})
	_, err := d.Dial(context.Background(), "ws"+strings.TrimPrefix(srv.URL, "http"), nil)
	if !errors.Is(err, ErrUnofferedExtension) {
		t.Fatalf("dial = %v, want ErrUnofferedExtension", err)
	}
}

// The extension offer parser reads request headers from the network: it
// never panics, and what it accepts is an offer gorilla's answer honours.
func FuzzDeflateOffered(f *testing.F) {
	for _, s := range []string{
		"permessage-deflate", "permessage-deflate; client_max_window_bits",
		`permessage-deflate; server_max_window_bits="15", x-webkit-deflate-frame`,
		"permessage-deflate;;", "a; b=, c", `permessage-deflate; x="`,
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		h := http.Header{"Sec-Websocket-Extensions": {s}}
		if !deflateOffered(h) {
			return
		}
		found := false
		for ext := range strings.SplitSeq(s, ",") {
			name, params, ok := parseExtension(ext)
			if !ok {
				t.Fatalf("%q accepted with an extension that does not parse: %q", s, ext)
			}
			if name != "permessage-deflate" {
				continue
			}
			if _, set := params["server_max_window_bits"]; acceptableOffer(params) && !set {
				found = true
			}
		}
		if !found {
			t.Fatalf("%q accepted without an acceptable permessage-deflate offer", s)
		}
	})
}

// Bad compressed input closes with its code: RSV1 on a control frame or a
// continuation frame (RFC 7692 §6.1) with 1002, a payload that does not
// inflate with 1007.
func TestCompressedProtocolErrors(t *testing.T) {
	mask := func(payload ...byte) []byte {
		for i := range payload {
			payload[i] ^= []byte{9, 8, 7, 6}[i%4]
		}
		return payload
	}
	for _, tc := range []struct {
		name   string
		frames []byte
		code   int
	}{
		{"ping with RSV1", encodeFrame(true, 0x49, mask('p'), true), websocket.CloseProtocolError},
		{"continuation with RSV1", append(encodeFrame(false, 0x41, mask(0xf2, 0x48, 0xcd), true),
			encodeFrame(true, 0x40, mask(0xc9, 0xc9, 0x07, 0x00), true)...), websocket.CloseProtocolError},
		{"invalid deflate data", encodeFrame(true, 0x41, mask(0xff, 0xff, 0xff, 0xff), true), websocket.CloseInvalidFramePayloadData},
	} {
		url, conns := serveRaw(t, Config{Compression: Compression{Enabled: true}})
		p := dialRaw(t, url, "permessage-deflate")
		c := wait(t, conns, "the accepted connection")
		r := newRecorder()
		c.Start(r)
		if _, err := p.Write(tc.frames); err != nil {
			t.Fatal(err)
		}
		if err := wait(t, r.Ended, "the reader's end"); err == nil {
			t.Fatalf("%s: the reader ended without an error", tc.name)
		}
		f := p.readFrame(t)
		if f[0] != 0x88 || len(f) < 4 || int(f[2])<<8|int(f[3]) != tc.code {
			t.Fatalf("%s: the server answered % x, want close %d", tc.name, f, tc.code)
		}
		if code, _, ok := c.LocalClose(); !ok || code != tc.code {
			t.Fatalf("%s: LocalClose = %d, %v; want %d", tc.name, code, ok, tc.code)
		}
		select {
		case m := <-r.Msgs:
			t.Fatalf("%s: delivered %q", tc.name, m)
		default:
		}
		c.Release()
	}
}

// Compressed payloads come from the network: inflated the way gorilla
// does, under inflateLimit, any input yields at most the limit, and one
// byte more is errInflateLimit; never a panic.
func FuzzInflateLimit(f *testing.F) {
	for _, s := range [][]byte{
		{0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00},
		{0x00, 0x05, 0x00, 0xfa, 0xff, 0x48, 0x65, 0x6c, 0x6c, 0x6f, 0x00},
		{0xff, 0xff}, {},
	} {
		f.Add(s)
	}
	bomb, _ := deflateAppend(nil, make([]byte, 1<<16), 1)
	f.Add(bomb)
	const limit = 4096
	f.Fuzz(func(t *testing.T, payload []byte) {
		fr := flate.NewReader(io.MultiReader(bytes.NewReader(payload), strings.NewReader("\x00\x00\xff\xff\x01\x00\x00\xff\xff")))
		l := &inflateLimit{r: fr, left: limit}
		n, err := io.Copy(io.Discard, l)
		if n > limit {
			t.Fatalf("inflated %d bytes (err %v) past the %d limit", n, err, limit)
		}
		if l.left < 0 && !errors.Is(err, errInflateLimit) {
			t.Fatalf("inflated past the limit, but the error is %v", err)
		}
	})
}
