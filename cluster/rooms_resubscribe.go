package cluster

import "sync"

// resubscribeConcurrency bounds the rooms a node subscribes again at once
// after a change of the member list. Each subscription may wait for its
// grain's take-over (up to RequestTimeout, rooms_grain.go): one at a time,
// one slow take-over held every room after it, and their publishes
// waited unconfirmed meanwhile (docs/FAULTS.md). The bound keeps a node
// with thousands of rooms from asking every grain at once.
const resubscribeConcurrency = 32

// resubscribeAll subscribes rooms again, resubscribeConcurrency at a time,
// and has each (one with presence) tell its grain its members again: the
// grain may have moved and lost presence changes. It reports false when
// the broker stopped meanwhile.
func (b *roomBroker) resubscribeAll(rooms []string) bool {
	sem := make(chan struct{}, resubscribeConcurrency)
	var wg sync.WaitGroup
	defer wg.Wait()
	for _, room := range rooms {
		select {
		case <-b.done:
			return false
		case sem <- struct{}{}:
		}
		wg.Go(func() {
			defer func() { <-sem }()
			b.resubscribe(room)
			b.n.srv.ResyncPresence(room)
		})
	}
	return true
}
