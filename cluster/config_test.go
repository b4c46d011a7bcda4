package cluster_test

import (
	"context"
	"errors"
	"testing"

	"github.com/marmotws/marmot"
	"github.com/marmotws/marmot/cluster"
)

func TestConfigValidation(t *testing.T) {
	ok := cluster.Config{Name: "c", NodeID: 1, Bind: "127.0.0.2:7001"}
	for name, mod := range map[string]func(*cluster.Config){
		"no name":        func(c *cluster.Config) { c.Name = "" },
		"no node ID":     func(c *cluster.Config) { c.NodeID = 0 },
		"node ID high":   func(c *cluster.Config) { c.NodeID = 1_000_000 },
		"no bind":        func(c *cluster.Config) { c.Bind = "" },
		"bind anywhere":  func(c *cluster.Config) { c.Bind = "0.0.0.0:7001" },
		"bad seed":       func(c *cluster.Config) { c.Seeds = []string{"127.0.0.3"} },
		"other provider": func(c *cluster.Config) { c.Provider = "zookeeper" },
	} {
		cfg := ok
		mod(&cfg)
		if _, err := cluster.New(cfg, marmot.ServerConfig{}); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if _, err := cluster.New(ok, marmot.ServerConfig{NodeID: 2}); err == nil {
		t.Error("a ServerConfig with its own NodeID accepted")
	}
	if _, err := cluster.New(ok, marmot.ServerConfig{RoomHistory: marmot.HistoryConfig{Size: 10, Backend: noBackend{}}}); err == nil {
		t.Error("RoomHistory.Backend accepted")
	}
	n, err := cluster.New(ok, marmot.ServerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	// Not started: the cluster-wide calls say so.
	if _, err := n.Broadcast(context.Background(), []byte("x")); !errors.Is(err, cluster.ErrNotStarted) {
		t.Errorf("Broadcast before Start: %v", err)
	}
	if err := n.SendToClient(context.Background(), 2_000_000_000_001, []byte("x")); !errors.Is(err, cluster.ErrNotStarted) {
		t.Errorf("SendToClient before Start: %v", err)
	}
	if err := n.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// noBackend is a HistoryBackend a cluster refuses (it keeps history itself).
type noBackend struct{}

func (noBackend) Open(string, marmot.HistoryConfig) (marmot.HistoryStore, error) {
	return nil, errors.New("no")
}
