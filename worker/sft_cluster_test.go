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

// TestSFTDataParallelEquivalence: the sft objective on 1 and 3 workers trains the
// same weights as the single-process trainer (up to summation order), every rank with
// the same bits: the loss of each step is normalised by the trained targets of the
// global batch, which every rank sums from the dataset's row counts. It runs on the
// dataset one example a row and on the same examples packed (several a row, attention
// blocked between them), whose ranks read each position's example start too.
func TestSFTDataParallelEquivalence(t *testing.T) {
	tmp := t.TempDir()
	exs, err := chat.Synthetic(chat.TaskReverse, 240, 5)
	if err != nil {
		t.Fatal(err)
	}
	var rows bytes.Buffer
	for _, ex := range exs {
		b, _ := chat.MarshalRow(ex)
		rows.Write(append(b, '\n'))
	}
	in := filepath.Join(tmp, "rows.jsonl")
	if err := os.WriteFile(in, rows.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	tok := tokenizer.NewByte()
	tj, _ := tokenizer.Marshal(tok)
	for _, pack := range []bool{false, true} {
		t.Run(fmt.Sprintf("pack=%v", pack), func(t *testing.T) {
			data := filepath.Join(t.TempDir(), "sft")
			if _, err := shard.PrepareSFT(context.Background(), shard.SFTOptions{
				Inputs: []string{in}, Tokenizer: tok, TokenizerJSON: tj, OutDir: data, SeqLen: 64, MinShards: 6, Pack: pack,
			}); err != nil {
				t.Fatal(err)
			}
			spec := tinySpec(data, t.TempDir())
			spec.Objective, spec.SeqLen, spec.Streams, spec.MicroBatch, spec.Steps = trainer.SFT, 64, 6, 2, 4
			ref, err := trainer.Run(context.Background(), spec, trainer.RunOptions{NoTensorBoard: true})
			if err != nil {
				t.Fatalf("reference run: %v", err)
			}
			ck, err := model.LoadCheckpoint(ref.Checkpoint)
			if err != nil {
				t.Fatal(err)
			}
			for _, n := range []int{1, 3} {
				t.Run(fmt.Sprintf("workers=%d", n), func(t *testing.T) {
					s := spec
					s.Out = t.TempDir()
					checkEquivalent(t, runCluster(t, s, n), ck.Params, ref.TrainLoss)
				})
			}
		})
	}
}
