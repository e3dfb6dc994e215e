package main

import (
	"context"
	"math"
	"os"
	"path/filepath"
	"testing"

	"github.com/ringtrain/ringtrain/model"
	"github.com/ringtrain/ringtrain/safetensors"
	"github.com/ringtrain/ringtrain/tokenizer"
)

// The written logits are the model's: the last row equals what the incremental
// decoder computes for the same prefix.
func TestReference(t *testing.T) {
	tok := tokenizer.NewByte()
	c := model.Config{Layers: 1, Heads: 2, Embd: 8, MaxSeqLen: 8, VocabSize: tok.VocabSize()}
	m, err := model.New(c, nil)
	if err != nil {
		t.Fatal(err)
	}
	m.InitWeights(1)
	own, err := tokenizer.Marshal(tok)
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "export")
	if err := model.ExportHF(dir, c, m.Params.Slab, model.WithTokenizerJSON(own)); err != nil {
		t.Fatal(err)
	}
	text := filepath.Join(t.TempDir(), "text.txt")
	if err := writeFile(text, "hello, world"); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "ref.safetensors")
	if err := run(dir, text, out, 64); err != nil {
		t.Fatal(err)
	}
	f, err := safetensors.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	info, _ := f.Tensor("ids")
	if info.DType != safetensors.I32 || info.NumElements() != len("hello, world") {
		t.Fatalf("ids %+v", info)
	}
	logits, err := f.Float32("logits")
	if err != nil {
		t.Fatal(err)
	}
	if len(logits) != 8*c.VocabSize { // T capped at n_positions
		t.Fatalf("%d logits, want %d", len(logits), 8*c.VocabSize)
	}
	d := m.NewDecoder()
	prefix := make([]int32, 8)
	for i, b := range []byte("hello, w") {
		prefix[i] = int32(b)
	}
	last, err := d.Prefill(context.Background(), prefix)
	if err != nil {
		t.Fatal(err)
	}
	for v, want := range last {
		if got := logits[7*c.VocabSize+v]; math.Abs(float64(got-want)) > 1e-4 {
			t.Fatalf("logit %d at the last position: %v, decoder %v", v, got, want)
		}
	}
}

func writeFile(path, s string) error { return os.WriteFile(path, []byte(s), 0o644) }
