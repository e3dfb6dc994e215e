package localcluster

import (
	"context"
	"errors"
	"regexp"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/ringtrain/ringtrain/coordinator"
	"github.com/ringtrain/ringtrain/model"
	pb "github.com/ringtrain/ringtrain/proto/ringtrain/v1"
	"github.com/ringtrain/ringtrain/trainer"
	"github.com/ringtrain/ringtrain/worker"
)

// stepWatch is a progress writer that calls fn once with the step of the first
// progress line ("step N/...") at or past at.
type stepWatch struct {
	mu   sync.Mutex
	at   int64
	fn   func(step int64)
	done bool
}

var progressStep = regexp.MustCompile(`(?m)^step\s+(\d+)/`)

func (s *stepWatch) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, m := range progressStep.FindAllSubmatch(p, -1) {
		n, _ := strconv.ParseInt(string(m[1]), 10, 64)
		if n >= s.at && !s.done {
			s.done = true
			s.fn(n)
		}
	}
	return len(p), nil
}

// TestInterruptCheckpoints: a run whose context ends mid-job (an interrupt) stops
// with the context's error and, beside it, rank 0's result: a checkpoint of the
// step it had reached, written on the way out although no interval checkpoint was
// due; a rerun of the same run directory resumes from that checkpoint.
func TestInterruptCheckpoints(t *testing.T) {
	dir := t.TempDir()
	spec := tinyJob(t, dir, 1_000_000)
	spec.LogInterval = 1

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	reached := int64(-1)
	watch := &stepWatch{at: 4, fn: func(step int64) { reached = step; cancel() }}
	tctx, tcancel := context.WithTimeout(ctx, time.Minute)
	defer tcancel()
	res, err := Run(tctx, Options{Spec: spec, Workers: 2, Dir: dir, Replica: coordinator.Config{Settle: 100 * time.Millisecond},
		Worker: worker.Config{Progress: watch}})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Run after the interrupt: %v, want context.Canceled", err)
	}
	if res == nil || len(res.Workers) != 1 || res.Workers[0].Rank != 0 {
		t.Fatalf("Run after the interrupt: result %+v, want rank 0's alone", res)
	}
	r := res.Workers[0]
	want := model.CheckpointDir(trainer.CheckpointRoot(spec.Out), r.Step)
	// Rank 0 stops at the step it printed, or one later if that step's update was
	// applied before the interrupt reached it.
	if r.Step < reached || r.Step > reached+1 || r.Checkpoint != want {
		t.Fatalf("stopped at step %d with checkpoint %s; want step %d (or the next) and %s", r.Step, r.Checkpoint, reached, want)
	}
	ts, err := model.ReadTrainerState(r.Checkpoint)
	if err != nil {
		t.Fatalf("the checkpoint written on the interrupt: %v", err)
	}
	if ts.Step != r.Step {
		t.Fatalf("checkpoint %s records step %d, want %d", r.Checkpoint, ts.Step, r.Step)
	}
	latest, err := model.LatestCheckpoint(trainer.CheckpointRoot(spec.Out))
	if err != nil || latest != r.Checkpoint {
		t.Fatalf("newest checkpoint in the run directory %s (%v), want %s", latest, err, r.Checkpoint)
	}

	// A rerun (to two steps further) resumes there.
	spec.Steps = r.Step + 2
	rctx, rcancel := context.WithTimeout(context.Background(), time.Minute)
	defer rcancel()
	again, err := Run(rctx, Options{Spec: spec, Workers: 2, Dir: dir, Replica: coordinator.Config{Settle: 100 * time.Millisecond}})
	if err != nil {
		t.Fatalf("rerun: %v", err)
	}
	for _, w := range again.Workers {
		if w.StartStep != r.Step || w.Step != spec.Steps {
			t.Errorf("rerun: rank %d trained steps %d..%d, want %d..%d", w.Rank, w.StartStep, w.Step, r.Step, spec.Steps)
		}
	}
	if s := again.State.GetJobStatus(); s.GetState() != pb.JobState_JOB_STATE_FINISHED || s.GetStep() != spec.Steps {
		t.Errorf("rerun: job status %v, want FINISHED at step %d", s, spec.Steps)
	}
}

// TestEarlyStopFinishes: a job that a stopping rule ends before its steps (here
// target_val_loss, which the first evaluation meets) is FINISHED in the replicated
// state at the step it stopped at, with its final checkpoint, the digest of that
// checkpoint and the rule, and every worker reports the same stop.
func TestEarlyStopFinishes(t *testing.T) {
	dir := t.TempDir()
	spec := tinyJob(t, dir, 1000)
	spec.EvalInterval, spec.EvalBatches = 3, 1
	spec.TargetValLoss = 1000 // any loss meets it
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	res, err := Run(ctx, Options{Spec: spec, Workers: 2, Dir: dir, Replica: coordinator.Config{Settle: 100 * time.Millisecond}})
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range res.Workers {
		if w.Step != 3 || w.Stopped != trainer.StopTarget {
			t.Errorf("rank %d ended at step %d (stopped %q), want step 3 by %s", w.Rank, w.Step, w.Stopped, trainer.StopTarget)
		}
	}
	s := res.State.GetJobStatus()
	c := s.GetFinalCheckpoint()
	want := model.CheckpointDir(trainer.CheckpointRoot(spec.Out), 3)
	if s.GetState() != pb.JobState_JOB_STATE_FINISHED || s.GetStep() != 3 || s.GetStopReason() != string(trainer.StopTarget) ||
		c.GetLocation() != want || !c.GetFinal() {
		t.Fatalf("job status %v, want FINISHED at step 3 (%s) with the final checkpoint %s", s, trainer.StopTarget, want)
	}
	digest, err := model.CheckpointDigest(want)
	if err != nil || c.GetSha256() != digest {
		t.Errorf("final checkpoint digest %s, want %s (%v)", c.GetSha256(), digest, err)
	}
	if ts, err := model.ReadTrainerState(want); err != nil || ts.Step != 3 || ts.ValLoss == nil {
		t.Errorf("final checkpoint's trainer state %+v (%v), want step 3 with its validation loss", ts, err)
	}
}
