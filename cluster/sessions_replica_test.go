package cluster

import (
	"crypto/sha256"
	"log/slog"
	"slices"
	"testing"
	"time"

	"github.com/marmotws/marmot/cluster/internal/wire"
)

// TestReplicas: every node that sees the same members names the same
// replica for a session, never the session's home, and one member more
// or less moves only the sessions it takes or had.
func TestReplicas(t *testing.T) {
	members := []Member{{1, "10.0.0.1:7001"}, {2, "10.0.0.2:7001"}, {3, "10.0.0.3:7001"}, {4, "10.0.0.4:7001"}}
	moved := 0
	for id := uint64(1_000_000_000_000); id < 1_000_000_001_000; id++ {
		order := replicas(id, members, 1)
		if len(order) != 3 {
			t.Fatalf("session %d: %d replicas, want 3", id, len(order))
		}
		for _, a := range order {
			if a == members[0].Address {
				t.Fatalf("session %d: its home is among its replicas", id)
			}
		}
		// The same members in another order: the same replica.
		if again := replicas(id, []Member{members[3], members[1], members[0], members[2]}, 1); again[0] != order[0] {
			t.Fatalf("session %d: replica %s, then %s", id, order[0], again[0])
		}
		// Without node 4: only the sessions it kept move.
		without := replicas(id, members[:3], 1)
		if order[0] != members[3].Address && without[0] != order[0] {
			t.Fatalf("session %d moved from %s to %s when node 4 left", id, order[0], without[0])
		}
		if order[0] == members[3].Address {
			moved++
		}
	}
	if moved < 200 || moved > 470 {
		t.Fatalf("node 4 keeps %d of 1000 sessions, want about a third", moved)
	}
}

// TestHeldMarks: a replica gives a mark up once, only for the secret
// whose hash it keeps, not for a live home that said it has no such
// session, and forgets marks its home stopped refreshing, or deleted; a
// mark it gave up that its home marks again is named to be fenced.
func TestHeldMarks(t *testing.T) {
	st := newSessionStore(&Node{log: slog.New(slog.DiscardHandler)}, time.Minute)
	secret := []byte("0123456789abcdef0123456789abcdef")
	hash := sha256.Sum256(secret)
	hold := func(home string, ttl time.Duration, last uint64) {
		st.hold(&wire.SessionMarks{Home: home, TtlNanos: int64(ttl), Marks: []*wire.SessionMark{{Id: 7, SecretHash: hash[:], Last: last}}})
	}
	take := func(secret []byte, unless string) *wire.SessionTaken {
		return st.takeHeld(&wire.SessionTake{Id: 7, Secret: secret, UnlessHome: unless})
	}
	hold("run-1", time.Minute, 5)
	hold("run-1", time.Minute, 3) // late: the mark does not go back
	if r := take([]byte("wrong"), ""); r.Found {
		t.Fatal("taken with a wrong secret")
	}
	if r := take(secret, "run-1"); r.Found {
		t.Fatal("taken although its live home said it has no such session")
	}
	if r := take(secret, "run-2"); !r.Found || r.Last != 5 || r.Certain {
		t.Fatalf("take: %+v, want found at 5, not certain", r)
	}
	if r := take(secret, ""); r.Found {
		t.Fatal("taken twice")
	}
	// Its home, cut off meanwhile, marks it again: the replica keeps no
	// mark, names it to be fenced, and it is not taken again.
	if fenced := st.hold(&wire.SessionMarks{Home: "run-2", TtlNanos: int64(time.Minute), Marks: []*wire.SessionMark{{Id: 7, SecretHash: hash[:], Last: 8}}}); !slices.Equal(fenced, []uint64{7}) {
		t.Fatalf("fenced %v after the home marked a taken session, want [7]", fenced)
	}
	if r := take(secret, ""); r.Found {
		t.Fatal("taken again after its home marked it")
	}
	// The home ended it (fenced): the tombstone goes with its deletion.
	st.hold(&wire.SessionMarks{Home: "run-2", Deleted: []uint64{7}})
	if fenced := st.hold(&wire.SessionMarks{Home: "run-1", TtlNanos: int64(time.Minute), Marks: []*wire.SessionMark{{Id: 7, SecretHash: hash[:], Last: 5}}}); len(fenced) != 0 {
		t.Fatalf("fenced %v after the tombstone was deleted", fenced)
	}
	if r := take(secret, ""); !r.Found || r.Last != 5 {
		t.Fatalf("take after the tombstone went: %+v", r)
	}
	st.hold(&wire.SessionMarks{Home: "run-1", Deleted: []uint64{7}})

	// A final mark is certain; a deleted one is gone.
	st.hold(&wire.SessionMarks{Home: "run-1", TtlNanos: int64(time.Minute), Marks: []*wire.SessionMark{{Id: 7, SecretHash: hash[:], Last: 9, Final: true}}})
	if r := take(secret, ""); !r.Found || r.Last != 9 || !r.Certain {
		t.Fatalf("take of a final mark: %+v", r)
	}
	hold("run-1", time.Minute, 1)
	st.hold(&wire.SessionMarks{Home: "run-1", Deleted: []uint64{7}})
	if r := take(secret, ""); r.Found {
		t.Fatal("taken after its home deleted it")
	}

	// Expired: its home stopped refreshing it.
	hold("run-1", -time.Second, 1)
	if r := take(secret, ""); r.Found {
		t.Fatal("taken after it expired")
	}
}
