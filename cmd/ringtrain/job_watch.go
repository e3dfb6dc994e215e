package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/ringtrain/ringtrain/coordinator"
	"github.com/ringtrain/ringtrain/progress"
	pb "github.com/ringtrain/ringtrain/proto/ringtrain/v1"
	"github.com/ringtrain/ringtrain/trainer"
)

// Following a job from the command line: `submit --wait/--follow` and `status
// --watch` poll the coordinator's Status every interval and act on what changed,
// until the job ends (FINISHED or FAILED in the replicated state) or the command
// is interrupted. A poll that fails (an election, an unreachable replica) is
// reported and the next one tried: waiting survives a coordinator fail-over.

// errInterrupted ends a command that was waiting on the cluster when its context
// was cancelled (SIGINT, SIGTERM): exit status 130. The job itself goes on.
var errInterrupted = errors.New("interrupted; the job goes on in the cluster ('ringtrain status' shows it)")

func errWaitInterrupted() error { return interruptedError(errInterrupted) }

// poller reads the cluster's status for the watching commands.
type poller struct {
	cl       *coordinator.Client
	interval time.Duration
	timeout  time.Duration // per Status call
	stale    bool
	warn     io.Writer // where failed polls are reported: a noteWriter at warn level
}

// run calls fn with each status read, every interval, until fn reports done (run
// returns fn's error) or ctx ends (run returns the interrupted error).
func (p poller) run(ctx context.Context, fn func(*pb.StatusResponse) (done bool, err error)) error {
	for {
		cctx, cancel := context.WithTimeout(ctx, p.timeout)
		st, err := p.cl.Status(cctx, p.stale)
		cancel()
		switch {
		case ctx.Err() != nil:
			return errWaitInterrupted()
		case err != nil:
			fmt.Fprintf(p.warn, "%v (retrying)\n", err)
		default:
			if done, err := fn(st); done || err != nil {
				return err
			}
		}
		t := time.NewTimer(p.interval)
		select {
		case <-ctx.Done():
			t.Stop()
			return errWaitInterrupted()
		case <-t.C:
		}
	}
}

// jobEnded reports whether the job in st has ended (FINISHED or FAILED).
func jobEnded(st *pb.CoordinatorState) bool {
	switch coordinator.JobStatusOf(st).GetState() {
	case pb.JobState_JOB_STATE_FINISHED, pb.JobState_JOB_STATE_FAILED:
		return true
	}
	return false
}

// jobOutcome is the result of an ended job: nil when it finished, an error with
// the reason when it failed.
func jobOutcome(st *pb.CoordinatorState) error {
	s := coordinator.JobStatusOf(st)
	if s.GetState() == pb.JobState_JOB_STATE_FAILED {
		return fmt.Errorf("job failed at step %d (reported by worker %s): %s", s.GetStep(), s.GetWorkerId(), s.GetReason())
	}
	return nil
}

// finishedLine is the line that says a job finished, why when it stopped early,
// and where its weights are.
func finishedLine(st *pb.CoordinatorState) string {
	s := coordinator.JobStatusOf(st)
	c := s.GetFinalCheckpoint()
	return fmt.Sprintf("finished at step %d%s: checkpoint %s (sha256 %s)", s.GetStep(), stoppedEarly(s, st.GetJob()), c.GetLocation(), c.GetSha256())
}

// stoppedEarly is " of N (stopped early: <rule>)" for a job that finished before
// its steps, and "" for one that ran them all.
func stoppedEarly(s *pb.JobStatus, job *pb.JobSpec) string {
	if s.GetStopReason() == "" {
		return ""
	}
	return fmt.Sprintf(" of %d (stopped early: %s)", job.GetSteps(), stopReasonText(s.GetStopReason()))
}

// stopReasonText says a stop reason (trainer.StopReason) in words.
func stopReasonText(r string) string {
	switch trainer.StopReason(r) {
	case trainer.StopTarget:
		return "target_val_loss reached"
	case trainer.StopPatience:
		return "patience exhausted"
	case trainer.StopMaxTime:
		return "max_time reached"
	}
	return r
}

// followLine is --follow's line for the state: the committed step and loss, then
// the ring's size and generation while the plan is active, or the plan's state
// and reason, or that the next plan is forming (the plan does not yet reflect a
// change: a submission, a worker that came or went).
func followLine(st *pb.CoordinatorState) string {
	p, pr := st.GetPlan(), st.GetProgress()
	loss := "-"
	if pr != nil {
		loss = fmt.Sprintf("%.4f", pr.GetLoss())
	}
	line := fmt.Sprintf("step %d/%d  loss %s  ", pr.GetStep(), st.GetJob().GetSteps(), loss)
	switch {
	case p == nil || p.GetMembershipEpoch() != st.GetMembershipEpoch():
		return line + "forming the next plan"
	case p.GetState() == pb.PlanState_PLAN_STATE_ACTIVE:
		return line + fmt.Sprintf("workers %d  generation %d", len(p.GetMembers()), p.GetGeneration())
	}
	return line + fmt.Sprintf("%s: %s (generation %d)", coordinator.PlanStateName(p.GetState()), orNone(p.GetReason()), p.GetGeneration())
}

// waitJob follows the job submitted as job until it ends. With follow it prints a
// progress line at every change of step or plan it sees, and the last one. It
// returns nil when the job
// finished (after printing where its checkpoint is), the failure when it failed,
// an error when another job replaced it, and the interrupted error on ctx's end.
func waitJob(ctx context.Context, p poller, job *pb.JobSpec, out io.Writer, follow bool) error {
	last := ""
	return p.run(ctx, func(resp *pb.StatusResponse) (bool, error) {
		st := resp.GetState()
		if !proto.Equal(st.GetJob(), job) {
			return true, fmt.Errorf("the job was replaced by another one while waiting")
		}
		if follow {
			if line := followLine(st); line != last {
				fmt.Fprintln(out, line)
				last = line
			}
		}
		if !jobEnded(st) {
			return false, nil
		}
		if err := jobOutcome(st); err != nil {
			return true, fmt.Errorf("%w (submit it with --replace to run it again)", err)
		}
		fmt.Fprintln(out, finishedLine(st))
		return true, nil
	})
}

// jobStateLine is the job's state for the status table: "running", "finished"
// with the final checkpoint, or "failed" with the reason.
func jobStateLine(st *pb.CoordinatorState) string {
	s := coordinator.JobStatusOf(st)
	switch s.GetState() {
	case pb.JobState_JOB_STATE_FINISHED:
		c := s.GetFinalCheckpoint()
		return fmt.Sprintf("finished\tstep %d%s\tcheckpoint %s\tsha256 %s", s.GetStep(), stoppedEarly(s, st.GetJob()), c.GetLocation(), c.GetSha256())
	case pb.JobState_JOB_STATE_FAILED:
		return fmt.Sprintf("failed\tstep %d\treported by %s\t%s", s.GetStep(), s.GetWorkerId(), s.GetReason())
	}
	return fmt.Sprintf("%s\tstep %d of %d", coordinator.JobStateName(s.GetState()), st.GetProgress().GetStep(), st.GetJob().GetSteps())
}

// clearScreen moves a terminal's cursor home and clears the screen.
const clearScreen = "\x1b[H\x1b[2J"

// watchStatus shows the status rendered by render every time it changes, until the
// job ends (nil) or ctx ends (the interrupted error). On a terminal each view
// replaces the last; otherwise views follow one another, a blank line apart (one
// JSON object each with --json).
func watchStatus(ctx context.Context, p poller, out io.Writer, render func(context.Context, io.Writer, *pb.StatusResponse) error) error {
	tty := progress.IsTerminal(out)
	var last []byte
	return p.run(ctx, func(st *pb.StatusResponse) (bool, error) {
		var b bytes.Buffer
		if err := render(ctx, &b, st); err != nil {
			return true, err
		}
		if !bytes.Equal(b.Bytes(), last) {
			switch {
			case tty:
				io.WriteString(out, clearScreen)
			case last != nil:
				io.WriteString(out, "\n")
			}
			out.Write(b.Bytes())
			last = b.Bytes()
		}
		return jobEnded(st.GetState()), nil
	})
}
