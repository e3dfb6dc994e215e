package coordinator

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/protobuf/proto"

	pb "github.com/ringtrain/ringtrain/proto/ringtrain/v1"
)

// fakeWorker registers and heartbeats like a worker until stopped.
type fakeWorker struct {
	id      string
	beats   atomic.Int64
	stop    context.CancelFunc
	done    chan struct{}
	lastErr atomic.Value
}

func startWorker(t *testing.T, c *Cluster, cl *Client, id string) *fakeWorker {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	w := &fakeWorker{id: id, stop: cancel, done: make(chan struct{})}
	if _, err := cl.Register(c.Ctx(10*time.Second), &pb.RegisterRequest{WorkerId: id, Address: id + ":9000", Device: "cpu"}); err != nil {
		t.Fatalf("register %s: %v", id, err)
	}
	go func() {
		defer close(w.done)
		for ctx.Err() == nil {
			hctx, hcancel := context.WithTimeout(ctx, 2*time.Second)
			_, err := cl.Heartbeat(hctx, &pb.HeartbeatRequest{WorkerId: id})
			hcancel()
			if err == nil {
				w.beats.Add(1)
			} else {
				w.lastErr.Store(err.Error())
			}
			if errors.Is(err, ErrUnknownWorker) {
				cl.Register(ctx, &pb.RegisterRequest{WorkerId: id, Address: id + ":9000", Device: "cpu"})
			}
			sleep(ctx, 100*time.Millisecond)
		}
	}()
	t.Cleanup(w.halt)
	return w
}

func (w *fakeWorker) halt() { w.stop(); <-w.done }

// planWatcher collects the plans WatchPlan delivers.
type planWatcher struct {
	mu    sync.Mutex
	plans []*pb.Plan
}

func watchPlans(t *testing.T, cl *Client) *planWatcher {
	pw := &planWatcher{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		cl.WatchPlan(ctx, "watcher", 0, func(p *pb.Plan) error {
			pw.mu.Lock()
			defer pw.mu.Unlock()
			pw.plans = append(pw.plans, p)
			return nil
		})
	}()
	t.Cleanup(func() { cancel(); <-done })
	return pw
}

func (pw *planWatcher) latest() *pb.Plan {
	pw.mu.Lock()
	defer pw.mu.Unlock()
	if len(pw.plans) == 0 {
		return nil
	}
	return pw.plans[len(pw.plans)-1]
}

func (pw *planWatcher) generations() []uint64 {
	pw.mu.Lock()
	defer pw.mu.Unlock()
	var out []uint64
	for _, p := range pw.plans {
		out = append(out, p.GetGeneration())
	}
	return out
}

func submitJob(t *testing.T, c *Cluster, cl *Client, streams int32) {
	t.Helper()
	if err := cl.SubmitJob(c.Ctx(10*time.Second), &pb.SubmitJobRequest{Job: &pb.JobSpec{
		SpecJson: []byte(`{}`), Streams: streams, MinWorkers: 1, Steps: 1000, CheckpointInterval: 10,
	}}); err != nil {
		t.Fatalf("submit job: %v", err)
	}
}

// TestClusterMembership: three workers form one plan; the leader dies and a new one
// takes over with the state intact and the heartbeats resume; a worker that stops
// heartbeating is removed after its lease, a worker that leaves is removed at once,
// and WatchPlan delivers each new generation across the fail-over.
func TestClusterMembership(t *testing.T) {
	c := MakeCluster(t, 3)
	cl := c.Client()
	c.Leader()
	submitJob(t, c, cl, 6)
	pw := watchPlans(t, cl)
	ws := []*fakeWorker{startWorker(t, c, cl, "w0"), startWorker(t, c, cl, "w1"), startWorker(t, c, cl, "w2")}
	plan := c.WaitPlan("a plan with three members", func(p *pb.Plan) bool { return len(p.GetMembers()) == 3 })
	if plan.GetState() != pb.PlanState_PLAN_STATE_ACTIVE {
		t.Fatalf("plan %v", plan)
	}
	c.WaitFor("the watcher to see the three-member plan", func() bool {
		return pw.latest().GetGeneration() == plan.GetGeneration()
	})
	gen := plan.GetGeneration()

	// Progress and a checkpoint from members of the plan.
	ctx := c.Ctx(20 * time.Second)
	if _, err := cl.ReportProgress(ctx, &pb.ReportProgressRequest{WorkerId: "w0", Generation: gen, Step: 12, Loss: 3.5, Tokens: 1200}); err != nil {
		t.Fatal(err)
	}
	if _, err := cl.CommitCheckpoint(ctx, &pb.CommitCheckpointRequest{WorkerId: "w1", Generation: gen, Step: 10, Location: "run/step-10", Sha256: digestA}); err != nil {
		t.Fatal(err)
	}
	before := c.WaitConverged()

	// Kill the leader: a new one takes over with the same state.
	old := c.Leader()
	c.Kill(old)
	leader := c.Leader()
	if leader == old {
		t.Fatalf("dead replica still leads")
	}
	after := c.Node(leader).State()
	for _, f := range []func(*pb.CoordinatorState) proto.Message{
		func(s *pb.CoordinatorState) proto.Message { return s.GetPlan() },
		func(s *pb.CoordinatorState) proto.Message { return s.GetProgress() },
		func(s *pb.CoordinatorState) proto.Message { return s.GetJob() },
	} {
		if !proto.Equal(f(before), f(after)) {
			t.Fatalf("state changed across fail-over: %v -> %v", f(before), f(after))
		}
	}
	if len(after.GetWorkers()) != 3 || len(after.GetCheckpoints()) != 1 {
		t.Fatalf("workers %v checkpoints %v after fail-over", after.GetWorkers(), after.GetCheckpoints())
	}
	// Heartbeats resume against the new leader, and nobody is removed meanwhile.
	for _, w := range ws {
		n := w.beats.Load()
		c.WaitFor(w.id+" heartbeating the new leader", func() bool { return w.beats.Load() > n+2 })
	}
	if p := c.Node(leader).State().GetPlan(); p.GetGeneration() != gen {
		t.Fatalf("fail-over changed the plan to generation %d: %v", p.GetGeneration(), p)
	}

	// w2 stops heartbeating: after its lease it is removed and a new generation forms.
	ws[2].halt()
	stopped := time.Now()
	p := c.WaitPlan("w2 removed after its lease", func(p *pb.Plan) bool { return !slices.Contains(p.GetMembers(), "w2") })
	t.Logf("w2 removed %v after its last heartbeat (lease %v)", time.Since(stopped).Round(time.Millisecond), TestConfig().Lease)
	if !slices.Equal(p.GetMembers(), []string{"w0", "w1"}) || p.GetGeneration() != gen+1 {
		t.Fatalf("plan after lease expiry: %v", p)
	}
	c.WaitFor("the watcher to see the generation without w2", func() bool { return pw.latest().GetGeneration() == p.GetGeneration() })

	// A graceful leave removes the worker without waiting for its lease.
	ws[1].halt()
	left := time.Now()
	if err := cl.Leave(ctx, &pb.LeaveRequest{WorkerId: "w1"}); err != nil {
		t.Fatal(err)
	}
	p = c.WaitPlan("w1 removed after leaving", func(p *pb.Plan) bool { return !slices.Contains(p.GetMembers(), "w1") })
	if took := time.Since(left); took > TestConfig().Lease {
		t.Fatalf("leave took %v, longer than a lease", took)
	}
	if !slices.Equal(p.GetMembers(), []string{"w0"}) || !slices.Equal(StreamsOf(p, "w0"), []int{0, 1, 2, 3, 4, 5}) {
		t.Fatalf("plan after leave: %v", p)
	}
	// Stale reports are refused.
	_, err := cl.ReportProgress(ctx, &pb.ReportProgressRequest{WorkerId: "w0", Generation: gen, Step: 13, Loss: 3})
	if !errors.Is(err, ErrStaleGeneration) {
		t.Fatalf("report from generation %d: %v", gen, err)
	}
	// The watcher saw every generation once, in order.
	c.WaitFor("the watcher to see the last generation", func() bool { return pw.latest().GetGeneration() == p.GetGeneration() })
	gens := pw.generations()
	if !slices.IsSorted(gens) || slices.Compact(slices.Clone(gens)) == nil || len(slices.Compact(slices.Clone(gens))) != len(gens) {
		t.Fatalf("watcher saw generations %v", gens)
	}

	// The killed replica comes back and catches up.
	c.Restart(old)
	c.WaitConverged()
}

// TestDuplicateRequestAppliedOnce: a write retried with the same request id (a lost
// answer) is applied once and answered with the first result.
func TestDuplicateRequestAppliedOnce(t *testing.T) {
	c := MakeCluster(t, 3)
	cl := c.Client()
	c.Leader()
	ctx := c.Ctx(10 * time.Second)
	rid := cl.NewRequestID()
	r1, err := cl.Register(ctx, &pb.RegisterRequest{Rid: rid, WorkerId: "w0", Address: "a:1"})
	if err != nil {
		t.Fatal(err)
	}
	epoch := c.Node(c.Leader()).State().GetMembershipEpoch()
	r2, err := cl.Register(ctx, &pb.RegisterRequest{Rid: rid, WorkerId: "w0", Address: "b:2"})
	if err != nil {
		t.Fatal(err)
	}
	if !proto.Equal(r1.GetWorker(), r2.GetWorker()) || r2.GetWorker().GetAddress() != "a:1" {
		t.Fatalf("duplicate answered %v, first %v", r2.GetWorker(), r1.GetWorker())
	}
	st := c.WaitConverged()
	if st.GetMembershipEpoch() != epoch || st.GetWorkers()[0].GetAddress() != "a:1" {
		t.Fatalf("duplicate applied: epoch %d -> %d, workers %v", epoch, st.GetMembershipEpoch(), st.GetWorkers())
	}
}

// TestFullRestart: every replica stops; restarted on the same directories they
// recover every committed entry (from the log and from a snapshot).
func TestFullRestart(t *testing.T) {
	c := MakeCluster(t, 3)
	cl := c.Client()
	c.Leader()
	submitJob(t, c, cl, 4)
	ctx := c.Ctx(20 * time.Second)
	for i := range 3 {
		if _, err := cl.Register(ctx, &pb.RegisterRequest{WorkerId: fmt.Sprintf("w%d", i), Address: fmt.Sprintf("h%d:1", i)}); err != nil {
			t.Fatal(err)
		}
	}
	p := c.WaitPlan("three members", func(p *pb.Plan) bool { return len(p.GetMembers()) == 3 })
	// Snapshot one replica midway so that its restart restores a snapshot plus a log tail.
	if err := c.Node(1).Snapshot(); err != nil {
		t.Fatal(err)
	}
	if _, err := cl.ReportProgress(ctx, &pb.ReportProgressRequest{WorkerId: "w2", Generation: p.GetGeneration(), Step: 40, Loss: 2.25, Tokens: 4000}); err != nil {
		t.Fatal(err)
	}
	if _, err := cl.CommitCheckpoint(ctx, &pb.CommitCheckpointRequest{WorkerId: "w0", Generation: p.GetGeneration(), Step: 40, Location: "s3://x/step-40", Sha256: digestB}); err != nil {
		t.Fatal(err)
	}
	before := c.WaitConverged()
	for i := range 3 {
		c.Kill(i)
	}
	for i := range 3 {
		c.Restart(i)
	}
	c.Leader()
	after := c.WaitConverged()
	// A new leader may record its own gRPC address (replicas) and so apply more
	// commands (applied_index); everything else must be exactly as before.
	for _, st := range []*pb.CoordinatorState{before, after} {
		st.Replicas, st.AppliedIndex = nil, 0
	}
	if !proto.Equal(before, after) {
		t.Fatalf("state after full restart differs:\nbefore %v\nafter  %v", before, after)
	}
	// And the cluster takes writes again.
	if _, err := cl.ReportProgress(ctx, &pb.ReportProgressRequest{WorkerId: "w2", Generation: p.GetGeneration(), Step: 41, Loss: 2.2, Tokens: 4100}); err != nil {
		t.Fatal(err)
	}
}

// TestClientFollowsLeaderHint: a client that knows only a follower reaches the
// leader through the follower's hint.
func TestClientFollowsLeaderHint(t *testing.T) {
	c := MakeCluster(t, 3)
	leader := c.Leader()
	follower := (leader + 1) % 3
	c.WaitFor("the leader's address in the replica directory", func() bool {
		return len(c.Node(follower).State().GetReplicas()) > 0
	})
	cl, err := NewClient([]string{c.GRPCAddrs()[follower]}, ClientOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	// The raw RPC on the follower answers NOT_LEADER with the leader's address.
	conn, err := grpc.NewClient(c.GRPCAddrs()[follower], grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx := c.Ctx(10 * time.Second)
	_, err = pb.NewCoordinatorClient(conn).Register(ctx, &pb.RegisterRequest{WorkerId: "w0", Address: "a:1"})
	var hint *NotLeaderError
	if !errors.As(fromStatus(err), &hint) || hint.LeaderAddr != c.GRPCAddrs()[leader] || hint.LeaderID != c.Node(leader).ID() {
		t.Fatalf("follower answered %v, want a hint to %s", err, c.GRPCAddrs()[leader])
	}
	if _, err := cl.Register(ctx, &pb.RegisterRequest{WorkerId: "w0", Address: "a:1"}); err != nil {
		t.Fatalf("register through a follower's hint: %v", err)
	}
	st, err := cl.Status(ctx, false)
	if err != nil || st.GetReplicaId() != c.Node(leader).ID() || len(st.GetReplicas()) != 3 {
		t.Fatalf("status: %v %v", st, err)
	}
	// Health service.
	h, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{Service: pb.Coordinator_ServiceDesc.ServiceName})
	if err != nil || h.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("health: %v %v", h, err)
	}
}

// TestPartitionedLeader: a leader cut off from the others stops accepting writes; the
// majority elects a new leader that does; after healing all converge.
func TestPartitionedLeader(t *testing.T) {
	c := MakeCluster(t, 3)
	cl := c.Client()
	old := c.Leader()
	submitJob(t, c, cl, 2)
	c.Partition(old)
	// The old leader refuses (or cannot commit) writes.
	conn, err := grpc.NewClient(c.GRPCAddrs()[old], grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	direct := pb.NewCoordinatorClient(conn)
	c.WaitFor("the old leader to step down", func() bool { return !c.Node(old).IsLeader() })
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	_, err = direct.Register(ctx, &pb.RegisterRequest{WorkerId: "lost", Address: "x:1"})
	cancel()
	if err == nil {
		t.Fatalf("a partitioned replica accepted a write")
	}
	// The majority side elects a leader and takes writes through the client.
	c.WaitFor("a leader on the majority side", func() bool {
		return c.Node((old+1)%3).IsLeader() || c.Node((old+2)%3).IsLeader()
	})
	if _, err := cl.Register(c.Ctx(10*time.Second), &pb.RegisterRequest{WorkerId: "w0", Address: "a:1"}); err != nil {
		t.Fatal(err)
	}
	c.Heal()
	st := c.WaitConverged()
	if len(st.GetWorkers()) != 1 || st.GetWorkers()[0].GetId() != "w0" {
		t.Fatalf("after heal: workers %v", st.GetWorkers())
	}
}

// TestSnapshotCatchUp: a follower that was down while the leader compacted its log
// catches up from a snapshot.
func TestSnapshotCatchUp(t *testing.T) {
	c := MakeCluster(t, 3, func(cfg *Config) {
		cfg.SnapshotThreshold = 16
		cfg.TrailingLogs = 4
		// The workers never heartbeat: a lease longer than the test keeps all 30
		// registered however slowly a loaded machine runs it.
		cfg.Lease = time.Minute
	})
	cl := c.Client()
	leader := c.Leader()
	follower := (leader + 1) % 3
	c.Kill(follower)
	ctx := c.Ctx(20 * time.Second)
	for i := range 30 {
		if _, err := cl.Register(ctx, &pb.RegisterRequest{WorkerId: fmt.Sprintf("w%02d", i), Address: "h:1"}); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.Node(leader).Snapshot(); err != nil {
		t.Fatal(err)
	}
	c.Restart(follower)
	st := c.WaitConverged()
	if len(st.GetWorkers()) != 30 {
		t.Fatalf("%d workers after catch-up", len(st.GetWorkers()))
	}
}

// TestJoin: a replica without peers bootstraps alone; two more join it through
// AddVoter; the three-voter cluster survives the loss of the first.
func TestJoin(t *testing.T) {
	dir := t.TempDir()
	sink := &testLogSink{t: t}
	defer sink.close()
	start := func(id string, join []string) *Node {
		cfg := TestConfig()
		cfg.ID, cfg.DataDir = id, dir+"/"+id
		cfg.RaftAddr, cfg.GRPCAddr = "127.0.0.1:0", "127.0.0.1:0"
		cfg.Join = join
		cfg.Logger = testLogger(sink, id)
		n, err := Start(cfg)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { n.kill() })
		return n
	}
	n0 := start("c0", nil)
	WaitFor(t, 10*time.Second, "c0 to lead", n0.IsLeader)
	n1 := start("c1", []string{n0.GRPCAddr()})
	n2 := start("c2", []string{n1.GRPCAddr()}) // through a follower's hint
	WaitFor(t, 10*time.Second, "three voters", func() bool {
		f := n0.raft.GetConfiguration()
		return f.Error() == nil && len(f.Configuration().Servers) == 3
	})
	cl, err := NewClient([]string{n1.GRPCAddr(), n2.GRPCAddr()}, ClientOptions{AttemptTimeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	n0.kill()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := cl.Register(ctx, &pb.RegisterRequest{WorkerId: "w0", Address: "a:1"}); err != nil {
		t.Fatalf("write after the first replica died: %v", err)
	}
	if err := cl.RemoveServer(ctx, "c0"); err != nil {
		t.Fatal(err)
	}
	st, err := cl.Status(ctx, false)
	if err != nil || len(st.GetReplicas()) != 2 {
		t.Fatalf("status after removing c0: %v %v", st.GetReplicas(), err)
	}
}
