//go:build !linux

package netpoll

import (
	"syscall"
	"time"
)

// Poller is Linux-only (epoll); elsewhere readers never park and every
// connection keeps its reader goroutine.
type Poller struct{}

// Group hands out no pollers here.
type Group struct {
	// OnSweep and OnPark are never called on this platform.
	OnSweep func(epoch uint64)
	OnPark  func(id uint64, stageHeld bool)
}

// NewGroup returns a group that never parks.
func NewGroup(time.Duration) *Group { return &Group{} }

// Join reports that parking is unavailable.
func (g *Group) Join(uint64, Target) *Poller { return nil }

// Leave does nothing.
func (p *Poller) Leave(uint64) {}

// Parked does nothing.
func (p *Poller) Parked(uint64, bool) {}

// Epoch returns 0.
func (p *Poller) Epoch() uint64 { return 0 }

// Arm always fails.
func (p *Poller) Arm(syscall.RawConn, uint64, *bool) error { return ErrUnsupported }
