package httpconn

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"sync/atomic"
)

// errHandedOff ends a goroutine's delivery of a send that a Handoff moved
// to another goroutine.
var errHandedOff = errors.New("httpconn: send handed off")

// sendRun is one send request whose records are being delivered: the
// session's reader, while it delivers (docs/HTTP.md section 4); or, with
// no request, Start's delivery of the records that came before it. It is
// a value of its own, not serveSend's locals, so that Handoff can move the
// rest of its delivery, and its answer, to another goroutine.
type sendRun struct {
	c     *Conn
	w     http.ResponseWriter // nil: Start's run
	r     *http.Request
	bp    *[]byte  // the body's pooled storage
	body  []byte   // the records not delivered yet (checked already)
	n     uint64   // the number of body's first record
	early []record // records that came before Start, delivered first

	// gen moves on with each Handoff: the goroutine whose generation it no
	// longer is stops once its Message call returns. moved says the send
	// was handed off at least once; done, made by the first Handoff, is
	// closed once it is answered then, for the request's own goroutine,
	// which must not return before. (The goroutines that see them see gen
	// move first, or start after the Handoff.)
	gen   atomic.Uint64
	moved atomic.Bool
	done  chan struct{}
}

// serveSend answers POST ?session=ID&seq=N (docs/HTTP.md section 4).
func (c *Conn) serveSend(w http.ResponseWriter, r *http.Request, q url.Values) {
	seq, err := parseSeq(q.Get("seq"))
	if err != nil || seq == 0 {
		http.Error(w, "marmot: a send needs seq, the number of its first record (from 1)", http.StatusBadRequest)
		return
	}
	if !c.sending.CompareAndSwap(false, true) {
		http.Error(w, "marmot: another send of this session is in flight", http.StatusConflict)
		return
	}
	c.begin()
	s := &sendRun{c: c, w: w, r: r, bp: bodies.Get().(*[]byte)}
	if !s.serve(seq) {
		// Handed off: the send is answered on another goroutine, and the
		// handler must not return before (net/http ends the response).
		<-s.done
	}
}

// serve reads and checks the body, then delivers its records and answers
// the send; false: a Handoff moved the delivery, which answers then.
func (s *sendRun) serve(seq uint64) bool {
	c, w, r := s.c, s.w, s.r
	limit := c.cfg.maxBody()
	if r.ContentLength > limit {
		c.tooLarge(w, fmt.Errorf("%w: body of %d bytes", ErrTooLarge, r.ContentLength))
		s.release()
		return true
	}
	body, err := readBody((*s.bp)[:0], r.Body, limit)
	*s.bp = body[:0]
	switch {
	case errors.Is(err, ErrTooLarge):
		c.tooLarge(w, err)
		s.release()
		return true
	case err != nil:
		http.Error(w, "marmot: reading the body: "+err.Error(), http.StatusBadRequest)
		s.release()
		return true
	}
	// The whole body is checked before any of it is delivered.
	if err := decodeRecords(body, c.cfg.ReadLimit, func(byte, []byte) error { return nil }); err != nil {
		if errors.Is(err, ErrTooLarge) {
			c.tooLarge(w, err)
		} else {
			http.Error(w, "marmot: "+err.Error(), http.StatusBadRequest)
		}
		s.release()
		return true
	}

	c.inMu.Lock()
	if c.readerEnd {
		c.inMu.Unlock()
		http.Error(w, "marmot: unknown or ended session", http.StatusNotFound)
		s.release()
		return true
	}
	if seq > c.nextIn {
		c.inMu.Unlock()
		http.Error(w, fmt.Sprintf("marmot: seq %d leaves a gap (next is %d)", seq, c.nextIn), http.StatusBadRequest)
		s.release()
		return true
	}
	s.body, s.n = body, seq
	return s.deliver(0)
}

// deliver delivers the records left, on the goroutine of generation gen,
// and answers the send, which holds inMu until then; false: a Handoff
// moved the rest to another goroutine.
func (s *sendRun) deliver(gen uint64) bool {
	c := s.c
	var err error
	for err == nil {
		var rec record
		switch {
		case len(s.early) > 0:
			rec, s.early = s.early[0], s.early[1:]
		case len(s.body) > 0:
			rec, s.body = nextRecord(s.body) // checked by serve
			k := s.n
			s.n++
			if k < c.nextIn {
				continue // seen before: a repeated send
			}
			c.nextIn++
			var kept bool
			if kept, err = c.beforeStart(s.r, rec.typ, rec.data); kept || err != nil {
				continue
			}
			if early := c.takeEarly(); len(early) > 0 {
				s.early = append(early, rec) // they came first
				continue
			}
		default:
			s.answer(nil)
			return true
		}
		if err = c.deliverNow(rec.typ, rec.data, s, gen); errors.Is(err, errHandedOff) {
			return false
		}
	}
	s.answer(err)
	return true
}

// answer answers the send after its delivery ended with err (nil: all
// delivered) and lets inMu go.
func (s *sendRun) answer(err error) {
	c := s.c
	// A handed-off Message left current set.
	c.current.Store(nil)
	if s.w == nil { // Start's run
		c.inMu.Unlock()
		return
	}
	moved := s.moved.Load()
	switch {
	case err == nil, errors.Is(err, errStop):
		if moved && s.r.ProtoMajor == 1 {
			// The request's own goroutine may still be in a handler,
			// and the server reads nothing more from this connection
			// until it returns: the client's next send must come on
			// another one.
			s.w.Header().Set("Connection", "close")
		}
		s.w.WriteHeader(http.StatusNoContent)
	default:
		http.Error(s.w, "marmot: unknown or ended session", http.StatusNotFound)
	}
	c.inMu.Unlock()
	if moved {
		_ = http.NewResponseController(s.w).Flush()
	}
	s.release()
	if moved {
		close(s.done) // s.w is the request's own goroutine's again
	}
}

// release ends the send: the next one may come.
func (s *sendRun) release() {
	if cap(*s.bp) <= minBody {
		bodies.Put(s.bp)
	}
	s.c.end()
	s.c.sending.Store(false)
}

// Handoff implements transport.Conn: the send whose record is in Message
// goes on on a new goroutine, which delivers the records after it and
// answers the send, so that the client can send more (among them what
// the receiver waits for); the goroutine in Message stops delivering
// once that call returns (deliverNow sees the generation moved). Start's
// delivery of the records that came before it moves the same way.
func (c *Conn) Handoff() bool {
	s := c.current.Load()
	if s == nil {
		return false
	}
	if !s.moved.Swap(true) {
		s.done = make(chan struct{})
	}
	go s.deliver(s.gen.Add(1))
	return true
}
