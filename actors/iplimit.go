package actors

import (
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// ipKey is the address a per-IP limit counts against: the IPv4 address,
// or the /64 of an IPv6 one (a single host usually owns a whole /64, so
// counting its addresses one by one would not limit it).
type ipKey = netip.Prefix

// maxIPEntries bounds the per-IP table. When it is full, entries with no
// open connection and a full token bucket are dropped (forgetting them
// loses nothing); if none can be, new addresses are refused until some
// can, so the table never grows without limit.
const maxIPEntries = 1 << 16

// ipTable keeps the per-IP connection rate and count.
type ipTable struct {
	rate  rate.Limit // connections per second per address; 0: no rate limit
	burst int
	max   int // concurrent connections per address; 0: unlimited

	mu sync.Mutex
	m  map[ipKey]*ipEntry
}

type ipEntry struct {
	lim  *rate.Limiter
	open int
}

func newIPTable(perSecond float64, burst, maxOpen int) *ipTable {
	if perSecond <= 0 && maxOpen <= 0 {
		return nil
	}
	t := &ipTable{max: max(maxOpen, 0), m: make(map[ipKey]*ipEntry)}
	if perSecond > 0 {
		t.rate = rate.Limit(perSecond)
		t.burst = max(burst, 1)
	}
	return t
}

// keyOf returns the key of a request's RemoteAddr.
func keyOf(remote string) (ipKey, bool) {
	host, _, err := net.SplitHostPort(remote)
	if err != nil {
		host = remote
	}
	a, err := netip.ParseAddr(host)
	if err != nil {
		return ipKey{}, false
	}
	a = a.Unmap()
	bits := 32
	if a.Is6() {
		bits = 64
	}
	p, _ := a.Prefix(bits)
	return p, true
}

// take admits one more connection from remote, or says why not (429).
func (t *ipTable) take(remote string) (ipKey, *refusal) {
	key, ok := keyOf(remote)
	if !ok {
		// Not an IP (a unix socket, a test's fake address): unlimited.
		return ipKey{}, nil
	}
	now := time.Now()
	t.mu.Lock()
	defer t.mu.Unlock()
	e := t.m[key]
	if e == nil {
		if len(t.m) >= maxIPEntries && !t.sweep(now) {
			return key, ipRefusal(remote, "ip_table_full", "too many client addresses at once")
		}
		e = &ipEntry{}
		if t.rate > 0 {
			e.lim = rate.NewLimiter(t.rate, t.burst)
		}
		t.m[key] = e
	}
	if t.max > 0 && e.open >= t.max {
		return key, ipRefusal(remote, "ip_connections", fmt.Sprintf("more than %d connections", t.max))
	}
	if e.lim != nil && !e.lim.AllowN(now, 1) {
		return key, ipRefusal(remote, "ip_rate", fmt.Sprintf("more than %g connections per second", float64(t.rate)))
	}
	e.open++
	return key, nil
}

func ipRefusal(remote, reason, what string) *refusal {
	return &refusal{
		status: http.StatusTooManyRequests, reason: reason, retryAfter: 1,
		text: "marmot: too many connections from your address: " + what,
		err:  fmt.Errorf("%w: %s: %s", ErrIPLimit, remote, what),
	}
}

// release gives back a connection taken from key.
func (t *ipTable) release(key ipKey) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if e := t.m[key]; e != nil && e.open > 0 {
		e.open--
	}
}

// sweep drops the entries that remember nothing: no open connection and a
// full bucket. It reports whether any went.
func (t *ipTable) sweep(now time.Time) bool {
	n := len(t.m)
	for k, e := range t.m {
		if e.open == 0 && (e.lim == nil || e.lim.TokensAt(now) >= float64(t.burst)) {
			delete(t.m, k)
		}
	}
	return len(t.m) < n
}
