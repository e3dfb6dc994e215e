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
//   - RUNNING → FINISHED when the newest committed checkpoint is final and the
//     committed progress has reached its step, whichever of the two comes second.
//     A checkpoint is final when it is of the job's last step (`steps`), or when
//     its commit said so (CommitCheckpointOp.final, version 3): the worker of rank
//     0 marks the checkpoint it ends the job with, after the last step or after the
//     step at which a stopping rule (max_time, target_val_loss, patience) ended the
//     job early, with that rule as the stop reason. It reports the final progress
//     and commits the final checkpoint synchronously, so the job reads FINISHED
//     before any member leaves. The status records that checkpoint (location and
//     digest), its step, the stop reason and the generation of the final progress.
//     FINISHED starts no new generation: the members are at their final barrier
//     and leave, and the plan made when they do is ENDED.
//   - A final commit is checked against the job (checkFinalMark): a stop reason
//     exactly when its step is before `steps`, no step past `steps`, none older
//     than the newest committed checkpoint. A final commit of a checkpoint already
//     committed (the same digest) marks it final; once the newest checkpoint is
//     final, the job ends there and a commit of a newer step is refused with
//     CONFLICT.
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

// finalCheckpoint returns the newest committed checkpoint when it is final (of the
// job's last step, or marked final by its commit) and the committed progress has
// reached its step too, else nil.
func finalCheckpoint(st *pb.CoordinatorState) *pb.Checkpoint {
	steps := st.GetJob().GetSteps()
	cks := st.GetCheckpoints()
	if steps <= 0 || len(cks) == 0 {
		return nil
	}
	c := cks[len(cks)-1]
	if (c.GetStep() != steps && !c.GetFinal()) || st.GetProgress().GetStep() < c.GetStep() {
		return nil
	}
	return c
}

func finishedStatus(st *pb.CoordinatorState, c *pb.Checkpoint) *pb.JobStatus {
	return &pb.JobStatus{State: pb.JobState_JOB_STATE_FINISHED, FinalCheckpoint: proto.CloneOf(c),
		Step: c.GetStep(), Generation: st.GetProgress().GetGeneration(), StopReason: c.GetStopReason()}
}

// checkFinalMark checks a checkpoint commit against the final mark rules: the mark
// needs a command of version 3, a stop reason comes with a final mark of a step
// before the job's last (and only then), a final step is not past the job's last
// nor older than the newest committed checkpoint, and nothing newer than a final
// checkpoint is committed. The job is known (checkMember).
func (m *Machine) checkFinalMark(version uint32, op *pb.CommitCheckpointOp) *pb.Result {
	steps := m.st.GetJob().GetSteps()
	reason := op.GetStopReason()
	var newest *pb.Checkpoint
	if cks := m.st.GetCheckpoints(); len(cks) > 0 {
		newest = cks[len(cks)-1]
	}
	switch {
	case version < 3 && (op.GetFinal() || reason != ""):
		return badField("final", op.GetFinal(), fmt.Sprintf("needs a command of version 3, not %d", version))
	case reason != "" && !op.GetFinal():
		return badField("stop_reason", reason, "needs final")
	case op.GetFinal() && op.GetStep() > steps:
		return badField("step", op.GetStep(), fmt.Sprintf("of a final checkpoint is past the job's steps %d", steps))
	case op.GetFinal() && op.GetStep() < steps && reason == "":
		return badField("stop_reason", "", fmt.Sprintf("is required for a final checkpoint before the job's steps %d", steps))
	case op.GetFinal() && op.GetStep() == steps && reason != "":
		return badField("stop_reason", reason, "must be empty at the job's last step")
	case op.GetFinal() && newest != nil && op.GetStep() < newest.GetStep():
		return failure(pb.ErrorCode_ERROR_CODE_CONFLICT, "final checkpoint of step %d is older than the committed one of step %d", op.GetStep(), newest.GetStep())
	case newest.GetFinal() && op.GetStep() > newest.GetStep():
		return failure(pb.ErrorCode_ERROR_CODE_CONFLICT, "the job ended with the final checkpoint of step %d", newest.GetStep())
	}
	if reason != "" {
		return checkName("stop_reason", reason, maxIDLen)
	}
	return nil
}

// checkFinalMarks checks the final marks of a restored state: none before version
// 3, on the newest checkpoint only, a stop reason exactly on a final checkpoint
// before the job's last step.
func checkFinalMarks(st *pb.CoordinatorState) error {
	cks := st.GetCheckpoints()
	for i, c := range cks {
		switch {
		case st.GetVersion() < 3 && (c.GetFinal() || c.GetStopReason() != ""):
			return fmt.Errorf("checkpoint of step %d has a final mark in a version %d state", c.GetStep(), st.GetVersion())
		case c.GetFinal() && i != len(cks)-1:
			return fmt.Errorf("final checkpoint of step %d is not the newest", c.GetStep())
		case c.GetStopReason() != "" && !c.GetFinal():
			return fmt.Errorf("checkpoint of step %d has a stop reason but is not final", c.GetStep())
		}
	}
	return nil
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
	if r := s.GetStopReason(); r != "" {
		return fmt.Sprintf("job finished at step %d (stopped early: %s)", s.GetStep(), r)
	}
	return fmt.Sprintf("job finished at step %d", s.GetStep())
}

// upgradeState brings a restored state to StateVersion: a version 1 state gets the
// job status derived from its progress and checkpoints; a version 2 state needs
// nothing (it has no final marks). st is modified.
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
		c := s.GetFinalCheckpoint()
		switch {
		case c == nil:
			return fmt.Errorf("job FINISHED without a final checkpoint")
		case s.GetStep() != c.GetStep():
			return fmt.Errorf("job FINISHED at step %d with the final checkpoint of step %d", s.GetStep(), c.GetStep())
		case s.GetStep() < st.GetJob().GetSteps() && (!c.GetFinal() || s.GetStopReason() == ""):
			return fmt.Errorf("job FINISHED at step %d before its steps %d without a final checkpoint and a stop reason", s.GetStep(), st.GetJob().GetSteps())
		case s.GetStopReason() != c.GetStopReason():
			return fmt.Errorf("job FINISHED with stop reason %q, its final checkpoint %q", s.GetStopReason(), c.GetStopReason())
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
