// Command testnode runs one cluster node for the cluster package's tests,
// which start three of them as separate processes. It is configured from
// the environment (MARMOT_CLUSTER_NAME, MARMOT_NODE_ID, MARMOT_BIND,
// MARMOT_SEEDS, MARMOT_WS_ADDR, MARMOT_PROVIDER, MARMOT_ETCD), prints "URL ws://..." once it serves and
// "MEMBERS 1,2,3" after every change of the member list, and stops
// gracefully when its stdin closes. Its clients drive it with requests:
// whoami, bcast PAYLOAD, sendto "ID TEXT", count, clients.
//
// It is built without the race detector on purpose: protoactor's remote
// and cluster packages have data races of their own (docs/CLUSTER.md),
// which would fail every process that runs them under -race.
package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/marmotws/marmot"
	"github.com/marmotws/marmot/cluster"
)

func main() { os.Exit(runChild()) }

// runChild runs one node. Its clients drive it with requests: whoami,
// bcast PAYLOAD, sendto "ID TEXT", count, clients.
func runChild() int {
	nodeID, _ := strconv.ParseUint(os.Getenv("MARMOT_NODE_ID"), 10, 32)
	var seeds []string
	if s := os.Getenv("MARMOT_SEEDS"); s != "" {
		seeds = strings.Split(s, ",")
	}
	log := slog.New(slog.DiscardHandler)
	if os.Getenv("MARMOT_TEST_LOG") != "" {
		log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	var out sync.Mutex
	say := func(format string, a ...any) {
		out.Lock()
		defer out.Unlock()
		fmt.Printf(format+"\n", a...)
	}
	var n *cluster.Node
	handle := func(m *marmot.Message) {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		var res string
		var err error
		switch m.Name {
		case "whoami":
			res = strconv.FormatUint(uint64(m.ClientID), 10)
		case "bcast":
			var k int
			k, err = n.Broadcast(ctx, m.Payload)
			res = strconv.Itoa(k)
		case "sendto":
			id, text, _ := strings.Cut(string(m.Payload), " ")
			var v uint64
			if v, err = strconv.ParseUint(id, 10, 64); err == nil {
				err = n.SendCommandToClient(ctx, marmot.ClientID(v), "direct", []byte(text))
			}
		case "count":
			var k int
			k, err = n.ClientCount(ctx)
			res = strconv.Itoa(k)
		case "clients":
			var cs []marmot.ClientInfo
			cs, err = n.Clients(ctx)
			ids := make([]string, len(cs))
			for i, c := range cs {
				ids[i] = strconv.FormatUint(uint64(c.ID), 10)
			}
			res = strings.Join(ids, ",")
		default:
			return
		}
		if err != nil {
			_ = m.ReplyError(500, err.Error())
			return
		}
		_ = m.Reply([]byte(res))
	}
	var err error
	n, err = cluster.New(cluster.Config{
		Name:     os.Getenv("MARMOT_CLUSTER_NAME"),
		NodeID:   uint32(nodeID),
		Bind:     os.Getenv("MARMOT_BIND"),
		Seeds:    seeds,
		Provider: os.Getenv("MARMOT_PROVIDER"),
		EtcdEndpoints: func() []string {
			if e := os.Getenv("MARMOT_ETCD"); e != "" {
				return strings.Split(e, ",")
			}
			return nil
		}(),
		RefreshTTL: 500 * time.Millisecond,
		Logger:     log,
		OnMembersChange: func(ms []cluster.Member) {
			ids := make([]string, len(ms))
			for i, m := range ms {
				ids[i] = strconv.Itoa(int(m.NodeID))
			}
			say("MEMBERS %s", strings.Join(ids, ","))
		},
	}, marmot.ServerConfig{
		Addr:           os.Getenv("MARMOT_WS_ADDR"),
		Logger:         log,
		MaxConnections: -1,
		ServerEvents:   marmot.ServerEvents{OnHandleCommand: handle},
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	if err := n.Start(context.Background()); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	say("URL %s", n.Server().URL())
	_, _ = io.Copy(io.Discard, os.Stdin) // until the test closes stdin
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := n.Stop(ctx); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}
