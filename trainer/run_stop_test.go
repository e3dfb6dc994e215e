package trainer

import (
	"context"
	"errors"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ringtrain/ringtrain/examples"
	"github.com/ringtrain/ringtrain/model"
	"github.com/ringtrain/ringtrain/shard"
)

// stopSpec is tinySpec for 24 steps, evaluating every second step, on which the
// validation loss of this tiny model rises and falls.
func stopSpec(data, out string) Spec {
	s := tinySpec(data, out)
	s.Steps, s.EvalInterval, s.WarmupSteps = 24, 2, 0
	return s
}

// valLosses returns the (step, val_loss) pairs of a run's metrics.jsonl, and its
// training loss by step.
func valLosses(t *testing.T, out string) (steps []int64, vls []float64, loss map[int64]float64) {
	t.Helper()
	loss = map[int64]float64{}
	for _, r := range readMetrics(t, out) {
		step := int64(r["step"].(float64))
		loss[step] = r["loss"].(float64)
		if v, ok := r["val_loss"]; ok {
			steps, vls = append(steps, step), append(vls, v.(float64))
		}
	}
	return steps, vls, loss
}

// checkStoppedAt checks that res stopped early at step by rule, that its final
// checkpoint is that step's (and the newest), and that the run's metrics end there
// with the reference run's losses: stopping changes nothing before it.
func checkStoppedAt(t *testing.T, res *Result, spec Spec, step int64, rule StopReason, refLoss map[int64]float64) {
	t.Helper()
	want := model.CheckpointDir(CheckpointRoot(spec.Out), step)
	if res.Step != step || res.Stopped != rule || res.Checkpoint != want {
		t.Fatalf("result: step %d stopped %q checkpoint %s; want step %d, %q, %s", res.Step, res.Stopped, res.Checkpoint, step, rule, want)
	}
	if latest, err := model.LatestCheckpoint(CheckpointRoot(spec.Out)); err != nil || latest != want {
		t.Errorf("newest checkpoint %q (%v), want %s", latest, err, want)
	}
	ck := loadCkpt(t, spec.Out, step)
	if ck.Trainer.Step != step || ck.Opt.Step != step {
		t.Errorf("final checkpoint at trainer step %d, adamw step %d; want %d", ck.Trainer.Step, ck.Opt.Step, step)
	}
	_, _, loss := valLosses(t, spec.Out)
	if len(loss) != int(step) {
		t.Errorf("metrics.jsonl has %d steps, want %d", len(loss), step)
	}
	for s, l := range loss {
		if refLoss != nil && math.Float64bits(l) != math.Float64bits(refLoss[s]) {
			t.Errorf("step %d: loss %v, the run without stopping rules had %v", s, l, refLoss[s])
		}
	}
}

// TestRunStopsEarly: target_val_loss and patience stop a run at the evaluation where
// the run without them first meets the rule (read from its metrics.jsonl, applied
// here independently), and max_time stops it after its first step; each writes the
// final checkpoint of the step it stopped at.
func TestRunStopsEarly(t *testing.T) {
	data := prepareData(t)
	ctx := context.Background()
	ref := stopSpec(data, t.TempDir())
	if res, err := Run(ctx, ref, RunOptions{}); err != nil || res.Stopped != "" || res.Step != ref.Steps {
		t.Fatalf("reference run: %+v, %v", res, err)
	}
	evalSteps, vls, refLoss := valLosses(t, ref.Out)
	if len(vls) != int(ref.Steps/ref.EvalInterval) {
		t.Fatalf("reference run evaluated %d times, want %d", len(vls), ref.Steps/ref.EvalInterval)
	}

	t.Run("target_val_loss", func(t *testing.T) {
		// The second evaluation's loss: the first evaluation at or below it stops the run.
		target := vls[1]
		stopAt := int64(-1)
		for i, v := range vls {
			if v <= target {
				stopAt = evalSteps[i]
				break
			}
		}
		spec := stopSpec(data, t.TempDir())
		spec.TargetValLoss = target
		var out strings.Builder
		res, err := Run(ctx, spec, RunOptions{Progress: &out})
		if err != nil {
			t.Fatal(err)
		}
		checkStoppedAt(t, res, spec, stopAt, StopTarget, refLoss)
		if !strings.Contains(out.String(), "stopping: val loss") {
			t.Errorf("progress output lacks the stop line:\n%s", out.String())
		}
		if ck := loadCkpt(t, spec.Out, stopAt); ck.Trainer.ValLoss == nil || *ck.Trainer.ValLoss > target {
			t.Errorf("final checkpoint records val_loss %v, want one <= %v", ck.Trainer.ValLoss, target)
		}
	})

	t.Run("patience", func(t *testing.T) {
		const patience = 2
		stopAt, best, since := int64(-1), math.Inf(1), 0
		for i, v := range vls {
			if v < best {
				best, since = v, 0
			} else {
				since++
			}
			if since >= patience {
				stopAt = evalSteps[i]
				break
			}
		}
		if stopAt < 0 || stopAt >= ref.Steps {
			t.Fatalf("the reference's validation losses %v never go %d evaluations without improving: the test needs a run that does", vls, patience)
		}
		spec := stopSpec(data, t.TempDir())
		spec.Patience = patience
		res, err := Run(ctx, spec, RunOptions{})
		if err != nil {
			t.Fatal(err)
		}
		checkStoppedAt(t, res, spec, stopAt, StopPatience, refLoss)
	})

	t.Run("max_time", func(t *testing.T) {
		spec := stopSpec(data, t.TempDir())
		spec.MaxTime = Duration(time.Nanosecond)
		res, err := Run(ctx, spec, RunOptions{})
		if err != nil {
			t.Fatal(err)
		}
		checkStoppedAt(t, res, spec, 1, StopMaxTime, refLoss)

		// Rerun, it resumes and, with its own clock, stops after one more step.
		res, err = Run(ctx, spec, RunOptions{})
		if err != nil {
			t.Fatal(err)
		}
		checkStoppedAt(t, res, spec, 2, StopMaxTime, refLoss)
	})
}

// TestRunKeepCheckpoints: with keep_checkpoints 2 and a checkpoint every second step,
// the run directory ends with the two newest checkpoints and the one of the lowest
// validation loss (read from metrics.jsonl), which records that loss.
func TestRunKeepCheckpoints(t *testing.T) {
	spec := stopSpec(prepareData(t), t.TempDir())
	spec.CheckpointInterval, spec.KeepCheckpoints = 2, 2
	res, err := Run(context.Background(), spec, RunOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if res.Step != spec.Steps || res.Stopped != "" {
		t.Fatalf("result %+v, want the whole run", res)
	}
	evalSteps, vls, _ := valLosses(t, spec.Out)
	bestStep, best := int64(0), math.Inf(1)
	for i, v := range vls {
		if v < best {
			bestStep, best = evalSteps[i], v
		}
	}
	if bestStep >= spec.Steps-2 {
		t.Fatalf("the best validation loss is at step %d, among the newest: the test needs an older best (%v)", bestStep, vls)
	}
	want := []string{filepath.Base(model.CheckpointDir("", bestStep)), "step-000022", "step-000024"}
	es, err := os.ReadDir(CheckpointRoot(spec.Out))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range es {
		got = append(got, e.Name())
	}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("checkpoints left %v, want %v (the best, at step %d with %v, and the newest two)", got, want, bestStep, best)
	}
	if ck := loadCkpt(t, spec.Out, bestStep); ck.Trainer.ValLoss == nil || *ck.Trainer.ValLoss != best {
		t.Errorf("the best checkpoint records val_loss %v, want %v", ck.Trainer.ValLoss, best)
	}
	if ck := loadCkpt(t, spec.Out, 22); ck.Trainer.ValLoss == nil {
		t.Errorf("the checkpoint of evaluation step 22 records no val_loss")
	}

	// keep_checkpoints 0 (the default) keeps every one.
	all := stopSpec(spec.Data, t.TempDir())
	all.Steps, all.CheckpointInterval = 8, 2
	if _, err := Run(context.Background(), all, RunOptions{}); err != nil {
		t.Fatal(err)
	}
	refs, err := model.ListCheckpoints(CheckpointRoot(all.Out))
	if err != nil || len(refs) != 4 {
		t.Errorf("keep_checkpoints 0: %d checkpoints (%v), want all 4", len(refs), err)
	}
}

// TestRunStopRulesNeedValidation: target_val_loss or patience on a dataset without a
// validation split is refused before training, naming the field and the dataset.
func TestRunStopRulesNeedValidation(t *testing.T) {
	tmp := t.TempDir()
	text := filepath.Join(tmp, "input.txt")
	if err := os.WriteFile(text, []byte(examples.TinyShakespeare[:20_000]), 0o644); err != nil {
		t.Fatal(err)
	}
	data := filepath.Join(tmp, "data")
	if _, err := shard.PrepareText(context.Background(), "char", shard.PrepareOptions{
		Inputs: []string{text}, OutDir: data, ValFraction: shard.NoValidation,
	}); err != nil {
		t.Fatal(err)
	}
	for field, edit := range map[string]func(*Spec){
		"target_val_loss=1.5": func(s *Spec) { s.TargetValLoss = 1.5 },
		"patience=3":          func(s *Spec) { s.Patience = 3 },
	} {
		spec := tinySpec(data, filepath.Join(t.TempDir(), "run"))
		spec.EvalInterval = 2
		edit(&spec)
		_, err := Run(context.Background(), spec, RunOptions{})
		if !errors.Is(err, ErrBadSpec) || !strings.Contains(err.Error(), field) || !strings.Contains(err.Error(), data) {
			t.Errorf("%s without a validation split: error %v, want ErrBadSpec naming the field and %s", field, err, data)
		}
		if _, err := os.Stat(spec.Out); err == nil {
			t.Errorf("%s: the refused run created %s", field, spec.Out)
		}
	}
}
