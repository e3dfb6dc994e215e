package worker

import (
	"context"
	"fmt"
	"math"
	"strings"
	"unicode/utf8"

	"github.com/ringtrain/ringtrain/coordinator"
	pb "github.com/ringtrain/ringtrain/proto/ringtrain/v1"
	"github.com/ringtrain/ringtrain/trainer"
)

// How a worker meets the end of its job (the lifecycle in coordinator/job_lifecycle.go):
//
//   - A job the coordinator records as FINISHED: Run returns a Result with rank -1
//     (the final step and checkpoint, and the stop reason of a job that stopped
//     early) and no error, at once. A worker started (or restarted) after the end
//     thus exits 0 without registering, and so stays down under a supervisor that
//     restarts failed processes only.
//   - A job recorded as FAILED: Run returns ErrJobFailed with the reason, without
//     registering; a member that is training stops when the ENDED plan arrives.
//   - A fatal error of its own (fatal, errors.go): the worker reports it with
//     FailJob before it leaves, so that the whole job stops as FAILED instead of
//     the others training on without it (or restarting it into the same error).
//
// Run checks the job's state before registering and whenever a plan gives it no
// work (a WAITING or ENDED plan, or standby).

// maxReasonBytes is the longest reason FailJob accepts.
const maxReasonBytes = 4096

// endedJob reads the job's state from the coordinator: a FINISHED job gives its
// Result (rank -1), a FAILED one ErrJobFailed, a RUNNING one (or none) neither.
// A Status call that fails is returned as the error when strict, else ignored as
// if the job were running (the caller waits for the next plan).
func (w *Worker) endedJob(ctx context.Context, strict bool) (*Result, error) {
	st, err := w.cfg.Coordinators.Status(ctx, false)
	if err != nil {
		if strict {
			return nil, fmt.Errorf("worker %s: read the job's state: %w", w.cfg.ID, err)
		}
		return nil, nil
	}
	s := st.GetState()
	status := coordinator.JobStatusOf(s)
	switch status.GetState() {
	case pb.JobState_JOB_STATE_FINISHED:
		res := &Result{Step: status.GetStep(), StartStep: status.GetStep(), Loss: s.GetProgress().GetLoss(), ValLoss: math.NaN(), Rank: -1,
			Generation: status.GetGeneration(), Checkpoint: status.GetFinalCheckpoint().GetLocation(), Stopped: trainer.StopReason(status.GetStopReason())}
		return res, nil
	case pb.JobState_JOB_STATE_FAILED:
		return nil, jobFailed(status)
	}
	return nil, nil
}

// jobFailed is ErrJobFailed with a FAILED status's reason, worker and step.
func jobFailed(s *pb.JobStatus) error {
	return fmt.Errorf("%w at step %d (reported by worker %s): %s", ErrJobFailed, s.GetStep(), s.GetWorkerId(), s.GetReason())
}

// reportFailure tells the coordinator that this worker stopped on err, a fatal
// error, so that the job ends as FAILED. It waits at most callPatience; a report
// that fails is logged, and the worker stops all the same.
func (w *Worker) reportFailure(ctx context.Context, gen uint64, step int64, err error) {
	rctx, cancel := context.WithTimeout(ctx, callPatience)
	defer cancel()
	resp, ferr := w.cfg.Coordinators.FailJob(rctx, &pb.FailJobRequest{WorkerId: w.cfg.ID, Generation: gen,
		Step: max(step, 0), Reason: truncateReason(err.Error())})
	if ferr != nil {
		w.log.Warn("reporting the job's failure", "err", ferr)
		return
	}
	w.log.Info("job marked failed", "reported_by", resp.GetStatus().GetWorkerId(), "reason", resp.GetStatus().GetReason())
}

// truncateReason makes s valid UTF-8 (a protobuf string must be) and cuts it to at
// most maxReasonBytes at a rune boundary.
func truncateReason(s string) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	if len(s) <= maxReasonBytes {
		return s
	}
	const tail = " …"
	s = s[:maxReasonBytes-len(tail)]
	for !utf8.ValidString(s) { // only the cut can have split a rune
		s = s[:len(s)-1]
	}
	return s + tail
}
