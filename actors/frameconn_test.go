package actors

import (
	"bytes"
	"encoding/binary"
	"math/rand/v2"
	"net"
	"testing"
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

// countingConn records each Write it gets.
type countingConn struct {
	net.Conn
	writes [][]byte
}

func (c *countingConn) Write(p []byte) (int, error) {
	c.writes = append(c.writes, bytes.Clone(p))
	return len(p), nil
}

// A batch reaches the socket as one write, in order, and a batch larger
// than batchLimit in a few writes of about that size; outside a batch every
// Write goes straight out.
func TestFrameConnBatchesWrites(t *testing.T) {
	cc := &countingConn{}
	fc := &frameConn{Conn: cc}
	_, _ = fc.Write([]byte("solo"))
	fc.beginBatch()
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
	fc.beginBatch()
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
