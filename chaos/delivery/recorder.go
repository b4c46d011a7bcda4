package delivery

import (
	"fmt"
	"sync"
	"time"
)

// A Recorder logs what was sent to rooms (through Streams) and what each
// receiver got. Every method is safe for concurrent use; receivers are
// independent of one another (one lock each), so recording scales with
// the clients.
type Recorder struct {
	mu      sync.Mutex
	streams map[streamKey]*Stream
	byRoom  map[string][]*Stream
	inboxes map[inboxKey]*inbox
}

type streamKey struct{ sender, room string }
type inboxKey struct{ receiver, room string }

// NewRecorder returns an empty Recorder.
func NewRecorder() *Recorder {
	return &Recorder{streams: map[streamKey]*Stream{}, byRoom: map[string][]*Stream{}, inboxes: map[inboxKey]*inbox{}}
}

// Stream returns the stream of messages sender sends to room (the same
// one for the same pair).
func (r *Recorder) Stream(sender, room string) *Stream {
	r.mu.Lock()
	defer r.mu.Unlock()
	k := streamKey{sender, room}
	s := r.streams[k]
	if s == nil {
		s = &Stream{sender: sender, room: room, msgs: map[uint64]*sent{}}
		r.streams[k] = s
		r.byRoom[room] = append(r.byRoom[room], s)
	}
	return s
}

// A Stream is one sender's messages to one room.
type Stream struct {
	sender, room string
	mu           sync.Mutex
	last         uint64 // the highest number given out
	msgs         map[uint64]*sent
}

// sent is what the checker keeps of one message: when it was numbered,
// its checksum, and whether the sender learnt it was accepted.
type sent struct {
	at    time.Time
	sum   uint32
	acked bool
}

// Next numbers body with the stream's next sequence number (from 1) and
// returns it stamped, to be sent as it is.
func (s *Stream) Next(body []byte) (payload []byte, seq uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	seq = s.last + 1
	s.record(seq, body)
	return Stamp(s.sender, seq, body), seq
}

// Numbered is Next for a sender that numbers its messages itself (a
// client outbox's sequence numbers): seq must be new and above 0.
func (s *Stream) Numbered(seq uint64, body []byte) []byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.record(seq, body)
	return Stamp(s.sender, seq, body)
}

func (s *Stream) record(seq uint64, body []byte) {
	s.msgs[seq] = &sent{at: time.Now(), sum: sum(s.sender, seq, body)}
	s.last = max(s.last, seq)
}

// Acked records that message seq was accepted (its publish was
// acknowledged): every receiver in the room since before it was numbered
// must get it. A message never acked may arrive or not, but at most once.
func (s *Stream) Acked(seq uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if m := s.msgs[seq]; m != nil {
		m.acked = true
	}
}

// inbox is one receiver's view of one room.
type inbox struct {
	mu           sync.Mutex
	joined, left time.Time
	// base is, per stream, the last number given out when the receiver
	// joined: what is numbered later is tracked by a floor and the few
	// numbers seen above it.
	senders map[string]*seen
	bases   map[string]uint64
	// gaps are, per stream, the numbers the receiver could not be given
	// (NotRecovered): not expected, counted apart when not received.
	gaps     map[string][]seqRange
	epoch    string
	offset   uint64
	received int
	rejoins  int // NotRecovered calls
	found    anomalies
}

// seqRange is the numbers lo to hi, both included.
type seqRange struct{ lo, hi uint64 }

// seen is the numbers a receiver got from one stream.
type seen struct {
	base  uint64              // numbered before the join
	pre   map[uint64]struct{} // got, numbered before the join
	floor uint64              // every number in (base, floor] was got
	above map[uint64]struct{} // got, above floor
	max   uint64
}

func (s *seen) has(seq uint64) bool {
	if seq <= s.base {
		_, ok := s.pre[seq]
		return ok
	}
	if seq <= s.floor {
		return true
	}
	_, ok := s.above[seq]
	return ok
}

func (s *seen) add(seq uint64) {
	s.max = max(s.max, seq)
	switch {
	case seq <= s.base:
		s.pre[seq] = struct{}{}
	case seq == s.floor+1:
		s.floor++
		for {
			if _, ok := s.above[s.floor+1]; !ok {
				break
			}
			delete(s.above, s.floor+1)
			s.floor++
		}
	default:
		s.above[seq] = struct{}{}
	}
}

func (r *Recorder) inbox(receiver, room string) *inbox {
	r.mu.Lock()
	defer r.mu.Unlock()
	k := inboxKey{receiver, room}
	in := r.inboxes[k]
	if in == nil {
		in = &inbox{senders: map[string]*seen{}, bases: map[string]uint64{}, gaps: map[string][]seqRange{}}
		r.inboxes[k] = in
	}
	return in
}

// streamsOf returns the streams to room now.
func (r *Recorder) streamsOf(room string) []*Stream {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]*Stream(nil), r.byRoom[room]...)
}

// Joined records that receiver is in room from now on (call it once its
// join has succeeded): every acked message numbered from now on until
// Left must reach it, exactly once and in order.
func (r *Recorder) Joined(receiver, room string) {
	in, streams := r.inbox(receiver, room), r.streamsOf(room)
	in.mu.Lock()
	defer in.mu.Unlock()
	in.joined, in.left = time.Now(), time.Time{}
	for _, s := range streams {
		s.mu.Lock()
		in.bases[s.sender] = s.last
		s.mu.Unlock()
	}
}

// Left records that receiver left room (call it before leaving): what is
// numbered from then on is not expected.
func (r *Recorder) Left(receiver, room string) {
	in := r.inbox(receiver, room)
	in.mu.Lock()
	in.left = time.Now()
	in.mu.Unlock()
}

// NotRecovered records that receiver is in room again after a gap the
// server said it could not fill (a re-join answered with recovered false:
// marmot's OnRecover, which runs before the room's next message). What
// each sender numbered after the last message the receiver got from it,
// up to now, is not expected of it: Check counts those it did not get as
// Unrecovered, apart from Lost, and leaves them out of Expected. Messages
// numbered from now on are expected again. The room's offsets are checked
// afresh from here: the receiver stands where the room is now, which may
// be a new numbering (a new epoch) that it cannot see in the messages.
func (r *Recorder) NotRecovered(receiver, room string) {
	in, streams := r.inbox(receiver, room), r.streamsOf(room)
	in.mu.Lock()
	defer in.mu.Unlock()
	in.rejoins++
	in.epoch, in.offset = "", 0
	for _, s := range streams {
		s.mu.Lock()
		hi := s.last
		s.mu.Unlock()
		lo := in.bases[s.sender] + 1
		if sn := in.senders[s.sender]; sn != nil {
			lo = max(sn.max, sn.base) + 1
		}
		if hi >= lo {
			in.gaps[s.sender] = append(in.gaps[s.sender], seqRange{lo, hi})
		}
	}
}

// inGap reports whether seq of sender falls in one of the receiver's gaps.
func (in *inbox) inGap(sender string, seq uint64) bool {
	for _, g := range in.gaps[sender] {
		if seq >= g.lo && seq <= g.hi {
			return true
		}
	}
	return false
}

// Received records that receiver got payload in room, at offset of epoch
// (as the room numbered it; 0 and "" when unknown).
func (r *Recorder) Received(receiver, room, epoch string, offset uint64, payload []byte) {
	in := r.inbox(receiver, room)
	sender, seq, body, err := Unstamp(payload)
	var msg *sent
	if err == nil {
		r.mu.Lock()
		s := r.streams[streamKey{sender, room}]
		r.mu.Unlock()
		if s != nil {
			s.mu.Lock()
			msg = s.msgs[seq]
			s.mu.Unlock()
		}
	}
	in.mu.Lock()
	defer in.mu.Unlock()
	in.received++
	a := Anomaly{Receiver: receiver, Room: room, Sender: sender, Seq: seq, Epoch: epoch, Offset: offset}
	switch {
	case err != nil:
		a.Detail = err.Error()
		in.found.add(Corrupted, a)
		return
	case msg == nil:
		a.Detail = "never sent"
		in.found.add(Corrupted, a)
		return
	case msg.sum != sum(sender, seq, body):
		a.Detail = "contents differ from what was sent"
		in.found.add(Corrupted, a)
		return
	}
	sn := in.senders[sender]
	if sn == nil {
		sn = &seen{base: in.bases[sender], pre: map[uint64]struct{}{}, above: map[uint64]struct{}{}}
		sn.floor = sn.base
		in.senders[sender] = sn
	}
	if sn.has(seq) {
		a.Detail = "received again"
		in.found.add(Duplicated, a)
		return
	}
	switch {
	case seq < sn.max:
		a.Detail = fmt.Sprintf("after #%d of the same sender", sn.max)
		in.found.add(Reordered, a)
	case offset != 0 && epoch == in.epoch && offset <= in.offset:
		a.Detail = fmt.Sprintf("offset after offset %d", in.offset)
		in.found.add(Reordered, a)
	}
	sn.add(seq)
	if epoch != in.epoch {
		in.epoch, in.offset = epoch, 0
	}
	in.offset = max(in.offset, offset)
}
