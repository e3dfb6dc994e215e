package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ringtrain/ringtrain/examples"
	"github.com/ringtrain/ringtrain/model"
	"github.com/ringtrain/ringtrain/shard"
)

// TestSFTPipeline runs the fine-tuning path through the command line: pre-train a tiny
// byte-level model, prepare synthetic tasks and a file of rows with renamed columns,
// fine-tune from the checkpoint for an epoch (objective and model shape taken from the
// dataset and the checkpoint), on one process and on a local cluster of two workers,
// and score exact match.
func TestSFTPipeline(t *testing.T) {
	tmp := t.TempDir()
	text := filepath.Join(tmp, "in.txt")
	if err := os.WriteFile(text, []byte(examples.TinyShakespeare[:20_000]), 0o644); err != nil {
		t.Fatal(err)
	}
	pre := filepath.Join(tmp, "pre")
	mustRun(t, "prepare", "--input", text, "--tokenizer", "byte", "--out", pre, "--min-shards", "4")
	base := filepath.Join(tmp, "base")
	mustRun(t, "train", "--data", pre, "--out", base, "--layers", "1", "--heads", "2", "--embd", "16",
		"--seq", "64", "--batch", "4", "--steps", "2", "--eval-batches", "0", "--tensorboard=false")
	baseCkpt := ckptDir(base, 2)

	sft := filepath.Join(tmp, "sft")
	out := mustRun(t, "prepare", "--synthetic", "upper,arith", "--synthetic-examples", "60", "--synthetic-val", "10",
		"--tokenizer", filepath.Join(pre, "tokenizer.json"), "--seq", "64", "--min-shards", "2", "--out", sft)
	for _, want := range []string{"prepared " + sft + ": sft, template plain, tokenizer byte", "120 train examples in 2 shards",
		"rows of 65 tokens (--seq 64)", "(--overflow skip): 0 truncated, 0 skipped"} {
		if !strings.Contains(out, want) {
			t.Errorf("prepare --synthetic output lacks %q:\n%s", want, out)
		}
	}
	ds, err := shard.Open(sft)
	if err != nil || ds.Manifest().SFT == nil || ds.Manifest().SFT.Template != "plain" {
		t.Fatalf("dataset %v, %v", ds, err)
	}

	// Own rows with renamed columns; the goodbye example is one token too long (its
	// end-of-text id is cut).
	rows := filepath.Join(tmp, "rows.jsonl")
	var b strings.Builder
	for range 8 {
		b.WriteString(`{"q":"Say hello","a":"hello"}` + "\n" + `{"q":"Say goodbye now","a":"goodbye"}` + "\n")
	}
	if err := os.WriteFile(rows, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	own := filepath.Join(tmp, "own")
	out = mustRun(t, "prepare", "--format", "sft", "--input", rows, "--columns", "instruction=q,output=a",
		"--tokenizer", "byte", "--seq", "48", "--overflow", "truncate", "--min-shards", "2", "--out", own)
	if !strings.Contains(out, "(--overflow truncate): 8 truncated, 0 skipped") {
		t.Errorf("prepare --format sft output:\n%s", out)
	}

	tuned := filepath.Join(tmp, "tuned")
	out = mustRun(t, "train", "--data", sft, "--init-from", baseCkpt, "--out", tuned, "--seq", "64", "--batch", "4",
		"--streams", "2", "--epochs", "1", "--eval-batches", "2", "--eval-interval", "0", "--tensorboard=false")
	// 120 train examples (validation rows are their own) in 2 shards of 60; 2 rows a
	// stream a step: 30 steps.
	for _, want := range []string{"is an SFT dataset (template plain): training the sft objective", "1 layer, 2 heads, 16 wide",
		"run: 30 steps, 1 epochs", "val token accuracy", "done: step 30,"} {
		if !strings.Contains(out, want) {
			t.Errorf("train output lacks %q:\n%s", want, out)
		}
	}
	st, err := model.ReadTrainerState(ckptDir(tuned, 30))
	if err != nil || st.ChatTemplate != "plain" {
		t.Fatalf("tuned checkpoint chat_template %q, %v", st.ChatTemplate, err)
	}

	out = mustRun(t, "eval", "--checkpoint", ckptDir(tuned, 30), "--exact-match", filepath.Join(sft, "synthetic", "val.jsonl"), "--json")
	var em exactMatchJSON
	if err := json.Unmarshal([]byte(out), &em); err != nil || em.Template != "plain" || em.Examples < 10 || em.Correct > em.Examples {
		t.Fatalf("eval --exact-match --json: %q (%v)", out, err)
	}
	// The base model is scored on the answer tokens of the SFT dataset, T from its rows.
	out = mustRun(t, "eval", "--checkpoint", baseCkpt, "--data", sft)
	if !strings.Contains(out, "batches of 8 x 64), sft objective") || !strings.Contains(out, "token accuracy") {
		t.Errorf("eval on the sft dataset: %s", out)
	}

	// The same job on a local cluster of two workers.
	dir := t.TempDir()
	out = mustRun(t, "local", "--workers", "2", "--data", sft, "--init-from", baseCkpt, "--dir", dir, "--seq", "64", "--batch", "4",
		"--steps", "3", "--eval-batches", "0", "--sample-tokens", "0", "--tensorboard=false")
	if !strings.Contains(out, "done: step 3,") {
		t.Errorf("local sft output:\n%s", out)
	}

	for _, bad := range [][]string{
		{"prepare", "--format", "sft", "--input", rows, "--tokenizer", "byte", "--out", filepath.Join(tmp, "x"), "--columns", "colour=q"},
		{"prepare", "--synthetic", "poetry", "--tokenizer", "byte", "--out", filepath.Join(tmp, "y")},
		{"prepare", "--synthetic", "upper", "--out", filepath.Join(tmp, "z")},
		{"train", "--data", sft, "--init-from", baseCkpt, "--out", filepath.Join(tmp, "w"), "--seq", "32"},
		{"prepare", "--input", text, "--tokenizer", "byte", "--out", filepath.Join(tmp, "v"), "--train-on-prompt"},
		{"prepare", "--format", "json", "--input", text, "--tokenizer", "byte", "--out", filepath.Join(tmp, "u")},
	} {
		if _, err := ringtrain(t, bad...); err == nil {
			t.Errorf("ringtrain %s: no error", strings.Join(bad, " "))
		}
	}
}
