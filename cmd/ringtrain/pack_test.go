package main

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/ringtrain/ringtrain/shard"
)

// TestSFTPackedCommands prepares synthetic tasks with --pack and trains a few steps on
// them from the command line: prepare reports examples and rows, the manifest names a
// segments sidecar per shard, and train runs the sft objective on the packed rows with
// the plain text's refusal of --pack unchanged.
func TestSFTPackedCommands(t *testing.T) {
	tmp := t.TempDir()
	data := filepath.Join(tmp, "packed")
	out := mustRun(t, "prepare", "--synthetic", "upper,arith", "--synthetic-examples", "60", "--synthetic-val", "10",
		"--tokenizer", "byte", "--seq", "128", "--min-shards", "2", "--pack", "--out", data)
	for _, want := range []string{"prepared " + data + ": sft packed, template plain", "rows of 129 tokens (--seq 128)"} {
		if !strings.Contains(out, want) {
			t.Errorf("prepare --pack output lacks %q:\n%s", want, out)
		}
	}
	ds, err := shard.Open(data)
	if err != nil {
		t.Fatal(err)
	}
	m := ds.Manifest()
	if m.SFT == nil || !m.SFT.Packed || m.SFT.PackedRows >= m.SFT.Examples {
		t.Fatalf("sft section %+v: want packed, fewer rows than examples", m.SFT)
	}
	for _, s := range append(append([]shard.ShardInfo{}, m.Train...), m.Val...) {
		if s.Segments == nil {
			t.Errorf("shard %s has no segments sidecar", s.File)
		}
	}
	run := filepath.Join(tmp, "run")
	out = mustRun(t, "train", "--data", data, "--out", run, "--layers", "1", "--heads", "2", "--embd", "16",
		"--seq", "128", "--batch", "4", "--steps", "3", "--eval-batches", "1", "--tensorboard=false")
	for _, want := range []string{"training the sft objective", "done: step 3,"} {
		if !strings.Contains(out, want) {
			t.Errorf("train output lacks %q:\n%s", want, out)
		}
	}
	if _, err := ringtrain(t, "prepare", "--input", filepath.Join(data, "synthetic", "train.jsonl"), "--tokenizer", "byte",
		"--pack", "--out", filepath.Join(tmp, "text")); err == nil || !strings.Contains(err.Error(), "--pack") {
		t.Errorf("--pack on plain text: %v", err)
	}
}
