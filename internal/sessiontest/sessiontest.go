// Package sessiontest holds what the tests of sessions that follow their
// client (the root package's, with servers in process, and package
// cluster's, with node processes) share: numbered commands "m<K>" sent
// through a client's outbox, and the check that the client lost none.
package sessiontest

import (
	"errors"
	"fmt"
	"testing"

	"github.com/marmotws/marmot"
)

// Send sends the commands "m" with payloads "m<from>" to "m<to>", in order.
func Send(t testing.TB, c *marmot.Client, from, to int) {
	t.Helper()
	for k := from; k <= to; k++ {
		if err := c.SendCommand("m", fmt.Appendf(nil, "m%d", k)); err != nil {
			t.Fatalf("send m%d: %v", k, err)
		}
	}
}

// NoSessionLost fails t on an ErrSessionLost among the client errors
// errs holds now.
func NoSessionLost(t testing.TB, errs <-chan error) {
	t.Helper()
	for {
		select {
		case err := <-errs:
			if errors.Is(err, marmot.ErrSessionLost) {
				t.Fatalf("client: %v", err)
			}
		default:
			return
		}
	}
}
