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
			if want := int((val - 1) / int64(8*spec.SeqLen)); n != want || n < 40 {
				t.Errorf("the whole %d-token split gave %d batches of 8 x %d, want %d", val, n, spec.SeqLen, want)
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
