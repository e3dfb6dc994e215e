package worker

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ringtrain/ringtrain/coordinator"
	"github.com/ringtrain/ringtrain/jobspec"
	"github.com/ringtrain/ringtrain/model"
	pb "github.com/ringtrain/ringtrain/proto/ringtrain/v1"
	"github.com/ringtrain/ringtrain/trainer"
)

// checkJobFinished checks that st records the job FINISHED with the checkpoint of
// its last step, written at dir, as the final checkpoint (location and digest).
func checkJobFinished(t *testing.T, st *pb.CoordinatorState, spec trainer.Spec, dir string) {
	t.Helper()
	s := st.GetJobStatus()
	if s.GetState() != pb.JobState_JOB_STATE_FINISHED {
		t.Fatalf("job status %v, want FINISHED", s)
	}
	c := s.GetFinalCheckpoint()
	digest, err := model.CheckpointDigest(dir)
	if err != nil {
		t.Fatal(err)
	}
	if s.GetStep() != spec.Steps || c.GetStep() != spec.Steps || c.GetLocation() != dir || c.GetSha256() != digest {
		t.Fatalf("job status %v, want step %d with the checkpoint %s (sha256 %s)", s, spec.Steps, dir, digest)
	}
}

// runOne runs a worker named id against co until it returns, and reports how long
// that took.
func runOne(t *testing.T, co Coordinator, id string) (*Result, time.Duration, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	w, err := New(Config{ID: id, Coordinators: co, Logger: newTestLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	res, err := w.Run(ctx)
	return res, time.Since(start), err
}

// TestFinishedJobStaysDown: after a run the coordinator records the job FINISHED
// with its final checkpoint, and a worker started afterwards (a restarted pod)
// returns success at once, without registering, with the job's final step and
// checkpoint.
func TestFinishedJobStaysDown(t *testing.T) {
	data := prepareData(t)
	co := coordinator.NewInmem(coordinator.InmemOptions{})
	spec := tinySpec(data, t.TempDir())
	res := runWorkers(t, co, spec, 2, nil)
	final := res[0].Checkpoint
	if final != model.CheckpointDir(trainer.CheckpointRoot(spec.Out), spec.Steps) {
		t.Fatalf("rank 0's last checkpoint %q, want the last step's", final)
	}
	before := co.State()
	checkJobFinished(t, before, spec, final)

	late, took, err := runOne(t, co, "w9")
	if err != nil {
		t.Fatalf("a worker started after the end: %v, want success", err)
	}
	if late.Rank != -1 || late.Step != spec.Steps || late.Checkpoint != final || late.Params != nil {
		t.Fatalf("late worker's result %+v, want rank -1 at step %d with checkpoint %s", late, spec.Steps, final)
	}
	if took > 5*time.Second {
		t.Errorf("the late worker took %v to return", took)
	}
	after := co.State()
	if len(after.GetWorkers()) != 0 || after.GetPlan().GetGeneration() != before.GetPlan().GetGeneration() {
		t.Fatalf("the late worker registered: workers %v, plan %v", after.GetWorkers(), after.GetPlan())
	}
	if p := after.GetPlan(); p.GetState() != pb.PlanState_PLAN_STATE_ENDED || p.GetReason() != "job finished at step 5" {
		t.Errorf("plan after every member left: %v, want ENDED", p)
	}
}

// TestFatalErrorFailsJob: a job whose dataset the workers cannot open fails every
// worker with a fatal error; the first one reports it, so the job ends FAILED with
// its reason, and a worker started afterwards returns ErrJobFailed at once.
func TestFatalErrorFailsJob(t *testing.T) {
	co := coordinator.NewInmem(coordinator.InmemOptions{})
	missing := filepath.Join(t.TempDir(), "no-such-dataset")
	job, err := jobspec.Encode(tinySpec(missing, t.TempDir()), 1, 1)
	if err != nil {
		t.Fatal(err)
	}
	if err := co.SubmitJob(context.Background(), &pb.SubmitJobRequest{Job: job}); err != nil {
		t.Fatal(err)
	}
	_, _, err = runOne(t, co, "w0")
	if err == nil || !strings.Contains(err.Error(), "no-such-dataset") {
		t.Fatalf("worker on a missing dataset: %v, want an error naming it", err)
	}
	s := co.State().GetJobStatus()
	if s.GetState() != pb.JobState_JOB_STATE_FAILED || s.GetWorkerId() != "w0" || !strings.Contains(s.GetReason(), "no-such-dataset") {
		t.Fatalf("job status %v, want FAILED by w0 naming the dataset", s)
	}
	if p := co.State().GetPlan(); p.GetState() != pb.PlanState_PLAN_STATE_ENDED {
		t.Errorf("plan %v, want ENDED", p)
	}
	_, took, err := runOne(t, co, "w1")
	if !errors.Is(err, ErrJobFailed) || !strings.Contains(err.Error(), "no-such-dataset") || !strings.Contains(err.Error(), "w0") {
		t.Fatalf("a worker started after the failure: %v, want ErrJobFailed with the reason and the reporter", err)
	}
	if took > 5*time.Second {
		t.Errorf("the late worker took %v to return", took)
	}
	if ws := co.State().GetWorkers(); len(ws) != 0 {
		t.Errorf("workers %v registered after the failure", ws)
	}
}

// TestMembersStopOnFailure: two workers train a long job; when the job is
// reported FAILED (by a peer that then stopped), both stop at once with
// ErrJobFailed instead of training on.
func TestMembersStopOnFailure(t *testing.T) {
	data := prepareData(t)
	co := coordinator.NewInmem(coordinator.InmemOptions{})
	spec := tinySpec(data, t.TempDir())
	spec.Steps, spec.CheckpointInterval = 100_000, 0
	job, err := jobspec.Encode(spec, 2, 2)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := co.SubmitJob(ctx, &pb.SubmitJobRequest{Job: job}); err != nil {
		t.Fatal(err)
	}
	errs := make([]error, 2)
	var wg sync.WaitGroup
	for i, id := range []string{"w0", "w1"} {
		w, err := New(Config{ID: id, Coordinators: co, Logger: newTestLogger(t), RetryDelay: 200 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		wg.Go(func() { _, errs[i] = w.Run(ctx) })
	}
	waitFor(t, "training to pass step 3", func() bool { return co.State().GetProgress().GetStep() >= 3 })
	if _, err := co.FailJob(ctx, &pb.FailJobRequest{WorkerId: "w1", Step: 3, Reason: "replicas diverged"}); err != nil {
		t.Fatal(err)
	}
	stopped := time.Now()
	wg.Wait()
	if took := time.Since(stopped); took > 10*time.Second {
		t.Errorf("the members took %v to stop", took)
	}
	for i, err := range errs {
		if !errors.Is(err, ErrJobFailed) || !strings.Contains(err.Error(), "replicas diverged") {
			t.Errorf("w%d: %v, want ErrJobFailed with the reason", i, err)
		}
	}
	if st := co.State(); st.GetProgress().GetStep() >= spec.Steps || len(st.GetWorkers()) != 0 {
		t.Errorf("after the failure: progress %v, workers %v; want the job stopped and both gone", st.GetProgress(), st.GetWorkers())
	}
}

func TestTruncateReason(t *testing.T) {
	long := strings.Repeat("é", maxReasonBytes) // 2 bytes a rune
	got := truncateReason(long)
	if len(got) > maxReasonBytes || !strings.HasSuffix(got, " …") || !strings.HasPrefix(got, "éé") {
		t.Fatalf("truncated to %d bytes: ...%q", len(got), got[len(got)-10:])
	}
	if got := truncateReason("bad \xff byte"); got != "bad \uFFFD byte" {
		t.Errorf("invalid UTF-8 became %q", got)
	}
	if got := truncateReason("short"); got != "short" {
		t.Errorf("short reason became %q", got)
	}
}
