package delivery

import (
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"
)

// Kind is a kind of anomaly.
type Kind int

// The anomalies.
const (
	// Lost: an acked message numbered while the receiver was in the room
	// never reached it.
	Lost Kind = iota
	// Duplicated: a message reached the receiver more than once.
	Duplicated
	// Reordered: a message reached the receiver after a later message of
	// the same sender, or at an offset below one it had already got in
	// the same epoch.
	Reordered
	// Corrupted: a payload whose stamp or checksum is wrong, or that was
	// never sent.
	Corrupted
	nKinds
)

func (k Kind) String() string {
	switch k {
	case Lost:
		return "lost"
	case Duplicated:
		return "duplicated"
	case Reordered:
		return "reordered"
	case Corrupted:
		return "corrupted"
	}
	return fmt.Sprintf("Kind(%d)", int(k))
}

// Anomaly is one message that went wrong for one receiver.
type Anomaly struct {
	Kind     Kind
	Receiver string
	Room     string
	Sender   string
	Seq      uint64
	Epoch    string // as received ("" for a lost message)
	Offset   uint64 // as received (0 for a lost message)
	Detail   string
}

func (a Anomaly) String() string {
	s := fmt.Sprintf("%s: %s in %s: %s #%d", a.Kind, a.Receiver, a.Room, a.Sender, a.Seq)
	if a.Offset != 0 {
		s += fmt.Sprintf(" at offset %d", a.Offset)
		if a.Epoch != "" {
			s += " of epoch " + a.Epoch
		}
	}
	if a.Detail != "" {
		s += " (" + a.Detail + ")"
	}
	return s
}

// examplesPerKind bounds the anomalies a Report lists of each kind (it
// counts them all).
const examplesPerKind = 10

// anomalies counts anomalies by kind and keeps the first few.
type anomalies struct {
	n        [nKinds]int
	examples []Anomaly
}

func (f *anomalies) add(k Kind, a Anomaly) {
	a.Kind = k
	if f.n[k] < examplesPerKind {
		f.examples = append(f.examples, a)
	}
	f.n[k]++
}

func (f *anomalies) merge(o *anomalies) {
	for k := range Kind(nKinds) {
		f.n[k] += o.n[k]
	}
	for _, a := range o.examples {
		if f.count(a.Kind) < examplesPerKind {
			f.examples = append(f.examples, a)
		}
	}
}

func (f *anomalies) count(k Kind) int {
	n := 0
	for _, a := range f.examples {
		if a.Kind == k {
			n++
		}
	}
	return n
}

// Report is what Check found.
type Report struct {
	// Streams and Sent count the senders' streams and messages; Acked
	// those acknowledged.
	Streams, Sent, Acked int
	// Receivers counts (receiver, room) pairs; Received every delivery
	// recorded; Expected the deliveries that had to happen.
	Receivers, Received, Expected int
	// Lost, Duplicated, Reordered and Corrupted count the anomalies.
	Lost, Duplicated, Reordered, Corrupted int
	// NotRecovered counts the re-joins recorded with
	// Recorder.NotRecovered, and Unrecovered the acked messages in their
	// gaps that did not reach the receiver: not anomalies (the receiver
	// was told), not counted as delivered either, and not in Expected.
	NotRecovered, Unrecovered int
	// Examples are the first few anomalies of each kind.
	Examples []Anomaly
	// LostRuns sums up the lost messages: runs of consecutive sequence
	// numbers of one stream that the same number of receivers lost, in
	// order of room, sender and number (the first maxLostRuns of them;
	// LostRunsTotal counts all). Many receivers losing the same run is
	// a message lost upstream of them (the room, a node), one receiver
	// alone a connection's.
	LostRuns      []LostRun
	LostRunsTotal int
}

// LostRun is a run of lost messages: From to To (both included) of
// Sender's stream to Room, each lost by Receivers receivers; Sent is when
// From was numbered and Until when To was.
type LostRun struct {
	Room, Sender string
	From, To     uint64
	Receivers    int
	Sent, Until  time.Time
}

func (l LostRun) String() string {
	return fmt.Sprintf("%s: %s #%d-#%d (%d messages, numbered %s to %s) lost by %d receivers",
		l.Room, l.Sender, l.From, l.To, l.To-l.From+1, l.Sent.Format("15:04:05.000"), l.Until.Format("15:04:05.000"), l.Receivers)
}

// maxLostRuns bounds Report.LostRuns.
const maxLostRuns = 20

// lostSeq is one lost message: how many receivers lost it, and when it
// was numbered.
type lostSeq struct {
	n  int
	at time.Time
}

// lostRuns groups the lost messages of each stream into runs.
func lostRuns(lost map[streamKey]map[uint64]*lostSeq) (runs []LostRun, total int) {
	keys := make([]streamKey, 0, len(lost))
	for k := range lost {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		if keys[i].room != keys[j].room {
			return keys[i].room < keys[j].room
		}
		return keys[i].sender < keys[j].sender
	})
	for _, k := range keys {
		m := lost[k]
		seqs := make([]uint64, 0, len(m))
		for seq := range m {
			seqs = append(seqs, seq)
		}
		sort.Slice(seqs, func(i, j int) bool { return seqs[i] < seqs[j] })
		var cur *LostRun
		for _, seq := range seqs {
			l := m[seq]
			if cur != nil && seq == cur.To+1 && l.n == cur.Receivers {
				cur.To, cur.Until = seq, l.at
				continue
			}
			total++
			if len(runs) < maxLostRuns {
				runs = append(runs, LostRun{Room: k.room, Sender: k.sender, From: seq, To: seq, Receivers: l.n, Sent: l.at, Until: l.at})
				cur = &runs[len(runs)-1]
			} else {
				cur = &LostRun{From: seq, To: seq, Receivers: l.n}
			}
		}
	}
	return runs, total
}

// OK reports whether nothing was lost, duplicated, reordered or corrupted.
func (r *Report) OK() bool {
	return r.Lost == 0 && r.Duplicated == 0 && r.Reordered == 0 && r.Corrupted == 0
}

// ErrAnomalies is what Report.Err wraps.
var ErrAnomalies = errors.New("delivery: anomalies")

// Err is nil when the report is OK, and otherwise an error wrapping
// ErrAnomalies that counts them and lists the examples.
func (r *Report) Err() error {
	if r.OK() {
		return nil
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%d lost, %d duplicated, %d reordered, %d corrupted", r.Lost, r.Duplicated, r.Reordered, r.Corrupted)
	for _, a := range r.Examples {
		b.WriteString("\n\t" + a.String())
	}
	for _, l := range r.LostRuns {
		b.WriteString("\n\t" + l.String())
	}
	if n := r.LostRunsTotal - len(r.LostRuns); n > 0 {
		fmt.Fprintf(&b, "\n\t(%d more runs of lost messages)", n)
	}
	return fmt.Errorf("%w: %s", ErrAnomalies, b.String())
}

// String is the report as a table.
func (r *Report) String() string {
	var b strings.Builder
	row := func(k string, v int) { fmt.Fprintf(&b, "%-12s %12d\n", k, v) }
	row("streams", r.Streams)
	row("sent", r.Sent)
	row("acked", r.Acked)
	row("receivers", r.Receivers)
	row("received", r.Received)
	row("expected", r.Expected)
	row("lost", r.Lost)
	row("duplicated", r.Duplicated)
	row("reordered", r.Reordered)
	row("corrupted", r.Corrupted)
	row("not recovered", r.NotRecovered)
	row("unrecovered", r.Unrecovered)
	return b.String()
}

// Check compares what was received with what was sent. It may run while
// recording goes on (it then sees a moment of it), but messages still on
// their way count as lost: check once the senders have stopped and the
// receivers have caught up.
func (r *Recorder) Check() *Report {
	rep := &Report{}
	r.mu.Lock()
	streams := make(map[string][]*Stream, len(r.byRoom))
	for room, ss := range r.byRoom {
		streams[room] = append([]*Stream(nil), ss...)
	}
	keys := make([]inboxKey, 0, len(r.inboxes))
	for k := range r.inboxes {
		keys = append(keys, k)
	}
	inboxes := make(map[inboxKey]*inbox, len(r.inboxes))
	for k, v := range r.inboxes {
		inboxes[k] = v
	}
	r.mu.Unlock()
	sort.Slice(keys, func(i, j int) bool {
		if keys[i].room != keys[j].room {
			return keys[i].room < keys[j].room
		}
		return keys[i].receiver < keys[j].receiver
	})

	var found anomalies
	lost := map[streamKey]map[uint64]*lostSeq{}
	for _, ss := range streams {
		for _, s := range ss {
			rep.Streams++
			s.mu.Lock()
			rep.Sent += len(s.msgs)
			for _, m := range s.msgs {
				if m.acked {
					rep.Acked++
				}
			}
			s.mu.Unlock()
		}
	}
	for _, k := range keys {
		in := inboxes[k]
		rep.Receivers++
		in.mu.Lock()
		rep.Received += in.received
		rep.NotRecovered += in.rejoins
		found.merge(&in.found)
		if !in.joined.IsZero() {
			for _, s := range streams[k.room] {
				expected, unrecovered := in.lost(k, s, &found, lost)
				rep.Expected += expected
				rep.Unrecovered += unrecovered
			}
		}
		in.mu.Unlock()
	}
	rep.Lost, rep.Duplicated, rep.Reordered, rep.Corrupted = found.n[Lost], found.n[Duplicated], found.n[Reordered], found.n[Corrupted]
	sort.SliceStable(found.examples, func(i, j int) bool { return found.examples[i].Kind < found.examples[j].Kind })
	rep.Examples = found.examples
	rep.LostRuns, rep.LostRunsTotal = lostRuns(lost)
	return rep
}

// lost adds to found the messages of s that in should have got and did
// not, and returns how many it should have got, and how many in its gaps
// (NotRecovered) it did not get. It counts each lost message in lost.
func (in *inbox) lost(k inboxKey, s *Stream, found *anomalies, lost map[streamKey]map[uint64]*lostSeq) (expected, unrecovered int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	sn := in.senders[s.sender]
	seqs := make([]uint64, 0, len(s.msgs))
	for seq, m := range s.msgs {
		if !m.acked || !m.at.After(in.joined) || !in.left.IsZero() && !m.at.Before(in.left) {
			continue
		}
		seqs = append(seqs, seq)
	}
	sort.Slice(seqs, func(i, j int) bool { return seqs[i] < seqs[j] })
	for _, seq := range seqs {
		got := sn != nil && sn.has(seq)
		if in.inGap(s.sender, seq) {
			if !got {
				unrecovered++
			}
			continue
		}
		expected++
		if !got {
			found.add(Lost, Anomaly{Receiver: k.receiver, Room: k.room, Sender: s.sender, Seq: seq})
			sk := streamKey{s.sender, s.room}
			if lost[sk] == nil {
				lost[sk] = map[uint64]*lostSeq{}
			}
			l := lost[sk][seq]
			if l == nil {
				l = &lostSeq{at: s.msgs[seq].at}
				lost[sk][seq] = l
			}
			l.n++
		}
	}
	return expected, unrecovered
}
