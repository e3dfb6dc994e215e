package worker

import (
	"context"
	"fmt"
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

// TestReplaceJobStopsOldTraining: a job replaced while its workers train it stops on
// every worker; they train the new job (another model) to its end, and every
// checkpoint committed under the new job is the new job's, written in its run
// directory with its model.
func TestReplaceJobStopsOldTraining(t *testing.T) {
	data := prepareData(t)
	outA, outB := filepath.Join(t.TempDir(), "a"), filepath.Join(t.TempDir(), "b")
	specA := tinySpec(data, outA)
	specA.Steps, specA.CheckpointInterval = 100_000, 3
	specB := tinySpec(data, outB)
	specB.Model = model.Config{Layers: 1, Heads: 2, Embd: 16}
	specB.Steps, specB.CheckpointInterval, specB.Seed = 8, 4, 99

	c := coordinator.MakeCluster(t, 1)
	c.Leader()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	submit := func(spec trainer.Spec, replace bool) {
		t.Helper()
		job, err := jobspec.Encode(spec, 2, 2)
		if err != nil {
			t.Fatal(err)
		}
		if err := c.Client().SubmitJob(ctx, &pb.SubmitJobRequest{Job: job, Replace: replace}); err != nil {
			t.Fatalf("submit: %v", err)
		}
	}
	submit(specA, false)
	log := newTestLogger(t)
	var results [2]*Result
	var errs [2]error
	var wg sync.WaitGroup
	for i := range 2 {
		w, err := New(Config{ID: fmt.Sprintf("w%d", i), Coordinators: c.Client(), Logger: log, RetryDelay: 200 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		wg.Go(func() { results[i], errs[i] = w.Run(ctx) })
	}
	c.WaitFor("job A past its first checkpoints", func() bool {
		st := c.Node(0).State()
		return st.GetProgress().GetStep() >= 7 && len(st.GetCheckpoints()) >= 2
	})
	submit(specB, true)
	wg.Wait()
	st := c.Node(0).State()
	final := st.GetJobStatus().GetFinalCheckpoint().GetLocation()
	ckB, err := model.LoadCheckpoint(final)
	if err != nil {
		t.Fatalf("job B's final checkpoint: %v", err)
	}
	for i, err := range errs {
		if err != nil {
			t.Fatalf("worker w%d: %v", i, err)
		}
		if results[i].Step != specB.Steps {
			t.Fatalf("worker w%d ended at step %d, want job B's %d", i, results[i].Step, specB.Steps)
		}
		if len(results[i].Params) != len(ckB.Params) {
			t.Fatalf("worker w%d ended with %d parameters, job B's model has %d", i, len(results[i].Params), len(ckB.Params))
		}
	}
	if st.GetJobVersion() != 2 || st.GetJobStatus().GetState() != pb.JobState_JOB_STATE_FINISHED {
		t.Fatalf("job version %d status %v, want job B (version 2) finished", st.GetJobVersion(), st.GetJobStatus())
	}
	if len(st.GetCheckpoints()) == 0 {
		t.Fatal("no checkpoint committed for job B")
	}
	for _, ck := range st.GetCheckpoints() {
		if !strings.HasPrefix(ck.GetLocation(), outB) {
			t.Errorf("checkpoint of step %d committed under job B at %s, outside B's run directory", ck.GetStep(), ck.GetLocation())
		}
		loaded, err := model.LoadCheckpoint(ck.GetLocation())
		if err != nil {
			t.Fatal(err)
		}
		if loaded.Config.Embd != specB.Model.Embd || loaded.Config.Layers != specB.Model.Layers {
			t.Errorf("checkpoint of step %d holds model %+v, not job B's", ck.GetStep(), loaded.Config)
		}
		if err := model.VerifyDigest(ck.GetLocation(), ck.GetSha256()); err != nil {
			t.Error(err)
		}
	}
}
