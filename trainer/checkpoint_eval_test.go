package trainer

import (
	"context"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ringtrain/ringtrain/shard"
)

// TestEvaluateCheckpointMatchesTheRun checks that evaluating a run's last checkpoint
// with the run's batch shape gives exactly the validation loss the run reported.
func TestEvaluateCheckpointMatchesTheRun(t *testing.T) {
	data := prepareData(t)
	for _, obj := range []Objective{CausalLM, MaskedLM} {
		t.Run(string(obj), func(t *testing.T) {
			spec := tinySpec(data, t.TempDir())
			spec.Objective, spec.Steps, spec.EvalBatches = obj, 3, 4
			res, err := Run(context.Background(), spec, RunOptions{})
			if err != nil {
				t.Fatal(err)
			}
			loss, n, err := EvaluateCheckpoint(context.Background(), res.Checkpoint, EvalOptions{
				Data: data, SeqLen: spec.SeqLen, MicroBatch: spec.MicroBatch, Batches: spec.EvalBatches,
				Objective: obj, Seed: spec.Seed,
			})
			if err != nil {
				t.Fatal(err)
			}
			if n != spec.EvalBatches {
				t.Errorf("evaluated %d batches, want %d", n, spec.EvalBatches)
			}
			if math.Float64bits(loss) != math.Float64bits(res.ValLoss) {
				t.Errorf("EvaluateCheckpoint loss %v, the run reported %v", loss, res.ValLoss)
			}

			// Defaults: the model's context, 8 sequences a batch, the whole split.
			all, n, err := EvaluateCheckpoint(context.Background(), res.Checkpoint, EvalOptions{Data: data, Objective: obj, Seed: spec.Seed})
			if err != nil {
				t.Fatal(err)
			}
			ds, err := shard.Open(data)
			if err != nil {
				t.Fatal(err)
			}
			var val int64
			for _, k := range ds.Manifest().ValTokens() {
				val += k
			}
			// Every window of T+1 tokens, in whole batches of 8 and a partial one.
			rows := int((val-int64(spec.SeqLen)-1)/int64(spec.SeqLen) + 1)
			if want := (rows + 7) / 8; n != want || n < 40 {
				t.Errorf("the whole %d-token split gave %d batches of 8 x %d, want %d (%d windows)", val, n, spec.SeqLen, want, rows)
			}
			if math.IsNaN(all) || math.Abs(all-loss) > 0.5 {
				t.Errorf("loss over the whole split %v, over 4 batches %v", all, loss)
			}
		})
	}
}

// TestEvaluateCheckpointRefusesAnotherTokenizer evaluates a checkpoint on a dataset
// prepared with a different character set.
func TestEvaluateCheckpointRefusesAnotherTokenizer(t *testing.T) {
	spec := tinySpec(prepareData(t), t.TempDir())
	spec.Steps = 1
	res, err := Run(context.Background(), spec, RunOptions{})
	if err != nil {
		t.Fatal(err)
	}
	tmp := t.TempDir()
	text := filepath.Join(tmp, "abc.txt")
	if err := os.WriteFile(text, []byte(strings.Repeat("abc cab bca\n", 2000)), 0o644); err != nil {
		t.Fatal(err)
	}
	other := filepath.Join(tmp, "data")
	if _, err := shard.PrepareText(context.Background(), "char", shard.PrepareOptions{Inputs: []string{text}, OutDir: other, MinShards: 1}); err != nil {
		t.Fatal(err)
	}
	_, _, err = EvaluateCheckpoint(context.Background(), res.Checkpoint, EvalOptions{Data: other})
	if err == nil || !strings.Contains(err.Error(), "different tokenizers") {
		t.Fatalf("evaluating on another tokenizer's data: error %v, want a tokenizer mismatch", err)
	}
}

// TestEvaluateCheckpointTakesTheTrainedObjective evaluates a masked-LM checkpoint
// without naming an objective or a seed: the report measures the masked objective
// with the run's seed and mask rate, so it gives exactly the run's validation loss;
// asking for the causal objective measures something else.
func TestEvaluateCheckpointTakesTheTrainedObjective(t *testing.T) {
	data := prepareData(t)
	spec := tinySpec(data, t.TempDir())
	spec.Objective, spec.Steps, spec.EvalBatches, spec.MaskRate, spec.Seed = MaskedLM, 3, 4, 0.3, 11
	res, err := Run(context.Background(), spec, RunOptions{})
	if err != nil {
		t.Fatal(err)
	}
	shape := EvalOptions{Data: data, SeqLen: spec.SeqLen, MicroBatch: spec.MicroBatch, Batches: spec.EvalBatches}
	r, err := EvaluateCheckpointReport(context.Background(), res.Checkpoint, shape)
	if err != nil {
		t.Fatal(err)
	}
	if r.Objective != MaskedLM || r.Seed != spec.Seed || r.Split != "val" || r.Batches != spec.EvalBatches {
		t.Errorf("report %+v, want the masked objective, seed %d, the val split and %d batches", r, spec.Seed, spec.EvalBatches)
	}
	if math.Float64bits(r.Loss) != math.Float64bits(res.ValLoss) {
		t.Errorf("loss %v, the run reported %v", r.Loss, res.ValLoss)
	}
	if r.Perplexity != math.Exp(r.Loss) {
		t.Errorf("perplexity %v, want exp(%v) = %v", r.Perplexity, r.Loss, math.Exp(r.Loss))
	}
	positions := int64(spec.EvalBatches * spec.MicroBatch * spec.SeqLen)
	if r.Tokens <= 0 || r.Tokens >= positions {
		t.Errorf("masked objective scored %d tokens, want some of the %d positions", r.Tokens, positions)
	}

	shape.Objective = CausalLM
	c, err := EvaluateCheckpointReport(context.Background(), res.Checkpoint, shape)
	if err != nil {
		t.Fatal(err)
	}
	if c.Objective != CausalLM || c.Tokens != positions || c.Loss == r.Loss {
		t.Errorf("causal report %+v: want every one of %d positions scored and a loss other than the masked %v", c, positions, r.Loss)
	}

	// Another seed masks other positions.
	shape.Objective, shape.Seed = "", 99
	s, err := EvaluateCheckpointReport(context.Background(), res.Checkpoint, shape)
	if err != nil {
		t.Fatal(err)
	}
	if s.Seed != 99 || s.Loss == r.Loss {
		t.Errorf("seed 99: report %+v, want a loss other than seed %d's %v", s, spec.Seed, r.Loss)
	}
}

// TestEvaluateCheckpointTrainSplit measures a checkpoint on its train split: the
// whole split in batches of b x T, a loss of its own.
func TestEvaluateCheckpointTrainSplit(t *testing.T) {
	data := prepareData(t)
	spec := tinySpec(data, t.TempDir())
	spec.Steps = 3
	res, err := Run(context.Background(), spec, RunOptions{})
	if err != nil {
		t.Fatal(err)
	}
	o := EvalOptions{Data: data, Split: "train", SeqLen: 16, MicroBatch: 8}
	r, err := EvaluateCheckpointReport(context.Background(), res.Checkpoint, o)
	if err != nil {
		t.Fatal(err)
	}
	ds, err := shard.Open(data)
	if err != nil {
		t.Fatal(err)
	}
	var train int64
	for _, k := range ds.Manifest().TrainTokens() {
		train += k
	}
	// Every window of 17 tokens every 16: whole batches of 8 and a partial one.
	rows := int((train-17)/16 + 1)
	if want := (rows + 7) / 8; r.Split != "train" || r.Batches != want || r.Tokens != int64(rows*16) {
		t.Errorf("train split: report %+v, want %d batches of 8 x 16 (%d windows) over its %d tokens", r, want, rows, train)
	}
	o.Split = ""
	v, err := EvaluateCheckpointReport(context.Background(), res.Checkpoint, o)
	if err != nil {
		t.Fatal(err)
	}
	if v.Split != "val" || v.Batches >= r.Batches || v.Loss == r.Loss {
		t.Errorf("val split %+v, train split %+v: want a smaller split with another loss", v, r)
	}
	o.Split = "test"
	if _, err := EvaluateCheckpointReport(context.Background(), res.Checkpoint, o); err == nil || !strings.Contains(err.Error(), `"test"`) {
		t.Errorf("split test: error %v, want one naming it", err)
	}
}
