package worker

import (
	"context"

	"github.com/ringtrain/ringtrain/coordinator"
	pb "github.com/ringtrain/ringtrain/proto/ringtrain/v1"
)

// Coordinator is what a worker needs of the coordinator cluster, and all it calls:
// its lifecycle (Register, Heartbeat, Leave, lifecycle.go), the plan watch
// (WatchPlan), the job and the committed state (Status), the reporter
// (ReportProgress, CommitCheckpoint, reporter.go), peer-lost reports
// (ReportPeerLost, probe.go) and the report of a fatal error (FailJob,
// job_end.go). The semantics of each call are those of the
// Coordinator service in coordinator.proto.
//
// *coordinator.Client implements it over gRPC against a Raft-replicated cluster;
// *coordinator.Inmem implements it in memory, for tests that need no Raft.
//
// Every method is safe for concurrent use and blocks until it has an answer, is
// refused for good, or ctx ends (it then fails with an error that wraps ctx's). An
// implementation retries by itself what another attempt may cure (no leader yet, an
// unreachable replica), so the caller never sees those. Refusals wrap the
// coordinator's sentinels (coordinator/errors.go), tested with errors.Is. These are
// permanent (see permanent): ErrBadCommand, ErrConflict, ErrStaleGeneration,
// ErrNotMember, ErrUnknownWorker and ErrNoJob; ErrHeldOff passes with time.
type Coordinator interface {
	// Register adds the worker, or updates the address and device of the worker
	// registered under its id, and starts its lease; the response carries the
	// worker's record and the lease. The worker joins the next plan. It fails with
	// ErrHeldOff while the worker is held off after its peers reported it lost
	// (the message says for how long): register again later.
	Register(ctx context.Context, req *pb.RegisterRequest) (*pb.RegisterResponse, error)

	// Heartbeat renews the worker's lease and returns the current generation and the
	// lease. ErrUnknownWorker means the worker was removed (its lease expired, or
	// its peers reported it lost): it must Register again.
	Heartbeat(ctx context.Context, req *pb.HeartbeatRequest) (*pb.HeartbeatResponse, error)

	// Leave removes the worker at once, without waiting for its lease to expire;
	// the next plan no longer has it. ErrUnknownWorker: it was not registered.
	Leave(ctx context.Context, req *pb.LeaveRequest) error

	// WatchPlan calls fn with the current plan when it is newer than
	// afterGeneration, then with every newer plan, in generation order, never the
	// same generation twice (a generation superseded before it was sent may be
	// skipped). fn runs on the caller's goroutine. WatchPlan returns when ctx ends
	// (with ctx's error) or when fn returns an error (that error, as is).
	WatchPlan(ctx context.Context, workerID string, afterGeneration uint64, fn func(*pb.Plan) error) error

	// Status returns the replicated state: the job, the workers, the plan, the
	// committed progress and checkpoints. It is linearizable unless stale is set.
	Status(ctx context.Context, stale bool) (*pb.StatusResponse, error)

	// ReportProgress records a step the worker's generation completed. A step at or
	// below the committed one is accepted and ignored; the response carries the
	// committed progress. ErrStaleGeneration: the generation has passed;
	// ErrNotMember, ErrUnknownWorker, ErrNoJob: the worker may not report.
	ReportProgress(ctx context.Context, req *pb.ReportProgressRequest) (*pb.ReportProgressResponse, error)

	// CommitCheckpoint records a durable checkpoint (step, location, digest). The
	// same step and digest again is accepted; ErrConflict: the step is committed
	// with another digest (or is older than every checkpoint kept). The generation
	// errors are those of ReportProgress.
	CommitCheckpoint(ctx context.Context, req *pb.CommitCheckpointRequest) (*pb.CommitCheckpointResponse, error)

	// ReportPeerLost reports a member of the worker's current generation that it
	// cannot reach; the leader may remove that member and hold it off.
	// ErrStaleGeneration: the plan has moved on; ErrNotMember: the reporter is not
	// a member of that generation.
	ReportPeerLost(ctx context.Context, req *pb.ReportPeerLostRequest) error

	// FailJob ends the running job as FAILED with the worker's reason, so that
	// every member stops (the next plan is ENDED). A job that has already failed
	// keeps its first reason; ErrConflict: the job has finished; ErrUnknownWorker:
	// the worker is not registered.
	FailJob(ctx context.Context, req *pb.FailJobRequest) (*pb.FailJobResponse, error)
}

var (
	_ Coordinator = (*coordinator.Client)(nil)
	_ Coordinator = (*coordinator.Inmem)(nil)
)
