package wsconn

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math/rand/v2"
	"net"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// encodeFrame builds one client frame (masked with a zero key unless told
// otherwise) the way RFC 6455 §5.2 lays it out.
func encodeFrame(fin bool, op byte, payload []byte, masked bool) []byte {
	b0 := op
	if fin {
		b0 |= 0x80
	}
	var mask byte
	if masked {
		mask = 0x80
	}
	out := []byte{b0}
	switch n := len(payload); {
	case n < 126:
		out = append(out, mask|byte(n))
	case n <= 0xffff:
		out = append(out, mask|126, byte(n>>8), byte(n))
	default:
		out = append(out, mask|127)
		out = binary.BigEndian.AppendUint64(out, uint64(n))
	}
	if masked {
		out = append(out, 9, 8, 7, 6)
	}
	return append(out, payload...)
}

// stream is random well-formed client traffic and the offsets at which the
// stream is between messages.
func stream(r *rand.Rand) (data []byte, between map[int]bool) {
	between = map[int]bool{0: true}
	sizes := []int{0, 1, 125, 126, 127, 300, 65535, 65536, 70000}
	for range 40 {
		if r.IntN(4) == 0 { // a control frame between messages
			data = append(data, encodeFrame(true, 0x9+byte(r.IntN(2)), make([]byte, r.IntN(126)), true)...)
			between[len(data)] = true
			continue
		}
		frags := 1 + r.IntN(3)
		for f := range frags {
			op := byte(0x2)
			if f > 0 {
				op = 0x0
			}
			data = append(data, encodeFrame(f == frags-1, op, make([]byte, sizes[r.IntN(len(sizes))]), r.IntN(5) > 0)...)
			if f < frags-1 && r.IntN(2) == 0 { // a ping inside the message
				data = append(data, encodeFrame(true, 0x9, []byte("p"), true)...)
			}
		}
		between[len(data)] = true
	}
	return data, between
}

func TestFrameTrackerFindsMessageBoundaries(t *testing.T) {
	for seed := range uint64(50) {
		r := rand.New(rand.NewPCG(seed, 1))
		data, between := stream(r)
		var tr frameTracker
		for off := 0; off < len(data); {
			n := 1 + r.IntN(2000)
			if r.IntN(3) == 0 {
				n = 1 + r.IntN(3) // split headers too
			}
			n = min(n, len(data)-off)
			tr.observe(data[off : off+n])
			off += n
			if got := tr.betweenMessages(); got != between[off] {
				t.Fatalf("seed %d: at offset %d of %d betweenMessages = %v, want %v", seed, off, len(data), got, between[off])
			}
		}
	}
}

// FuzzFrameTracker feeds arbitrary bytes (the tracker sees whatever a peer
// sends before gorilla rejects it): it must not panic, and how the bytes are
// split across reads must not change where it thinks it is.
func FuzzFrameTracker(f *testing.F) {
	f.Add([]byte{0x82, 0x80, 0, 0, 0, 0}, uint8(1))
	f.Add(encodeFrame(false, 0x1, []byte("hello"), true), uint8(3))
	f.Add(append(encodeFrame(true, 0x2, make([]byte, 300), true), encodeFrame(true, 0x9, nil, false)...), uint8(7))
	f.Add([]byte{0x82, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, uint8(2))
	f.Fuzz(func(t *testing.T, data []byte, chunk uint8) {
		var whole, split frameTracker
		whole.observe(data)
		step := int(chunk%16) + 1
		for off := 0; off < len(data); off += step {
			split.observe(data[off:min(off+step, len(data))])
		}
		if whole != split {
			t.Fatalf("state after whole read %+v differs from state after %d-byte reads %+v", whole, step, split)
		}
	})
}

// countingConn records each Write it gets, and the write deadline in force
// for it.
type countingConn struct {
	net.Conn
	writes    [][]byte
	deadlines []time.Time
	wd        time.Time
	setWD     int // SetWriteDeadline calls
	err       error
}

func (c *countingConn) Write(p []byte) (int, error) {
	if c.err != nil {
		return 0, c.err
	}
	c.writes = append(c.writes, bytes.Clone(p))
	c.deadlines = append(c.deadlines, c.wd)
	return len(p), nil
}

func (c *countingConn) SetWriteDeadline(t time.Time) error {
	c.wd = t
	c.setWD++
	return nil
}

func (c *countingConn) joined() []byte { return bytes.Join(c.writes, nil) }

// The server frames marmot encodes itself are the RFC 6455 encoding (the
// test's own encoder): unmasked, final, with the shortest length form.
// Small ones leave in one write (header and payload together).
func TestServerFramesAreRFC6455(t *testing.T) {
	for _, n := range []int{0, 1, 125, 126, 127, copyMax, copyMax + 1, 65535, 65536, 70000} {
		for _, typ := range []int{websocket.TextMessage, websocket.BinaryMessage} {
			payload := bytes.Repeat([]byte{'x'}, n)
			want := encodeFrame(true, byte(typ), payload, false)
			cc := &countingConn{}
			fc := &frameConn{Conn: cc}
			if err := fc.writeData(typ, payload, time.Time{}); err != nil {
				t.Fatal(err)
			}
			if got := cc.joined(); !bytes.Equal(got, want) {
				t.Fatalf("writeData(%d, %d bytes) wrote % x..., want % x...", typ, n, got[:min(len(got), 12)], want[:min(len(want), 12)])
			}
			if n <= copyMax && len(cc.writes) != 1 {
				t.Fatalf("%d-byte payload took %d writes, want 1", n, len(cc.writes))
			}
			if got := EncodeFrame(typ, payload).plain; !bytes.Equal(got, want) {
				t.Fatalf("EncodeFrame(%d, %d bytes) = % x..., want % x...", typ, n, got[:min(len(got), 12)], want[:min(len(want), 12)])
			}
		}
	}
}

// Inside a batch, frames of every size and gorilla's control frames reach
// the socket in the order they were written.
func TestFrameConnBatchKeepsOrder(t *testing.T) {
	cc := &countingConn{}
	fc := &frameConn{Conn: cc}
	small, large := []byte("small"), bytes.Repeat([]byte{'L'}, batchLimit/2+1)
	ping := encodeFrame(true, 0x9, nil, false)
	pre := EncodeFrame(websocket.TextMessage, []byte("prepared")).plain
	fc.beginBatch(time.Time{})
	var want []byte
	step := func(err error, frame []byte) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		want = append(want, frame...)
	}
	step(fc.writeData(websocket.BinaryMessage, small, time.Time{}), encodeFrame(true, 2, small, false))
	step(fc.writeData(websocket.BinaryMessage, large, time.Time{}), encodeFrame(true, 2, large, false))
	_, err := fc.Write(ping)
	step(err, ping)
	step(fc.writeFrame(pre, time.Time{}), pre)
	step(fc.writeData(websocket.TextMessage, small, time.Time{}), encodeFrame(true, 1, small, false))
	if err := fc.endBatch(); err != nil {
		t.Fatal(err)
	}
	if got := cc.joined(); !bytes.Equal(got, want) {
		t.Fatalf("the socket got %d bytes out of order (want %d)", len(got), len(want))
	}
}

// Data frames go out under their own deadline and gorilla's frames under
// the one gorilla set, however they interleave; an unchanged deadline is
// not re-armed.
func TestFrameConnDeadlines(t *testing.T) {
	cc := &countingConn{}
	fc := &frameConn{Conn: cc}
	data, ctrl := time.Unix(100, 0), time.Unix(200, 0)
	_ = fc.SetWriteDeadline(ctrl) // as gorilla does before a control frame
	_ = fc.writeData(websocket.BinaryMessage, []byte("a"), data)
	_, _ = fc.Write([]byte{0x89, 0})
	_ = fc.writeData(websocket.BinaryMessage, []byte("b"), data)
	_ = fc.writeFrame(EncodeFrame(websocket.BinaryMessage, []byte("c")).plain, data)
	want := []time.Time{data, ctrl, data, data}
	for i, d := range cc.deadlines {
		if !d.Equal(want[i]) {
			t.Fatalf("write %d went out under %v, want %v", i, d, want[i])
		}
	}
	if cc.setWD != 3 {
		t.Fatalf("the socket deadline was set %d times, want 3 (the last write reuses it)", cc.setWD)
	}
}

// After the close frame no data frame is written; after a failed write no
// later frame is, since the stream may end inside a frame.
func TestFrameConnRefusesDataAfterCloseOrError(t *testing.T) {
	cc := &countingConn{}
	fc := &frameConn{Conn: cc}
	closeFrame := encodeFrame(true, 0x8, []byte{3, 232}, false)
	if _, err := fc.Write(closeFrame); err != nil {
		t.Fatalf("close frame: %v", err)
	}
	if err := fc.writeData(websocket.TextMessage, []byte("late"), time.Time{}); !errors.Is(err, websocket.ErrCloseSent) {
		t.Fatalf("writeData after close = %v, want ErrCloseSent", err)
	}
	if err := fc.writeFrame(EncodeFrame(websocket.TextMessage, []byte("late")).plain, time.Time{}); !errors.Is(err, websocket.ErrCloseSent) {
		t.Fatalf("writeFrame after close = %v, want ErrCloseSent", err)
	}
	if got := cc.joined(); !bytes.Equal(got, closeFrame) {
		t.Fatalf("socket got % x, want only the close frame", got)
	}

	broken := errors.New("broken pipe")
	cc = &countingConn{err: broken}
	fc = &frameConn{Conn: cc}
	if err := fc.writeData(websocket.BinaryMessage, []byte("x"), time.Time{}); !errors.Is(err, broken) {
		t.Fatalf("writeData = %v, want %v", err, broken)
	}
	cc.err = nil
	if err := fc.writeData(websocket.BinaryMessage, []byte("y"), time.Time{}); !errors.Is(err, broken) {
		t.Fatalf("writeData after a failed write = %v, want the first error", err)
	}
	if len(cc.writes) != 0 {
		t.Fatalf("%d writes reached the socket after the failure", len(cc.writes))
	}
}

// A batch reaches the socket as one write, in order, and a batch larger
// than batchLimit in a few writes of about that size; outside a batch every
// Write goes straight out.
func TestFrameConnBatchesWrites(t *testing.T) {
	cc := &countingConn{}
	fc := &frameConn{Conn: cc}
	_, _ = fc.Write([]byte("solo"))
	fc.beginBatch(time.Time{})
	var want []byte
	for i := range 3 {
		p := bytes.Repeat([]byte{byte('a' + i)}, 100)
		want = append(want, p...)
		if n, err := fc.Write(p); n != len(p) || err != nil {
			t.Fatalf("Write = %d, %v", n, err)
		}
	}
	if len(cc.writes) != 1 {
		t.Fatalf("%d socket writes before endBatch, want 1 (the solo write)", len(cc.writes))
	}
	if err := fc.endBatch(); err != nil {
		t.Fatal(err)
	}
	if len(cc.writes) != 2 || !bytes.Equal(cc.writes[1], want) {
		t.Fatalf("socket writes %d; batch write %d bytes, want one write of %d", len(cc.writes), len(cc.writes[len(cc.writes)-1]), len(want))
	}

	cc.writes = nil
	fc.beginBatch(time.Time{})
	big := make([]byte, batchLimit/4)
	for range 9 {
		_, _ = fc.Write(big)
	}
	if err := fc.endBatch(); err != nil {
		t.Fatal(err)
	}
	total := 0
	for _, w := range cc.writes {
		if len(w) > batchLimit {
			t.Fatalf("a %d-byte write exceeds batchLimit", len(w))
		}
		total += len(w)
	}
	if total != 9*len(big) || len(cc.writes) != 3 {
		t.Fatalf("%d writes carrying %d bytes, want 3 carrying %d", len(cc.writes), total, 9*len(big))
	}
}
