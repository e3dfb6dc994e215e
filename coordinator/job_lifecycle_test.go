package coordinator

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"google.golang.org/protobuf/proto"

	pb "github.com/ringtrain/ringtrain/proto/ringtrain/v1"
)

func opFail(id string, gen uint64, step int64, reason string) *pb.Command {
	return &pb.Command{Op: &pb.Command_FailJob{FailJob: &pb.FailJobOp{WorkerId: id, Generation: gen, Step: step, Reason: reason}}}
}

// opFinal is a final checkpoint commit: the one a job ends with, after its last
// step (no reason) or after the step at which the rule reason stopped it.
func opFinal(id string, gen uint64, step int64, sha, reason string) *pb.Command {
	c := opCheckpoint(id, gen, step, sha)
	op := c.GetCommitCheckpoint()
	op.Final, op.StopReason = true, reason
	return c
}

const (
	running  = pb.JobState_JOB_STATE_RUNNING
	finished = pb.JobState_JOB_STATE_FINISHED
	failed   = pb.JobState_JOB_STATE_FAILED
)

// TestJobLifecycle: each transition of the job's lifecycle, from a job of 100 steps
// run by w0 and w1 in generation 1. After the command, a replan when the
// membership epoch moved (as the leader proposes it) shows which plan the state
// leads to.
func TestJobLifecycle(t *testing.T) {
	base := []*pb.Command{opSubmit(testJob(), false), opRegister("w0", "h0:1"), opRegister("w1", "h1:1"), opReplan()}
	end := []*pb.Command{opProgress("w0", 1, 100, 1.25), opCheckpoint("w0", 1, 100, digestA)}
	fail := opFail("w1", 1, 42, "worker w1: replicas diverged")
	early := []*pb.Command{opProgress("w0", 1, 30, 1.5), opFinal("w0", 1, 30, digestA, "target_val_loss")}
	other := testJob()
	other.Steps = 200
	cases := []struct {
		name  string
		setup []*pb.Command // after base
		cmd   *pb.Command
		code  pb.ErrorCode
		state pb.JobState
		plan  pb.PlanState // after a replan
		check func(t *testing.T, st *pb.CoordinatorState)
	}{
		{name: "submitted job runs", cmd: opReplan(), state: running, plan: pb.PlanState_PLAN_STATE_ACTIVE},
		{name: "last step without its checkpoint runs", cmd: opProgress("w0", 1, 100, 1.25), state: running, plan: pb.PlanState_PLAN_STATE_ACTIVE},
		{name: "last checkpoint without the last step runs", cmd: opCheckpoint("w0", 1, 100, digestA), state: running, plan: pb.PlanState_PLAN_STATE_ACTIVE},
		{name: "interval checkpoint runs", setup: []*pb.Command{opProgress("w0", 1, 50, 2)}, cmd: opCheckpoint("w0", 1, 50, digestA),
			state: running, plan: pb.PlanState_PLAN_STATE_ACTIVE},
		{name: "progress then checkpoint finishes", setup: end[:1], cmd: end[1], state: finished,
			// FINISHED starts no generation: the members are at their final barrier.
			plan: pb.PlanState_PLAN_STATE_ACTIVE,
			check: func(t *testing.T, st *pb.CoordinatorState) {
				s := st.GetJobStatus()
				c := s.GetFinalCheckpoint()
				if s.GetStep() != 100 || s.GetGeneration() != 1 || c.GetStep() != 100 || c.GetSha256() != digestA || c.GetLocation() != "ckpt/step-100" {
					t.Errorf("status %v, want step 100 of generation 1 with the checkpoint of step 100", s)
				}
			}},
		{name: "checkpoint then progress finishes", setup: end[1:], cmd: end[0], state: finished, plan: pb.PlanState_PLAN_STATE_ACTIVE},
		{name: "final checkpoint again after the end", setup: end, cmd: opCheckpoint("w0", 1, 100, digestA), state: finished, plan: pb.PlanState_PLAN_STATE_ACTIVE},
		{name: "members leave a finished job", setup: append(end[:2:2], opRemove("w0", 0, true)), cmd: opRemove("w1", 0, true),
			state: finished, plan: pb.PlanState_PLAN_STATE_ENDED,
			check: func(t *testing.T, st *pb.CoordinatorState) {
				if r := st.GetPlan().GetReason(); r != "job finished at step 100" {
					t.Errorf("plan reason %q", r)
				}
			}},
		{name: "a worker registering after the end stands by", setup: append(end[:2:2], opRemove("w0", 0, true)), cmd: opRegister("w2", "h2:1"),
			state: finished, plan: pb.PlanState_PLAN_STATE_ENDED,
			check: func(t *testing.T, st *pb.CoordinatorState) {
				if p := st.GetPlan(); len(p.GetMembers()) != 0 || strings.Join(p.GetStandby(), ",") != "w1,w2" {
					t.Errorf("plan %v, want no members and w1, w2 on standby", p)
				}
			}},
		{name: "failure ends the job", cmd: fail, state: failed, plan: pb.PlanState_PLAN_STATE_ENDED,
			check: func(t *testing.T, st *pb.CoordinatorState) {
				s := st.GetJobStatus()
				if s.GetReason() != "worker w1: replicas diverged" || s.GetWorkerId() != "w1" || s.GetStep() != 42 || s.GetGeneration() != 1 {
					t.Errorf("status %v", s)
				}
				p := st.GetPlan()
				if p.GetGeneration() != 2 || p.GetReason() != "job failed: worker w1: replicas diverged" || len(p.GetMembers()) != 0 {
					t.Errorf("plan %v, want generation 2, ENDED with the reason, no members", p)
				}
			}},
		{name: "a second failure keeps the first reason", setup: []*pb.Command{fail}, cmd: opFail("w0", 1, 43, "another"), state: failed,
			plan: pb.PlanState_PLAN_STATE_ENDED,
			check: func(t *testing.T, st *pb.CoordinatorState) {
				if st.GetJobStatus().GetWorkerId() != "w1" {
					t.Errorf("status %v, want w1's report kept", st.GetJobStatus())
				}
			}},
		{name: "reports after the failure are refused", setup: []*pb.Command{fail, opReplan()}, cmd: opProgress("w0", 2, 43, 1),
			code: pb.ErrorCode_ERROR_CODE_NOT_MEMBER, state: failed, plan: pb.PlanState_PLAN_STATE_ENDED},
		{name: "late final commit after a failure", setup: []*pb.Command{fail, end[0]}, cmd: end[1], state: failed, plan: pb.PlanState_PLAN_STATE_ENDED},
		{name: "a finished job cannot fail", setup: end, cmd: fail, code: pb.ErrorCode_ERROR_CODE_CONFLICT, state: finished, plan: pb.PlanState_PLAN_STATE_ACTIVE},
		{name: "failure from an unknown worker", cmd: opFail("w9", 1, 1, "x"), code: pb.ErrorCode_ERROR_CODE_UNKNOWN_WORKER, state: running, plan: pb.PlanState_PLAN_STATE_ACTIVE},
		{name: "failure without a reason", cmd: opFail("w0", 1, 1, ""), code: pb.ErrorCode_ERROR_CODE_BAD_COMMAND, state: running, plan: pb.PlanState_PLAN_STATE_ACTIVE},
		{name: "failure with a long reason is kept truncated", cmd: opFail("w0", 1, 1, strings.Repeat("é", 5000)), state: failed, plan: pb.PlanState_PLAN_STATE_ENDED,
			check: func(t *testing.T, st *pb.CoordinatorState) {
				r := st.GetJobStatus().GetReason()
				if len(r) > MaxReasonLen || !utf8.ValidString(r) || !strings.HasPrefix(r, "éé") || !strings.HasSuffix(r, "…") {
					t.Errorf("reason of %d bytes (valid UTF-8 %v) %.20q…, want at most %d bytes, cut at a rune and marked", len(r), utf8.ValidString(r), r, MaxReasonLen)
				}
			}},
		{name: "failure at a negative step", cmd: opFail("w0", 1, -1, "x"), code: pb.ErrorCode_ERROR_CODE_BAD_COMMAND, state: running, plan: pb.PlanState_PLAN_STATE_ACTIVE},
		{name: "the same job again leaves a failed job failed", setup: []*pb.Command{fail}, cmd: opSubmit(testJob(), false), state: failed, plan: pb.PlanState_PLAN_STATE_ENDED},
		{name: "the same job replaced resumes a failed job", setup: []*pb.Command{opProgress("w0", 1, 50, 2), opCheckpoint("w0", 1, 50, digestA), fail, opReplan()},
			cmd: opSubmit(testJob(), true), state: running, plan: pb.PlanState_PLAN_STATE_ACTIVE,
			check: func(t *testing.T, st *pb.CoordinatorState) {
				if st.GetProgress().GetStep() != 50 || len(st.GetCheckpoints()) != 1 {
					t.Errorf("progress %v checkpoints %v, want both kept", st.GetProgress(), st.GetCheckpoints())
				}
				if p := st.GetPlan(); strings.Join(p.GetMembers(), ",") != "w0,w1" || p.GetStartStep() != 50 {
					t.Errorf("plan %v, want w0, w1 from step 50", p)
				}
			}},
		{name: "a failed job resumed at its end is finished", setup: []*pb.Command{fail, end[0], end[1]}, cmd: opSubmit(testJob(), true),
			state: finished, plan: pb.PlanState_PLAN_STATE_ENDED},
		{name: "the same job replaced leaves a finished job finished", setup: end, cmd: opSubmit(testJob(), true), state: finished, plan: pb.PlanState_PLAN_STATE_ACTIVE},
		{name: "another job needs replace", setup: end, cmd: opSubmit(other, false), code: pb.ErrorCode_ERROR_CODE_CONFLICT, state: finished, plan: pb.PlanState_PLAN_STATE_ACTIVE},
		{name: "another job replaces a finished one from scratch", setup: end, cmd: opSubmit(other, true), state: running, plan: pb.PlanState_PLAN_STATE_ACTIVE,
			check: func(t *testing.T, st *pb.CoordinatorState) {
				if st.GetProgress() != nil || len(st.GetCheckpoints()) != 0 || st.GetJob().GetSteps() != 200 {
					t.Errorf("progress %v checkpoints %v job %v, want the new job from scratch", st.GetProgress(), st.GetCheckpoints(), st.GetJob())
				}
			}},
		{name: "another job replaces a failed one", setup: []*pb.Command{fail}, cmd: opSubmit(other, true), state: running, plan: pb.PlanState_PLAN_STATE_ACTIVE},

		// A job that stops early ends with a final checkpoint before its steps.
		{name: "early stop: progress then final checkpoint finishes", setup: early[:1], cmd: early[1], state: finished, plan: pb.PlanState_PLAN_STATE_ACTIVE,
			check: func(t *testing.T, st *pb.CoordinatorState) {
				s := st.GetJobStatus()
				c := s.GetFinalCheckpoint()
				if s.GetStep() != 30 || s.GetStopReason() != "target_val_loss" || s.GetGeneration() != 1 ||
					c.GetStep() != 30 || c.GetSha256() != digestA || !c.GetFinal() || c.GetStopReason() != "target_val_loss" {
					t.Errorf("status %v, want FINISHED at step 30 (target_val_loss) with the final checkpoint of step 30", s)
				}
			}},
		{name: "early stop: final checkpoint then progress finishes", setup: early[1:], cmd: early[0], state: finished, plan: pb.PlanState_PLAN_STATE_ACTIVE},
		{name: "early stop: final checkpoint ahead of the progress runs", setup: []*pb.Command{opProgress("w0", 1, 20, 2)}, cmd: early[1],
			state: running, plan: pb.PlanState_PLAN_STATE_ACTIVE},
		{name: "early stop at an interval checkpoint marks it final", setup: []*pb.Command{early[0], opCheckpoint("w0", 1, 30, digestA)},
			cmd: early[1], state: finished, plan: pb.PlanState_PLAN_STATE_ACTIVE,
			check: func(t *testing.T, st *pb.CoordinatorState) {
				if cks := st.GetCheckpoints(); len(cks) != 1 || !cks[0].GetFinal() || cks[0].GetStopReason() != "target_val_loss" {
					t.Errorf("checkpoints %v, want the one of step 30 marked final", cks)
				}
			}},
		{name: "early stop: a late interval commit keeps the final mark", setup: early, cmd: opCheckpoint("w0", 1, 30, digestA),
			state: finished, plan: pb.PlanState_PLAN_STATE_ACTIVE,
			check: func(t *testing.T, st *pb.CoordinatorState) {
				if c := st.GetCheckpoints()[0]; !c.GetFinal() || c.GetStopReason() != "target_val_loss" {
					t.Errorf("checkpoint %v, want it still final", c)
				}
			}},
		{name: "early stop: members leave with the reason in the plan", setup: append(early[:2:2], opRemove("w0", 0, true)), cmd: opRemove("w1", 0, true),
			state: finished, plan: pb.PlanState_PLAN_STATE_ENDED,
			check: func(t *testing.T, st *pb.CoordinatorState) {
				if r := st.GetPlan().GetReason(); r != "job finished at step 30 (stopped early: target_val_loss)" {
					t.Errorf("plan reason %q", r)
				}
			}},
		{name: "final checkpoint at the last step", setup: end[:1], cmd: opFinal("w0", 1, 100, digestA, ""), state: finished, plan: pb.PlanState_PLAN_STATE_ACTIVE,
			check: func(t *testing.T, st *pb.CoordinatorState) {
				if s := st.GetJobStatus(); s.GetStep() != 100 || s.GetStopReason() != "" {
					t.Errorf("status %v, want step 100 without a stop reason", s)
				}
			}},
		{name: "final checkpoint before the end needs a stop reason", setup: early[:1], cmd: opFinal("w0", 1, 30, digestA, ""),
			code: pb.ErrorCode_ERROR_CODE_BAD_COMMAND, state: running, plan: pb.PlanState_PLAN_STATE_ACTIVE},
		{name: "a stop reason at the last step is refused", setup: end[:1], cmd: opFinal("w0", 1, 100, digestA, "patience"),
			code: pb.ErrorCode_ERROR_CODE_BAD_COMMAND, state: running, plan: pb.PlanState_PLAN_STATE_ACTIVE},
		{name: "a stop reason needs the final mark", setup: early[:1],
			cmd: func() *pb.Command {
				c := opCheckpoint("w0", 1, 30, digestA)
				c.GetCommitCheckpoint().StopReason = "patience"
				return c
			}(),
			code: pb.ErrorCode_ERROR_CODE_BAD_COMMAND, state: running, plan: pb.PlanState_PLAN_STATE_ACTIVE},
		{name: "a stop reason with control characters is refused", setup: early[:1], cmd: opFinal("w0", 1, 30, digestA, "bad\nreason"),
			code: pb.ErrorCode_ERROR_CODE_BAD_COMMAND, state: running, plan: pb.PlanState_PLAN_STATE_ACTIVE},
		{name: "a final checkpoint past the job's steps is refused", setup: []*pb.Command{opProgress("w0", 1, 120, 1)}, cmd: opFinal("w0", 1, 120, digestA, ""),
			code: pb.ErrorCode_ERROR_CODE_BAD_COMMAND, state: running, plan: pb.PlanState_PLAN_STATE_ACTIVE},
		{name: "a final checkpoint older than the newest is refused", setup: []*pb.Command{opProgress("w0", 1, 40, 1), opCheckpoint("w0", 1, 40, digestB)},
			cmd: early[1], code: pb.ErrorCode_ERROR_CODE_CONFLICT, state: running, plan: pb.PlanState_PLAN_STATE_ACTIVE},
		{name: "nothing is committed past a final checkpoint", setup: early, cmd: opCheckpoint("w0", 1, 40, digestB),
			code: pb.ErrorCode_ERROR_CODE_CONFLICT, state: finished, plan: pb.PlanState_PLAN_STATE_ACTIVE},
		{name: "a final commit with another digest is refused", setup: early, cmd: opFinal("w0", 1, 30, digestB, "target_val_loss"),
			code: pb.ErrorCode_ERROR_CODE_CONFLICT, state: finished, plan: pb.PlanState_PLAN_STATE_ACTIVE},
		{name: "an early-stopped job cannot fail", setup: early, cmd: fail, code: pb.ErrorCode_ERROR_CODE_CONFLICT, state: finished, plan: pb.PlanState_PLAN_STATE_ACTIVE},
		{name: "a failed job resumed after its early end is finished", setup: []*pb.Command{fail, early[0], early[1]}, cmd: opSubmit(testJob(), true),
			state: finished, plan: pb.PlanState_PLAN_STATE_ENDED,
			check: func(t *testing.T, st *pb.CoordinatorState) {
				if s := st.GetJobStatus(); s.GetStep() != 30 || s.GetStopReason() != "target_val_loss" {
					t.Errorf("status %v, want FINISHED at step 30 (target_val_loss)", s)
				}
			}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			m := machineAt(t, append(base[:len(base):len(base)], tc.setup...)...)
			epoch := m.State().GetMembershipEpoch()
			index := uint64(len(base) + len(tc.setup) + 1)
			r := m.Apply(index, enc(t, tc.cmd))
			if r.GetCode() != tc.code {
				t.Fatalf("code %v %q, want %v", r.GetCode(), r.GetMessage(), tc.code)
			}
			if _, ok := tc.cmd.GetOp().(*pb.Command_FailJob); ok && tc.code == pb.ErrorCode_ERROR_CODE_OK {
				if r.GetJobStatus().GetState() != failed {
					t.Errorf("FailJob result %v, want the FAILED status", r.GetJobStatus())
				}
				if tc.setup == nil && m.State().GetMembershipEpoch() == epoch {
					t.Errorf("FailJob left the membership epoch at %d: no new plan would stop the members", epoch)
				}
			}
			if st := m.view(); st.GetPlan().GetMembershipEpoch() != st.GetMembershipEpoch() {
				m.Apply(index+1, enc(t, opReplan()))
			}
			st := m.State()
			if got := st.GetJobStatus().GetState(); got != tc.state {
				t.Fatalf("job state %v, want %v (status %v)", got, tc.state, st.GetJobStatus())
			}
			if got := st.GetPlan().GetState(); got != tc.plan {
				t.Errorf("plan %v, want %v", st.GetPlan(), tc.plan)
			}
			if err := checkState(st); err != nil {
				t.Errorf("state invalid: %v", err)
			}
			if tc.check != nil {
				tc.check(t, st)
			}
		})
	}
}

func TestFailJobWithoutJob(t *testing.T) {
	m := machineAt(t, opRegister("w0", "h0:1"))
	if r := m.Apply(2, enc(t, opFail("w0", 0, 0, "x"))); r.GetCode() != pb.ErrorCode_ERROR_CODE_NO_JOB {
		t.Fatalf("FailJob without a job: %v %q, want NO_JOB", r.GetCode(), r.GetMessage())
	}
	if s := m.State().GetJobStatus(); s != nil {
		t.Fatalf("job status %v without a job", s)
	}
}

// TestOlderVersions: a log of version 1 commands is applied by the same rules, and
// a version 1 snapshot (no job_status) is restored with the status derived from its
// progress and checkpoints.
func TestOlderVersions(t *testing.T) {
	v1 := func(c *pb.Command) []byte {
		c.Version = 1
		b, err := proto.Marshal(c)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	m := NewMachine(nil)
	for i, c := range []*pb.Command{opSubmit(testJob(), false), opRegister("w0", "h0:1"), opReplan(),
		opProgress("w0", 1, 100, 1), opCheckpoint("w0", 1, 100, digestA)} {
		if r := m.Apply(uint64(i+1), v1(c)); r.GetCode() != pb.ErrorCode_ERROR_CODE_OK {
			t.Fatalf("version 1 command %d: %v", i, ResultError(r))
		}
	}
	if s := m.State().GetJobStatus(); s.GetState() != finished || s.GetFinalCheckpoint().GetSha256() != digestA {
		t.Fatalf("after a version 1 log: status %v, want FINISHED with the final checkpoint", s)
	}

	// A command of version 2 cannot carry the final mark, which it did not have.
	m = machineAt(t, opSubmit(testJob(), false), opRegister("w0", "h0:1"), opReplan(), opProgress("w0", 1, 30, 1))
	c := opFinal("w0", 1, 30, digestA, "patience")
	c.Version = 2
	b, err := proto.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	if r := m.Apply(5, b); r.GetCode() != pb.ErrorCode_ERROR_CODE_BAD_COMMAND || !strings.Contains(r.GetMessage(), "version 3") {
		t.Fatalf("a final mark in a version 2 command: %v %q, want BAD_COMMAND naming version 3", r.GetCode(), r.GetMessage())
	}
	if len(m.State().GetCheckpoints()) != 0 {
		t.Fatalf("the refused command committed %v", m.State().GetCheckpoints())
	}

	old := func(progress, ckpt int64, job bool) *pb.CoordinatorState {
		st := &pb.CoordinatorState{Version: 1, Progress: &pb.Progress{Step: progress, Generation: 3},
			Checkpoints: []*pb.Checkpoint{{Step: ckpt, Location: "c", Sha256: digestB}}}
		if job {
			st.Job = testJob()
		}
		return st
	}
	for _, tc := range []struct {
		name string
		st   *pb.CoordinatorState
		want pb.JobState
	}{
		{"no job", old(100, 100, false), pb.JobState_JOB_STATE_UNSPECIFIED},
		{"running", old(60, 60, true), running},
		{"last step without its checkpoint", old(100, 90, true), running},
		{"finished", old(100, 100, true), finished},
		{"version 2 finished", func() *pb.CoordinatorState {
			st := old(100, 100, true)
			st.Version = 2
			st.JobStatus = &pb.JobStatus{State: finished, FinalCheckpoint: proto.CloneOf(st.Checkpoints[0]), Step: 100, Generation: 3}
			return st
		}(), finished},
		{"version 2 running", func() *pb.CoordinatorState {
			st := old(60, 60, true)
			st.Version = 2
			st.JobStatus = &pb.JobStatus{State: running}
			return st
		}(), running},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, err := proto.Marshal(tc.st)
			if err != nil {
				t.Fatal(err)
			}
			f := newRaftFSM(nil)
			if err := f.Restore(readCloser(b)); err != nil {
				t.Fatalf("restore: %v", err)
			}
			st := f.state()
			if st.GetVersion() != StateVersion {
				t.Errorf("restored version %d, want %d", st.GetVersion(), StateVersion)
			}
			if got := st.GetJobStatus().GetState(); got != tc.want {
				t.Fatalf("restored job state %v, want %v", got, tc.want)
			}
			if got := JobStatusOf(tc.st).GetState(); got != tc.want {
				t.Errorf("JobStatusOf the old state: %v, want %v", got, tc.want)
			}
			if tc.want == finished && (st.GetJobStatus().GetFinalCheckpoint().GetSha256() != digestB || st.GetJobStatus().GetGeneration() != 3) {
				t.Errorf("derived status %v", st.GetJobStatus())
			}
			if err := checkState(st); err != nil {
				t.Errorf("restored state invalid: %v", err)
			}
		})
	}
}

func TestRestoreRejectsBadJobStatus(t *testing.T) {
	job := testJob()
	early := &pb.Checkpoint{Step: 30, Sha256: digestA, Final: true, StopReason: "patience"}
	for name, st := range map[string]*pb.CoordinatorState{
		"job without status":        {Version: StateVersion, Job: job},
		"status without job":        {Version: StateVersion, JobStatus: &pb.JobStatus{State: running}},
		"unknown state":             {Version: StateVersion, Job: job, JobStatus: &pb.JobStatus{State: 9}},
		"unspecified state":         {Version: StateVersion, Job: job, JobStatus: &pb.JobStatus{}},
		"finished without ckpt":     {Version: StateVersion, Job: job, JobStatus: &pb.JobStatus{State: finished}},
		"failed without reason":     {Version: StateVersion, Job: job, JobStatus: &pb.JobStatus{State: failed}},
		"a version from the future": {Version: StateVersion + 1, Job: job, JobStatus: &pb.JobStatus{State: running}},
		"finished early without a final mark": {Version: StateVersion, Job: job, Checkpoints: []*pb.Checkpoint{early},
			JobStatus: &pb.JobStatus{State: finished, Step: 30, StopReason: "patience", FinalCheckpoint: &pb.Checkpoint{Step: 30, Sha256: digestA}}},
		"finished early without a reason": {Version: StateVersion, Job: job, Checkpoints: []*pb.Checkpoint{early},
			JobStatus: &pb.JobStatus{State: finished, Step: 30, FinalCheckpoint: &pb.Checkpoint{Step: 30, Sha256: digestA, Final: true}}},
		"finished at another step than its checkpoint": {Version: StateVersion, Job: job, Checkpoints: []*pb.Checkpoint{early},
			JobStatus: &pb.JobStatus{State: finished, Step: 100, FinalCheckpoint: proto.CloneOf(early)}},
		"a final mark in a version 2 state": {Version: 2, Job: job, Checkpoints: []*pb.Checkpoint{early}, JobStatus: &pb.JobStatus{State: running}},
		"a final checkpoint that is not the newest": {Version: StateVersion, Job: job, JobStatus: &pb.JobStatus{State: running},
			Checkpoints: []*pb.Checkpoint{early, {Step: 40, Sha256: digestB}}},
		"a stop reason without the final mark": {Version: StateVersion, Job: job, JobStatus: &pb.JobStatus{State: running},
			Checkpoints: []*pb.Checkpoint{{Step: 30, Sha256: digestA, StopReason: "patience"}}},
	} {
		b, err := proto.Marshal(st)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := DecodeState(b); err == nil {
			t.Errorf("%s: decoded", name)
		}
		if err := newRaftFSM(nil).Restore(readCloser(b)); err == nil {
			t.Errorf("%s: restored", name)
		}
	}
}

// lifecycleCommand is a random command of randomCommands' kinds, or, as often, one
// that moves the job's lifecycle on state st: a member of the current plan reporting
// the last step, committing its checkpoint or reporting a failure, or the job
// submitted again with replace.
func lifecycleCommand(rng *rand.Rand, st *pb.CoordinatorState) *pb.Command {
	w := fmt.Sprintf("w%d", rng.IntN(6))
	if ms := st.GetPlan().GetMembers(); len(ms) > 0 && rng.IntN(2) == 0 {
		w = ms[rng.IntN(len(ms))]
	}
	gen := st.GetPlan().GetGeneration()
	switch rng.IntN(13) {
	case 0:
		return opFail(w, gen, int64(rng.IntN(100)), fmt.Sprintf("reason %d", rng.IntN(3)))
	case 1:
		return opProgress(w, gen, 100, 1)
	case 2:
		return opCheckpoint(w, gen, 100, []string{digestA, digestB}[rng.IntN(2)])
	case 3:
		return opSubmit(testJob(), true)
	case 4:
		return opProgress(w, gen, 30+int64(rng.IntN(2))*10, 1)
	case 5:
		return opFinal(w, gen, 30+int64(rng.IntN(2))*10, []string{digestA, digestB}[rng.IntN(2)], "patience")
	case 6:
		return opFinal(w, gen, 100, digestA, "")
	}
	return randomCommands(rng, 1)[0]
}

// TestLifecycleInvariants: over random logs, replicas agree, a snapshot restores
// the same lifecycle, and the state never contradicts itself: a job has a status
// exactly when it exists, a RUNNING job never holds its own end (it would be
// FINISHED), a FINISHED job's final checkpoint is its last step's or one marked
// final with a stop reason, at the status's step, and a plan made while the job is
// not RUNNING is ENDED.
func TestLifecycleInvariants(t *testing.T) {
	var seen [4]int
	early := 0
	for seed := range uint64(40) {
		rng := rand.New(rand.NewPCG(seed, 11))
		a, b := NewMachine(nil), NewMachine(nil)
		for i := range 300 {
			c := lifecycleCommand(rng, a.view())
			data := enc(t, c)
			ra, rb := a.Apply(uint64(i+1), data), b.Apply(uint64(i+1), data)
			if !proto.Equal(ra, rb) {
				t.Fatalf("seed %d command %d: results differ", seed, i)
			}
			st := a.view()
			s := st.GetJobStatus()
			seen[s.GetState()]++
			switch {
			case (st.GetJob() == nil) != (s == nil):
				t.Fatalf("seed %d command %d: job %v with status %v", seed, i, st.GetJob(), s)
			case s.GetState() == running && finalCheckpoint(st) != nil:
				t.Fatalf("seed %d command %d: RUNNING with its last step and checkpoint committed", seed, i)
			case s.GetState() == finished && s.GetFinalCheckpoint().GetStep() != s.GetStep():
				t.Fatalf("seed %d command %d: FINISHED at step %d with checkpoint %v", seed, i, s.GetStep(), s.GetFinalCheckpoint())
			case s.GetState() == finished && s.GetStep() != st.GetJob().GetSteps() && (!s.GetFinalCheckpoint().GetFinal() || s.GetStopReason() == ""):
				t.Fatalf("seed %d command %d: FINISHED early without a final mark and a reason: %v", seed, i, s)
			}
			if err := checkState(st); err != nil {
				t.Fatalf("seed %d command %d: state invalid: %v", seed, i, err)
			}
			if s.GetState() == finished && s.GetStep() < st.GetJob().GetSteps() {
				early++
			}
			// (A replan with a request id may be a duplicate, answered, not applied.)
			if _, ok := c.GetOp().(*pb.Command_Replan); ok && s != nil && c.GetRid() == nil {
				if ended := st.GetPlan().GetState() == pb.PlanState_PLAN_STATE_ENDED; ended != (s.GetState() != running) {
					t.Fatalf("seed %d command %d: plan %v for job state %v", seed, i, st.GetPlan().GetState(), s.GetState())
				}
			}
		}
		snap, err := (&raftFSM{m: a, changes: make(chan struct{})}).Snapshot()
		if err != nil {
			t.Fatal(err)
		}
		f := newRaftFSM(nil)
		if err := f.Restore(readCloser(snap.(fsmSnapshot))); err != nil {
			t.Fatalf("seed %d: restore: %v", seed, err)
		}
		if !proto.Equal(f.state(), b.State()) {
			t.Fatalf("seed %d: restored state differs", seed)
		}
	}
	for s := running; s <= failed; s++ {
		if seen[s] == 0 {
			t.Errorf("no random log reached %v: the generator does not cover it", s)
		}
	}
	if early == 0 {
		t.Errorf("no random log finished early: the generator does not cover it")
	}
	t.Logf("states after each command: running %d, finished %d (%d early), failed %d", seen[running], seen[finished], early, seen[failed])
}

func TestStateNames(t *testing.T) {
	for s, want := range map[pb.JobState]string{0: "none", running: "running", finished: "finished", failed: "failed"} {
		if got := JobStateName(s); got != want {
			t.Errorf("JobStateName(%v) = %q, want %q", s, got, want)
		}
	}
	for s, want := range map[pb.PlanState]string{pb.PlanState_PLAN_STATE_ACTIVE: "active", pb.PlanState_PLAN_STATE_WAITING: "waiting", pb.PlanState_PLAN_STATE_ENDED: "ended"} {
		if got := PlanStateName(s); got != want {
			t.Errorf("PlanStateName(%v) = %q, want %q", s, got, want)
		}
	}
}

// TestClusterJobLifecycle: over gRPC on three replicas, a worker's FailJob ends the
// job as FAILED on every replica, the leader's next plan is ENDED (delivered to plan
// watchers), the replicas' gauges say "failed", a second report keeps the first
// reason, and the same job submitted again with replace runs again.
func TestClusterJobLifecycle(t *testing.T) {
	c := MakeCluster(t, 3)
	cl := c.Client()
	c.Leader()
	submitJob(t, c, cl, 2)
	pw := watchPlans(t, cl)
	startWorker(t, c, cl, "w0")
	startWorker(t, c, cl, "w1")
	plan := c.WaitPlan("a plan with two members", func(p *pb.Plan) bool { return len(p.GetMembers()) == 2 })

	if _, err := cl.FailJob(c.Ctx(10*time.Second), &pb.FailJobRequest{WorkerId: "w9", Reason: "x"}); !errors.Is(err, ErrUnknownWorker) {
		t.Fatalf("FailJob from an unknown worker: %v, want ErrUnknownWorker", err)
	}
	resp, err := cl.FailJob(c.Ctx(10*time.Second), &pb.FailJobRequest{WorkerId: "w1", Generation: plan.GetGeneration(), Step: 7, Reason: "shard 3 is corrupt"})
	if err != nil {
		t.Fatalf("FailJob: %v", err)
	}
	if s := resp.GetStatus(); s.GetState() != failed || s.GetReason() != "shard 3 is corrupt" || s.GetWorkerId() != "w1" {
		t.Fatalf("FailJob answered %v", s)
	}
	ended := c.WaitPlan("an ENDED plan", func(p *pb.Plan) bool { return p.GetState() == pb.PlanState_PLAN_STATE_ENDED })
	if ended.GetReason() != "job failed: shard 3 is corrupt" || len(ended.GetMembers()) != 0 {
		t.Fatalf("plan %v", ended)
	}
	c.WaitFor("the watcher to see the ENDED plan", func() bool { return pw.latest().GetState() == pb.PlanState_PLAN_STATE_ENDED })
	st := c.WaitConverged()
	if s := st.GetJobStatus(); s.GetState() != failed || s.GetStep() != 7 {
		t.Fatalf("replicated status %v", s)
	}
	for i := range 3 {
		if g := c.Node(i).Gauges(); g.JobState != "failed" {
			t.Errorf("replica %d gauges: job state %q, want failed", i, g.JobState)
		}
	}
	if resp, err := cl.FailJob(c.Ctx(10*time.Second), &pb.FailJobRequest{WorkerId: "w0", Reason: "another"}); err != nil || resp.GetStatus().GetReason() != "shard 3 is corrupt" {
		t.Fatalf("second FailJob: %v %v, want the first reason kept", resp, err)
	}
	status, err := cl.Status(c.Ctx(10*time.Second), false)
	if err != nil {
		t.Fatal(err)
	}
	job := status.GetState().GetJob()
	if err := cl.SubmitJob(c.Ctx(10*time.Second), &pb.SubmitJobRequest{Job: job, Replace: true}); err != nil {
		t.Fatalf("submit the failed job again: %v", err)
	}
	again := c.WaitPlan("an active plan again", func(p *pb.Plan) bool {
		return p.GetState() == pb.PlanState_PLAN_STATE_ACTIVE && p.GetGeneration() > ended.GetGeneration()
	})
	if len(again.GetMembers()) != 2 {
		t.Fatalf("plan %v, want both workers back", again)
	}
	if g := c.Node(0).Gauges(); g.JobState != "running" {
		t.Errorf("gauges: job state %q, want running", g.JobState)
	}
}
