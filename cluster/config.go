package cluster

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/marmotws/marmot/actors"
)

// Providers: how members find each other.
const (
	// ProviderAutomanaged is protoactor's automanaged provider: a fixed
	// list of nodes (Config.Seeds) that poll each other's health endpoint
	// over HTTP. No external service; for development and small, fixed
	// deployments.
	ProviderAutomanaged = "automanaged"
	// ProviderEtcd is protoactor's etcd provider: members register under
	// a lease in etcd (Config.EtcdEndpoints) and watch each other there.
	// For production: nodes come and go without a fixed list.
	ProviderEtcd = "etcd"
)

// Config says how a node joins its cluster.
type Config struct {
	// Name is the cluster's name; nodes with different names ignore each
	// other. Required.
	Name string
	// NodeID numbers this node, 1 to 999,999, unique in the cluster: its
	// clients' IDs start at NodeID×1,000,000,000,000 (marmot.ClientID.Node
	// gives it back). Required.
	NodeID uint32
	// Bind is the host:port the node's cluster traffic (protoactor remote,
	// gRPC) listens on and is reached at. Required; a concrete IP, not
	// 0.0.0.0, since the other nodes dial it.
	Bind string
	// Advertise is the host:port the other nodes reach this node's
	// cluster traffic at, when that is not Bind (a proxy or NAT in
	// between): the node's member address. With automanaged, the port
	// after it must reach the health endpoint (Bind port + 1). Default
	// Bind.
	Advertise string
	// Provider chooses the membership provider. Default
	// ProviderAutomanaged.
	Provider string
	// Seeds are the other nodes' Bind addresses (automanaged). The
	// automanaged provider serves each node's health on the port after
	// its Bind port, on the Bind host: nodes on one machine that share a
	// host need Bind ports at least 2 apart, and Start fails when that
	// port is taken (the error wraps the listen's, e.g.
	// syscall.EADDRINUSE).
	Seeds []string
	// EtcdEndpoints are the etcd servers (host:port) the etcd provider
	// talks to. Members register under /marmot/<Name>/. Required with
	// ProviderEtcd.
	EtcdEndpoints []string
	// RefreshTTL is how often the automanaged provider polls the members:
	// a node that stops answering leaves the member list after about one
	// to two RefreshTTLs. Default 1s.
	RefreshTTL time.Duration
	// RequestTimeout bounds one call to another node (a targeted send, a
	// room subscription, a cluster-wide query). Default 5s.
	RequestTimeout time.Duration
	// KeepClientsWhenIsolated keeps a node's clients connected when the
	// node finds itself cut off from the majority of its cluster
	// (automanaged: fewer members than half the nodes of Bind and Seeds;
	// etcd: it reaches fewer than half the members etcd lists).
	// By default such a node closes its clients' connections once, with
	// CloseIsolated, so that clients with FailoverURLs reconnect to a
	// node of the majority (docs/CLUSTER.md, Failure semantics).
	KeepClientsWhenIsolated bool
	// GrainMiddleware, when set, runs in front of every room grain the
	// node hosts: protoactor receive middleware, as
	// marmot.ServerConfig.ActorMiddleware is for connection and room
	// actors (how tests inject faults into grains). nil costs nothing.
	GrainMiddleware []actor.ReceiverMiddleware
	// OnMembersChange, when set, is called with the members (ordered by
	// NodeID) after every change of the member list, once this node's
	// rooms have subscribed again to their grains, which may have moved.
	// Calls come one at a time, from one goroutine.
	OnMembersChange func(members []Member)
	// Logger receives the cluster's logs (protoactor's at Warn and above).
	// Default slog.Default().
	Logger *slog.Logger
}

// CloseIsolated is the close code (RFC 6455's 1012, Service Restart) a
// node closes its clients' connections with when it finds itself cut
// off from the majority of its cluster: a client with FailoverURLs
// reconnects to another node.
const CloseIsolated = 1012

// Errors, testable with errors.Is.
var (
	// ErrNodeNotFound: the ClientID names a node that is not a member now.
	// It wraps marmot.ErrClientNotFound.
	ErrNodeNotFound = fmt.Errorf("%w: its node is not in the cluster", actors.ErrClientNotFound)
	// ErrNotStarted: the node has not been started, or has stopped.
	ErrNotStarted = errors.New("marmot/cluster: node not started")
)

func (c *Config) normalize() error {
	if c.Name == "" {
		return errors.New("marmot/cluster: Config.Name is required")
	}
	if c.NodeID == 0 || c.NodeID > actors.MaxNodeID {
		return fmt.Errorf("marmot/cluster: NodeID must be 1 to %d, got %d", actors.MaxNodeID, c.NodeID)
	}
	if _, _, err := splitHostPort(c.Bind); err != nil {
		return fmt.Errorf("marmot/cluster: Bind: %w", err)
	}
	if c.Advertise != "" {
		if _, _, err := splitHostPort(c.Advertise); err != nil {
			return fmt.Errorf("marmot/cluster: Advertise: %w", err)
		}
	}
	if c.Provider == "" {
		c.Provider = ProviderAutomanaged
	}
	switch c.Provider {
	case ProviderAutomanaged:
		for _, s := range c.Seeds {
			if _, _, err := splitHostPort(s); err != nil {
				return fmt.Errorf("marmot/cluster: seed: %w", err)
			}
		}
	case ProviderEtcd:
		if len(c.EtcdEndpoints) == 0 {
			return errors.New("marmot/cluster: the etcd provider needs EtcdEndpoints")
		}
	default:
		return fmt.Errorf("marmot/cluster: unknown provider %q", c.Provider)
	}
	if c.RefreshTTL <= 0 {
		c.RefreshTTL = time.Second
	}
	if c.RequestTimeout <= 0 {
		c.RequestTimeout = 5 * time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return nil
}

// splitHostPort splits a concrete host:port.
func splitHostPort(addr string) (string, int, error) {
	host, p, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, err
	}
	port, err := strconv.Atoi(p)
	if err != nil || port <= 0 || port >= 65535 {
		return "", 0, fmt.Errorf("invalid port in %q", addr)
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		return "", 0, fmt.Errorf("%q: a node needs an address others can dial", addr)
	}
	return host, port, nil
}

// healthAddr is the automanaged health endpoint of the node bound at addr.
func healthAddr(addr string) string {
	host, port, _ := splitHostPort(addr)
	return net.JoinHostPort(host, strconv.Itoa(port+1))
}
