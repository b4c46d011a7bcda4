package delivery_test

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/marmotws/marmot/chaos/delivery"
)

// history builds a recorded history: one sender "p" publishing n acked
// messages to room "r", which receiver "c" joined before the first.
type history struct {
	rec      *delivery.Recorder
	s        *delivery.Stream
	payloads [][]byte
}

func newHistory(n int) *history {
	h := &history{rec: delivery.NewRecorder()}
	h.s = h.rec.Stream("p", "r")
	h.rec.Joined("c", "r")
	for i := range n {
		p, seq := h.s.Next(fmt.Appendf(nil, "body %d", i))
		h.s.Acked(seq)
		h.payloads = append(h.payloads, p)
	}
	return h
}

// deliver records the messages of seqs (1-based) received by c, with
// offsets equal to their sequence numbers unless offsets are given.
func (h *history) deliver(seqs ...int) {
	for _, seq := range seqs {
		h.rec.Received("c", "r", "e1", uint64(seq), h.payloads[seq-1])
	}
}

func check(t *testing.T, h *history, lost, dup, reord, corrupt int) *delivery.Report {
	t.Helper()
	rep := h.rec.Check()
	if rep.Lost != lost || rep.Duplicated != dup || rep.Reordered != reord || rep.Corrupted != corrupt {
		t.Fatalf("got %d lost, %d duplicated, %d reordered, %d corrupted; want %d, %d, %d, %d\n%v",
			rep.Lost, rep.Duplicated, rep.Reordered, rep.Corrupted, lost, dup, reord, corrupt, rep.Err())
	}
	if rep.OK() != (lost+dup+reord+corrupt == 0) || (rep.Err() == nil) != rep.OK() {
		t.Fatalf("OK %v, Err %v", rep.OK(), rep.Err())
	}
	if !rep.OK() && !errors.Is(rep.Err(), delivery.ErrAnomalies) {
		t.Fatal("Err does not wrap ErrAnomalies")
	}
	return rep
}

func TestClean(t *testing.T) {
	h := newHistory(5)
	h.deliver(1, 2, 3, 4, 5)
	rep := check(t, h, 0, 0, 0, 0)
	if rep.Expected != 5 || rep.Received != 5 || rep.Sent != 5 || rep.Acked != 5 || rep.Receivers != 1 {
		t.Fatalf("report %+v", rep)
	}
	if !strings.Contains(rep.String(), "lost") {
		t.Fatal("no table")
	}
}

func TestLost(t *testing.T) {
	h := newHistory(5)
	h.deliver(1, 2, 4)
	rep := check(t, h, 2, 0, 0, 0)
	if len(rep.Examples) != 2 || rep.Examples[0].Seq != 3 || rep.Examples[1].Seq != 5 || rep.Examples[0].Kind != delivery.Lost {
		t.Fatalf("examples %v", rep.Examples)
	}
}

func TestDuplicated(t *testing.T) {
	h := newHistory(3)
	h.deliver(1, 2, 2, 3, 1)
	rep := check(t, h, 0, 2, 0, 0)
	if rep.Examples[0].Seq != 2 || rep.Examples[1].Seq != 1 {
		t.Fatalf("examples %v", rep.Examples)
	}
}

func TestReorderedBySequence(t *testing.T) {
	h := newHistory(4)
	h.deliver(1, 3, 2, 4)
	rep := check(t, h, 0, 0, 1, 0)
	if a := rep.Examples[0]; a.Seq != 2 || a.Kind != delivery.Reordered {
		t.Fatalf("example %v", a)
	}
}

// Two senders in one room: each sender's order is kept, but the room's
// offsets go back: reordered by offset.
func TestReorderedByOffset(t *testing.T) {
	rec := delivery.NewRecorder()
	a, b := rec.Stream("a", "r"), rec.Stream("b", "r")
	rec.Joined("c", "r")
	pa, sa := a.Next([]byte("x"))
	pb, sb := b.Next([]byte("y"))
	a.Acked(sa)
	b.Acked(sb)
	rec.Received("c", "r", "e1", 2, pb)
	rec.Received("c", "r", "e1", 1, pa)
	rep := rec.Check()
	if rep.Reordered != 1 || rep.Lost != 0 || rep.Duplicated != 0 {
		t.Fatalf("%+v", rep)
	}
	// A new epoch starts its offsets again: not a reordering.
	pa2, sa2 := a.Next([]byte("z"))
	a.Acked(sa2)
	rec.Received("c", "r", "e2", 1, pa2)
	if rep := rec.Check(); rep.Reordered != 1 {
		t.Fatalf("epoch change counted as reordering: %+v", rep)
	}
}

func TestCorrupted(t *testing.T) {
	h := newHistory(3)
	h.deliver(1)
	bad := bytes.Clone(h.payloads[1])
	bad[len(bad)-1] ^= 1 // a flipped bit in the body
	h.rec.Received("c", "r", "e1", 2, bad)
	h.rec.Received("c", "r", "e1", 3, []byte("not stamped"))
	h.rec.Received("c", "r", "e1", 4, delivery.Stamp("p", 99, []byte("never sent")))
	// Well stamped, but not what p sent as #3.
	h.rec.Received("c", "r", "e1", 5, delivery.Stamp("p", 3, []byte("other body")))
	// 2 and 3 never arrived intact: lost as well.
	check(t, h, 2, 0, 0, 4)
}

// Messages numbered before the join, or never acked, are not expected;
// those that arrive are still checked for duplicates. Messages numbered
// after Left are not expected.
func TestExpectations(t *testing.T) {
	rec := delivery.NewRecorder()
	s := rec.Stream("p", "r")
	early, es := s.Next([]byte("before the join"))
	s.Acked(es)
	rec.Joined("c", "r")
	unacked, _ := s.Next([]byte("never acked"))
	p, seq := s.Next([]byte("expected"))
	s.Acked(seq)
	rec.Received("c", "r", "e", 1, early)
	rec.Received("c", "r", "e", 3, p)
	rec.Left("c", "r")
	late, ls := s.Next([]byte("after leaving"))
	s.Acked(ls)
	rep := rec.Check()
	if !rep.OK() || rep.Expected != 1 {
		t.Fatalf("%v, expected %d", rep.Err(), rep.Expected)
	}
	rec.Received("c", "r", "e", 2, unacked)
	rec.Received("c", "r", "e", 2, unacked)
	rec.Received("c", "r", "e", 1, early)
	_ = late
	if rep := rec.Check(); rep.Duplicated != 2 {
		t.Fatalf("%+v", rep)
	}
}

// A sender that numbers its messages itself; gaps in its numbers are not
// losses, only its numbered messages are expected.
func TestNumbered(t *testing.T) {
	rec := delivery.NewRecorder()
	s := rec.Stream("outbox-7", "r")
	rec.Joined("c", "r")
	for _, seq := range []uint64{10, 11, 13} {
		s.Acked(seq) // unknown yet: ignored
		p := s.Numbered(seq, []byte("m"))
		s.Acked(seq)
		rec.Received("c", "r", "", 0, p)
	}
	if rep := rec.Check(); !rep.OK() || rep.Expected != 3 {
		t.Fatalf("%v (expected %d)", rep.Err(), rep.Expected)
	}
}

// Many receivers, many anomalies: counts are exact, examples bounded.
func TestBounded(t *testing.T) {
	h := newHistory(100)
	h.deliver(1)
	rep := check(t, h, 99, 0, 0, 0)
	if len(rep.Examples) != 10 {
		t.Fatalf("%d examples", len(rep.Examples))
	}
}

func TestStamp(t *testing.T) {
	for _, sender := range []string{"pub-1", "a|b:c", ""} {
		p := delivery.Stamp(sender, 42, []byte("a|b"))
		s, seq, body, err := delivery.Unstamp(p)
		if err != nil || s != sender || seq != 42 || string(body) != "a|b" {
			t.Fatalf("%q %d %q %v", s, seq, body, err)
		}
	}
	for _, bad := range []string{"", "d1|", "d1|1:a|1|", "d1|1:a|x|0|", "d1|1:a|1|zz|b", "x1|1:a|1|0|b", "d1|9:a|1|0|", "d1|-1:a|1|0|", "d1|1:ab|1|0|"} {
		if _, _, _, err := delivery.Unstamp([]byte(bad)); !errors.Is(err, delivery.ErrStamp) {
			t.Errorf("Unstamp(%q) = %v", bad, err)
		}
	}
}

func FuzzUnstamp(f *testing.F) {
	f.Add(delivery.Stamp("p", 1, []byte("hello")))
	f.Add([]byte("d1|1:a|1|0|"))
	f.Add([]byte("d1|0:|18446744073709551615|ffffffff|"))
	f.Fuzz(func(t *testing.T, b []byte) {
		s, seq, body, err := delivery.Unstamp(b)
		if err != nil {
			return
		}
		if !bytes.Equal(delivery.Stamp(s, seq, body), b) {
			// Leading zeros or upper-case hex parse too; the checksum
			// still held, so the contents are what was stamped.
			if _, _, b2, err := delivery.Unstamp(delivery.Stamp(s, seq, body)); err != nil || !bytes.Equal(b2, body) {
				t.Fatalf("stamp of %q, %d, %q does not round-trip", s, seq, body)
			}
		}
	})
}

// A re-join the server could not recover: what was numbered after the
// last message the receiver got, up to the re-join, is counted as
// unrecovered (not lost, not expected); what comes after is expected
// again.
func TestNotRecovered(t *testing.T) {
	h := newHistory(4)
	h.deliver(1, 2)
	h.rec.NotRecovered("c", "r") // 3 and 4 are in the gap
	for i := range 3 {
		p, seq := h.s.Next(fmt.Appendf(nil, "after %d", i))
		h.s.Acked(seq)
		h.payloads = append(h.payloads, p)
	}
	// The room numbers afresh after the gap (a new epoch the receiver
	// cannot see): offsets from 1 again are not a reorder.
	h.rec.Received("c", "r", "e1", 1, h.payloads[3]) // 4 arrived after all
	h.rec.Received("c", "r", "e1", 2, h.payloads[4]) // 5
	h.rec.Received("c", "r", "e1", 4, h.payloads[6]) // 7; 6 is lost
	rep := check(t, h, 1, 0, 0, 0)
	if rep.NotRecovered != 1 || rep.Unrecovered != 1 || rep.Expected != 5 {
		t.Fatalf("not recovered %d, unrecovered %d, expected %d; want 1, 1, 5\n%s", rep.NotRecovered, rep.Unrecovered, rep.Expected, rep)
	}
	if a := rep.Examples[0]; a.Seq != 6 || a.Kind != delivery.Lost {
		t.Fatalf("example %v", a)
	}
	// A receiver that got nothing before its gap: the gap starts at its
	// join.
	rec := delivery.NewRecorder()
	s := rec.Stream("p", "r")
	rec.Joined("c", "r")
	_, seq := s.Next([]byte("x"))
	s.Acked(seq)
	rec.NotRecovered("c", "r")
	if rep := rec.Check(); rep.Unrecovered != 1 || rep.Lost != 0 || rep.Expected != 0 {
		t.Fatalf("unrecovered %d, lost %d, expected %d; want 1, 0, 0", rep.Unrecovered, rep.Lost, rep.Expected)
	}
}

// Lost messages are summed up in runs: consecutive numbers of one stream
// lost by the same number of receivers.
func TestLostRuns(t *testing.T) {
	rec := delivery.NewRecorder()
	s := rec.Stream("p", "r")
	rec.Joined("a", "r")
	rec.Joined("b", "r")
	var payloads [][]byte
	for i := range 10 {
		p, seq := s.Next(fmt.Appendf(nil, "body %d", i))
		s.Acked(seq)
		payloads = append(payloads, p)
	}
	// Both lose 3-5 (upstream of them); a alone loses 8.
	for seq := 1; seq <= 10; seq++ {
		for _, c := range []string{"a", "b"} {
			if seq >= 3 && seq <= 5 || seq == 8 && c == "a" {
				continue
			}
			rec.Received(c, "r", "e1", uint64(seq), payloads[seq-1])
		}
	}
	rep := rec.Check()
	if rep.Lost != 7 || rep.LostRunsTotal != 2 || len(rep.LostRuns) != 2 {
		t.Fatalf("lost %d in %d runs (%d listed), want 7 in 2\n%v", rep.Lost, rep.LostRunsTotal, len(rep.LostRuns), rep.Err())
	}
	r0, r1 := rep.LostRuns[0], rep.LostRuns[1]
	if r0.Room != "r" || r0.Sender != "p" || r0.From != 3 || r0.To != 5 || r0.Receivers != 2 || r0.Sent.After(r0.Until) {
		t.Errorf("first run %+v, want p #3-#5 lost by 2", r0)
	}
	if r1.From != 8 || r1.To != 8 || r1.Receivers != 1 {
		t.Errorf("second run %+v, want p #8 lost by 1", r1)
	}
	if !strings.Contains(rep.Err().Error(), "r: p #3-#5 (3 messages") {
		t.Errorf("Err does not list the runs: %v", rep.Err())
	}
}
