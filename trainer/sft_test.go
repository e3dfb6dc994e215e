package trainer

import (
	"bytes"
	"context"
	"errors"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ringtrain/ringtrain/chat"
	"github.com/ringtrain/ringtrain/examples"
	"github.com/ringtrain/ringtrain/model"
	"github.com/ringtrain/ringtrain/shard"
	"github.com/ringtrain/ringtrain/tokenizer"
)

// sftSeq is the T of the SFT test datasets: "### User:\nUppercase: a b c\n\n### Assistant:\n"
// and its answer fit 64 bytes.
const sftSeq = 64

// prepareSFTData writes n synthetic uppercase examples (with 40 validation rows) and
// prepares them with the byte tokenizer into a fresh SFT dataset, which it returns.
func prepareSFTData(t testing.TB, n int) string {
	t.Helper()
	return prepareSFTDataWith(t, n, shard.SFTOptions{SeqLen: sftSeq, MinShards: 4})
}

// prepareSFTDataWith is prepareSFTData with the given options (inputs, tokenizer and
// output filled in).
func prepareSFTDataWith(t testing.TB, n int, o shard.SFTOptions) string {
	t.Helper()
	tmp := t.TempDir()
	var rows bytes.Buffer
	exs, err := chat.Synthetic(chat.TaskUpper, n, 3)
	if err != nil {
		t.Fatal(err)
	}
	for _, ex := range exs {
		b, _ := chat.MarshalRow(ex)
		rows.Write(append(b, '\n'))
	}
	in := filepath.Join(tmp, "rows.jsonl")
	if err := os.WriteFile(in, rows.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	tok := tokenizer.NewByte()
	tj, err := tokenizer.Marshal(tok)
	if err != nil {
		t.Fatal(err)
	}
	data := filepath.Join(tmp, "sft")
	o.Inputs, o.Tokenizer, o.TokenizerJSON, o.OutDir = []string{in}, tok, tj, data
	if _, err := shard.PrepareSFT(context.Background(), o); err != nil {
		t.Fatalf("prepare sft: %v", err)
	}
	return data
}

func sftSpec(data, out string) Spec {
	s := tinySpec(data, out)
	s.SeqLen = sftSeq
	s.MicroBatch, s.Streams = 2, 3
	return s
}

// TestSFTObjectiveFromDataset checks how the objective and the dataset agree: an SFT
// dataset under the default objective trains sft and says so, and the mismatches are
// errors naming the fields.
func TestSFTObjectiveFromDataset(t *testing.T) {
	data := prepareSFTData(t, 120)
	spec := sftSpec(data, t.TempDir())
	p, err := Prepare(context.Background(), spec)
	if err != nil {
		t.Fatal(err)
	}
	if p.Spec.Objective != SFT || !strings.Contains(p.ObjectiveNote, "sft objective") {
		t.Fatalf("objective %q, note %q", p.Spec.Objective, p.ObjectiveNote)
	}
	for _, tt := range []struct {
		change func(*Spec)
		want   string
	}{
		{func(s *Spec) { s.SeqLen = 32 }, "seq_len must be 64"},
		{func(s *Spec) { s.Objective = MaskedLM }, "objective=masked"},
		{func(s *Spec) { s.Epochs, s.Steps = 2, 5 }, "steps=5 and epochs=2 disagree"},
	} {
		s := spec
		tt.change(&s)
		if _, err := Prepare(context.Background(), s); !errors.Is(err, ErrBadSpec) || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("want an error with %q, got %v", tt.want, err)
		}
	}
	plain := tinySpec(prepareData(t), t.TempDir())
	plain.Objective = SFT
	if _, err := Prepare(context.Background(), plain); !errors.Is(err, ErrBadSpec) || !strings.Contains(err.Error(), "needs an SFT dataset") {
		t.Errorf("sft on plain text: %v", err)
	}
	// Epochs resolve to steps from the examples: 120 rows, 12 held out, 108 in 4 shards
	// of 27 rows; stream 0 owns shards 0 and 3 (54 rows), streams 1 and 2 one shard
	// each: 27 / 2 = 13 steps an epoch.
	s := spec
	s.Epochs, s.Steps = 2, 0
	r, err := ResolveEpochs(s)
	if err != nil || r.Steps != 26 {
		t.Fatalf("ResolveEpochs: steps %d, %v; want 26", r.Steps, err)
	}
}

// TestSFTGradientsSplitOverRanks checks the decision that makes an SFT trajectory
// independent of the world size: the streams of a step computed by one trainer, or
// split over two (as two ranks would, then summed as the ring does), give the same
// gradient and mean loss, each micro-batch scaled by the trained targets of the whole
// global batch, which every trainer derives from the data plan alone.
func TestSFTGradientsSplitOverRanks(t *testing.T) {
	spec := sftSpec(prepareSFTData(t, 120), t.TempDir())
	one, _ := newTrainer(t, spec)
	a, _ := newTrainer(t, spec)
	b, _ := newTrainer(t, spec)
	ctx := context.Background()
	for step := int64(0); step < 3; step++ {
		all, err := one.Gradients(ctx, step, []int{0, 1, 2}, nil)
		if err != nil {
			t.Fatal(err)
		}
		la, err := a.Gradients(ctx, step, []int{0}, nil)
		if err != nil {
			t.Fatal(err)
		}
		lb, err := b.Gradients(ctx, step, []int{1, 2}, nil)
		if err != nil {
			t.Fatal(err)
		}
		sum := make([]float32, len(a.Model.Grads.Slab))
		for i := range sum {
			sum[i] = a.Model.Grads.Slab[i] + b.Model.Grads.Slab[i]
		}
		if d := relL2(sum, one.Model.Grads.Slab); d > 1e-6 {
			t.Fatalf("step %d: gradient of the split streams differs by %.3g (relative L2)", step, d)
		}
		if n := one.GlobalTargets(step); n < 6 || n != a.GlobalTargets(step) {
			t.Fatalf("step %d: global targets %d and %d", step, n, a.GlobalTargets(step))
		}
		if m1, m2 := one.MeanLoss(step, all), a.MeanLoss(step, la+lb); math.Abs(m1-m2) > 1e-6 {
			t.Fatalf("step %d: mean loss %v vs %v", step, m1, m2)
		}
		if m := one.MeanLoss(step, all); !(m > 0 && m < 10) {
			t.Fatalf("step %d: mean loss %v is not a mean over answer tokens", step, m)
		}
	}
}

// TestSFTRunFromPretrained fine-tunes from a checkpoint for an epoch and checks the
// run's records: the checkpoint names the chat template, the steps come from the
// epochs, the evaluation reports token accuracy (metrics.jsonl and TensorBoard), the
// loss falls; and init_from with another tokenizer is refused.
func TestSFTRunFromPretrained(t *testing.T) {
	// A byte-level pre-training run, so its tokenizer is the SFT dataset's.
	tmp := t.TempDir()
	text := filepath.Join(tmp, "in.txt")
	if err := os.WriteFile(text, []byte(examples.TinyShakespeare[:20_000]), 0o644); err != nil {
		t.Fatal(err)
	}
	pre := filepath.Join(tmp, "pre")
	if _, err := shard.PrepareText(context.Background(), "byte", shard.PrepareOptions{Inputs: []string{text}, OutDir: pre, MinShards: 4}); err != nil {
		t.Fatal(err)
	}
	base := tinySpec(pre, filepath.Join(tmp, "base"))
	base.SeqLen, base.Steps = sftSeq, 2
	resBase, err := Run(context.Background(), base, RunOptions{NoTensorBoard: true})
	if err != nil {
		t.Fatal(err)
	}
	spec := sftSpec(prepareSFTData(t, 120), filepath.Join(tmp, "sft"))
	spec.InitFrom, spec.Epochs, spec.Steps = resBase.Checkpoint, 1, 0
	spec.Model.MaxSeqLen = sftSeq
	spec.EvalInterval, spec.EvalBatches = 0, 3
	res, err := Run(context.Background(), spec, RunOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if res.Step != 13 || math.IsNaN(res.ValTokenAccuracy) || res.ValTokenAccuracy < 0 || res.ValTokenAccuracy > 1 {
		t.Fatalf("result %+v", res)
	}
	st, err := model.ReadTrainerState(res.Checkpoint)
	if err != nil || st.ChatTemplate != chat.Plain {
		t.Fatalf("checkpoint chat_template %q, %v", st.ChatTemplate, err)
	}
	recs := readMetrics(t, spec.Out)
	last := recs[len(recs)-1]
	if _, ok := last["val_token_acc"]; !ok {
		t.Fatalf("last metrics record has no val_token_acc: %v", last)
	}
	_, _, series := tbSeries(t, spec.Out)
	if acc := series["val/token_acc"]; len(acc) != 1 || acc[13] != float32(last["val_token_acc"].(float64)) {
		t.Errorf("TensorBoard val/token_acc %v, metrics.jsonl %v", acc, last["val_token_acc"])
	}
	checkAgainstMetrics(t, spec.Out, series)
	if first, end := recs[0]["loss"].(float64), last["loss"].(float64); !(end < first) {
		t.Errorf("loss %v -> %v did not fall", first, end)
	}
	// A checkpoint of another tokenizer (a BPE of more ids) cannot start an SFT run
	// on byte ids.
	bpe := filepath.Join(tmp, "bpe")
	if _, err := shard.PrepareText(context.Background(), "bpe:300", shard.PrepareOptions{Inputs: []string{text}, OutDir: bpe, MinShards: 4}); err != nil {
		t.Fatal(err)
	}
	other := tinySpec(bpe, filepath.Join(tmp, "bpe-run"))
	other.SeqLen, other.Steps = sftSeq, 1
	resChar, err := Run(context.Background(), other, RunOptions{NoTensorBoard: true})
	if err != nil {
		t.Fatal(err)
	}
	bad := sftSpec(spec.Data, filepath.Join(tmp, "bad"))
	bad.InitFrom, bad.Model = resChar.Checkpoint, resChar.checkpointModel(t)
	if _, err := Run(context.Background(), bad, RunOptions{NoTensorBoard: true}); !errors.Is(err, ErrBadSpec) || !strings.Contains(err.Error(), "different tokenizer") {
		t.Errorf("init_from a char checkpoint: %v", err)
	}
}

// checkpointModel returns the model shape of the run's checkpoint.
func (r *Result) checkpointModel(t *testing.T) model.Config {
	t.Helper()
	c, err := model.ReadConfig(r.Checkpoint)
	if err != nil {
		t.Fatal(err)
	}
	return c
}
