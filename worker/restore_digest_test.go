package worker

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/ringtrain/ringtrain/coordinator"
	"github.com/ringtrain/ringtrain/jobspec"
	pb "github.com/ringtrain/ringtrain/proto/ringtrain/v1"
	"github.com/ringtrain/ringtrain/trainer"
)

// TestRestoreRefusesUncommittedFiles: a worker that finds the files of the newest
// committed checkpoint different from the committed digest does not train on them;
// alone, with no peer to take the state from, it stops with ErrNoState, and the job
// fails naming the reason.
func TestRestoreRefusesUncommittedFiles(t *testing.T) {
	data := prepareData(t)
	spec := tinySpec(data, t.TempDir())
	spec.Steps, spec.CheckpointInterval = 4, 2
	// A real checkpoint of step 4 of this job, written by the single-process trainer.
	ref, err := trainer.Run(context.Background(), spec, trainer.RunOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	co := coordinator.NewInmem(coordinator.InmemOptions{})
	spec.Steps = 8 // the job goes on past the checkpoint
	job, err := jobspec.Encode(spec, 1, 1)
	if err != nil {
		t.Fatal(err)
	}
	if err := co.SubmitJob(ctx, &pb.SubmitJobRequest{Job: job}); err != nil {
		t.Fatal(err)
	}
	// A member commits the checkpoint with another digest than its files have.
	if _, err := co.Register(ctx, &pb.RegisterRequest{WorkerId: "w-old", Address: "127.0.0.1:1"}); err != nil {
		t.Fatal(err)
	}
	plan := co.State().GetPlan()
	if _, err := co.CommitCheckpoint(ctx, &pb.CommitCheckpointRequest{WorkerId: "w-old", Generation: plan.GetGeneration(),
		Step: 4, Location: ref.Checkpoint, Sha256: strings.Repeat("ab", 32), JobVersion: plan.GetJobVersion()}); err != nil {
		t.Fatal(err)
	}
	if err := co.Leave(ctx, &pb.LeaveRequest{WorkerId: "w-old"}); err != nil {
		t.Fatal(err)
	}

	w, err := New(Config{ID: "w0", Coordinators: co, Logger: newTestLogger(t), RetryDelay: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	_, err = w.Run(ctx)
	if !errors.Is(err, ErrNoState) {
		t.Fatalf("worker: %v, want ErrNoState", err)
	}
	st := co.State()
	if st.GetJobStatus().GetState() != pb.JobState_JOB_STATE_FAILED || st.GetProgress().GetStep() != 0 {
		t.Fatalf("job status %v progress %v, want FAILED with no step trained", st.GetJobStatus(), st.GetProgress())
	}
}
