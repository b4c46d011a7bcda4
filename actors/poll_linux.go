//go:build linux

package actors

import (
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// poller parks idle server connections: every tick it ends the wait of
// readers that have been waiting since before the previous tick, and its
// epoll set resumes a parked reader when its socket becomes readable (or
// fails). It runs while at least one link has joined; the last one to leave
// stops it, so a hub that is never shut down leaks nothing once its
// connections are gone.
type poller struct {
	group *pollGroup
	epfd  int
	evfd  int // wakes the epoll goroutine to stop
	epoch epochCounter
	tick  *time.Timer
	links map[uint64]*link // under group.mu
	done  chan struct{}
}

// pollGroup is a hub's current poller, started on demand.
type pollGroup struct {
	mu      sync.Mutex
	cur     *poller
	every   time.Duration // tick interval; a reader parks after 1–2 ticks idle
	disable bool          // epoll unavailable: readers never park

	// Test hooks: a reader parked (still holding a read buffer?); the
	// poller ticked.
	onPark  func(id uint64, stageHeld bool)
	onSweep func(epoch uint64)
}

func newPollGroup(every time.Duration) *pollGroup { return &pollGroup{every: every} }

// join registers l (id must be non-zero) and returns its poller, or nil when
// parking is unavailable.
func (g *pollGroup) join(id uint64, l *link) *poller {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.disable {
		return nil
	}
	if g.cur == nil {
		p, err := startPoller(g)
		if err != nil {
			g.disable = true
			return nil
		}
		g.cur = p
	}
	g.cur.links[id] = l
	return g.cur
}

// leave unregisters id; the last link out stops the poller.
func (g *pollGroup) leave(p *poller, id uint64) {
	g.mu.Lock()
	defer g.mu.Unlock()
	delete(p.links, id)
	if len(p.links) > 0 || g.cur != p {
		return
	}
	g.cur = nil
	p.tick.Stop()
	var one = [8]byte{1}
	_, _ = unix.Write(p.evfd, one[:])
}

func startPoller(g *pollGroup) (*poller, error) {
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, err
	}
	evfd, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		_ = unix.Close(epfd)
		return nil, err
	}
	// Key 0 is the stop signal; client ids start at 1.
	if err := unix.EpollCtl(epfd, unix.EPOLL_CTL_ADD, evfd, &unix.EpollEvent{Events: unix.EPOLLIN}); err != nil {
		_ = unix.Close(epfd)
		_ = unix.Close(evfd)
		return nil, err
	}
	p := &poller{group: g, epfd: epfd, evfd: evfd, links: make(map[uint64]*link), done: make(chan struct{})}
	p.tick = time.AfterFunc(g.every, p.sweep)
	go p.run()
	return p, nil
}

func (p *poller) run() {
	defer close(p.done)
	defer unix.Close(p.evfd)
	defer unix.Close(p.epfd)
	events := make([]unix.EpollEvent, 128)
	for {
		n, err := unix.EpollWait(p.epfd, events, -1)
		if err != nil {
			if err == unix.EINTR {
				continue
			}
			return
		}
		for _, ev := range events[:n] {
			key := uint64(uint32(ev.Fd)) | uint64(uint32(ev.Pad))<<32
			if key == 0 {
				return
			}
			p.group.mu.Lock()
			l := p.links[key]
			p.group.mu.Unlock()
			if l != nil {
				l.wake()
			}
		}
	}
}

// sweep is the tick: it advances the epoch and ends the wait of every reader
// that started waiting two or more epochs ago.
func (p *poller) sweep() {
	epoch := p.epoch.next()
	p.group.mu.Lock()
	if p.group.cur != p {
		p.group.mu.Unlock()
		return
	}
	idle := make([]*link, 0, 64)
	for _, l := range p.links {
		if l.rstate.Load() == readerWaiting && l.waitEpoch.Load()+2 <= epoch {
			idle = append(idle, l)
		}
	}
	p.tick.Reset(p.group.every)
	hook := p.group.onSweep
	p.group.mu.Unlock()
	for _, l := range idle {
		l.interruptWait()
	}
	if hook != nil {
		hook(epoch)
	}
}

// arm (re-)registers fd for one readiness event. Called under l.mu with the
// fd held by RawConn.Control, so it cannot be closed and reused meanwhile.
func (p *poller) arm(rc syscall.RawConn, id uint64, added *bool) error {
	ev := unix.EpollEvent{
		Events: unix.EPOLLIN | unix.EPOLLRDHUP | unix.EPOLLONESHOT,
		Fd:     int32(uint32(id)),
		Pad:    int32(uint32(id >> 32)),
	}
	var opErr error
	err := rc.Control(func(fd uintptr) {
		op := unix.EPOLL_CTL_MOD
		if !*added {
			op = unix.EPOLL_CTL_ADD
		}
		opErr = unix.EpollCtl(p.epfd, op, int(fd), &ev)
		if opErr == nil {
			*added = true
		}
	})
	if err != nil {
		return err
	}
	return opErr
}
