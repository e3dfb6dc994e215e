package worker

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/ringtrain/ringtrain/coordinator"
	"github.com/ringtrain/ringtrain/jobspec"
	"github.com/ringtrain/ringtrain/model"
	pb "github.com/ringtrain/ringtrain/proto/ringtrain/v1"
	"github.com/ringtrain/ringtrain/trainer"
)

// TestInmemStopEarly: two workers train a job whose stopping rule holds before its
// last step. Only rank 0 evaluates and keeps the clock, yet both ranks stop at the
// step where the single-process trainer stops with the same rule, with bit-identical
// weights (the single process's, up to summation order); the coordinator records that
// step as the final progress and checkpoint; and keep_checkpoints 1 leaves only that
// checkpoint, the newest, committed and best.
func TestInmemStopEarly(t *testing.T) {
	data := prepareData(t)
	for _, tc := range []struct {
		name string
		edit func(*trainer.Spec)
		step int64 // where the job stops
		rule trainer.StopReason
	}{
		// Reached at the first evaluation, step 4, which is also an interval
		// checkpoint: its commit is queued when the job stops.
		{"target_val_loss", func(s *trainer.Spec) { s.TargetValLoss = 100 }, 4, trainer.StopTarget},
		// Rank 0's clock has run out after the first step.
		{"max_time", func(s *trainer.Spec) { s.MaxTime = trainer.Duration(time.Nanosecond) }, 1, trainer.StopMaxTime},
	} {
		t.Run(tc.name, func(t *testing.T) {
			spec := tinySpec(data, t.TempDir())
			spec.Steps, spec.EvalInterval, spec.EvalBatches, spec.CheckpointInterval, spec.KeepCheckpoints = 40, 4, 2, 2, 1
			tc.edit(&spec)

			refSpec := spec
			refSpec.Out = t.TempDir()
			ref, err := trainer.Run(context.Background(), refSpec, trainer.RunOptions{})
			if err != nil {
				t.Fatalf("reference run: %v", err)
			}
			if ref.Step != tc.step || ref.Stopped != tc.rule {
				t.Fatalf("the single process stopped at step %d by %q, want step %d by %q", ref.Step, ref.Stopped, tc.step, tc.rule)
			}
			refCk, err := model.LoadCheckpoint(ref.Checkpoint)
			if err != nil {
				t.Fatal(err)
			}

			co := coordinator.NewInmem(coordinator.InmemOptions{})
			res, audits := runStoppingWorkers(t, co, spec, 2)
			if rep := verifyAudits(t, audits, spec.Streams); rep.Steps != tc.step || rep.Workers != 2 || rep.Final != checksum(res[0].Params) {
				t.Errorf("audit report %+v, want %d steps and both workers finished", rep, tc.step)
			}
			for _, r := range res {
				if r.Step != tc.step || r.Stopped != tc.rule {
					t.Errorf("rank %d stopped at step %d by %q, want step %d by %q", r.Rank, r.Step, r.Stopped, tc.step, tc.rule)
				}
			}
			checkEquivalent(t, res, refCk.Params, ref.TrainLoss)

			st := co.State()
			final := model.CheckpointDir(trainer.CheckpointRoot(spec.Out), tc.step)
			cks := st.GetCheckpoints()
			if got := st.GetProgress().GetStep(); got != tc.step {
				t.Errorf("committed progress is step %d, want %d", got, tc.step)
			}
			if len(cks) == 0 || cks[len(cks)-1].GetStep() != tc.step || cks[len(cks)-1].GetLocation() != final {
				t.Fatalf("committed checkpoints %v, want the newest at step %d in %s", cks, tc.step, final)
			}
			digest, err := model.CheckpointDigest(final)
			if err != nil || digest != cks[len(cks)-1].GetSha256() {
				t.Errorf("the committed checkpoint's digest %s, on disk %s (%v)", cks[len(cks)-1].GetSha256(), digest, err)
			}
			if res[0].Checkpoint != final {
				t.Errorf("rank 0's last checkpoint %s, want %s", res[0].Checkpoint, final)
			}
			entries, err := os.ReadDir(trainer.CheckpointRoot(spec.Out))
			if err != nil {
				t.Fatal(err)
			}
			var left []string
			for _, e := range entries {
				left = append(left, e.Name())
			}
			if len(left) != 1 || left[0] != filepath.Base(final) {
				t.Errorf("checkpoints left %v, want only %s (keep_checkpoints 1)", left, filepath.Base(final))
			}
			if len(st.GetWorkers()) != 0 {
				t.Errorf("workers %v still registered after the job", st.GetWorkers())
			}
		})
	}
}

// runStoppingWorkers runs n workers (default buckets, an audit log each) on spec,
// submitted to co for exactly n, until they return, and returns their results by
// rank and their audit logs. The job may end before its last step.
func runStoppingWorkers(t *testing.T, co *coordinator.Inmem, spec trainer.Spec, n int) ([]*Result, []lockedBuffer) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	job, err := jobspec.Encode(spec, n, n)
	if err != nil {
		t.Fatal(err)
	}
	if err := co.SubmitJob(ctx, &pb.SubmitJobRequest{Job: job}); err != nil {
		t.Fatal(err)
	}
	log := newTestLogger(t)
	results, errs, audits := make([]*Result, n), make([]error, n), make([]lockedBuffer, n)
	var wg sync.WaitGroup
	for i := range n {
		w, err := New(Config{ID: fmt.Sprintf("w%d", i), Coordinators: co, Logger: log, RetryDelay: 200 * time.Millisecond, Audit: &audits[i]})
		if err != nil {
			t.Fatal(err)
		}
		wg.Go(func() { results[i], errs[i] = w.Run(ctx) })
	}
	wg.Wait()
	byRank := make([]*Result, n)
	for i, err := range errs {
		if err != nil {
			t.Fatalf("worker w%d: %v", i, err)
		}
		if r := results[i].Rank; r < 0 || r >= n || byRank[r] != nil {
			t.Fatalf("worker w%d finished as rank %d", i, r)
		}
		byRank[results[i].Rank] = results[i]
	}
	return byRank, audits
}
