package localcluster

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ringtrain/ringtrain/coordinator"
	"github.com/ringtrain/ringtrain/examples"
	"github.com/ringtrain/ringtrain/metrics"
	"github.com/ringtrain/ringtrain/model"
	pb "github.com/ringtrain/ringtrain/proto/ringtrain/v1"
	"github.com/ringtrain/ringtrain/shard"
	"github.com/ringtrain/ringtrain/trainer"
	"github.com/ringtrain/ringtrain/worker"
)

func TestRunRefusesBadOptions(t *testing.T) {
	dir := t.TempDir()
	ok := Options{Spec: trainer.DefaultSpec(), Workers: 1, Dir: dir}
	for _, tc := range []struct {
		name string
		edit func(*Options)
	}{
		{"no workers", func(o *Options) { o.Workers = 0 }},
		{"negative coordinators", func(o *Options) { o.Coordinators = -1 }},
		{"shared client id", func(o *Options) { o.Client = coordinator.ClientOptions{ClientID: "c"} }},
		{"shared listen address", func(o *Options) { o.Worker = worker.Config{Listen: "127.0.0.1:7100"} }},
		{"shared audit log", func(o *Options) { o.Worker = worker.Config{Audit: io.Discard} }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := ok
			tc.edit(&o)
			if _, err := Run(context.Background(), o); !errors.Is(err, ErrBadOptions) {
				t.Fatalf("Run: %v, want ErrBadOptions", err)
			}
		})
	}
}

// TestJobStateMetric: after a run, the replicated state records the job FINISHED
// with rank 0's last checkpoint, and the replica's ringtrain_job_state on the
// shared registry says finished.
func TestJobStateMetric(t *testing.T) {
	dir := t.TempDir()
	spec := tinyJob(t, dir, 3)
	spec.EvalBatches = 0
	reg := prometheus.NewRegistry()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	res, err := Run(ctx, Options{Spec: spec, Workers: 2, Dir: dir, Registry: reg, Replica: coordinator.Config{Settle: 100 * time.Millisecond}})
	if err != nil {
		t.Fatal(err)
	}
	s := res.State.GetJobStatus()
	if s.GetState() != pb.JobState_JOB_STATE_FINISHED || s.GetFinalCheckpoint().GetLocation() != res.Workers[0].Checkpoint {
		t.Fatalf("job status %v, want FINISHED with rank 0's checkpoint %s", s, res.Workers[0].Checkpoint)
	}
	srv := httptest.NewServer(metrics.Handler(reg))
	defer srv.Close()
	resp, err := http.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`ringtrain_job_state{replica="c0",state="finished"} 1`, `ringtrain_job_state{replica="c0",state="running"} 0`} {
		if !strings.Contains(string(body), want+"\n") {
			t.Errorf("missing %q in\n%s", want, body)
		}
	}
	// The metric's states are the coordinator's names.
	for st := pb.JobState_JOB_STATE_RUNNING; st <= pb.JobState_JOB_STATE_FAILED; st++ {
		if !slices.Contains(metrics.JobStates, coordinator.JobStateName(st)) {
			t.Errorf("job state %v (%q) is not among metrics.JobStates %v", st, coordinator.JobStateName(st), metrics.JobStates)
		}
	}
}

// tinyJob prepares a slice of the shipped corpus under dir and returns a job of a
// one-layer GPT over two streams for steps steps, writing to dir/run, that neither
// evaluates nor checkpoints before its end.
func tinyJob(t *testing.T, dir string, steps int64) trainer.Spec {
	t.Helper()
	text := filepath.Join(dir, "input.txt")
	if err := os.WriteFile(text, []byte(examples.TinyShakespeare[:20_000]), 0o644); err != nil {
		t.Fatal(err)
	}
	data := filepath.Join(dir, "data")
	if _, err := shard.PrepareText(context.Background(), "char", shard.PrepareOptions{Inputs: []string{text}, OutDir: data, MinShards: 2}); err != nil {
		t.Fatal(err)
	}
	spec := trainer.DefaultSpec()
	spec.Model = model.Config{Layers: 1, Heads: 2, Embd: 16}
	spec.Data, spec.Out = data, filepath.Join(dir, "run")
	spec.SeqLen, spec.MicroBatch, spec.Streams = 16, 1, 2
	spec.Steps, spec.WarmupSteps = steps, 1
	spec.EvalInterval, spec.EvalBatches, spec.CheckpointInterval = 0, 0, 0
	return spec
}
