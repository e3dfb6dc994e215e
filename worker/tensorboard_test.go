package worker_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ringtrain/ringtrain/metrics/tensorboard/tbtest"
	"github.com/ringtrain/ringtrain/trainer"
	"github.com/ringtrain/ringtrain/worker"
)

// checkTensorBoard reads the event files of a finished one-generation cluster run
// with the independent reader: rank 0 alone wrote one file, restarting at step 1,
// then one event per step with the training scalars and the step's phase times,
// each equal to its field in metrics.jsonl.
func checkTensorBoard(t *testing.T, spec trainer.Spec, res []*worker.Result) {
	t.Helper()
	files, events, err := tbtest.ReadDir(trainer.TensorBoardDir(spec.Out))
	if err != nil {
		t.Fatalf("event files: %v", err)
	}
	if len(files) != 1 || int64(len(events)) != 2+spec.Steps {
		t.Fatalf("event files %v with %d events, want one file of the file_version, a START and %d steps", files, len(events), spec.Steps)
	}
	if events[0].FileVersion != "brain.Event:2" || events[1].SessionStatus != 1 || events[1].Step != 1 {
		t.Errorf("first events %+v, want file_version then START at step 1", events[:2])
	}
	b, err := os.ReadFile(filepath.Join(spec.Out, "metrics.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	fields := map[string]string{"train/loss": "loss", "train/lr": "lr", "train/grad_norm": "grad_norm",
		"train/tokens_per_sec": "tokens_per_sec", "time/step_s": "step_s", "time/compute_s": "compute_s",
		"time/allreduce_s": "allreduce_s", "time/allreduce_busy_s": "allreduce_busy_s",
		"time/optimizer_s": "optimizer_s", "time/waiting_s": "waiting_s"}
	for i, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatal(err)
		}
		e := events[2+i]
		var tags []string
		for _, s := range e.Scalars {
			tags = append(tags, s.Tag)
		}
		if e.Step != int64(i+1) || len(tags) != len(fields) {
			t.Errorf("event %d: step %d, tags %v; want step %d and the tags %v", 2+i, e.Step, tags, i+1, fields)
			continue
		}
		for tag, field := range fields {
			if v, ok := e.Value(tag); !ok || v != float32(rec[field].(float64)) {
				t.Errorf("step %d: %s = %v (%v), metrics.jsonl %s = %v", e.Step, tag, v, ok, field, rec[field])
			}
		}
	}
	last := events[len(events)-1]
	if v, _ := last.Value("train/loss"); v != float32(res[0].Loss) {
		t.Errorf("last train/loss %v, rank 0's loss %v", v, res[0].Loss)
	}
}
