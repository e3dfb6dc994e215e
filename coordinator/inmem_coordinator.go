package coordinator

import (
	"context"
	"fmt"
	"sync"
	"time"

	"google.golang.org/protobuf/proto"

	pb "github.com/ringtrain/ringtrain/proto/ringtrain/v1"
)

// InmemOptions configures an Inmem. Zero values pick the defaults shown.
type InmemOptions struct {
	// Lease is the lease Register and Heartbeat hand out (default 10 s, as
	// Config.Lease). Workers heartbeat every third of it; it never expires (see
	// Inmem.Expire).
	Lease time.Duration
	// HoldOff is how long a worker removed on a peer-lost report may not register
	// again (default 0: no hold-off), doubling with each removal up to MaxHoldOff
	// (default HoldOff: no doubling), as Config.HoldOff and Config.MaxHoldOff.
	HoldOff    time.Duration
	MaxHoldOff time.Duration
	// Jobs checks submitted jobs as Config.Jobs does (nil: the coordinator's own
	// fields only).
	Jobs JobPolicy
}

// Inmem is a coordinator in memory, for tests of the worker that need no Raft, no
// gRPC and no network: the Coordinator service's worker calls, with Client's method
// signatures, on one state Machine (fsm.go). Every write is a command the Machine
// applies, at a log index that counts the commands, and every plan comes from
// NextPlan (planner.go) through the Machine's Replan, so registration (joined_at,
// re-registration), plans and generations (members, ranks, streams, standby,
// start_step), removal on Leave, progress and checkpoint commits, and every error
// are those of a real cluster, with the same sentinels (errors.go).
//
// What a real leader does with its clock is simplified:
//   - No settle window: every command that changes the membership is followed at
//     once by a Replan, so each such change that alters the plan is a generation
//     of its own.
//   - Leases never expire; Heartbeat fails with ErrUnknownWorker only for a worker
//     that is not registered. Expire removes a worker as the leader does when its
//     lease runs out.
//   - A peer-lost report is judged at once, on its own (no verdict window): the
//     member it names reported no one, so verdict removes it, and it is held off
//     for InmemOptions.HoldOff.
//   - One replica, always the leader: Status is linearizable whether stale is set
//     or not, and no call is retried.
//
// Methods are safe for concurrent use. Nothing runs in the background, so an Inmem
// needs no Close; a WatchPlan ends with its context.
type Inmem struct {
	opts InmemOptions

	mu      sync.Mutex
	m       *Machine
	index   uint64             // log index of the last command applied
	changes chan struct{}      // closed and replaced after every command
	holds   map[string]holdOff // workers removed on reports
}

// NewInmem returns an Inmem with an empty state: no job, no workers, no plan.
func NewInmem(opts InmemOptions) *Inmem {
	if opts.Lease <= 0 {
		opts.Lease = 10 * time.Second
	}
	opts.MaxHoldOff = max(opts.MaxHoldOff, opts.HoldOff)
	return &Inmem{opts: opts, m: NewMachine(opts.Jobs), changes: make(chan struct{}), holds: map[string]holdOff{}}
}

// applyLocked applies cmd as the next log entry, then a Replan when the membership
// changed since the current plan was made (as the leader does when its settle
// window closes), and wakes the plan watchers. It returns cmd's result and the
// error the result stands for. The caller holds c.mu.
func (c *Inmem) applyLocked(cmd *pb.Command) (*pb.Result, error) {
	defer func() {
		close(c.changes)
		c.changes = make(chan struct{})
	}()
	res, err := c.applyOneLocked(cmd)
	st := c.m.view()
	need := st.GetPlan().GetMembershipEpoch() != st.GetMembershipEpoch()
	if st.GetPlan() == nil {
		need = st.GetJob() != nil || len(st.GetWorkers()) > 0
	}
	if need {
		if _, rerr := c.applyOneLocked(&pb.Command{Op: &pb.Command_Replan{Replan: &pb.ReplanOp{}}}); rerr != nil {
			return nil, rerr
		}
	}
	return res, err
}

// applyOneLocked applies cmd as the next log entry. The caller holds c.mu.
func (c *Inmem) applyOneLocked(cmd *pb.Command) (*pb.Result, error) {
	b, err := EncodeCommand(cmd)
	if err != nil {
		return nil, err
	}
	c.index++
	res := c.m.Apply(c.index, b)
	return res, ResultError(res)
}

// write applies cmd with the request id rid under the lock, unless ctx has ended.
func (c *Inmem) write(ctx context.Context, name string, rid *pb.RequestID, cmd *pb.Command) (*pb.Result, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("coordinator: %s: %w", name, err)
	}
	cmd.Rid = rid
	c.mu.Lock()
	defer c.mu.Unlock()
	res, err := c.applyLocked(cmd)
	if err != nil {
		return nil, fmt.Errorf("coordinator: %s: %w", name, err)
	}
	return res, nil
}

// SubmitJob installs the job; see Client.SubmitJob.
func (c *Inmem) SubmitJob(ctx context.Context, req *pb.SubmitJobRequest) error {
	job, err := admitJob(c.opts.Jobs, req.GetJob())
	if err != nil {
		return fmt.Errorf("coordinator: submit job: %w", err)
	}
	_, err = c.write(ctx, "submit job", req.GetRid(), &pb.Command{Op: &pb.Command_SubmitJob{SubmitJob: &pb.SubmitJobOp{
		Job: job, Replace: req.GetReplace(),
	}}})
	return err
}

// Register registers (or re-registers) a worker; see Client.Register. It fails with
// ErrHeldOff while the worker is held off after a peer-lost report.
func (c *Inmem) Register(ctx context.Context, req *pb.RegisterRequest) (*pb.RegisterResponse, error) {
	c.mu.Lock()
	left := time.Until(c.holds[req.GetWorkerId()].until)
	c.mu.Unlock()
	if left > 0 {
		return nil, fmt.Errorf("coordinator: register: register %q: %w: %s more", req.GetWorkerId(), ErrHeldOff, left.Round(time.Millisecond))
	}
	res, err := c.write(ctx, "register", req.GetRid(), &pb.Command{Op: &pb.Command_Register{Register: &pb.RegisterOp{
		WorkerId: req.GetWorkerId(), Address: req.GetAddress(), Device: req.GetDevice(), Zone: req.GetZone(),
	}}})
	if err != nil {
		return nil, err
	}
	return &pb.RegisterResponse{Worker: res.GetWorker(), LeaseMs: c.opts.Lease.Milliseconds()}, nil
}

// Heartbeat answers for a registered worker with the current generation and the
// lease; see Client.Heartbeat. Leases never expire, so it renews nothing.
func (c *Inmem) Heartbeat(ctx context.Context, req *pb.HeartbeatRequest) (*pb.HeartbeatResponse, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("coordinator: heartbeat: %w", err)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, found := c.m.findWorker(req.GetWorkerId()); !found {
		return nil, fmt.Errorf("coordinator: heartbeat: %w: %q", ErrUnknownWorker, req.GetWorkerId())
	}
	return &pb.HeartbeatResponse{Generation: c.m.view().GetPlan().GetGeneration(), LeaseMs: c.opts.Lease.Milliseconds()}, nil
}

// Leave removes a worker at once; see Client.Leave.
func (c *Inmem) Leave(ctx context.Context, req *pb.LeaveRequest) error {
	_, err := c.write(ctx, "leave", req.GetRid(), &pb.Command{Op: &pb.Command_RemoveWorker{RemoveWorker: &pb.RemoveWorkerOp{
		WorkerId: req.GetWorkerId(), Reason: "leave", MustExist: true,
	}}})
	return err
}

// Expire removes worker id as the leader does when the worker's lease runs out (its
// current incarnation only). It fails with ErrUnknownWorker when id is not
// registered.
func (c *Inmem) Expire(id string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	i, found := c.m.findWorker(id)
	if !found {
		return fmt.Errorf("coordinator: expire: %w: %q", ErrUnknownWorker, id)
	}
	_, err := c.applyLocked(&pb.Command{Op: &pb.Command_RemoveWorker{RemoveWorker: &pb.RemoveWorkerOp{
		WorkerId: id, JoinedAt: c.m.view().GetWorkers()[i].GetJoinedAt(), Reason: "lease expired",
	}}})
	if err != nil {
		return fmt.Errorf("coordinator: expire: %w", err)
	}
	return nil
}

// ReportPeerLost reports a member of the current generation that another cannot
// reach; see Client.ReportPeerLost. The report is checked as the leader checks it
// and judged at once: the member it names is removed and held off.
func (c *Inmem) ReportPeerLost(ctx context.Context, req *pb.ReportPeerLostRequest) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("coordinator: report peer lost: %w", err)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	st := c.m.view()
	if err := checkReport(st, req); err != nil {
		return fmt.Errorf("coordinator: %w", err)
	}
	reports := map[string]map[string]string{req.GetPeerId(): {req.GetWorkerId(): req.GetError()}}
	for _, id := range verdict(st.GetPlan().GetMembers(), reports) {
		i, found := c.m.findWorker(id)
		if !found {
			continue
		}
		joinedAt := st.GetWorkers()[i].GetJoinedAt()
		if c.opts.HoldOff > 0 {
			c.holds[id] = nextHoldOff(c.holds[id], time.Now(), c.opts.HoldOff, c.opts.MaxHoldOff)
		}
		if _, err := c.applyLocked(&pb.Command{Op: &pb.Command_RemoveWorker{RemoveWorker: &pb.RemoveWorkerOp{
			WorkerId: id, JoinedAt: joinedAt, Reason: "reported lost by " + req.GetWorkerId(),
		}}}); err != nil {
			return fmt.Errorf("coordinator: report peer lost: %w", err)
		}
	}
	return nil
}

// ReportProgress records a completed step; see Client.ReportProgress.
func (c *Inmem) ReportProgress(ctx context.Context, req *pb.ReportProgressRequest) (*pb.ReportProgressResponse, error) {
	res, err := c.write(ctx, "report progress", req.GetRid(), &pb.Command{Op: &pb.Command_ReportProgress{ReportProgress: &pb.ReportProgressOp{
		WorkerId: req.GetWorkerId(), Generation: req.GetGeneration(), Step: req.GetStep(), Loss: req.GetLoss(), Tokens: req.GetTokens(),
		Ranks: req.GetRanks(),
	}}})
	if err != nil {
		return nil, err
	}
	return &pb.ReportProgressResponse{Progress: res.GetProgress()}, nil
}

// CommitCheckpoint records a durable checkpoint; see Client.CommitCheckpoint.
func (c *Inmem) CommitCheckpoint(ctx context.Context, req *pb.CommitCheckpointRequest) (*pb.CommitCheckpointResponse, error) {
	res, err := c.write(ctx, "commit checkpoint", req.GetRid(), &pb.Command{Op: &pb.Command_CommitCheckpoint{CommitCheckpoint: &pb.CommitCheckpointOp{
		WorkerId: req.GetWorkerId(), Generation: req.GetGeneration(), Step: req.GetStep(), Location: req.GetLocation(), Sha256: req.GetSha256(),
		Final: req.GetFinal(), StopReason: req.GetStopReason(),
		JobVersion: req.GetJobVersion(),
	}}})
	if err != nil {
		return nil, err
	}
	return &pb.CommitCheckpointResponse{Checkpoint: res.GetCheckpoint()}, nil
}

// FailJob ends the running job as FAILED; see Client.FailJob.
func (c *Inmem) FailJob(ctx context.Context, req *pb.FailJobRequest) (*pb.FailJobResponse, error) {
	res, err := c.write(ctx, "fail job", req.GetRid(), &pb.Command{Op: &pb.Command_FailJob{FailJob: &pb.FailJobOp{
		WorkerId: req.GetWorkerId(), Generation: req.GetGeneration(), Step: req.GetStep(), Reason: req.GetReason(),
	}}})
	if err != nil {
		return nil, err
	}
	return &pb.FailJobResponse{Status: res.GetJobStatus()}, nil
}

// Status returns the state as the leader of a one-replica cluster reports it; see
// Client.Status.
func (c *Inmem) Status(ctx context.Context, stale bool) (*pb.StatusResponse, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("coordinator: status: %w", err)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return &pb.StatusResponse{ReplicaId: "inmem", RaftState: "Leader", LeaderId: "inmem", Term: 1,
		CommitIndex: c.index, AppliedIndex: c.index, State: c.m.State()}, nil
}

// State returns a copy of the state, owned by the caller.
func (c *Inmem) State() *pb.CoordinatorState {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.m.State()
}

// WatchPlan calls fn with the current plan when it is newer than afterGeneration,
// then with each newer plan, on the caller's goroutine, until ctx ends (it returns
// ctx's error) or fn fails (it returns fn's error); see Client.WatchPlan. A plan
// superseded before the watcher woke is skipped, as on a real cluster.
func (c *Inmem) WatchPlan(ctx context.Context, workerID string, afterGeneration uint64, fn func(*pb.Plan) error) error {
	last := afterGeneration
	for {
		c.mu.Lock()
		changes := c.changes
		var plan *pb.Plan
		if p := c.m.view().GetPlan(); p.GetGeneration() > last {
			plan = proto.CloneOf(p)
		}
		c.mu.Unlock()
		if plan != nil {
			last = plan.GetGeneration()
			if err := fn(plan); err != nil {
				return err
			}
			continue
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-changes:
		}
	}
}
