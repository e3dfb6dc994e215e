package coordinator

import (
	"fmt"
	"strings"

	"google.golang.org/protobuf/proto"

	pb "github.com/ringtrain/ringtrain/proto/ringtrain/v1"
)

// The job's lifecycle is part of the replicated state (CoordinatorState.job_status)
// and changes only by the rules below, applied by Machine like every other rule:
//
//   - SubmitJob of a new job, or of a different one with replace: RUNNING, from
//     scratch (no progress, no checkpoints).
//   - RUNNING → FINISHED when the committed progress has reached the job's steps
//     and the checkpoint of step `steps` is committed, whichever of the two comes
//     second. The worker of rank 0 reports the final progress and commits the final
//     checkpoint synchronously after the last step, so the job reads FINISHED
//     before any member leaves. The status records that checkpoint (location and
//     digest) and the generation of the final progress. FINISHED starts no new
//     generation: the members are at their final barrier and leave, and the plan
//     made when they do is ENDED.
//   - RUNNING → FAILED when a registered worker reports, with FailJob, an error
//     that no retry or new generation can cure. The status records the reason, the
//     worker, its step and generation. FAILED bumps the membership epoch, so the
//     leader's next plan is ENDED and every member stops at once.
//   - FAILED → FAILED: a second report is accepted and changes nothing (the first
//     reason stands). FINISHED → FAILED is refused with CONFLICT.
//   - SubmitJob of the same job with replace restarts a FAILED job: RUNNING, with
//     its committed progress and checkpoints kept, so the workers resume from the
//     newest checkpoint. A FINISHED job stays FINISHED (the rule above holds at
//     once). Without replace, the same job again changes nothing in any state.
//
// While the job is not RUNNING every plan is ENDED (replan): no member, every
// registered worker on standby, the reason saying how the job ended. A state of
// version 1 has no job_status; Restore derives it (upgradeState): RUNNING, or
// FINISHED when the rule above already holds.

// JobStateName returns the lower-case name of s ("running", "finished", "failed"),
// or "none" for JOB_STATE_UNSPECIFIED (no job), as status output and the
// ringtrain_job_state metric (metrics.JobStates) show them.
func JobStateName(s pb.JobState) string {
	if s == pb.JobState_JOB_STATE_UNSPECIFIED {
		return "none"
	}
	return strings.ToLower(strings.TrimPrefix(s.String(), "JOB_STATE_"))
}

// PlanStateName returns the lower-case name of s ("active", "waiting", "ended").
func PlanStateName(s pb.PlanState) string {
	return strings.ToLower(strings.TrimPrefix(s.String(), "PLAN_STATE_"))
}

// JobStatusOf returns the job's status in st (a copy, owned by the caller): nil
// when no job is submitted. A state without job_status (written by a replica of an
// older version) gets the status Restore would derive for it.
func JobStatusOf(st *pb.CoordinatorState) *pb.JobStatus {
	if st.GetJob() == nil {
		return nil
	}
	if s := st.GetJobStatus(); s != nil {
		return proto.CloneOf(s)
	}
	return derivedStatus(st)
}

// derivedStatus is the status of a job whose state records none: FINISHED when the
// finishing rule holds, else RUNNING.
func derivedStatus(st *pb.CoordinatorState) *pb.JobStatus {
	if c := finalCheckpoint(st); c != nil {
		return finishedStatus(st, c)
	}
	return &pb.JobStatus{State: pb.JobState_JOB_STATE_RUNNING}
}

// finalCheckpoint returns the committed checkpoint of the job's last step when the
// committed progress has reached that step too, else nil.
func finalCheckpoint(st *pb.CoordinatorState) *pb.Checkpoint {
	steps := st.GetJob().GetSteps()
	if steps <= 0 || st.GetProgress().GetStep() < steps {
		return nil
	}
	cks := st.GetCheckpoints()
	if len(cks) == 0 || cks[len(cks)-1].GetStep() != steps {
		return nil
	}
	return cks[len(cks)-1]
}

func finishedStatus(st *pb.CoordinatorState, c *pb.Checkpoint) *pb.JobStatus {
	return &pb.JobStatus{State: pb.JobState_JOB_STATE_FINISHED, FinalCheckpoint: proto.CloneOf(c),
		Step: st.GetJob().GetSteps(), Generation: st.GetProgress().GetGeneration()}
}

// running reports whether a job is submitted and RUNNING (a job without a status,
// which Restore and SubmitJob never leave, counts as RUNNING).
func (m *Machine) running() bool {
	return m.st.Job != nil && (m.st.JobStatus == nil || m.st.JobStatus.GetState() == pb.JobState_JOB_STATE_RUNNING)
}

// maybeFinish makes a RUNNING job FINISHED when its last step and that step's
// checkpoint are both committed. Called after every accepted progress report and
// checkpoint commit.
func (m *Machine) maybeFinish() {
	if !m.running() {
		return
	}
	if c := finalCheckpoint(m.st); c != nil {
		m.st.JobStatus = finishedStatus(m.st, c)
	}
}

func (m *Machine) failJob(op *pb.FailJobOp) *pb.Result {
	if r := checkName("worker_id", op.GetWorkerId(), maxIDLen); r != nil {
		return r
	}
	switch {
	case op.GetReason() == "":
		return badField("reason", "", "is required")
	case op.GetStep() < 0:
		return badField("step", op.GetStep(), "must be >= 0")
	}
	if m.st.Job == nil {
		return failure(pb.ErrorCode_ERROR_CODE_NO_JOB, "no job submitted")
	}
	if _, found := m.findWorker(op.GetWorkerId()); !found {
		return failure(pb.ErrorCode_ERROR_CODE_UNKNOWN_WORKER, "worker %q is not registered", op.GetWorkerId())
	}
	switch m.st.GetJobStatus().GetState() {
	case pb.JobState_JOB_STATE_FAILED:
		return &pb.Result{JobStatus: proto.CloneOf(m.st.JobStatus)}
	case pb.JobState_JOB_STATE_FINISHED:
		return failure(pb.ErrorCode_ERROR_CODE_CONFLICT, "the job has finished at step %d", m.st.GetJobStatus().GetStep())
	}
	m.st.JobStatus = &pb.JobStatus{State: pb.JobState_JOB_STATE_FAILED, Reason: truncateText(op.GetReason(), MaxReasonLen),
		WorkerId: op.GetWorkerId(), Step: op.GetStep(), Generation: op.GetGeneration()}
	m.st.MembershipEpoch++
	return &pb.Result{JobStatus: proto.CloneOf(m.st.JobStatus)}
}

// endedPlan is the plan of a job that is not RUNNING: no members, every
// registered worker (by join order) on standby, and the reason.
func endedPlan(status *pb.JobStatus, workers []*pb.Worker) *pb.Plan {
	plan := waitingPlan(endReason(status), byJoinOrder(workers))
	plan.State = pb.PlanState_PLAN_STATE_ENDED
	return plan
}

// endReason says how a job ended, for an ENDED plan.
func endReason(s *pb.JobStatus) string {
	if s.GetState() == pb.JobState_JOB_STATE_FAILED {
		return fmt.Sprintf("job failed: %s", s.GetReason())
	}
	return fmt.Sprintf("job finished at step %d", s.GetStep())
}

// upgradeState brings a restored state to StateVersion: a version 1 state gets the
// job status derived from its progress and checkpoints. st is modified.
func upgradeState(st *pb.CoordinatorState) *pb.CoordinatorState {
	if st.GetVersion() == 1 && st.Job != nil && st.JobStatus == nil {
		st.JobStatus = derivedStatus(st)
	}
	if st.Job != nil && st.JobVersion == 0 {
		st.JobVersion = 1 // a state written before job versions: its job is the first
	}
	st.Version = StateVersion
	return st
}

// checkJobStatus checks the job status of a restored state against its job.
func checkJobStatus(st *pb.CoordinatorState) error {
	s := st.GetJobStatus()
	switch {
	case st.GetVersion() == 1 && s == nil:
		return nil // derived by upgradeState
	case st.GetJob() == nil && s != nil:
		return fmt.Errorf("job status %s without a job", s.GetState())
	case st.GetJob() != nil && s == nil:
		return fmt.Errorf("job without a job status")
	case s == nil:
		return nil
	}
	switch s.GetState() {
	case pb.JobState_JOB_STATE_RUNNING:
	case pb.JobState_JOB_STATE_FINISHED:
		if s.GetFinalCheckpoint() == nil {
			return fmt.Errorf("job FINISHED without a final checkpoint")
		}
	case pb.JobState_JOB_STATE_FAILED:
		if s.GetReason() == "" {
			return fmt.Errorf("job FAILED without a reason")
		}
	default:
		return fmt.Errorf("job state %d unknown", s.GetState())
	}
	return nil
}
