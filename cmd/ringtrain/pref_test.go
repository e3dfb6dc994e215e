package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ringtrain/ringtrain/shard"
)

// TestPreferenceCommands runs the preference path from the command line: prepare
// --format preference --synthetic, a short sft run, train --objective reward and dpo
// from it, eval of both, score with the reward model, and the refusals: a reward
// model for score, --pack with preference data.
func TestPreferenceCommands(t *testing.T) {
	tmp := t.TempDir()
	prefs, sftData := filepath.Join(tmp, "prefs"), filepath.Join(tmp, "sft-data")
	out := mustRun(t, "prepare", "--format", "preference", "--synthetic", "reverse", "--synthetic-examples", "40", "--synthetic-val", "8",
		"--tokenizer", "byte", "--seq", "64", "--min-shards", "2", "--out", prefs)
	if !strings.Contains(out, "prepared "+prefs+": preference, template plain") {
		t.Errorf("prepare output:\n%s", out)
	}
	ds, err := shard.Open(prefs)
	if err != nil {
		t.Fatal(err)
	}
	if !ds.Manifest().IsPreference() || ds.Manifest().SFT.Pairs != 48 {
		t.Fatalf("manifest sft section %+v", ds.Manifest().SFT)
	}
	mustRun(t, "prepare", "--synthetic", "reverse", "--synthetic-examples", "40", "--synthetic-val", "8",
		"--tokenizer", "byte", "--seq", "64", "--min-shards", "2", "--out", sftData)
	sft := filepath.Join(tmp, "sft")
	mustRun(t, "train", "--data", sftData, "--out", sft, "--layers", "1", "--heads", "2", "--embd", "16",
		"--seq", "64", "--batch", "4", "--steps", "2", "--eval-batches", "1", "--tensorboard=false")
	sftCk := filepath.Join(sft, "ckpt", "step-000002")

	rm := filepath.Join(tmp, "rm")
	out = mustRun(t, "train", "--objective", "reward", "--data", prefs, "--init-from", sftCk, "--out", rm,
		"--seq", "64", "--batch", "4", "--steps", "3", "--eval-batches", "1", "--tensorboard=false")
	if !strings.Contains(out, "reward objective") || !strings.Contains(out, "done: step 3,") {
		t.Errorf("train --objective reward output:\n%s", out)
	}
	rmCk := filepath.Join(rm, "ckpt", "step-000003")
	// local trains the same on a cluster of 2 and, after a reward model or a
	// chat-tuned model, prints no "ROMEO:" continuation but the command to use.
	local := filepath.Join(tmp, "local")
	out = mustRun(t, "local", "--objective", "reward", "--data", prefs, "--init-from", sftCk, "--dir", local, "--workers", "2",
		"--seq", "64", "--batch", "4", "--steps", "2", "--eval-batches", "1", "--sample-tokens", "10")
	if !strings.Contains(out, "no sample from a reward model: score answers with 'ringtrain score --checkpoint ") || strings.Contains(out, "--- sample ---") {
		t.Errorf("local --objective reward output:\n%s", out)
	}
	out = mustRun(t, "local", "--data", sftData, "--init-from", sftCk, "--dir", filepath.Join(tmp, "local-sft"), "--workers", "2",
		"--seq", "64", "--batch", "4", "--steps", "2", "--eval-batches", "1", "--sample-tokens", "10")
	if !strings.Contains(out, "no raw-text sample from a model tuned with the plain chat template: talk to it with 'ringtrain chat --checkpoint ") || strings.Contains(out, "--- sample ---") {
		t.Errorf("local on sft data output:\n%s", out)
	}
	out = mustRun(t, "eval", "--checkpoint", rmCk, "--data", prefs)
	for _, want := range []string{"reward objective: accuracy", "rewards: chosen"} {
		if !strings.Contains(out, want) {
			t.Errorf("eval of the reward model lacks %q:\n%s", want, out)
		}
	}
	rows := filepath.Join(tmp, "rows.jsonl")
	if err := os.WriteFile(rows, []byte(`{"prompt":"Reverse: cat dog","completion":"dog cat"}`+"\n\n"+`{"prompt":"Reverse: cat dog","completion":"cat dog"}`+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	out = mustRun(t, "score", "--checkpoint", rmCk, "--in", rows)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 2 {
		t.Fatalf("score printed %d lines, want 2:\n%s", len(lines), out)
	}
	var first struct {
		Line   int      `json:"line"`
		Reward *float64 `json:"reward"`
	}
	if err := json.Unmarshal([]byte(lines[1]), &first); err != nil || first.Line != 3 || first.Reward == nil {
		t.Fatalf("score line %q: %v", lines[1], err)
	}
	if _, err := ringtrain(t, "score", "--checkpoint", sftCk, "--in", rows); err == nil || !strings.Contains(err.Error(), "reward model") {
		t.Errorf("score with a language model: %v", err)
	}

	dpo := filepath.Join(tmp, "dpo")
	out = mustRun(t, "train", "--objective", "dpo", "--beta", "0.2", "--data", prefs, "--init-from", sftCk, "--out", dpo,
		"--seq", "64", "--batch", "4", "--steps", "2", "--eval-batches", "1", "--tensorboard=false")
	if !strings.Contains(out, "dpo objective") {
		t.Errorf("train --objective dpo output:\n%s", out)
	}
	out = mustRun(t, "eval", "--checkpoint", filepath.Join(dpo, "ckpt", "step-000002"), "--data", prefs)
	if !strings.Contains(out, "dpo objective: accuracy") || !strings.Contains(out, "policy accuracy") {
		t.Errorf("eval of the dpo policy:\n%s", out)
	}
	if _, err := ringtrain(t, "prepare", "--format", "preference", "--synthetic", "reverse", "--tokenizer", "byte",
		"--pack", "--out", filepath.Join(tmp, "packed")); err == nil || !strings.Contains(err.Error(), "--pack") {
		t.Errorf("--pack with preference data: %v", err)
	}
}
