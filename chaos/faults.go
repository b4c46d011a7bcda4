package chaos

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// Faults are the shaping faults applied to a connection's bytes, in both
// directions. The zero value passes everything through untouched.
type Faults struct {
	// Latency delays every chunk of bytes by this long (pipelined in a
	// Proxy: throughput is kept; serial in a wrapped Conn, where each Read
	// and Write waits).
	Latency time.Duration
	// Jitter adds a uniformly random delay in [-Jitter, +Jitter] to
	// Latency (never below zero), chunk by chunk; bytes keep their order.
	Jitter time.Duration
	// Bandwidth caps each direction of each connection at this many bytes
	// per second. 0: no cap.
	Bandwidth int64
	// Blackhole stops forwarding (a network partition): no byte passes in
	// either direction and the sockets stay open, so senders fill their
	// buffers and block. When it is lifted what was held flows on, as
	// after a healed partition; nothing is dropped.
	Blackhole bool
	// ResetAfter resets the connection (RST) once this many more bytes
	// (both directions together) have passed, counted from when the faults
	// were set, or from the connection's start for later connections. 0:
	// never.
	ResetAfter int64
}

// ErrBadFaults reports invalid Faults (a negative value); the error's text
// says which field.
var ErrBadFaults = errors.New("chaos: invalid faults")

// Validate reports a negative field as an error wrapping ErrBadFaults.
func (f Faults) Validate() error {
	switch {
	case f.Latency < 0:
		return fmt.Errorf("%w: latency %v is negative", ErrBadFaults, f.Latency)
	case f.Jitter < 0:
		return fmt.Errorf("%w: jitter %v is negative", ErrBadFaults, f.Jitter)
	case f.Bandwidth < 0:
		return fmt.Errorf("%w: bandwidth %d is negative", ErrBadFaults, f.Bandwidth)
	case f.ResetAfter < 0:
		return fmt.Errorf("%w: reset_after %d is negative", ErrBadFaults, f.ResetAfter)
	}
	return nil
}

// shaping reports whether f delays or holds bytes at all.
func (f Faults) shaping() bool {
	return f.Latency > 0 || f.Jitter > 0 || f.Bandwidth > 0 || f.Blackhole
}

// faultsJSON is Faults on the wire of the control API: durations as Go
// duration strings ("250ms").
type faultsJSON struct {
	Latency    string `json:"latency,omitempty"`
	Jitter     string `json:"jitter,omitempty"`
	Bandwidth  int64  `json:"bandwidth,omitempty"`
	Blackhole  bool   `json:"blackhole,omitempty"`
	ResetAfter int64  `json:"reset_after,omitempty"`
}

// MarshalJSON writes f as the control API's JSON object: latency and jitter
// as duration strings, bandwidth in bytes per second, zero fields left out.
func (f Faults) MarshalJSON() ([]byte, error) {
	j := faultsJSON{Bandwidth: f.Bandwidth, Blackhole: f.Blackhole, ResetAfter: f.ResetAfter}
	if f.Latency != 0 {
		j.Latency = f.Latency.String()
	}
	if f.Jitter != 0 {
		j.Jitter = f.Jitter.String()
	}
	return json.Marshal(j)
}

// UnmarshalJSON reads the control API's JSON object strictly: unknown
// members, bad durations, negative values and trailing data are errors
// (wrapping ErrBadFaults).
func (f *Faults) UnmarshalJSON(b []byte) error {
	d, err := DecodeFaults(b)
	if err != nil {
		return err
	}
	*f = d
	return nil
}

// DecodeFaults parses a control API faults object such as
// {"latency":"100ms","jitter":"20ms","bandwidth":65536,"blackhole":false,"reset_after":0}.
// Every error wraps ErrBadFaults and says what is wrong.
func DecodeFaults(b []byte) (Faults, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var j faultsJSON
	if err := dec.Decode(&j); err != nil {
		return Faults{}, fmt.Errorf("%w: %v", ErrBadFaults, err)
	}
	if dec.More() {
		return Faults{}, fmt.Errorf("%w: data after the object", ErrBadFaults)
	}
	f := Faults{Bandwidth: j.Bandwidth, Blackhole: j.Blackhole, ResetAfter: j.ResetAfter}
	var err error
	if f.Latency, err = parseDuration("latency", j.Latency); err != nil {
		return Faults{}, err
	}
	if f.Jitter, err = parseDuration("jitter", j.Jitter); err != nil {
		return Faults{}, err
	}
	return f, f.Validate()
}

func parseDuration(field, s string) (time.Duration, error) {
	if s == "" {
		return 0, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("%w: %s %q is not a duration (want e.g. \"250ms\")", ErrBadFaults, field, s)
	}
	return d, nil
}
