//go:build !linux

package actors

import (
	"syscall"
	"time"
)

// poller is Linux-only (epoll); elsewhere readers never park and every
// connection keeps its reader goroutine.
type poller struct {
	epoch epochCounter
	group *pollGroup
}

type pollGroup struct {
	onPark  func(id uint64, stageHeld bool)
	onSweep func(epoch uint64)
}

func newPollGroup(time.Duration) *pollGroup { return &pollGroup{} }

func (g *pollGroup) join(uint64, *link) *poller { return nil }

func (g *pollGroup) leave(*poller, uint64) {}

func (p *poller) arm(syscall.RawConn, uint64, *bool) error { return errParkUnsupported }
