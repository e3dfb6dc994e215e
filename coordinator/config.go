package coordinator

import (
	"fmt"
	"log/slog"
	"net"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/ringtrain/ringtrain/security"
)

// Peer is one replica of a static cluster: its stable Raft server id and the
// host:port its Raft transport listens on. Host names are resolved each time a
// replica dials, never once at start.
type Peer struct {
	ID   string
	Addr string
}

// ParsePeers parses "c0=host0:7000,c1=host1:7000" (the --peers flag). Ids must be
// unique and addresses host:port.
func ParsePeers(s string) ([]Peer, error) {
	var peers []Peer
	for item := range strings.SplitSeq(s, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		id, addr, found := strings.Cut(item, "=")
		if !found || id == "" || addr == "" {
			return nil, fmt.Errorf("coordinator: peer %q: want id=host:port", item)
		}
		if _, _, err := net.SplitHostPort(addr); err != nil {
			return nil, fmt.Errorf("coordinator: peer %q: %w", item, err)
		}
		if slices.ContainsFunc(peers, func(p Peer) bool { return p.ID == id }) {
			return nil, fmt.Errorf("coordinator: peer id %q appears twice", id)
		}
		peers = append(peers, Peer{ID: id, Addr: addr})
	}
	return peers, nil
}

// RaftTiming are the Raft timeouts. Zero fields keep hashicorp/raft's defaults
// (heartbeat and election 1 s, leader lease 500 ms, commit 50 ms), which suit a LAN;
// tests use a few hundred milliseconds.
type RaftTiming struct {
	HeartbeatTimeout   time.Duration
	ElectionTimeout    time.Duration
	LeaderLeaseTimeout time.Duration
	CommitTimeout      time.Duration
	// TransportTimeout bounds one Raft RPC (dial and I/O); default 10 s.
	TransportTimeout time.Duration
}

// Config configures one coordinator replica (Start).
type Config struct {
	// ID is the replica's stable Raft server id, e.g. "c0" or a StatefulSet pod name.
	ID string
	// DataDir holds the Raft log and stable store (raft.db) and the snapshots; it is
	// created if missing. A restart on the same directory recovers all committed state.
	DataDir string
	// RaftAddr is the Raft transport's listen address, e.g. ":7000".
	RaftAddr string
	// RaftAdvertise is the host:port other replicas dial; default: this replica's
	// entry in Peers, else RaftAddr when it names a host.
	RaftAdvertise string
	// GRPCAddr is the gRPC listen address, e.g. ":7001".
	GRPCAddr string
	// GRPCAdvertise is the gRPC host:port put in leader hints; default: GRPCAddr when
	// it names a host, else the Raft advertise host with GRPCAddr's port.
	GRPCAdvertise string
	// Peers is the static cluster (including this replica). When the data directory
	// has no Raft state yet, the replica bootstraps with exactly this configuration;
	// every peer may do so, since they all propose the same one.
	Peers []Peer
	// Join lists gRPC addresses of running replicas; a replica without Raft state
	// asks them (following leader hints) to add it as a voter. With neither Peers nor
	// Join, a replica without state bootstraps a cluster of itself alone.
	Join []string
	// Logger receives the replica's and Raft's logs; default slog.Default().
	Logger *slog.Logger
	// Lease is how long a worker stays a member without heartbeating; default 10 s.
	Lease time.Duration
	// Settle is how long the leader gathers membership changes into one new
	// generation; default 500 ms.
	Settle time.Duration
	// VerdictWindow is how long the leader gathers the peer-lost reports of a
	// generation before it removes the members they point at; default 300 ms.
	VerdictWindow time.Duration
	// HoldOff is how long a worker removed on its peers' reports may not register
	// again, doubling with each removal up to MaxHoldOff; defaults 2 s and 60 s.
	HoldOff    time.Duration
	MaxHoldOff time.Duration
	// ApplyTimeout bounds how long a write waits to enter the Raft pipeline; default 5 s.
	ApplyTimeout time.Duration
	// Raft timing; zero fields keep Raft's defaults.
	Raft RaftTiming
	// SnapshotThreshold (log entries) and SnapshotInterval control how often Raft
	// snapshots and compacts the log; TrailingLogs is how many entries it keeps
	// after a snapshot. Zero keeps Raft's defaults (8192, 120 s, 10240).
	SnapshotThreshold uint64
	SnapshotInterval  time.Duration
	TrailingLogs      uint64
	// TLS holds the replica's certificate (ringtrain://coordinator/ID) and the CA
	// bundle: with it, the gRPC service and the Raft transport are mutual TLS, Raft
	// accepts only coordinator certificates, and every call is checked against
	// Policy. Nil serves plain text (loopback, or an explicit --insecure).
	TLS *security.Store

	// Jobs checks the inside of submitted jobs (JobPolicy): Admit on the leader
	// before a job is proposed, Check in the state machine. Nil: only the
	// coordinator's own fields of a job are checked (ValidateJob).
	Jobs JobPolicy

	// Test hooks (set by the harness in testing.go).
	raftListener net.Listener
	grpcListener net.Listener
	faults       *linkFaults
}

func (c *Config) withDefaults() (Config, error) {
	out := *c
	if out.ID == "" {
		return out, fmt.Errorf("coordinator: config: id is required")
	}
	if out.DataDir == "" {
		return out, fmt.Errorf("coordinator: config: data dir is required")
	}
	if out.Logger == nil {
		out.Logger = slog.Default()
	}
	if out.TLS != nil {
		if who, want := out.TLS.Identity(), (security.Identity{Role: security.RoleCoordinator, ID: out.ID}); who != want {
			return out, fmt.Errorf("coordinator: config: the certificate names %s, this replica is %s", who, want)
		}
	}
	if out.Lease <= 0 {
		out.Lease = 10 * time.Second
	}
	if out.Settle <= 0 {
		out.Settle = 500 * time.Millisecond
	}
	if out.VerdictWindow <= 0 {
		out.VerdictWindow = 300 * time.Millisecond
	}
	if out.HoldOff <= 0 {
		out.HoldOff = 2 * time.Second
	}
	if out.MaxHoldOff < out.HoldOff {
		out.MaxHoldOff = max(60*time.Second, out.HoldOff)
	}
	if out.ApplyTimeout <= 0 {
		out.ApplyTimeout = 5 * time.Second
	}
	if out.Raft.TransportTimeout <= 0 {
		out.Raft.TransportTimeout = 10 * time.Second
	}
	if len(out.Peers) > 0 && !slices.ContainsFunc(out.Peers, func(p Peer) bool { return p.ID == out.ID }) {
		return out, fmt.Errorf("coordinator: config: --peers does not name this replica's id %q", out.ID)
	}
	if len(out.Peers) > 0 && len(out.Join) > 0 {
		return out, fmt.Errorf("coordinator: config: give either peers or join, not both")
	}
	if out.RaftAdvertise == "" {
		for _, p := range out.Peers {
			if p.ID == out.ID {
				out.RaftAdvertise = p.Addr
			}
		}
	}
	return out, nil
}

// hostOf returns addr's host when it names one that others can dial.
func hostOf(addr string) string {
	host, _, err := net.SplitHostPort(addr)
	if err != nil || host == "" {
		return ""
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsUnspecified() {
		return ""
	}
	return host
}

// advertiseFor picks the address to advertise for a listener bound at bound, with
// fallbackHost from another advertised address.
func advertiseFor(bound net.Addr, configured, fallbackHost string) string {
	if configured != "" {
		return configured
	}
	_, port, err := net.SplitHostPort(bound.String())
	if err != nil {
		return bound.String()
	}
	if h := hostOf(bound.String()); h != "" {
		return bound.String()
	}
	if fallbackHost != "" {
		return net.JoinHostPort(fallbackHost, port)
	}
	if h, err := os.Hostname(); err == nil && h != "" {
		return net.JoinHostPort(h, port)
	}
	return net.JoinHostPort("localhost", port)
}
