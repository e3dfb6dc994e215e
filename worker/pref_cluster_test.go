package worker_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/ringtrain/ringtrain/chat"
	"github.com/ringtrain/ringtrain/model"
	"github.com/ringtrain/ringtrain/shard"
	"github.com/ringtrain/ringtrain/tokenizer"
	"github.com/ringtrain/ringtrain/trainer"
)

// TestPreferenceDataParallelEquivalence: the reward and dpo objectives on 1 and 3
// workers train the same weights as the single-process trainer (up to summation
// order), every rank with the same bits. Each pair's two rows stay in one stream, and
// each step's loss is normalised by the global batch's pair count, which every rank
// knows from the spec. Both start from one short sft run's checkpoint (the reward
// model with a fresh score head, dpo with that checkpoint as its frozen reference).
func TestPreferenceDataParallelEquivalence(t *testing.T) {
	tmp := t.TempDir()
	tok := tokenizer.NewByte()
	tj, _ := tokenizer.Marshal(tok)
	pairs, err := chat.SyntheticPairs(chat.TaskArith, 240, 5)
	if err != nil {
		t.Fatal(err)
	}
	var prefRows, sftRows bytes.Buffer
	for _, p := range pairs {
		b, _ := chat.MarshalPair(p)
		prefRows.Write(append(b, '\n'))
		b, _ = chat.MarshalRow(p.Chosen)
		sftRows.Write(append(b, '\n'))
	}
	prefIn, sftIn := filepath.Join(tmp, "prefs.jsonl"), filepath.Join(tmp, "rows.jsonl")
	for path, b := range map[string][]byte{prefIn: prefRows.Bytes(), sftIn: sftRows.Bytes()} {
		if err := os.WriteFile(path, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	const T = 64
	prefData, sftData := filepath.Join(tmp, "prefs"), filepath.Join(tmp, "sft")
	if _, err := shard.PrepareSFT(context.Background(), shard.SFTOptions{
		Inputs: []string{prefIn}, Tokenizer: tok, TokenizerJSON: tj, OutDir: prefData, SeqLen: T, MinShards: 6, Preference: true,
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := shard.PrepareSFT(context.Background(), shard.SFTOptions{
		Inputs: []string{sftIn}, Tokenizer: tok, TokenizerJSON: tj, OutDir: sftData, SeqLen: T, MinShards: 6,
	}); err != nil {
		t.Fatal(err)
	}
	base := tinySpec(sftData, t.TempDir())
	base.Objective, base.SeqLen, base.Streams, base.MicroBatch, base.Steps = trainer.SFT, T, 6, 2, 3
	sft, err := trainer.Run(context.Background(), base, trainer.RunOptions{NoTensorBoard: true})
	if err != nil {
		t.Fatalf("sft run: %v", err)
	}
	sftCk, err := model.LoadCheckpoint(sft.Checkpoint)
	if err != nil {
		t.Fatal(err)
	}
	for _, obj := range []trainer.Objective{trainer.Reward, trainer.DPO} {
		t.Run(string(obj), func(t *testing.T) {
			spec := tinySpec(prefData, t.TempDir())
			spec.Model = sftCk.Config
			spec.Objective, spec.SeqLen, spec.Streams, spec.MicroBatch, spec.Steps = obj, T, 6, 2, 4
			spec.InitFrom = sft.Checkpoint
			// Much of a preference gradient is near zero (dpo: chosen and rejected
			// rows share their prompt, so their terms nearly cancel; reward: the
			// fresh score head is small), and AdamW turns the rounding of such
			// entries into whole steps: a smaller rate than tinySpec's keeps the
			// summation-order noise under the tolerance.
			spec.LR, spec.MinLR = 3e-3, 3e-4
			if obj == trainer.DPO {
				spec.Beta = 0.5
			}
			ref, err := trainer.Run(context.Background(), spec, trainer.RunOptions{NoTensorBoard: true})
			if err != nil {
				t.Fatalf("reference run: %v", err)
			}
			ck, err := model.LoadCheckpoint(ref.Checkpoint)
			if err != nil {
				t.Fatal(err)
			}
			if obj == trainer.Reward && ck.Config.NumLabels != 1 {
				t.Fatalf("reward checkpoint has num_labels %d", ck.Config.NumLabels)
			}
			for _, n := range []int{1, 3} {
				t.Run(fmt.Sprintf("workers=%d", n), func(t *testing.T) {
					s := spec
					s.Out = t.TempDir()
					checkEquivalent(t, runCluster(t, s, n), ck.Params, ref.TrainLoss)
				})
			}
			// In exact mode the gradients are summed in fixed point: 3 workers give
			// the single process's weights bit for bit.
			t.Run("exact/workers=3", func(t *testing.T) {
				one := spec
				one.Exact, one.Out = true, t.TempDir()
				r1, err := trainer.Run(context.Background(), one, trainer.RunOptions{NoTensorBoard: true})
				if err != nil {
					t.Fatalf("exact reference run: %v", err)
				}
				ck1, err := model.LoadCheckpoint(r1.Checkpoint)
				if err != nil {
					t.Fatal(err)
				}
				s := one
				s.Out = t.TempDir()
				for rank, got := range runCluster(t, s, 3) {
					for i := range got.Params {
						if got.Params[i] != ck1.Params[i] {
							t.Fatalf("rank %d: weight %d = %v, the single process %v", rank, i, got.Params[i], ck1.Params[i])
						}
					}
				}
			})
		})
	}
}
