package coordinator

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	pb "github.com/ringtrain/ringtrain/proto/ringtrain/v1"
	"github.com/ringtrain/ringtrain/security"
)

// Cluster is a coordinator cluster of real replicas in one process, on 127.0.0.1
// ephemeral ports, with data directories under t.TempDir(). It is for tests (of this
// package and of the worker): MakeCluster starts it, t.Cleanup stops it. Replicas are
// addressed by index; a killed replica's slot holds nil until Restart.
type Cluster struct {
	t       testing.TB
	mu      sync.Mutex
	nodes   []*Node
	configs []Config
	faults  []*linkFaults
	logs    *testLogSink
}

// TestConfig returns the timing used by MakeCluster: Raft heartbeat and election
// timeouts of 200 ms, a 100 ms leader lease, a 1 s worker lease and a 100 ms settle
// window, so that fail-overs and lease expiries take well under a second.
func TestConfig() Config {
	return Config{
		Lease:        time.Second,
		Settle:       100 * time.Millisecond,
		ApplyTimeout: 2 * time.Second,
		Raft: RaftTiming{
			HeartbeatTimeout:   200 * time.Millisecond,
			ElectionTimeout:    200 * time.Millisecond,
			LeaderLeaseTimeout: 100 * time.Millisecond,
			CommitTimeout:      5 * time.Millisecond,
			TransportTimeout:   time.Second,
		},
	}
}

// MakeCluster starts n replicas bootstrapped from a static peer list (c0..c{n-1}) with
// TestConfig's timing; tweak, when given, adjusts each replica's Config (its ID,
// addresses, data directory and peers are already set). It does not wait for a
// leader: call Leader.
func MakeCluster(t testing.TB, n int, tweak ...func(*Config)) *Cluster {
	t.Helper()
	dir := t.TempDir() // before the cleanup below, so it is removed after the replicas stop
	c := &Cluster{t: t, logs: &testLogSink{t: t}}
	t.Cleanup(c.shutdown)
	var peers []Peer
	var raftLns, grpcLns []net.Listener
	for i := range n {
		rl, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatalf("listen: %v", err)
		}
		gl, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatalf("listen: %v", err)
		}
		raftLns, grpcLns = append(raftLns, rl), append(grpcLns, gl)
		peers = append(peers, Peer{ID: fmt.Sprintf("c%d", i), Addr: rl.Addr().String()})
	}
	for i := range n {
		cfg := TestConfig()
		cfg.ID = peers[i].ID
		cfg.DataDir = filepath.Join(dir, cfg.ID)
		cfg.RaftAddr = raftLns[i].Addr().String()
		cfg.GRPCAddr = grpcLns[i].Addr().String()
		cfg.Peers = peers
		cfg.Logger = slog.New(slog.NewTextHandler(c.logs, &slog.HandlerOptions{Level: slog.LevelDebug})).With("test_replica", cfg.ID)
		for _, f := range tweak {
			f(&cfg)
		}
		c.configs = append(c.configs, cfg)
		c.faults = append(c.faults, newLinkFaults())
		c.nodes = append(c.nodes, nil)
	}
	for i := range n {
		if err := c.start(i, raftLns[i], grpcLns[i]); err != nil {
			t.Fatalf("start replica %d: %v", i, err)
		}
	}
	return c
}

func (c *Cluster) start(i int, raftLn, grpcLn net.Listener) error {
	cfg := c.configs[i]
	cfg.raftListener, cfg.grpcListener, cfg.faults = raftLn, grpcLn, c.faults[i]
	n, err := Start(cfg)
	if err != nil {
		return err
	}
	c.mu.Lock()
	c.nodes[i] = n
	c.mu.Unlock()
	return nil
}

func (c *Cluster) shutdown() {
	for i := range c.nodes {
		if n := c.Node(i); n != nil {
			if err := n.kill(); err != nil {
				c.t.Logf("close replica %d: %v", i, err)
			}
		}
	}
	c.logs.close()
}

// N returns the number of replica slots.
func (c *Cluster) N() int { return len(c.configs) }

// Node returns replica i, or nil while it is killed.
func (c *Cluster) Node(i int) *Node {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.nodes[i]
}

// GRPCAddrs returns every replica's gRPC address (killed ones too: they come back on
// the same address).
func (c *Cluster) GRPCAddrs() []string {
	var out []string
	for _, cfg := range c.configs {
		out = append(out, cfg.GRPCAddr)
	}
	return out
}

// Client returns a client of the whole cluster with short attempt timeouts, closed
// at the end of the test.
func (c *Cluster) Client() *Client {
	cl, err := NewClient(c.GRPCAddrs(), ClientOptions{
		Logger:         slog.New(slog.NewTextHandler(c.logs, &slog.HandlerOptions{Level: slog.LevelDebug})).With("test_client", true),
		AttemptTimeout: time.Second,
	})
	if err != nil {
		c.t.Fatalf("client: %v", err)
	}
	c.t.Cleanup(func() { cl.Close() })
	return cl
}

// WithTLS is a MakeCluster tweak that gives every replica a certificate of ca
// (ringtrain://coordinator/cN), so that gRPC and Raft are mutual TLS.
func WithTLS(t testing.TB, ca *security.CA) func(*Config) {
	return func(cfg *Config) {
		st, err := ca.Store(security.Identity{Role: security.RoleCoordinator, ID: cfg.ID}, time.Hour)
		if err != nil {
			t.Fatalf("certificate of %s: %v", cfg.ID, err)
		}
		cfg.TLS = st
	}
}

// ClientWith returns a client of the whole cluster that presents st's
// certificate (nil: plain text), closed at the end of the test.
func (c *Cluster) ClientWith(st *security.Store) *Client {
	cl, err := NewClient(c.GRPCAddrs(), ClientOptions{
		Logger:         slog.New(slog.NewTextHandler(c.logs, &slog.HandlerOptions{Level: slog.LevelDebug})).With("test_client", true),
		AttemptTimeout: time.Second,
		TLS:            st,
	})
	if err != nil {
		c.t.Fatalf("client: %v", err)
	}
	c.t.Cleanup(func() { cl.Close() })
	return cl
}

// RaftAddrs returns every replica's Raft address.
func (c *Cluster) RaftAddrs() []string {
	var out []string
	for _, cfg := range c.configs {
		out = append(out, cfg.RaftAddr)
	}
	return out
}

// WaitFor polls cond every 10 ms until it holds, failing the test with what when it
// does not within 10 s.
func (c *Cluster) WaitFor(what string, cond func() bool) {
	c.t.Helper()
	WaitFor(c.t, 10*time.Second, what, cond)
}

// WaitFor polls cond every 10 ms until it holds, failing t with what after timeout.
func WaitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Leader waits until exactly one live replica leads and has finished taking office
// (state machine caught up, leases granted), and returns its index.
func (c *Cluster) Leader() int {
	c.t.Helper()
	leader := -1
	c.WaitFor("a leader", func() bool {
		leader = -1
		for i := range c.nodes {
			n := c.Node(i)
			if n == nil || !n.IsLeader() {
				continue
			}
			if leader >= 0 {
				return false
			}
			t := n.duties.currentTerm()
			if t == nil {
				return false
			}
			select {
			case <-t.ready:
				leader = i
			default:
				return false
			}
		}
		return leader >= 0
	})
	return leader
}

// Kill stops replica i abruptly (no leadership transfer). Its data stays.
func (c *Cluster) Kill(i int) {
	c.t.Helper()
	n := c.Node(i)
	if n == nil {
		c.t.Fatalf("kill replica %d: not running", i)
	}
	if err := n.kill(); err != nil {
		c.t.Logf("kill replica %d: %v", i, err)
	}
	c.mu.Lock()
	c.nodes[i] = nil
	c.mu.Unlock()
}

// Restart starts killed replica i again on its data directory and addresses.
func (c *Cluster) Restart(i int) {
	c.t.Helper()
	if c.Node(i) != nil {
		c.t.Fatalf("restart replica %d: still running", i)
	}
	cfg := c.configs[i]
	var raftLn, grpcLn net.Listener
	var err error
	c.WaitFor(fmt.Sprintf("replica %d's ports to be free", i), func() bool {
		if raftLn == nil {
			raftLn, err = net.Listen("tcp", cfg.RaftAddr)
		}
		if err == nil && grpcLn == nil {
			grpcLn, err = net.Listen("tcp", cfg.GRPCAddr)
		}
		return err == nil
	})
	if err := c.start(i, raftLn, grpcLn); err != nil {
		c.t.Fatalf("restart replica %d: %v", i, err)
	}
}

// Partition cuts the Raft links between the replicas in group and all the others
// (both directions); gRPC stays reachable, as for a client that can still reach
// every replica. Heal restores every link.
func (c *Cluster) Partition(group ...int) {
	in := map[int]bool{}
	for _, i := range group {
		in[i] = true
	}
	for i := range c.configs {
		for j := range c.configs {
			if in[i] != in[j] {
				c.faults[i].setCut(c.configs[j].RaftAddr, true)
			}
		}
	}
}

// Heal restores every Raft link cut by Partition.
func (c *Cluster) Heal() {
	for _, f := range c.faults {
		f.healAll()
	}
}

// WaitConverged waits until every live replica holds the same state.
func (c *Cluster) WaitConverged() *pb.CoordinatorState {
	c.t.Helper()
	var st *pb.CoordinatorState
	c.WaitFor("replicas to converge", func() bool {
		st = nil
		for i := range c.nodes {
			n := c.Node(i)
			if n == nil {
				continue
			}
			s := n.State()
			if st == nil {
				st = s
			} else if !proto.Equal(st, s) {
				return false
			}
		}
		return st != nil
	})
	return st
}

// WaitPlan waits until the leader's state has a plan for which cond holds, and
// returns it.
func (c *Cluster) WaitPlan(what string, cond func(*pb.Plan) bool) *pb.Plan {
	c.t.Helper()
	var plan *pb.Plan
	c.WaitFor(what, func() bool {
		for i := range c.nodes {
			if n := c.Node(i); n != nil && n.IsLeader() {
				plan = n.State().GetPlan()
				return plan != nil && cond(plan)
			}
		}
		return false
	})
	return plan
}

// Ctx returns a context that ends after d or with the test.
func (c *Cluster) Ctx(d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	c.t.Cleanup(cancel)
	return ctx
}

// testLogSink sends log lines to t.Log (shown only when the test fails) until the
// cluster shuts down, then drops them: a goroutine that logs late must not call
// t.Log after the test has ended.
type testLogSink struct {
	mu     sync.Mutex
	t      testing.TB
	closed bool
}

func (s *testLogSink) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.closed {
		s.t.Log(strings.TrimRight(string(p), "\n"))
	}
	return len(p), nil
}

func (s *testLogSink) close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
}
