package worker

import (
	"context"
	"fmt"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/goleak"

	"github.com/ringtrain/ringtrain/coordinator"
	"github.com/ringtrain/ringtrain/examples"
	"github.com/ringtrain/ringtrain/jobspec"
	"github.com/ringtrain/ringtrain/metrics"
	"github.com/ringtrain/ringtrain/model"
	pb "github.com/ringtrain/ringtrain/proto/ringtrain/v1"
	"github.com/ringtrain/ringtrain/shard"
	"github.com/ringtrain/ringtrain/trainer"
)

func TestMain(m *testing.M) {
	// The tensor package keeps a pool of kernel helper goroutines for the life of
	// the process, by design.
	goleak.VerifyTestMain(m, goleak.IgnoreAnyFunction("github.com/ringtrain/ringtrain/tensor.(*helperPool).loop"))
}

// prepareData prepares the first 60k characters of tiny shakespeare, character
// level, in 12 train shards (one per stream of tinySpec).
func prepareData(t testing.TB) string {
	t.Helper()
	tmp := t.TempDir()
	text := filepath.Join(tmp, "input.txt")
	if err := os.WriteFile(text, []byte(examples.TinyShakespeare[:60_000]), 0o644); err != nil {
		t.Fatal(err)
	}
	data := filepath.Join(tmp, "data")
	if _, err := shard.PrepareText(context.Background(), "char", shard.PrepareOptions{
		Inputs: []string{text}, OutDir: data, MinShards: 12,
	}); err != nil {
		t.Fatalf("prepare: %v", err)
	}
	return data
}

// tinySpec is a job of 12 streams (so 1, 2, 3 and 4 workers divide it) of one
// 16-token sequence each, on a 2-layer, 32-wide model, for 5 steps.
func tinySpec(data, out string) trainer.Spec {
	s := trainer.DefaultSpec()
	s.Model = model.Config{Layers: 2, Heads: 2, Embd: 32}
	s.Data, s.Out = data, out
	s.SeqLen, s.MicroBatch, s.Streams = 16, 1, 12
	s.Steps, s.Seed = 5, 7
	s.LR, s.MinLR, s.WarmupSteps = 1e-2, 1e-3, 2
	s.LogInterval, s.EvalInterval, s.EvalBatches, s.CheckpointInterval = 1, 0, 0, 2
	return s
}

// testLog sends log lines to t.Log until the test ends.
type testLog struct {
	mu     sync.Mutex
	t      testing.TB
	closed bool
}

func newTestLogger(t testing.TB) *slog.Logger {
	l := &testLog{t: t}
	t.Cleanup(func() { l.mu.Lock(); l.closed = true; l.mu.Unlock() })
	return slog.New(slog.NewTextHandler(l, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

func (l *testLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.closed {
		l.t.Log(strings.TrimRight(string(p), "\n"))
	}
	return len(p), nil
}

// jobCoordinator is a Coordinator that takes a job too: *coordinator.Client and
// *coordinator.Inmem.
type jobCoordinator interface {
	Coordinator
	SubmitJob(ctx context.Context, req *pb.SubmitJobRequest) error
}

// runWorkers submits spec for exactly n workers to co, runs n workers against it to
// the end of the job, each with its instruments registered on reg (none when reg is
// nil), and returns their results by rank.
func runWorkers(t *testing.T, co jobCoordinator, spec trainer.Spec, n int, reg *prometheus.Registry) []*Result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	job, err := jobspec.Encode(spec, n, n)
	if err != nil {
		t.Fatal(err)
	}
	if err := co.SubmitJob(ctx, &pb.SubmitJobRequest{Job: job}); err != nil {
		t.Fatalf("submit: %v", err)
	}
	log := newTestLogger(t)
	results := make([]*Result, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		id := fmt.Sprintf("w%d", i)
		var m *metrics.Worker
		if reg != nil {
			if m, err = metrics.NewWorker(reg, id); err != nil {
				t.Fatal(err)
			}
		}
		// Small buckets, so that the tiny model's gradients travel in several.
		w, err := New(Config{ID: id, Coordinators: co, Logger: log, RetryDelay: 200 * time.Millisecond, Metrics: m,
			BucketBytes: 16 << 10})
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
		r := results[i]
		if r.Step != spec.Steps {
			t.Fatalf("worker w%d finished at step %d, want %d", i, r.Step, spec.Steps)
		}
		if byRank[r.Rank] != nil {
			t.Fatalf("two workers finished as rank %d", r.Rank)
		}
		byRank[r.Rank] = r
	}
	return byRank
}

// checkFinished checks that st records the job's last step as its progress and
// its newest checkpoint.
func checkFinished(t *testing.T, st *pb.CoordinatorState, spec trainer.Spec) {
	t.Helper()
	if got := st.GetProgress().GetStep(); got != spec.Steps {
		t.Errorf("committed progress is step %d, want %d", got, spec.Steps)
	}
	if cks := st.GetCheckpoints(); len(cks) == 0 || cks[len(cks)-1].GetStep() != spec.Steps {
		t.Errorf("committed checkpoints %v, want the last at step %d", cks, spec.Steps)
	}
}

func relL2(got, want []float32) float64 {
	var d, n float64
	for i := range want {
		e := float64(got[i]) - float64(want[i])
		d += e * e
		n += float64(want[i]) * float64(want[i])
	}
	return math.Sqrt(d / n)
}

// checkEquivalent checks that every rank of res holds the single process's weights
// want (up to summation order) and the same bits as rank 0, and that rank 0's loss
// is the single process's.
func checkEquivalent(t *testing.T, res []*Result, want []float32, wantLoss float64) {
	t.Helper()
	for r, got := range res {
		if rel := relL2(got.Params, want); rel > 1e-5 {
			t.Errorf("rank %d: weights differ from the single process by %.3g relative L2", r, rel)
		}
		for i, v := range got.Params {
			if math.Float32bits(v) != math.Float32bits(res[0].Params[i]) {
				t.Fatalf("rank %d differs from rank 0 at parameter %d: %v vs %v", r, i, v, res[0].Params[i])
			}
		}
	}
	if math.Abs(res[0].Loss-wantLoss) > 1e-4*math.Abs(wantLoss) {
		t.Errorf("final loss %v, single process %v", res[0].Loss, wantLoss)
	}
}

// TestJoinMidRun: a second worker joins a running job; the step in flight is
// aborted, the joiner receives the state from its peer, and both finish at the
// same step, bit-identical to each other, with the single-process trainer's loss.
func TestJoinMidRun(t *testing.T) {
	data := prepareData(t)
	spec := tinySpec(data, t.TempDir())
	spec.Steps, spec.CheckpointInterval = 150, 50
	refSpec := spec
	refSpec.Out = t.TempDir()
	ref, err := trainer.Run(context.Background(), refSpec, trainer.RunOptions{})
	if err != nil {
		t.Fatalf("reference run: %v", err)
	}
	ck, err := model.LoadCheckpoint(ref.Checkpoint)
	if err != nil {
		t.Fatal(err)
	}

	c := coordinator.MakeCluster(t, 1)
	c.Leader()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	job, err := jobspec.Encode(spec, 1, 2)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Client().SubmitJob(ctx, &pb.SubmitJobRequest{Job: job}); err != nil {
		t.Fatalf("submit: %v", err)
	}
	log := newTestLogger(t)
	var results [2]*Result
	var errs [2]error
	var audits [2]lockedBuffer
	var wg sync.WaitGroup
	startWorker := func(i int) {
		w, err := New(Config{ID: fmt.Sprintf("w%d", i), Coordinators: c.Client(), Logger: log, RetryDelay: 200 * time.Millisecond,
			Audit: &audits[i]})
		if err != nil {
			t.Fatal(err)
		}
		wg.Go(func() { results[i], errs[i] = w.Run(ctx) })
	}
	startWorker(0)
	c.WaitFor("progress past step 10", func() bool {
		return c.Node(0).State().GetProgress().GetStep() >= 10
	})
	startWorker(1)
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("worker w%d: %v", i, err)
		}
	}
	if results[0].Generation < 2 || results[1].Generation != results[0].Generation {
		t.Skipf("the job finished before the second worker joined (generations %d, %d)", results[0].Generation, results[1].Generation)
	}
	// Over 150 steps at this learning rate, the different summation order of two
	// ranks grows past 1e-5 relative (it does so without any join too), so the
	// weights are compared with the single process only through the loss.
	if math.Abs(results[0].Loss-ref.TrainLoss) > 0.1*ref.TrainLoss {
		t.Errorf("final loss %v, single process %v", results[0].Loss, ref.TrainLoss)
	}
	t.Logf("relative L2 to the single process after %d steps: %.3g", spec.Steps, relL2(results[0].Params, ck.Params))
	rep := verifyAudits(t, audits[:], spec.Streams)
	if rep.Steps != spec.Steps || rep.Workers != 2 || rep.Generations < 2 || rep.Final != checksum(results[0].Params) {
		t.Fatalf("audit report %+v", rep)
	}
	t.Logf("audit: %+v", rep)
	for i, r := range results {
		for j, v := range r.Params {
			if math.Float32bits(v) != math.Float32bits(results[0].Params[j]) {
				t.Fatalf("w%d differs from w0 at parameter %d", i, j)
			}
		}
	}
}

// verifyAudits reads the workers' audit logs, as files, and checks them together
// with VerifyAudit over streams streams.
func verifyAudits(t *testing.T, audits []lockedBuffer, streams int) *AuditReport {
	t.Helper()
	var recs []AuditRecord
	for i := range audits {
		path := filepath.Join(t.TempDir(), "audit.jsonl")
		if err := os.WriteFile(path, audits[i].Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
		r, err := ReadAudit(path)
		if err != nil {
			t.Fatal(err)
		}
		recs = append(recs, r...)
	}
	rep, err := VerifyAudit(recs, streams)
	if err != nil {
		t.Fatalf("audit: %v (%+v)", err, rep)
	}
	return rep
}

// referenceRun trains tinySpec on data in a single process and returns its final
// weights and training loss, what a cluster's run of the same job must match.
func referenceRun(t *testing.T, data string) ([]float32, float64) {
	t.Helper()
	ref, err := trainer.Run(context.Background(), tinySpec(data, t.TempDir()), trainer.RunOptions{})
	if err != nil {
		t.Fatalf("reference run: %v", err)
	}
	ck, err := model.LoadCheckpoint(ref.Checkpoint)
	if err != nil {
		t.Fatal(err)
	}
	return ck.Params, ref.TrainLoss
}
