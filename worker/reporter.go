package worker

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/ringtrain/ringtrain/coordinator"
	pb "github.com/ringtrain/ringtrain/proto/ringtrain/v1"
)

// reporter sends progress and checkpoint records to the coordinator from its own
// goroutine, so that a slow or failing-over coordinator never blocks a step. Only
// the newest progress is kept; checkpoint commits are queued.
type reporter struct {
	cl       Coordinator
	log      *slog.Logger
	wake     chan struct{}
	patience time.Duration // per call
	pause    time.Duration // before retrying commits that failed

	mu       sync.Mutex
	progress *pb.ReportProgressRequest
	commits  []*pb.CommitCheckpointRequest
	// committed is the highest step whose commit the coordinator accepted, among the
	// commits of job version committedJob (the newest job a commit was accepted for).
	committed    int64
	committedJob uint64
}

// callPatience is how long one report or commit keeps retrying before the reporter
// sets it aside; commitPause is how long a commit set aside waits for its next try.
const (
	callPatience = 10 * time.Second
	commitPause  = time.Second
)

func newReporter(cl Coordinator, log *slog.Logger) *reporter {
	return &reporter{cl: cl, log: log, wake: make(chan struct{}, 1), patience: callPatience, pause: commitPause}
}

func (r *reporter) poke() {
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

func (r *reporter) report(p *pb.ReportProgressRequest) {
	r.mu.Lock()
	r.progress = p
	r.mu.Unlock()
	r.poke()
}

func (r *reporter) commit(c *pb.CommitCheckpointRequest) {
	r.mu.Lock()
	r.commits = append(r.commits, c)
	r.mu.Unlock()
	r.poke()
}

// committedStep returns the highest step whose checkpoint commit of job version
// jobVersion the coordinator has accepted through this reporter (0 for none): the
// coordinator's newest committed checkpoint of that job is at least that new. The
// commits of a replaced job do not count for the job that replaced it. Safe from any
// goroutine.
func (r *reporter) committedStep(jobVersion uint64) int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.committedJob != jobVersion {
		return 0
	}
	return r.committed
}

// accepted records that the coordinator accepted c.
func (r *reporter) accepted(c *pb.CommitCheckpointRequest) {
	r.mu.Lock()
	defer r.mu.Unlock()
	switch v := c.GetJobVersion(); {
	case v > r.committedJob:
		r.committedJob, r.committed = v, c.GetStep()
	case v == r.committedJob:
		r.committed = max(r.committed, c.GetStep())
	}
}

func (r *reporter) run(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-r.wake:
		}
		for {
			r.mu.Lock()
			p, cs := r.progress, r.commits
			r.progress, r.commits = nil, nil
			r.mu.Unlock()
			if p == nil && len(cs) == 0 {
				break
			}
			if p != nil {
				sendReport(ctx, r.cl, r.log, p, r.patience)
			}
			var retry []*pb.CommitCheckpointRequest
			for _, c := range cs {
				err := sendCommit(ctx, r.cl, r.log, c, r.patience)
				if err == nil {
					r.accepted(c)
				} else if ctx.Err() == nil && !permanent(err) {
					retry = append(retry, c)
				}
			}
			if len(retry) > 0 {
				// The coordinator is unreachable for longer than a call's patience (a
				// partitioned leader, an election): keep the commits, in order, and try
				// again shortly. Training does not wait for them.
				r.mu.Lock()
				r.commits = append(retry, r.commits...)
				r.mu.Unlock()
				t := time.NewTimer(r.pause)
				select {
				case <-ctx.Done():
					t.Stop()
					return
				case <-t.C:
				}
			}
		}
	}
}

// permanent reports a coordinator error that retrying cannot fix: the request is
// invalid, contradicts committed state, or belongs to a generation that has passed.
func permanent(err error) bool {
	for _, e := range []error{coordinator.ErrBadCommand, coordinator.ErrConflict, coordinator.ErrStaleGeneration,
		coordinator.ErrNotMember, coordinator.ErrUnknownWorker, coordinator.ErrNoJob} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

func sendReport(ctx context.Context, cl Coordinator, log *slog.Logger, p *pb.ReportProgressRequest, patience time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, patience)
	defer cancel()
	_, err := cl.ReportProgress(ctx, p)
	if err != nil && ctx.Err() == nil {
		log.Warn("report progress", "step", p.GetStep(), "generation", p.GetGeneration(), "err", err)
	}
	return err
}

func sendCommit(ctx context.Context, cl Coordinator, log *slog.Logger, c *pb.CommitCheckpointRequest, patience time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, patience)
	defer cancel()
	_, err := cl.CommitCheckpoint(ctx, c)
	if err != nil {
		log.Warn("commit checkpoint", "step", c.GetStep(), "generation", c.GetGeneration(), "err", err)
	} else {
		log.Info("checkpoint committed", "step", c.GetStep(), "dir", c.GetLocation())
	}
	return err
}
