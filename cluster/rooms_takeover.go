package cluster

import (
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/marmotws/marmot/cluster/internal/wire"
)

// How a room grain takes over from the grain before it (rooms_grain.go
// asks every member what it holds; this file is what makes that answer
// complete). Two things broke the rule that within an epoch an offset is
// numbered once (the two-kill cluster soak, docs/FAULTS.md):
//
//   - An answer that never came. protoactor's remote drops a message to
//     an address whose endpoint is being torn down or reconnected (a node
//     that has just restarted at the address of a killed one): the grain
//     asked once and waited its whole RequestTimeout, then went on from
//     the answers it had, behind the member that did not answer. The
//     grain now asks the members that have not answered again, every
//     takeOverRetry, until they answer or leave the member list, for at
//     most takeOverTries tries. (The first run that showed it: node 2's
//     new process took room-01 over 130 ms after the kill, node 1's
//     answer did not come in 5 s, the other two held nothing, and the
//     grain began a new epoch at offset 1 while node 1 held offset 464.)
//
//   - A grain before it that was still alive. disthash places a room by
//     each member's own copy of the member list, and a grain moves only
//     when its node's placement actor sees the new list: for a while two
//     grains of the room number publishes, each from its own position
//     (the new one from the nodes' answers, behind what the old one goes
//     on numbering). Now a node that hosts a grain of the room, asked by
//     another, hands the question to its grain (grainHandOff): a grain
//     that holds the room answers its own position first (a RoomState
//     without Node: a position, not a subscriber), then the node's, and
//     stops, so that one grain numbers at a time and the new one goes on
//     from the old one's last offset. A grain still taking over has
//     numbered nothing: it passes the node's answer on and goes on.
//
// What the old grain had in its mailbox when it stopped is lost there:
// the publishes stay unconfirmed at their nodes, which send them again
// to the new grain once they subscribe again (a change of the member
// list, or stallAfter); subscriptions are tried again.

// takeOverTries bounds the questions of one take-over to one member;
// takeOverRetry is the time between them: twice RequestTimeout in all
// (the single question's wait was one), since the endpoint that lost an
// answer reconnects in about two seconds (protoactor's endpoint writer
// waits that long between its attempts) and a grain that goes on without
// an answer may go on behind it.
const takeOverTries = 8

func (n *Node) takeOverRetry() time.Duration { return 2 * n.cfg.RequestTimeout / takeOverTries }

// grainTakeOverTick asks the members that have not answered again, or
// ends the take-over without them once takeOverTries have passed.
type grainTakeOverTick struct{}

// grainHandOff is a node actor's word to its own grain of a room that
// another grain takes over (local only): node is the node's own answer,
// to the asking grain.
type grainHandOff struct {
	node *wire.RoomState
	to   *actor.PID
}

// askMembers asks the members in g.waiting what they hold of the room,
// and has a tick come back after takeOverRetry.
func (g *roomGrain) askMembers(ctx actor.Context) {
	for addr := range g.waiting {
		ctx.Request(nodePID(addr), &wire.RoomStateQuery{Room: g.room})
	}
	g.tries++
	self, root := ctx.Self(), ctx.ActorSystem().Root
	time.AfterFunc(g.n.takeOverRetry(), func() { root.Send(self, &grainTakeOverTick{}) })
}

// takeOverTick is a tick of the take-over.
func (g *roomGrain) takeOverTick(ctx actor.Context) {
	if g.phase != grainTakingOver {
		return
	}
	if g.tries < takeOverTries {
		g.askMembers(ctx)
		return
	}
	g.n.log.Warn("marmot cluster: room take-over without every member's answer",
		"room", g.room, "missing", sortedKeys(g.waiting), "answers", len(g.states), "tries", g.tries)
	g.takenOver(ctx)
}

// handOff answers another grain's take-over for the node that hosts g.
func (g *roomGrain) handOff(ctx actor.Context, m *grainHandOff) {
	if g.phase != grainReady || g.hist.epoch == "" {
		ctx.Send(m.to, m.node) // nothing numbered here: the node's answer alone
		return
	}
	own := g.hist.state(g.room) // Node "": a position, not a subscriber
	ctx.Send(m.to, own)
	ctx.Send(m.to, m.node)
	g.n.log.Info("marmot cluster: room handed over to another grain", "node", g.n.cfg.NodeID, "room", g.room, "to", m.to.String(), "epoch", own.Epoch, "offset", own.Offset)
	ctx.Stop(ctx.Self())
}

// localGrains indexes the room grains a node hosts, by room, for the node
// actor's hand-off.
type localGrains struct {
	mu sync.Mutex
	m  map[string]*actor.PID
}

func (l *localGrains) add(room string, pid *actor.PID) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.m == nil {
		l.m = map[string]*actor.PID{}
	}
	l.m[room] = pid
}

func (l *localGrains) remove(room string, pid *actor.PID) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if p := l.m[room]; p != nil && p.Equal(pid) {
		delete(l.m, room)
	}
}

// other returns the grain of room hosted at addr when it is not asker.
func (l *localGrains) other(room, addr string, asker *actor.PID) *actor.PID {
	l.mu.Lock()
	defer l.mu.Unlock()
	p := l.m[room]
	if p == nil || asker == nil || p.Address != addr || p.Equal(asker) {
		return nil
	}
	return p
}

func sortedKeys(m map[string]struct{}) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// statesSummary names what each member answered a take-over, for the log.
func statesSummary(states []*wire.RoomState) []string {
	out := make([]string, 0, len(states))
	for _, st := range states {
		node := st.Node
		if node == "" {
			node = "grain"
		}
		out = append(out, fmt.Sprintf("%s:%s/%d", node, st.Epoch, st.Offset))
	}
	return out
}
