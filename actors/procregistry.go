package actors

import (
	"github.com/asynkron/protoactor-go/actor"
	cmap "github.com/orcaman/concurrent-map"
)

// registryBuckets is how many concurrent maps the process registry of a
// system made by NewActorSystem has (protoactor's default is 1024), each
// of cmap.SHARD_COUNT (32) Go maps.
//
// Why: protoactor keys every actor and every future by a fresh id
// ("$1", "$2", ...) hashed over 1024 x 32 = 32,768 Go maps. A Go map
// allocates its first group (8 slots, 288 bytes for string keys and
// interface values) on its first insert and never frees it, so as ids
// rotate through the maps (a connection actor per connect, a future per
// room join or call) every one of them ends up holding a group: about
// 9 MiB of heap with nothing in it, reached after a few hundred thousand
// spawns (TestProcessRegistryPlateau measures it). That was the soak's
// server "growing" for half an hour (docs/FAULTS.md). With 16 x 32 = 512
// maps the residue is about 150 KiB, the empty table costs about 50 KiB
// instead of 3 MiB per actor system (every client has one), and 100,000
// live actors still make only ~200 entries a map. Lookups hash the same
// way; a PID caches its process after the first one, so the message path
// does not touch the registry.
const registryBuckets = 16

// bootProcesses are the processes protoactor registers while it makes a
// system (TestBootProcesses checks that there are no others). Moving them
// by name costs nothing; walking the old table's 32,768 maps cost 1.5 ms
// a system, and cmap's Items a goroutine per shard.
var bootProcesses = []string{"eventstream", "deadletter"}

// compactProcessRegistry replaces sys's process registry table with one
// of registryBuckets maps, moving over what was registered while the
// system was made (its event stream, dead letters). Call it on a new
// system before it is shared: nothing else may use the registry yet.
func compactProcessRegistry(sys *actor.ActorSystem) {
	old := sys.ProcessRegistry.LocalPIDs
	sm := &actor.SliceMap{LocalPIDs: make([]cmap.ConcurrentMap, registryBuckets)}
	for i := range sm.LocalPIDs {
		sm.LocalPIDs[i] = cmap.New()
	}
	for _, id := range bootProcesses {
		if p, ok := old.GetBucket(id).Get(id); ok {
			sm.GetBucket(id).Set(id, p)
		}
	}
	sys.ProcessRegistry.LocalPIDs = sm
}

// processCount is how many processes (actors, futures) sys has registered
// now: the regression tests' measure of ids never removed.
func processCount(sys *actor.ActorSystem) int {
	n := 0
	for _, b := range sys.ProcessRegistry.LocalPIDs.LocalPIDs {
		n += b.Count()
	}
	return n
}
