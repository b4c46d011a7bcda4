package main

import (
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"strings"

	"github.com/marmotws/marmot/cluster"
)

// clusterFlags are serve's cluster options: with --cluster the server is
// a node of a protoactor cluster (package cluster, docs/CLUSTER.md).
type clusterFlags struct {
	name     string
	node     uint
	bind     string
	adv      string
	provider string
	seeds    string
	etcd     string
}

func addClusterFlags(fs *flag.FlagSet) *clusterFlags {
	c := &clusterFlags{}
	fs.StringVar(&c.name, "cluster", "", "join the cluster called `NAME` (empty: a single server); needs --cluster-node and --cluster-bind")
	fs.UintVar(&c.node, "cluster-node", 0, "this node's `ID`, 1 to 999999, unique in the cluster: its clients' IDs start at ID×10^12")
	fs.StringVar(&c.bind, "cluster-bind", "", "`host:port` the node's cluster traffic listens on and is reached at (a concrete IP); automanaged also serves its health on port+1, on the same host")
	fs.StringVar(&c.adv, "cluster-advertise", "", "`host:port` the other nodes reach this node's cluster traffic at, when that is not --cluster-bind (a proxy or NAT in between; with automanaged, its port+1 must reach the health endpoint); default the bind address")
	fs.StringVar(&c.provider, "cluster-provider", cluster.ProviderAutomanaged, "membership provider: automanaged (a fixed list of nodes, no external service) or etcd (members register in etcd)")
	fs.StringVar(&c.seeds, "cluster-seeds", "", "the other nodes' --cluster-bind addresses, comma-separated (automanaged)")
	fs.StringVar(&c.etcd, "etcd-endpoints", "", "etcd servers, `host:port,...` (--cluster-provider etcd)")
	return c
}

func (c *clusterFlags) enabled() bool { return c.name != "" }

// config checks the flags and returns the node's configuration.
func (c *clusterFlags) config(log *slog.Logger) (cluster.Config, error) {
	if c.node == 0 {
		return cluster.Config{}, errors.New("flag -cluster needs -cluster-node")
	}
	if c.bind == "" {
		return cluster.Config{}, errors.New("flag -cluster needs -cluster-bind")
	}
	if c.node > 999_999 {
		return cluster.Config{}, fmt.Errorf("invalid value %d for flag -cluster-node: 1 to 999999", c.node)
	}
	return cluster.Config{
		Name: c.name, NodeID: uint32(c.node), Bind: c.bind, Advertise: c.adv, Provider: c.provider, Logger: log,
		Seeds: splitList(c.seeds), EtcdEndpoints: splitList(c.etcd),
		OnMembersChange: func(ms []cluster.Member) {
			ids := make([]string, len(ms))
			for i, m := range ms {
				ids[i] = fmt.Sprintf("%d@%s", m.NodeID, m.Address)
			}
			log.Info("cluster members", "members", strings.Join(ids, ","))
		},
	}, nil
}

// splitList splits a comma-separated flag value, dropping empty items.
func splitList(v string) []string {
	var out []string
	for s := range strings.SplitSeq(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	return out
}
