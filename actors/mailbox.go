package actors

import (
	"runtime"
	"sync"
	"sync/atomic"

	"github.com/asynkron/protoactor-go/actor"
)

// inlineBudget bounds how many messages a connection's reader processes on
// its own goroutine before it hands the rest of the mailbox to a dispatcher
// goroutine and goes back to reading, so a burst of outbound flushes cannot
// starve the connection's input.
const inlineBudget = 16

// Mailbox scheduler states, as in protoactor's default mailbox, and two
// more: running on the connection's reader goroutine (postInline), where
// the reader may be handed off, and a handoff under way (handOff).
const (
	mailboxIdle int32 = iota
	mailboxRunning
	mailboxInline
	mailboxHanding
)

// connMailbox is the ConnectionActor's mailbox. It keeps protoactor's
// default mailbox semantics (system messages first, no user messages while
// suspended by the supervisor, batches of Throughput messages between
// yields, panics escalated to the supervisor) and adds postInline, with
// which the connection's reader runs the actor on its own goroutine when the
// actor is idle. That saves a goroutine hand-off (and its stack growth) per
// inbound message, the largest per-message cost after the syscalls; the
// actor still handles one message at a time, in order.
type connMailbox struct {
	// What an inbound frame touches on the direct path comes first, in
	// one cache line; the queues are only touched when something waits.
	status      atomic.Int32
	userN, sysN atomic.Int32
	suspended   atomic.Bool
	stopped     atomic.Bool // the actor has stopped: drop, as protoactor does
	// direct, when set, handles the hot messages (inbound frames, flush
	// signals) rather than protoactor's actor context (middleware chains,
	// receive timeouts and a type switch the connection does not use); it
	// reports false for anything else. It runs in the same mailbox turn,
	// so the actor still sees one message at a time, in order, and a panic
	// still goes to the supervisor.
	direct     func(msg any) bool
	invoker    actor.MessageInvoker
	dispatcher actor.Dispatcher

	mu     sync.Mutex
	user   fifo
	system fifo
}

func newConnMailbox() *connMailbox { return &connMailbox{} }

// PostUserMessage implements actor.Mailbox.
func (m *connMailbox) PostUserMessage(msg any) {
	m.pushUser(msg)
	m.schedule()
}

// postInline posts msg and, when the actor is idle, processes the mailbox on
// the calling goroutine (up to inlineBudget messages).
func (m *connMailbox) postInline(msg any) {
	if m.status.CompareAndSwap(mailboxIdle, mailboxInline) {
		if m.direct != nil && m.sysN.Load() == 0 && m.userN.Load() == 0 &&
			!m.suspended.Load() && !m.stopped.Load() {
			// Nothing is queued ahead of msg: handle it without the queue.
			// Whatever is posted meanwhile finds the mailbox running and
			// is left to the process call below.
			m.runDirect(msg)
			// Usually nothing came in meanwhile: go idle without
			// setting up a run.
			if m.sysN.Load() == 0 && m.userN.Load() == 0 && !m.idle() {
				return
			}
			m.process(inlineBudget - 1)
			return
		}
		m.pushUser(msg)
		m.process(inlineBudget)
		return
	}
	m.pushUser(msg)
	// The runner may have gone idle before the push: take over then.
	if m.status.CompareAndSwap(mailboxIdle, mailboxInline) {
		m.process(inlineBudget)
	}
}

// handOff runs moveReader, which has the transport's reader go on on
// another goroutine (link.keepReading), when the actor runs on the
// reader's goroutine (mailboxInline), and relabels that run an ordinary
// one: the actor's turn goes on where it is. It reports whether it did.
//
// Only the reader sets mailboxInline, inside postInline, and a run ends
// (idle) or leaves for a dispatcher goroutine (process) only by changing
// the status from what it finds, waiting while it finds mailboxHanding
// (leave). So a handOff that wins its compare-and-swap found the reader
// inside postInline, and so inside the transport's Message call, and
// keeps it there until moveReader has returned, whichever goroutine it is
// called from: when that Message call returns, the transport sees the
// move.
func (m *connMailbox) handOff(moveReader func()) bool {
	if !m.status.CompareAndSwap(mailboxInline, mailboxHanding) {
		return false
	}
	moveReader()
	m.status.Store(mailboxRunning)
	return true
}

// leave moves the mailbox's status from the running one to to and returns
// what it was (mailboxInline or mailboxRunning); only the runner calls it.
// A handOff under way is waited for: it is a few instructions long.
func (m *connMailbox) leave(to int32) int32 {
	for {
		run := m.status.Load()
		if run == mailboxHanding {
			runtime.Gosched()
			continue
		}
		if m.status.CompareAndSwap(run, to) {
			return run
		}
	}
}

// runDirect handles one message as run would, panics included.
func (m *connMailbox) runDirect(msg any) {
	defer func() {
		if r := recover(); r != nil {
			m.invoker.EscalateFailure(r, msg)
		}
	}()
	if !m.direct(msg) {
		m.invoker.InvokeUserMessage(msg)
	}
}

// PostSystemMessage implements actor.Mailbox.
func (m *connMailbox) PostSystemMessage(msg any) {
	m.mu.Lock()
	m.system.push(msg)
	m.mu.Unlock()
	m.sysN.Add(1)
	m.schedule()
}

// RegisterHandlers implements actor.Mailbox.
func (m *connMailbox) RegisterHandlers(invoker actor.MessageInvoker, dispatcher actor.Dispatcher) {
	m.invoker = invoker
	m.dispatcher = dispatcher
}

// Start implements actor.Mailbox.
func (m *connMailbox) Start() {}

// UserMessageCount implements actor.Mailbox.
func (m *connMailbox) UserMessageCount() int { return int(m.userN.Load()) }

func (m *connMailbox) pushUser(msg any) {
	m.mu.Lock()
	m.user.push(msg)
	m.mu.Unlock()
	m.userN.Add(1)
}

func (m *connMailbox) schedule() {
	if m.status.CompareAndSwap(mailboxIdle, mailboxRunning) {
		m.dispatcher.Schedule(m.processAll)
	}
}

func (m *connMailbox) processAll() { m.process(0) }

// process runs the mailbox until it is empty (or suspended), or until
// budget user messages (0: no limit) have been handled; what is left then
// continues on a dispatcher goroutine, the mailbox staying "running".
// Inside run, a budget of -1 means spent.
func (m *connMailbox) process(budget int) {
	for {
		if !m.run(&budget) {
			m.leave(mailboxRunning) // no longer the reader's
			m.dispatcher.Schedule(m.processAll)
			return
		}
		if !m.idle() {
			return
		}
	}
}

// idle marks the mailbox idle after a run. It reports true when messages
// posted after the run saw the queues empty make it take the run back
// (false too when another poster took it over); taken back, the run keeps
// its label (on the reader's goroutine or not; after a handOff, not).
func (m *connMailbox) idle() bool {
	run := m.leave(mailboxIdle)
	if m.sysN.Load() == 0 && (m.suspended.Load() || m.userN.Load() == 0) {
		return false
	}
	return m.status.CompareAndSwap(mailboxIdle, run)
}

// run reports false when it stopped because the budget ran out.
func (m *connMailbox) run(budget *int) (done bool) {
	var msg any
	defer func() {
		if r := recover(); r != nil {
			done = true
			m.invoker.EscalateFailure(r, msg)
		}
	}()
	i, t := 0, m.dispatcher.Throughput()
	for {
		if i > t {
			i = 0
			runtime.Gosched()
		}
		i++
		// The counters are raised after a push, so a zero skips the
		// queue's lock; a message they miss is caught by process.
		if m.sysN.Load() == 0 {
			msg = nil
		} else if msg = m.pop(&m.system); msg != nil {
			m.sysN.Add(-1)
			switch msg.(type) {
			case *actor.SuspendMailbox:
				m.suspended.Store(true)
			case *actor.ResumeMailbox:
				m.suspended.Store(false)
			default:
				m.invoker.InvokeSystemMessage(msg)
			}
			continue
		}
		if m.suspended.Load() {
			return true
		}
		if *budget < 0 {
			return m.userN.Load() == 0 // spent: the rest goes elsewhere
		}
		if m.userN.Load() == 0 {
			return true
		}
		if msg = m.pop(&m.user); msg == nil {
			return true
		}
		m.userN.Add(-1)
		if *budget > 0 {
			if *budget--; *budget == 0 {
				*budget = -1
			}
		}
		if m.direct != nil {
			if m.stopped.Load() {
				continue
			}
			if m.direct(msg) {
				continue
			}
		}
		m.invoker.InvokeUserMessage(msg)
	}
}

func (m *connMailbox) pop(q *fifo) any {
	m.mu.Lock()
	defer m.mu.Unlock()
	return q.pop()
}

// fifo is a slice queue that gives its memory back once drained, so an idle
// connection's mailbox holds nothing.
type fifo struct {
	items []any
	head  int
}

func (q *fifo) push(v any) { q.items = append(q.items, v) }

func (q *fifo) pop() any {
	if q.head == len(q.items) {
		return nil
	}
	v := q.items[q.head]
	q.items[q.head] = nil
	q.head++
	if q.head == len(q.items) {
		if cap(q.items) > 64 {
			q.items = nil
		} else {
			q.items = q.items[:0]
		}
		q.head = 0
	}
	return v
}
