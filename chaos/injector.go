package chaos

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"
)

// InstrumentationName names the tracer the injector's spans come from.
const InstrumentationName = "github.com/marmotws/marmot/chaos"

// ConnID identifies a connection of an Injector, from 1, never reused.
type ConnID uint64

// Mode is what an Injector does with new connections.
type Mode int

// The modes.
const (
	// ModeUp lets new connections through.
	ModeUp Mode = iota
	// ModeRefusing resets every new connection before a byte passes (a
	// Proxy's TCP handshake has completed, so clients see ECONNRESET or
	// EOF); a wrapped dialer fails with ECONNREFUSED.
	ModeRefusing
	// ModeDown is the service gone: every connection was reset when it was
	// entered and new ones fail (a Proxy closes its listener: ECONNREFUSED;
	// wrappers refuse as in ModeRefusing).
	ModeDown
)

func (m Mode) String() string {
	switch m {
	case ModeUp:
		return "up"
	case ModeRefusing:
		return "refusing"
	case ModeDown:
		return "down"
	}
	return fmt.Sprintf("Mode(%d)", int(m))
}

// MarshalText writes the mode's name.
func (m Mode) MarshalText() ([]byte, error) { return []byte(m.String()), nil }

// ErrNoConn reports an unknown (or already ended) connection id.
var ErrNoConn = errors.New("chaos: no such connection")

// ErrReset is returned by a wrapped Conn's Read or Write once the injector
// has reset it.
var ErrReset = errors.New("chaos: connection reset by fault injection")

// Options configure an Injector (and a Proxy).
type Options struct {
	// Logger gets a line for every change and every injected fault (Info)
	// and for every connection's start and end (Debug). Default: discard.
	Logger *slog.Logger
	// TracerProvider makes the injector's tracer: each connection is a span
	// ("chaos.conn") and every fault injected into it is an event on it
	// ("chaos.fault": what, and the connection's addresses as where).
	// Default: the global provider (otel.GetTracerProvider).
	TracerProvider trace.TracerProvider
}

// Counts are an Injector's counters since it was made.
type Counts struct {
	Accepted  int64 `json:"accepted"`  // connections let through
	Refused   int64 `json:"refused"`   // connections refused (ModeRefusing, ModeDown)
	Resets    int64 `json:"resets"`    // connections reset (now, after bytes, by Down)
	Changes   int64 `json:"changes"`   // control operations that changed something
	Delayed   int64 `json:"delayed"`   // chunks delayed by latency or jitter
	Throttled int64 `json:"throttled"` // chunks that waited for bandwidth
	Held      int64 `json:"held"`      // chunks held by a blackhole
	Bytes     int64 `json:"bytes"`     // bytes forwarded, both directions
}

// ConnInfo describes a live connection.
type ConnInfo struct {
	ID ConnID `json:"id"`
	// Kind is "proxy", "listener" or "dialer".
	Kind string `json:"kind"`
	// Client is the address of the side that connected; Upstream the
	// other side (for a wrapped listener, the listener's address).
	Client   string    `json:"client"`
	Upstream string    `json:"upstream"`
	Since    time.Time `json:"since"`
	// Up and Down are the bytes forwarded from client to upstream and
	// back (for wrapped conns: written and read).
	Up   int64 `json:"bytes_up"`
	Down int64 `json:"bytes_down"`
	// Faults are in force on the connection; Own says they were set for it
	// alone (SetConn) rather than for all.
	Faults Faults `json:"faults"`
	Own    bool   `json:"own"`
}

// Status is an Injector's whole state.
type Status struct {
	Mode   Mode       `json:"mode"`
	Faults Faults     `json:"faults"`
	Conns  []ConnInfo `json:"conns"`
	Counts Counts     `json:"counts"`
}

// An Injector holds faults and applies them to the connections it owns: a
// Proxy's, or those of wrapped listeners and dialers (WrapListener,
// WrapDial). Faults set with Set apply to every connection without faults
// of its own (SetConn). Every method is safe for concurrent use.
type Injector struct {
	log    *slog.Logger
	tracer trace.Tracer

	mu     sync.Mutex
	mode   Mode
	global Faults
	conns  map[ConnID]*conn
	nextID ConnID
	// modeHook lets a Proxy close and reopen its listener on Down and Up.
	modeHook func(Mode) error

	counts struct {
		accepted, refused, resets, changes, delayed, throttled, held, bytes atomic.Int64
	}
}

// New returns an Injector with no faults, in ModeUp.
func New(opts Options) *Injector {
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	tp := opts.TracerProvider
	if tp == nil {
		tp = otel.GetTracerProvider()
	}
	return &Injector{log: log, tracer: tp.Tracer(InstrumentationName), conns: make(map[ConnID]*conn)}
}

// Set puts f on every connection without faults of its own, present and
// future. It returns an error wrapping ErrBadFaults for invalid f.
func (i *Injector) Set(f Faults) error {
	if err := f.Validate(); err != nil {
		return err
	}
	i.mu.Lock()
	i.global = f
	var n int
	for _, c := range i.conns {
		if c.setFaults(f, false) {
			n++
		}
	}
	i.mu.Unlock()
	i.changed("faults set", slog.String("scope", "all"), slog.Any("faults", f), slog.Int("conns", n))
	return nil
}

// Faults returns the faults set for all connections.
func (i *Injector) Faults() Faults {
	i.mu.Lock()
	defer i.mu.Unlock()
	return i.global
}

// SetConn puts f on connection id alone, until ClearConn; later Set calls
// do not change it.
func (i *Injector) SetConn(id ConnID, f Faults) error {
	if err := f.Validate(); err != nil {
		return err
	}
	i.mu.Lock()
	c := i.conns[id]
	if c != nil {
		c.setFaults(f, true)
	}
	i.mu.Unlock()
	if c == nil {
		return fmt.Errorf("%w: %d", ErrNoConn, id)
	}
	i.changed("faults set", slog.Uint64("conn", uint64(id)), slog.Any("faults", f))
	return nil
}

// ClearConn gives connection id back the faults set for all.
func (i *Injector) ClearConn(id ConnID) error {
	i.mu.Lock()
	c := i.conns[id]
	if c != nil {
		c.clear(i.global)
	}
	i.mu.Unlock()
	if c == nil {
		return fmt.Errorf("%w: %d", ErrNoConn, id)
	}
	i.changed("faults cleared", slog.Uint64("conn", uint64(id)))
	return nil
}

// Reset resets connection id now: both of its sockets are closed with an
// RST (SO_LINGER 0), so the peers see ECONNRESET.
func (i *Injector) Reset(id ConnID) error {
	i.mu.Lock()
	c := i.conns[id]
	i.mu.Unlock()
	if c == nil {
		return fmt.Errorf("%w: %d", ErrNoConn, id)
	}
	c.reset("reset")
	return nil
}

// ResetAll resets every live connection now and returns how many.
func (i *Injector) ResetAll() int {
	cs := i.snapshot()
	for _, c := range cs {
		c.reset("reset")
	}
	i.changed("reset all", slog.Int("conns", len(cs)))
	return len(cs)
}

// Mode returns what the injector does with new connections.
func (i *Injector) Mode() Mode {
	i.mu.Lock()
	defer i.mu.Unlock()
	return i.mode
}

// Refuse makes new connections fail (ModeRefusing); live ones go on.
func (i *Injector) Refuse() error { return i.setMode(ModeRefusing) }

// Down resets every live connection and refuses new ones (ModeDown): a
// Proxy closes its listener, so connecting fails with ECONNREFUSED.
func (i *Injector) Down() error { return i.setMode(ModeDown) }

// Up lets new connections through again (ModeUp); a Proxy listens again
// on its address, which fails if another socket took it meanwhile.
func (i *Injector) Up() error { return i.setMode(ModeUp) }

func (i *Injector) setMode(m Mode) error {
	i.mu.Lock()
	old := i.mode
	if old == m {
		i.mu.Unlock()
		return nil
	}
	if i.modeHook != nil {
		if err := i.modeHook(m); err != nil {
			i.mu.Unlock()
			i.log.Warn("chaos: mode change failed", slog.String("from", old.String()), slog.String("to", m.String()), slog.Any("err", err))
			return err
		}
	}
	i.mode = m
	i.mu.Unlock()
	i.changed("mode", slog.String("from", old.String()), slog.String("to", m.String()))
	if m == ModeDown {
		for _, c := range i.snapshot() {
			c.reset("down")
		}
	}
	return nil
}

// Conns lists the live connections, by id.
func (i *Injector) Conns() []ConnInfo {
	cs := i.snapshot()
	out := make([]ConnInfo, 0, len(cs))
	for _, c := range cs {
		out = append(out, c.info())
	}
	return out
}

// Counts returns the injector's counters.
func (i *Injector) Counts() Counts {
	c := &i.counts
	return Counts{Accepted: c.accepted.Load(), Refused: c.refused.Load(), Resets: c.resets.Load(),
		Changes: c.changes.Load(), Delayed: c.delayed.Load(), Throttled: c.throttled.Load(),
		Held: c.held.Load(), Bytes: c.bytes.Load()}
}

// Status returns the mode, the faults for all, the connections and the
// counters.
func (i *Injector) Status() Status {
	return Status{Mode: i.Mode(), Faults: i.Faults(), Conns: i.Conns(), Counts: i.Counts()}
}

// snapshot returns the live connections, by id.
func (i *Injector) snapshot() []*conn {
	i.mu.Lock()
	cs := make([]*conn, 0, len(i.conns))
	for _, c := range i.conns {
		cs = append(cs, c)
	}
	i.mu.Unlock()
	slices.SortFunc(cs, func(a, b *conn) int { return int(a.id) - int(b.id) })
	return cs
}

// changed logs and counts a control operation.
func (i *Injector) changed(msg string, attrs ...any) {
	i.counts.changes.Add(1)
	i.log.Info("chaos: "+msg, attrs...)
}

// refused reports whether the mode refuses a new connection now, and then
// logs, counts and traces the refusal.
func (i *Injector) refused(kind, client, upstream string) bool {
	mode := i.Mode()
	if mode == ModeUp {
		return false
	}
	i.refuse(mode, kind, client, upstream)
	return true
}

func (i *Injector) refuse(mode Mode, kind, client, upstream string) {
	i.counts.refused.Add(1)
	_, span := i.tracer.Start(context.Background(), "chaos.conn", trace.WithAttributes(
		attribute.String("chaos.kind", kind), attribute.String("client.address", client), attribute.String("server.address", upstream)))
	span.AddEvent("chaos.fault", trace.WithAttributes(attribute.String("chaos.fault", "refuse"), attribute.String("chaos.mode", mode.String())))
	span.End()
	i.log.Info("chaos: connection refused", slog.String("kind", kind), slog.String("client", client), slog.String("mode", mode.String()))
}

// admit registers a new connection over sockets, or refuses it (nil) when
// the mode says so; the refusal is logged, counted and traced.
func (i *Injector) admit(kind, client, upstream string, sockets ...closer) *conn {
	i.mu.Lock()
	if mode := i.mode; mode != ModeUp {
		i.mu.Unlock()
		i.refuse(mode, kind, client, upstream)
		return nil
	}
	i.nextID++
	c := newConn(i, i.nextID, kind, client, upstream, sockets)
	c.setFaults(i.global, false)
	i.conns[c.id] = c
	i.mu.Unlock()
	i.counts.accepted.Add(1)
	i.log.Debug("chaos: connection", slog.Uint64("conn", uint64(c.id)), slog.String("kind", kind),
		slog.String("client", client), slog.String("upstream", upstream))
	return c
}

// forget unregisters c once it has ended.
func (i *Injector) forget(c *conn) {
	i.mu.Lock()
	delete(i.conns, c.id)
	i.mu.Unlock()
	i.log.Debug("chaos: connection ended", slog.Uint64("conn", uint64(c.id)))
}
