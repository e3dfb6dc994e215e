package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ringtrain/ringtrain/model"
	"github.com/ringtrain/ringtrain/trainer"
)

// TestPrintConfigRoundTrip: `train --print-config` prints the spec its flags make as
// YAML; `--config` reads that file back to the same spec, which prints the same YAML
// again and trains the job the flags describe.
func TestPrintConfigRoundTrip(t *testing.T) {
	dir := t.TempDir()
	flags := []string{"train", "--data", "/data/x", "--out", filepath.Join(dir, "run"), "--init-from", "/ckpt/a",
		"--objective", "masked", "--layers", "3", "--heads", "2", "--embd", "48", "--context", "40", "--seq", "32",
		"--batch", "8", "--streams", "2", "--steps", "123", "--seed", "18446744073709551615", "--lr", "3e-4",
		"--min-lr", "1e-5", "--warmup", "7", "--weight-decay", "0.05", "--beta1", "0.8", "--beta2", "0.99",
		"--grad-clip", "0.5", "--log-interval", "3", "--eval-interval", "9", "--eval-batches", "4",
		"--checkpoint-interval", "27", "--keep-checkpoints", "3", "--max-time", "1h30m", "--target-val-loss", "1.625",
		"--patience", "5", "--print-config"}
	first := mustRun(t, flags...)
	job := filepath.Join(dir, "job.yaml")
	if err := os.WriteFile(job, []byte(first), 0o644); err != nil {
		t.Fatal(err)
	}
	if again := mustRun(t, "train", "--config", job, "--print-config"); again != first {
		t.Errorf("--config of the printed spec prints\n%s\nnot\n%s", again, first)
	}

	got, err := trainer.LoadSpec(job)
	if err != nil {
		t.Fatal(err)
	}
	want := trainer.DefaultSpec()
	want.Data, want.Out, want.InitFrom, want.Objective = "/data/x", filepath.Join(dir, "run"), "/ckpt/a", trainer.MaskedLM
	want.Model = model.Config{Layers: 3, Heads: 2, Embd: 48, MaxSeqLen: 40}
	want.SeqLen, want.MicroBatch, want.Streams, want.Steps, want.Seed = 32, 4, 2, 123, 18446744073709551615
	want.LR, want.MinLR, want.WarmupSteps = 3e-4, 1e-5, 7
	want.AdamW.WeightDecay, want.AdamW.Beta1, want.AdamW.Beta2, want.GradClip = 0.05, 0.8, 0.99, 0.5
	want.LogInterval, want.EvalInterval, want.EvalBatches, want.CheckpointInterval = 3, 9, 4, 27
	want.KeepCheckpoints, want.MaxTime, want.TargetValLoss, want.Patience = 3, trainer.Duration(90*time.Minute), 1.625, 5
	if got != want {
		t.Errorf("the printed spec reads back as\n%+v\nwant\n%+v", got, want)
	}
	for _, key := range []string{"seq_len: 32", "micro_batch: 4", "streams: 2", "warmup_steps: 7", "max_time: 1h30m0s", "keep_checkpoints: 3"} {
		if !strings.Contains(first, "\n"+key+"\n") {
			t.Errorf("--print-config lacks %q:\n%s", key, first)
		}
	}

	// A flag over the printed file overrides it.
	if out := mustRun(t, "train", "--config", job, "--patience", "0", "--print-config"); !strings.Contains(out, "\npatience: 0\n") {
		t.Errorf("--patience 0 over the file printed:\n%s", out)
	}
}

// TestLocalPrintConfig: `local --print-config` prints the job local would run (the
// batch split into one stream per worker, --out and --data under --dir) without
// preparing anything, and `train --config` reads it back to the same spec.
func TestLocalPrintConfig(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "local")
	out := mustRun(t, "local", "--dir", dir, "--workers", "4", "--batch", "8", "--steps", "50", "--target-val-loss", "1.5", "--print-config")
	job := filepath.Join(t.TempDir(), "job.yaml")
	if err := os.WriteFile(job, []byte(out), 0o644); err != nil {
		t.Fatal(err)
	}
	got, err := trainer.LoadSpec(job)
	if err != nil {
		t.Fatalf("local --print-config printed YAML that does not load: %v\n%s", err, out)
	}
	if got.Streams != 4 || got.MicroBatch != 2 || got.Steps != 50 || got.TargetValLoss != 1.5 ||
		got.Data != filepath.Join(dir, "data") || got.Out != filepath.Join(dir, "run") || got.EvalInterval != 200 {
		t.Errorf("local --print-config printed\n%s\nwant 4 streams of 2, 50 steps, target 1.5, data and out under %s, local's eval interval 200", out, dir)
	}
	if _, err := os.Stat(dir); err == nil {
		t.Errorf("local --print-config made %s", dir)
	}
	if again := mustRun(t, "train", "--config", job, "--print-config"); again != out {
		t.Errorf("train --config of local's printed spec prints\n%s\nnot\n%s", again, out)
	}
}

// TestTrainStopsEarlyAndKeepsCheckpoints runs `train` with the stopping and retention
// flags: --max-time stops after the first step with its checkpoint and says so;
// --keep-checkpoints 1 leaves the newest checkpoint, which is also the best.
func TestTrainStopsEarlyAndKeepsCheckpoints(t *testing.T) {
	data := prepareData(t)
	run := filepath.Join(t.TempDir(), "run")
	out := mustRun(t, tinyTrain(data, run, "--steps", "50", "--max-time", "1ns")...)
	for _, want := range []string{"stopping: trained for max_time 1ns", "done: step 1,", "stopped early by max_time at step 1 of 50"} {
		if !strings.Contains(out, want) {
			t.Errorf("train --max-time 1ns printed no %q:\n%s", want, out)
		}
	}
	if latest, err := model.LatestCheckpoint(trainer.CheckpointRoot(run)); err != nil || latest != ckptDir(run, 1) {
		t.Errorf("newest checkpoint %q (%v), want step 1's", latest, err)
	}

	run = filepath.Join(t.TempDir(), "keep")
	mustRun(t, tinyTrain(data, run, "--steps", "6", "--checkpoint-interval", "1", "--eval-interval", "3", "--keep-checkpoints", "1")...)
	entries, err := os.ReadDir(trainer.CheckpointRoot(run))
	if err != nil {
		t.Fatal(err)
	}
	var left []string
	for _, e := range entries {
		left = append(left, e.Name())
	}
	// The best is the step of the lowest val_loss in metrics.jsonl (steps 3 and 6).
	b, err := os.ReadFile(filepath.Join(run, "metrics.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	bestStep, best := int64(0), 0.0
	for line := range strings.SplitSeq(strings.TrimSpace(string(b)), "\n") {
		var rec struct {
			Step    int64    `json:"step"`
			ValLoss *float64 `json:"val_loss"`
		}
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatal(err)
		}
		if rec.ValLoss != nil && (bestStep == 0 || *rec.ValLoss < best) {
			bestStep, best = rec.Step, *rec.ValLoss
		}
	}
	want := []string{"step-000006"}
	if bestStep != 6 {
		want = []string{filepath.Base(ckptDir(run, bestStep)), "step-000006"}
	}
	if strings.Join(left, " ") != strings.Join(want, " ") {
		t.Errorf("--keep-checkpoints 1 left %v, want %v", left, want)
	}
}

// TestStopFlagsRefused: bad values of the new flags are refused naming them.
func TestStopFlagsRefused(t *testing.T) {
	data := prepareData(t)
	for _, c := range []struct {
		args []string
		want string
	}{
		{tinyTrain(data, t.TempDir(), "--keep-checkpoints", "-1"), "keep_checkpoints=-1"},
		{tinyTrain(data, t.TempDir(), "--max-time", "5"), "--max-time"},
		{tinyTrain(data, t.TempDir(), "--max-time", "-1m"), "max_time=-1m0s"},
		{tinyTrain(data, t.TempDir(), "--target-val-loss", "-2"), "target_val_loss=-2"},
		{tinyTrain(data, t.TempDir(), "--patience", "2", "--eval-interval", "0"), "patience=2"},
		{tinyTrain(data, t.TempDir(), "--target-val-loss", "1.5", "--eval-batches", "0"), "target_val_loss=1.5"},
	} {
		_, err := ringtrain(t, c.args...)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("ringtrain %s: error %v, want one naming %q", strings.Join(c.args, " "), err, c.want)
		}
	}
}
