package worker_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ringtrain/ringtrain/coordinator"
	"github.com/ringtrain/ringtrain/localcluster"
	"github.com/ringtrain/ringtrain/trainer"
	"github.com/ringtrain/ringtrain/worker"
)

var (
	prepareData     = worker.PrepareData
	tinySpec        = worker.TinySpec
	checkEquivalent = worker.CheckEquivalent
	referenceRun    = worker.ReferenceRun
)

// runCluster runs spec on an in-process cluster (localcluster) of one coordinator
// replica with the test timing and exactly n workers, to the end of the job, and
// returns the workers' results by rank.
func runCluster(t *testing.T, spec trainer.Spec, n int) []*worker.Result {
	t.Helper()
	return runClusterMetrics(t, spec, n, nil)
}

// runClusterMetrics is runCluster with each worker's instruments (and the replica's
// gauges) registered on reg (none when reg is nil).
func runClusterMetrics(t *testing.T, spec trainer.Spec, n int, reg *prometheus.Registry) []*worker.Result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	log := worker.NewTestLogger(t)
	replica := coordinator.TestConfig()
	replica.Logger = log
	o := localcluster.Options{
		Spec: spec, Workers: n, Dir: t.TempDir(),
		Replica: replica,
		Client:  coordinator.ClientOptions{Logger: log, AttemptTimeout: time.Second},
		// Small buckets, so that the tiny model's gradients travel in several.
		Worker: worker.Config{Logger: log, RetryDelay: 200 * time.Millisecond, BucketBytes: 16 << 10},
	}
	if reg != nil {
		o.Registry = reg
	}
	res, err := localcluster.Run(ctx, o)
	if err != nil {
		t.Fatalf("cluster: %v", err)
	}
	for r, x := range res.Workers {
		if x.Rank != r {
			t.Fatalf("workers finished as ranks %v, want 0..%d once each", ranks(res.Workers), n-1)
		}
		if x.Step != spec.Steps {
			t.Fatalf("rank %d finished at step %d, want %d", r, x.Step, spec.Steps)
		}
	}
	st := res.State
	if got := st.GetProgress().GetStep(); got != spec.Steps {
		t.Errorf("committed progress is step %d, want %d", got, spec.Steps)
	}
	if cks := st.GetCheckpoints(); len(cks) == 0 || cks[len(cks)-1].GetStep() != spec.Steps {
		t.Errorf("committed checkpoints %v, want the last at step %d", cks, spec.Steps)
	}
	worker.CheckJobFinished(t, st, spec, res.Workers[0].Checkpoint)
	return res.Workers
}

func ranks(res []*worker.Result) []int {
	out := make([]int, len(res))
	for i, r := range res {
		out[i] = r.Rank
	}
	return out
}

// TestDataParallelEquivalence: W = 1..4 workers train the same weights as the
// single-process trainer (up to summation order), and every rank holds the same bits.
func TestDataParallelEquivalence(t *testing.T) {
	data := prepareData(t)
	wantParams, wantLoss := referenceRun(t, data)
	for _, n := range []int{1, 2, 3, 4} {
		t.Run(fmt.Sprintf("workers=%d", n), func(t *testing.T) {
			start := time.Now()
			res := runCluster(t, tinySpec(data, t.TempDir()), n)
			checkEquivalent(t, res, wantParams, wantLoss)
			t.Logf("%d workers: %v", n, time.Since(start))
		})
	}
}
