package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/marmotws/marmot"
	"github.com/marmotws/marmot/boltstore"
)

// modeRooms: clients join rooms and publish to them (marmot connect
// --join, "@room text"); other messages are echoed as in echo mode.
const modeRooms = "rooms"

// historyFlags are serve's room history options.
type historyFlags struct {
	size  int
	bytes int
	ttl   time.Duration
	store string // "memory" or "bolt:PATH"
}

func addHistoryFlags(fs *flag.FlagSet) *historyFlags {
	h := &historyFlags{}
	fs.IntVar(&h.size, "history-size", 1000, "messages each room keeps for clients that reconnect (0: no history, so no recovery)")
	fs.IntVar(&h.bytes, "history-bytes", 0, "bound on the payload bytes each room's history keeps (0: only --history-size bounds it)")
	fs.DurationVar(&h.ttl, "history-ttl", 0, "how long a room keeps a message for recovery (0: until --history-size pushes it out)")
	fs.StringVar(&h.store, "history-store", "memory", "where room history lives: memory (lost when the room ends or the server stops), or bolt:`PATH`, a bbolt file that keeps it across restarts")
	return h
}

// check validates the flags: a usage error when they do not make sense.
func (h *historyFlags) check() error {
	switch {
	case h.size < 0:
		return errors.New("invalid value for flag -history-size: must be >= 0")
	case h.bytes < 0:
		return errors.New("invalid value for flag -history-bytes: must be >= 0")
	case h.ttl < 0:
		return errors.New("invalid value for flag -history-ttl: must be >= 0")
	case h.store == "memory":
	case strings.HasPrefix(h.store, "bolt:") && len(h.store) > len("bolt:"):
		if h.size == 0 {
			return errors.New("flag -history-store bolt: needs history: -history-size 0 turns it off")
		}
	default:
		return fmt.Errorf("invalid value %q for flag -history-store: want memory or bolt:PATH", h.store)
	}
	return nil
}

// apply sets cfg's room history, opening the bolt file when asked: the
// returned close function closes it, after the server has stopped.
func (h *historyFlags) apply(cfg *marmot.HistoryConfig) (closeStore func() error, err error) {
	*cfg = marmot.HistoryConfig{Size: h.size, Bytes: h.bytes, TTL: h.ttl}
	path, ok := strings.CutPrefix(h.store, "bolt:")
	if !ok {
		return func() error { return nil }, nil
	}
	st, err := boltstore.Open(path, nil)
	if err != nil {
		return nil, fmt.Errorf("history store: %w", err)
	}
	cfg.Backend = st
	return st.Close, nil
}

// joinFlag is connect's --join: a comma-separated list of rooms.
type joinFlag []string

func (j *joinFlag) String() string { return strings.Join(*j, ",") }

func (j *joinFlag) Set(v string) error {
	for room := range strings.SplitSeq(v, ",") {
		if room = strings.TrimSpace(room); room == "" {
			return errors.New("empty room name")
		}
		*j = append(*j, room)
	}
	return nil
}

// printRoom shows a room message as "[room #offset] text" (a command's
// name in brackets after it).
func printRoom(w io.Writer, m *marmot.Message) {
	var b strings.Builder
	fmt.Fprintf(&b, "[%s #%d] ", m.Room, m.Offset)
	if m.Name != "" {
		b.WriteString("[" + m.Name + "] ")
	}
	writePayload(&b, m.Payload)
	fmt.Fprintln(w, b.String())
}

// printRecover shows the outcome of a re-join after a reconnect, on the
// same stream as the room's messages, before the replayed ones.
func printRecover(w io.Writer, room string, recovered bool, missed int, reason string) {
	if recovered {
		fmt.Fprintf(w, "recovered room %s: %d missed\n", room, missed)
		return
	}
	fmt.Fprintf(w, "not recovered room %s: %s\n", room, reason)
}
