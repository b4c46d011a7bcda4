package cluster

// The isolation rules: when a node counts itself cut off from its
// cluster, and (with etcd) when the others drop a node they cannot reach.
//
// Automanaged (rejoin.go, checkIsolation): membership is the nodes'
// health polls, so a node cut off from the others sees them leave; once
// its member list holds fewer than a majority of the nodes it was
// configured with (itself and its seeds), it is isolated.
//
// etcd: membership is etcd's, so a node cut off from the other nodes but
// not from etcd stays in every member list, theirs and its own, while
// nobody can reach it (grains placed on it, requests to it, time out).
// The membership watch probes every member etcd lists (wire.MemberProbe,
// the probe leftOut sends anyway). A member that has not answered two
// checks in a row is unreached. Then:
//
//   - a node that reaches (itself included) fewer than a majority of the
//     members etcd lists is isolated: it closes its clients once with
//     CloseIsolated, as the automanaged minority does, and drops nobody;
//   - a node that reaches a majority drops the unreached members from its
//     member list (protoactor's block list: their member IDs are blocked
//     for good, as automanaged does with a node that misses a health
//     poll), so that their grains move to the nodes that answer.
//
// After the heal the dropped node finds itself left out (leftOut) and
// rejoins under a new member ID, as after an automanaged partition. With
// two nodes neither side holds a majority: both count themselves
// isolated and nobody is dropped.

// checkReach applies the etcd rule to the members of this node's member
// list that did not answer this check's probe.
func (n *Node) checkReach(unreached []string) {
	m := n.member()
	if m == nil || m.c == nil {
		return
	}
	next := make(map[string]int, len(unreached))
	var lost []string
	for _, id := range unreached {
		next[id] = n.watch.unreached[id] + 1
		if next[id] >= 2 {
			lost = append(lost, id)
		}
	}
	n.watch.unreached = next
	listed := m.c.MemberList.Members().Len()
	reached := listed - len(lost)
	isolated := reached < listed/2+1
	n.setIsolated(isolated, reached, listed)
	if isolated || len(lost) == 0 {
		return
	}
	n.log.Warn("marmot cluster: dropping members this node has not reached for two checks", "members", lost, "reached", reached, "listed", listed)
	m.c.Remote.BlockList().Block(lost...)
	// protoactor leaves blocked members out of the topology it makes;
	// the provider only updates it on a change in etcd, so update it now.
	m.c.MemberList.UpdateClusterTopology(m.c.MemberList.Members().Members())
	for _, id := range lost {
		delete(n.watch.unreached, id)
	}
}

// setIsolated records whether the node is cut off from the majority
// (have of total reached), and closes its clients once when it becomes
// so (unless Config.KeepClientsWhenIsolated).
func (n *Node) setIsolated(isolated bool, have, total int) {
	if n.watch.isolated.Swap(isolated) == isolated {
		return
	}
	if !isolated {
		n.log.Info("marmot cluster: this node reaches the majority of its cluster again", "members", have, "nodes", total)
		return
	}
	if n.cfg.KeepClientsWhenIsolated {
		n.log.Warn("marmot cluster: this node is cut off from the majority of its cluster; keeping its clients", "members", have, "nodes", total)
		return
	}
	// Its sessions first: the majority may take them over from their
	// replicas (sessions_partition.go).
	dropped := n.ss.giveUp(CloseIsolated, "marmot: node cut off from its cluster")
	cs := n.srv.Clients()
	n.log.Warn("marmot cluster: this node is cut off from the majority of its cluster; closing its clients so that they fail over", "members", have, "nodes", total, "clients", len(cs), "sessions", dropped)
	for _, c := range cs {
		_ = n.srv.Disconnect(c.ID, CloseIsolated, "marmot: node cut off from its cluster")
	}
}
