package coordinator

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
	"go.etcd.io/bbolt"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"

	pb "github.com/ringtrain/ringtrain/proto/ringtrain/v1"
	"github.com/ringtrain/ringtrain/security"
)

// Node is one coordinator replica: Raft (bbolt log and stable store, file snapshots,
// TCP transport), the state machine, the leader's duties and the gRPC service.
// Start it with Start and stop it with Close. Its methods are safe for concurrent use.
type Node struct {
	cfg           Config
	log           *slog.Logger
	fsm           *raftFSM
	raft          *raft.Raft
	trans         *raft.NetworkTransport
	store         *raftboltdb.BoltStore
	grpc          *grpc.Server
	health        *health.Server
	raftAdvertise string
	grpcAdvertise string
	grpcBound     string
	duties        *duties

	ctx      context.Context // cancelled by Close: ends every goroutine of the node
	cancel   context.CancelFunc
	notifyCh chan bool
	wg       sync.WaitGroup

	closeOnce sync.Once
	closeErr  error
}

// Start opens the data directory, starts Raft and the gRPC server, bootstraps or joins
// the cluster as Config says, and returns without waiting for a leader. The caller
// must Close the node.
func Start(cfg Config) (*Node, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	n := &Node{cfg: cfg, log: cfg.Logger.With("replica", cfg.ID), fsm: newRaftFSM(cfg.Jobs)}
	n.ctx, n.cancel = context.WithCancel(context.Background())
	var cleanup []func()
	fail := func(err error) (*Node, error) {
		n.cancel()
		for i := len(cleanup) - 1; i >= 0; i-- {
			cleanup[i]()
		}
		return nil, err
	}

	if err := os.MkdirAll(cfg.DataDir, 0o750); err != nil {
		return fail(fmt.Errorf("coordinator: data dir: %w", err))
	}
	raftLn := cfg.raftListener
	if raftLn == nil {
		if raftLn, err = net.Listen("tcp", cfg.RaftAddr); err != nil {
			return fail(fmt.Errorf("coordinator: raft listen %q: %w", cfg.RaftAddr, err))
		}
	}
	n.raftAdvertise = advertiseFor(raftLn.Addr(), cfg.RaftAdvertise, "")
	stream, err := newTCPStreamLayer(raftLn, n.raftAdvertise, cfg.faults, cfg.TLS)
	if err != nil {
		raftLn.Close()
		return fail(err)
	}
	hlog := newSlogHCLog(n.log, hclog.Info)
	// A static cluster dials its peers at their --peers addresses; otherwise (a
	// replica alone, or one that joined) the Raft configuration's addresses are
	// used as they are, without a provider that would only log a fallback per dial.
	var addrs raft.ServerAddressProvider
	if len(cfg.Peers) > 0 {
		static := peerAddresses{}
		for _, p := range cfg.Peers {
			static[raft.ServerID(p.ID)] = raft.ServerAddress(p.Addr)
		}
		addrs = static
	}
	n.trans = raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{
		ServerAddressProvider: addrs,
		Logger:                hlog.Named("transport"),
		Stream:                stream,
		MaxPool:               3,
		Timeout:               cfg.Raft.TransportTimeout,
	})
	cleanup = append(cleanup, func() { n.trans.Close() })

	n.store, err = raftboltdb.New(raftboltdb.Options{
		Path:        filepath.Join(cfg.DataDir, "raft.db"),
		BoltOptions: &bbolt.Options{Timeout: 2 * time.Second},
	})
	if err != nil {
		return fail(fmt.Errorf("coordinator: open %s: %w", filepath.Join(cfg.DataDir, "raft.db"), err))
	}
	cleanup = append(cleanup, func() { n.store.Close() })
	logs, err := raft.NewLogCache(256, n.store)
	if err != nil {
		return fail(fmt.Errorf("coordinator: log cache: %w", err))
	}
	snaps, err := raft.NewFileSnapshotStoreWithLogger(cfg.DataDir, 2, hlog.Named("snapshot"))
	if err != nil {
		return fail(fmt.Errorf("coordinator: snapshot store: %w", err))
	}
	hasState, err := raft.HasExistingState(logs, n.store, snaps)
	if err != nil {
		return fail(fmt.Errorf("coordinator: read raft state in %s: %w", cfg.DataDir, err))
	}

	rc := raft.DefaultConfig()
	rc.LocalID = raft.ServerID(cfg.ID)
	rc.Logger = hlog.Named("raft")
	setDuration(&rc.HeartbeatTimeout, cfg.Raft.HeartbeatTimeout)
	setDuration(&rc.ElectionTimeout, cfg.Raft.ElectionTimeout)
	setDuration(&rc.LeaderLeaseTimeout, cfg.Raft.LeaderLeaseTimeout)
	setDuration(&rc.CommitTimeout, cfg.Raft.CommitTimeout)
	setDuration(&rc.SnapshotInterval, cfg.SnapshotInterval)
	if cfg.SnapshotThreshold > 0 {
		rc.SnapshotThreshold = cfg.SnapshotThreshold
	}
	if cfg.TrailingLogs > 0 {
		rc.TrailingLogs = cfg.TrailingLogs
	}
	n.notifyCh = make(chan bool, 8)
	rc.NotifyCh = n.notifyCh
	if err := raft.ValidateConfig(rc); err != nil {
		return fail(fmt.Errorf("coordinator: raft config: %w", err))
	}
	n.raft, err = raft.NewRaft(rc, n.fsm, logs, n.store, snaps, n.trans)
	if err != nil {
		return fail(fmt.Errorf("coordinator: start raft: %w", err))
	}
	cleanup = append(cleanup, func() { n.raft.Shutdown().Error() })

	if !hasState && len(cfg.Join) == 0 {
		conf := raft.Configuration{}
		peers := cfg.Peers
		if len(peers) == 0 {
			peers = []Peer{{ID: cfg.ID, Addr: n.raftAdvertise}}
		}
		for _, p := range peers {
			conf.Servers = append(conf.Servers, raft.Server{Suffrage: raft.Voter, ID: raft.ServerID(p.ID), Address: raft.ServerAddress(p.Addr)})
		}
		if err := n.raft.BootstrapCluster(conf).Error(); err != nil && !errors.Is(err, raft.ErrCantBootstrap) {
			return fail(fmt.Errorf("coordinator: bootstrap: %w", err))
		}
	}

	grpcLn := cfg.grpcListener
	if grpcLn == nil {
		if grpcLn, err = net.Listen("tcp", cfg.GRPCAddr); err != nil {
			return fail(fmt.Errorf("coordinator: grpc listen %q: %w", cfg.GRPCAddr, err))
		}
	}
	n.grpcBound = grpcLn.Addr().String()
	n.grpcAdvertise = advertiseFor(grpcLn.Addr(), cfg.GRPCAdvertise, hostOf(n.raftAdvertise))
	n.duties = newDuties(n)
	n.grpc = grpc.NewServer(n.serverOptions()...)
	n.health = health.NewServer()
	healthpb.RegisterHealthServer(n.grpc, n.health)
	pb.RegisterCoordinatorServer(n.grpc, &service{n: n})
	n.health.SetServingStatus(pb.Coordinator_ServiceDesc.ServiceName, healthpb.HealthCheckResponse_SERVING)

	n.wg.Add(3)
	go func() {
		defer n.wg.Done()
		n.announce()
	}()
	go func() {
		defer n.wg.Done()
		if err := n.grpc.Serve(grpcLn); err != nil {
			n.log.Error("grpc server stopped", "err", err)
		}
	}()
	go func() {
		defer n.wg.Done()
		n.watchLeadership()
	}()
	if !hasState && len(cfg.Join) > 0 {
		n.wg.Add(1)
		go func() {
			defer n.wg.Done()
			n.join()
		}()
	}
	tlsInfo := "off"
	if cfg.TLS != nil {
		tlsInfo = cfg.TLS.Identity().String()
	}
	n.log.Info("coordinator replica started", "raft", n.raftAdvertise, "grpc", n.grpcAdvertise,
		"data_dir", cfg.DataDir, "existing_state", hasState, "tls", tlsInfo)
	return n, nil
}

// maxConcurrentStreams caps the calls one client connection may have open at once
// (a worker needs a plan watch and a few unary calls).
const maxConcurrentStreams = 64

// serverOptions are the gRPC server's options: keepalive enforcement, a cap on
// streams per connection, and with TLS the credentials, a handshake deadline and
// the authorization of every call by Policy.
func (n *Node) serverOptions() []grpc.ServerOption {
	opts := []grpc.ServerOption{
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 5 * time.Second, PermitWithoutStream: true}),
		grpc.MaxConcurrentStreams(maxConcurrentStreams),
		grpc.ConnectionTimeout(security.HandshakeTimeout),
	}
	if n.cfg.TLS != nil {
		opts = append(opts,
			grpc.Creds(n.cfg.TLS.ServerCredentials(security.AnyMember)),
			grpc.ChainUnaryInterceptor(security.UnaryServerInterceptor(Policy(), n.log)),
			grpc.ChainStreamInterceptor(security.StreamServerInterceptor(Policy(), n.log)))
	}
	return opts
}

func setDuration(dst *time.Duration, v time.Duration) {
	if v > 0 {
		*dst = v
	}
}

// watchLeadership starts and stops the leader's duties as Raft reports leadership.
// It drains notifyCh until Close, since Raft blocks on it.
func (n *Node) watchLeadership() {
	for {
		select {
		case isLeader := <-n.notifyCh:
			if isLeader {
				n.log.Info("became leader", "term", n.raft.CurrentTerm())
				n.duties.startTerm()
			} else {
				n.log.Info("lost leadership")
				n.duties.stopTerm()
			}
		case <-n.ctx.Done():
			n.duties.stopTerm()
			return
		}
	}
}

// join asks the replicas in Config.Join to add this one as a voter, retrying until it
// succeeds or the node closes.
func (n *Node) join() {
	c, err := NewClient(n.cfg.Join, ClientOptions{Logger: n.log, TLS: n.cfg.TLS})
	if err != nil {
		n.log.Error("join", "err", err)
		return
	}
	defer c.Close()
	for {
		err := c.AddVoter(n.ctx, n.cfg.ID, n.raftAdvertise, n.grpcAdvertise)
		if err == nil {
			n.log.Info("joined cluster", "via", n.cfg.Join)
			return
		}
		if n.ctx.Err() != nil {
			return
		}
		n.log.Warn("join failed, retrying", "err", err)
		select {
		case <-n.ctx.Done():
			return
		case <-time.After(time.Second):
		}
	}
}

// announce keeps this replica's gRPC address recorded in the replicated state, so
// that followers can hint at it when it leads and "status" can reach it. The leader
// records its own on taking office (duties.run); a follower asks the leader, whose
// address it knows from the state, with AddVoter(record_only).
func (n *Node) announce() {
	for {
		changes := n.fsm.changed()
		var mine string
		var others []string
		n.fsm.read(func(st *pb.CoordinatorState) {
			for _, r := range st.GetReplicas() {
				if r.GetId() == n.cfg.ID {
					mine = r.GetGrpcAddr()
				} else {
					others = append(others, r.GetGrpcAddr())
				}
			}
		})
		if mine != n.grpcAdvertise && len(others) > 0 && n.raft.State() == raft.Follower {
			if err := n.recordSelf(others); err != nil {
				n.log.Debug("recording this replica's gRPC address", "err", err)
			}
		}
		select {
		case <-n.ctx.Done():
			return
		case <-changes:
		case <-time.After(time.Second):
		}
	}
}

func (n *Node) recordSelf(addrs []string) error {
	c, err := NewClient(addrs, ClientOptions{Logger: n.log, AttemptTimeout: time.Second, TLS: n.cfg.TLS})
	if err != nil {
		return err
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(n.ctx, 3*time.Second)
	defer cancel()
	return c.recordReplica(ctx, n.cfg.ID, n.grpcAdvertise)
}

// Close stops the replica: it hands leadership to another voter when it leads (so a
// SIGTERM fails over at once), stops the gRPC server, shuts Raft down and closes the
// stores. It is safe to call more than once.
func (n *Node) Close() error {
	n.closeOnce.Do(func() {
		if n.raft.State() == raft.Leader && len(n.raft.GetConfiguration().Configuration().Servers) > 1 {
			if err := n.raft.LeadershipTransfer().Error(); err != nil {
				n.log.Warn("leadership transfer", "err", err)
			}
		}
		n.closeErr = n.shutdown()
	})
	return n.closeErr
}

// kill stops the replica without a leadership transfer, as a crash would (minus the
// fsync of what Raft already wrote). Used by the test harness.
func (n *Node) kill() error {
	n.closeOnce.Do(func() { n.closeErr = n.shutdown() })
	return n.closeErr
}

func (n *Node) shutdown() error {
	n.health.Shutdown()
	n.cancel()
	n.grpc.Stop()
	var errs []error
	if err := n.raft.Shutdown().Error(); err != nil {
		errs = append(errs, fmt.Errorf("raft shutdown: %w", err))
	}
	n.wg.Wait()
	if err := n.trans.Close(); err != nil {
		errs = append(errs, fmt.Errorf("raft transport: %w", err))
	}
	if err := n.store.Close(); err != nil {
		errs = append(errs, fmt.Errorf("raft store: %w", err))
	}
	n.log.Info("coordinator replica stopped")
	if len(errs) > 0 {
		return fmt.Errorf("coordinator: close %s: %w", n.cfg.ID, errors.Join(errs...))
	}
	return nil
}

// ID returns the replica's Raft server id.
func (n *Node) ID() string { return n.cfg.ID }

// GRPCAddr returns the address the gRPC server listens on (resolved, e.g.
// 127.0.0.1:7001 for ":7001" on that host's loopback).
func (n *Node) GRPCAddr() string { return n.grpcBound }

// RaftAddr returns the Raft address this replica advertises.
func (n *Node) RaftAddr() string { return n.raftAdvertise }

// IsLeader reports whether Raft says this replica leads now.
func (n *Node) IsLeader() bool { return n.raft.State() == raft.Leader }

// State returns a copy of the replica's local (possibly stale) replicated state.
func (n *Node) State() *pb.CoordinatorState { return n.fsm.state() }

// Snapshot forces a Raft snapshot (and log compaction) now. It blocks until done.
func (n *Node) Snapshot() error {
	if err := n.raft.Snapshot().Error(); err != nil {
		return fmt.Errorf("coordinator: snapshot: %w", err)
	}
	return nil
}

// notLeader returns a NotLeaderError with this replica's current leader hint.
func (n *Node) notLeader() error {
	_, id := n.raft.LeaderWithID()
	e := &NotLeaderError{LeaderID: string(id)}
	if id != "" {
		n.fsm.read(func(st *pb.CoordinatorState) {
			for _, r := range st.GetReplicas() {
				if r.GetId() == string(id) {
					e.LeaderAddr = r.GetGrpcAddr()
				}
			}
		})
		if string(id) == n.cfg.ID {
			e.LeaderAddr = n.grpcAdvertise
		}
	}
	return e
}

// raftError turns an error of a Raft future into ErrNotLeader (with a hint) where it
// means leadership was missing or lost; the outcome of a write that fails with
// ErrLeadershipLost is unknown, and a retry with the same request id settles it.
func (n *Node) raftError(op string, err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, raft.ErrNotLeader), errors.Is(err, raft.ErrLeadershipLost),
		errors.Is(err, raft.ErrLeadershipTransferInProgress), errors.Is(err, raft.ErrRaftShutdown),
		errors.Is(err, raft.ErrNotVoter):
		return fmt.Errorf("coordinator: %s: %w", op, n.notLeader())
	default:
		return fmt.Errorf("coordinator: %s: %w", op, err)
	}
}

// wait blocks until f is done or ctx ends. When ctx ends first the operation may
// still complete later.
func wait(ctx context.Context, f raft.Future) error {
	done := make(chan error, 1)
	go func() { done <- f.Error() }()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// apply replicates c through Raft and returns its result. It fails with ErrNotLeader
// on a follower, with the result's sentinel when the state machine refused the
// command, and with ctx's error when ctx ends first.
func (n *Node) apply(ctx context.Context, c *pb.Command) (*pb.Result, error) {
	if n.raft.State() != raft.Leader {
		return nil, n.notLeader()
	}
	b, err := EncodeCommand(c)
	if err != nil {
		return nil, err
	}
	if len(b) > MaxCommandBytes {
		return nil, fmt.Errorf("%w: command of %d bytes exceeds %d", ErrBadCommand, len(b), MaxCommandBytes)
	}
	f := n.raft.Apply(b, n.cfg.ApplyTimeout)
	if err := wait(ctx, f); err != nil {
		return nil, n.raftError("apply", err)
	}
	res, _ := f.Response().(*pb.Result)
	if res == nil {
		return nil, fmt.Errorf("coordinator: apply: no result")
	}
	return res, ResultError(res)
}

// barrier waits until every entry committed before it is applied to the state
// machine, through a quorum round of this leader's term: reading the state afterwards
// is linearizable.
func (n *Node) barrier(ctx context.Context) error {
	if n.raft.State() != raft.Leader {
		return n.notLeader()
	}
	return n.raftError("barrier", wait(ctx, n.raft.Barrier(n.cfg.ApplyTimeout)))
}

// raftStatus fills the Raft fields of a StatusResponse from the local view.
func (n *Node) raftStatus(resp *pb.StatusResponse) {
	stats := n.raft.Stats()
	parse := func(k string) uint64 { v, _ := strconv.ParseUint(stats[k], 10, 64); return v }
	resp.ReplicaId = n.cfg.ID
	resp.RaftState = n.raft.State().String()
	resp.Term = parse("term")
	resp.CommitIndex = parse("commit_index")
	resp.AppliedIndex = parse("applied_index")
	hint, _ := n.notLeader().(*NotLeaderError)
	resp.LeaderId, resp.LeaderAddr = hint.LeaderID, hint.LeaderAddr
	grpcAddrs := map[string]string{}
	n.fsm.read(func(st *pb.CoordinatorState) {
		for _, r := range st.GetReplicas() {
			grpcAddrs[r.GetId()] = r.GetGrpcAddr()
		}
	})
	grpcAddrs[n.cfg.ID] = n.grpcAdvertise
	if f := n.raft.GetConfiguration(); f.Error() == nil {
		for _, s := range f.Configuration().Servers {
			resp.Replicas = append(resp.Replicas, &pb.ReplicaStatus{
				Id: string(s.ID), RaftAddr: string(s.Address), GrpcAddr: grpcAddrs[string(s.ID)],
				Suffrage: suffrageName(s.Suffrage), Leader: string(s.ID) == hint.LeaderID,
			})
		}
	}
}

func suffrageName(s raft.ServerSuffrage) string {
	switch s {
	case raft.Voter:
		return "voter"
	case raft.Nonvoter:
		return "nonvoter"
	default:
		return "staging"
	}
}

// Gauges is a replica's local view for monitoring.
type Gauges struct {
	RaftState     string // Follower, Candidate, Leader or Shutdown
	Term          uint64
	CommitIndex   uint64
	Generation    uint64 // generation of the current plan
	Workers       int    // registered workers
	CommittedStep int64  // step of the newest progress in the replicated state
	JobState      string // the job's state (JobStateName): running, finished, failed; "none" without a job
	// Slowest is the worker of the slowest rank in the newest progress (FindStraggler),
	// "" without rank times; SlowestComputeS its compute per step, OthersWaitS the
	// others' mean wait for it per step.
	Slowest                      string
	SlowestComputeS, OthersWaitS float64
}

// Gauges reads the replica's Raft state and the replicated job's progress. It
// changes nothing.
func (n *Node) Gauges() Gauges {
	stats := n.raft.Stats()
	parse := func(k string) uint64 { v, _ := strconv.ParseUint(stats[k], 10, 64); return v }
	g := Gauges{RaftState: n.raft.State().String(), Term: parse("term"), CommitIndex: parse("commit_index")}
	n.fsm.read(func(st *pb.CoordinatorState) {
		g.Generation = st.GetPlan().GetGeneration()
		g.Workers = len(st.GetWorkers())
		g.CommittedStep = st.GetProgress().GetStep()
		g.JobState = JobStateName(JobStatusOf(st).GetState())
		if s := FindStraggler(st.GetProgress().GetRanks()); s.Slowest != nil {
			g.Slowest, g.SlowestComputeS, g.OthersWaitS = s.Slowest.GetWorkerId(), s.Slowest.GetComputeS(), s.OthersWaitS
		}
	})
	return g
}
