//go:build linux

package netpoll

import (
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Poller parks idle readers: every tick it interrupts the targets that have
// been waiting since before the previous tick, and its epoll set wakes a
// parked target when its socket becomes readable (or fails). It runs while
// at least one target has joined; the last one to leave stops it, so a
// group that is never shut down leaks nothing once its targets are gone.
type Poller struct {
	group   *Group
	epfd    int
	evfd    int // wakes the epoll goroutine to stop
	epoch   Epoch
	tick    *time.Timer
	targets map[uint64]Target // under group.mu
	done    chan struct{}
}

// Group is one server's current poller, started on demand.
type Group struct {
	mu      sync.Mutex
	cur     *Poller
	every   time.Duration
	disable bool // epoll unavailable: readers never park

	// OnSweep, when set, runs after every tick; OnPark, when set, sees
	// every target that parks (see Poller.Parked). Tests wait on them; set
	// them before the first Join.
	OnSweep func(epoch uint64)
	OnPark  func(id uint64, stageHeld bool)
}

// NewGroup returns a group whose pollers tick every every.
func NewGroup(every time.Duration) *Group { return &Group{every: every} }

// Join registers t under id (non-zero) and returns its poller, or nil when
// parking is unavailable.
func (g *Group) Join(id uint64, t Target) *Poller {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.disable {
		return nil
	}
	if g.cur == nil {
		p, err := start(g)
		if err != nil {
			g.disable = true
			return nil
		}
		g.cur = p
	}
	g.cur.targets[id] = t
	return g.cur
}

// Leave unregisters id; the last target out stops the poller.
func (p *Poller) Leave(id uint64) {
	g := p.group
	g.mu.Lock()
	defer g.mu.Unlock()
	delete(p.targets, id)
	if len(p.targets) > 0 || g.cur != p {
		return
	}
	g.cur = nil
	p.tick.Stop()
	var one = [8]byte{1}
	_, _ = unix.Write(p.evfd, one[:])
}

// Parked reports that the target id parked, and whether it still held a
// read buffer (it should not), to the group's OnPark hook.
func (p *Poller) Parked(id uint64, stageHeld bool) {
	if f := p.group.OnPark; f != nil {
		f(id, stageHeld)
	}
}

// Epoch returns the current tick count.
func (p *Poller) Epoch() uint64 { return p.epoch.Load() }

func start(g *Group) (*Poller, error) {
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, err
	}
	evfd, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		_ = unix.Close(epfd)
		return nil, err
	}
	// Key 0 is the stop signal; target ids start at 1.
	if err := unix.EpollCtl(epfd, unix.EPOLL_CTL_ADD, evfd, &unix.EpollEvent{Events: unix.EPOLLIN}); err != nil {
		_ = unix.Close(epfd)
		_ = unix.Close(evfd)
		return nil, err
	}
	p := &Poller{group: g, epfd: epfd, evfd: evfd, targets: make(map[uint64]Target), done: make(chan struct{})}
	p.tick = time.AfterFunc(g.every, p.sweep)
	go p.run()
	return p, nil
}

func (p *Poller) run() {
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
			t := p.targets[key]
			p.group.mu.Unlock()
			if t != nil {
				t.Wake()
			}
		}
	}
}

// sweep is the tick: it advances the epoch and interrupts every target that
// started waiting two or more epochs ago.
func (p *Poller) sweep() {
	epoch := p.epoch.next()
	p.group.mu.Lock()
	if p.group.cur != p {
		p.group.mu.Unlock()
		return
	}
	idle := make([]Target, 0, 64)
	for _, t := range p.targets {
		if t.IdleSince(epoch) {
			idle = append(idle, t)
		}
	}
	p.tick.Reset(p.group.every)
	hook := p.group.OnSweep
	p.group.mu.Unlock()
	for _, t := range idle {
		t.Interrupt()
	}
	if hook != nil {
		hook(epoch)
	}
}

// Arm (re-)registers the socket behind rc for one readiness event, reported
// to the target joined under id. *added records whether the socket is in the
// epoll set already. The fd is held by RawConn.Control meanwhile, so it
// cannot be closed and reused.
func (p *Poller) Arm(rc syscall.RawConn, id uint64, added *bool) error {
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
