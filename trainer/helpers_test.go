package trainer

import (
	"bufio"
	"context"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"testing"

	"github.com/ringtrain/ringtrain/examples"
	"github.com/ringtrain/ringtrain/model"
	"github.com/ringtrain/ringtrain/shard"
)

// corpusBytes is how much of tiny shakespeare the tests train on: 54k train
// characters in 4 shards and 6k validation characters.
const corpusBytes = 60_000

// prepareData writes the first corpusBytes of tiny shakespeare to a temporary file and
// prepares it character level into a fresh dataset directory, which it returns.
func prepareData(t testing.TB) string {
	t.Helper()
	tmp := t.TempDir()
	text := filepath.Join(tmp, "input.txt")
	if err := os.WriteFile(text, []byte(examples.TinyShakespeare[:corpusBytes]), 0o644); err != nil {
		t.Fatal(err)
	}
	data := filepath.Join(tmp, "data")
	if _, err := shard.PrepareText(context.Background(), "char", shard.PrepareOptions{
		Inputs: []string{text}, OutDir: data, MinShards: 4,
	}); err != nil {
		t.Fatalf("prepare: %v", err)
	}
	return data
}

// tinySpec returns a job small enough to train in milliseconds a step: 2 layers, 2
// heads, 32 wide, 16 tokens of context, one stream of 2 sequences, 6 steps.
func tinySpec(data, out string) Spec {
	s := DefaultSpec()
	s.Model = model.Config{Layers: 2, Heads: 2, Embd: 32}
	s.Data, s.Out = data, out
	s.SeqLen, s.MicroBatch, s.Streams = 16, 2, 1
	s.Steps, s.Seed = 6, 7
	s.LR, s.MinLR, s.WarmupSteps = 1e-2, 1e-3, 2
	s.LogInterval, s.EvalInterval, s.EvalBatches, s.CheckpointInterval = 1, 0, 2, 0
	return s
}

// newTrainer prepares spec and returns a Trainer over a freshly initialised model.
func newTrainer(t testing.TB, spec Spec) (*Trainer, *Prepared) {
	t.Helper()
	p, err := Prepare(context.Background(), spec)
	if err != nil {
		t.Fatalf("prepare job: %v", err)
	}
	m, err := model.New(p.Spec.Model, nil)
	if err != nil {
		t.Fatal(err)
	}
	m.InitWeights(p.Spec.Seed)
	tr, err := New(p.Spec, m, model.NewAdamW(p.Spec.Model), p.Loader, int32(p.Tokenizer.Mask()))
	if err != nil {
		t.Fatalf("new trainer: %v", err)
	}
	return tr, p
}

// relL2 returns ||a-b|| / ||b||.
func relL2(a, b []float32) float64 {
	var d, n float64
	for i := range a {
		x := float64(a[i]) - float64(b[i])
		d += x * x
		n += float64(b[i]) * float64(b[i])
	}
	return math.Sqrt(d / n)
}

// firstBitDiff returns the first index where a and b differ bit for bit, or -1.
func firstBitDiff(a, b []float32) int {
	if len(a) != len(b) {
		return min(len(a), len(b))
	}
	for i := range a {
		if math.Float32bits(a[i]) != math.Float32bits(b[i]) {
			return i
		}
	}
	return -1
}

// readMetrics returns the records of a run directory's metrics.jsonl.
func readMetrics(t testing.TB, out string) []map[string]any {
	t.Helper()
	f, err := os.Open(filepath.Join(out, "metrics.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var recs []map[string]any
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var r map[string]any
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Fatalf("metrics line %q: %v", sc.Text(), err)
		}
		recs = append(recs, r)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return recs
}
