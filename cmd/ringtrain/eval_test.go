package main

import (
	"context"
	"encoding/json"
	"math"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ringtrain/ringtrain/trainer"
)

// evalJSONOut runs `ringtrain eval --json` and decodes what it printed.
func evalJSONOut(t *testing.T, args ...string) map[string]any {
	t.Helper()
	out := mustRun(t, append([]string{"eval", "--json"}, args...)...)
	if strings.Count(out, "\n") != 1 {
		t.Errorf("eval --json printed %q, want one line", out)
	}
	var v map[string]any
	if err := json.Unmarshal([]byte(out), &v); err != nil {
		t.Fatalf("eval --json printed %q: %v", out, err)
	}
	return v
}

// TestEvalMaskedCheckpoint evaluates a masked-LM checkpoint without --objective:
// eval measures the masked objective, with the run's seed, as the run did.
func TestEvalMaskedCheckpoint(t *testing.T) {
	data := prepareData(t)
	run := filepath.Join(t.TempDir(), "run")
	mustRun(t, tinyTrain(data, run, "--steps", "4", "--objective", "masked", "--seed", "5")...)
	ckpt := ckptDir(run, 4)
	shape := []string{"--checkpoint", ckpt, "--data", data, "--batch", "2", "--seq", "16", "--batches", "3"}

	v := evalJSONOut(t, shape...)
	want, err := trainer.EvaluateCheckpointReport(context.Background(), ckpt, trainer.EvalOptions{
		Data: data, SeqLen: 16, MicroBatch: 2, Batches: 3, Objective: trainer.MaskedLM, Seed: 5})
	if err != nil {
		t.Fatal(err)
	}
	if v["objective"] != "masked" || v["loss"] != want.Loss || v["seed"] != 5.0 {
		t.Errorf("eval printed %v, want the masked objective with seed 5 and loss %v", v, want.Loss)
	}
	causal := evalJSONOut(t, append(shape, "--objective", "causal")...)
	if causal["objective"] != "causal" || causal["loss"] == v["loss"] {
		t.Errorf("eval --objective causal printed %v, want the causal loss, not the masked %v", causal, v["loss"])
	}

	out := mustRun(t, append([]string{"eval"}, shape...)...)
	if !strings.Contains(out, "(val, 3 batches of 2 x 16), masked objective: perplexity ") {
		t.Errorf("eval printed %q, want the split, the shape, the objective and the perplexity", out)
	}
}

// TestEvalJSON checks every field of eval --json, perplexity = exp(loss), and the
// train split.
func TestEvalJSON(t *testing.T) {
	data := prepareData(t)
	run := filepath.Join(t.TempDir(), "run")
	mustRun(t, tinyTrain(data, run, "--steps", "4")...)
	ckpt := ckptDir(run, 4)

	v := evalJSONOut(t, "--checkpoint", ckpt, "--data", data, "--batch", "4", "--batches", "3")
	for _, k := range []string{"checkpoint", "data", "split", "objective", "loss", "perplexity", "tokens", "batches", "batch", "seq_len"} {
		if _, ok := v[k]; !ok {
			t.Errorf("eval --json lacks %q: %v", k, v)
		}
	}
	loss, _ := v["loss"].(float64)
	if v["checkpoint"] != ckpt || v["data"] != data || v["split"] != "val" || v["objective"] != "causal" ||
		v["batches"] != 3.0 || v["batch"] != 4.0 || v["seq_len"] != 16.0 || v["tokens"] != 3.0*4*16 {
		t.Errorf("eval --json printed %v", v)
	}
	if !(loss > 0) || v["perplexity"] != math.Exp(loss) {
		t.Errorf("perplexity %v, want exp(loss %v) = %v", v["perplexity"], loss, math.Exp(loss))
	}
	if _, ok := v["seed"]; ok {
		t.Errorf("the causal objective printed a masking seed: %v", v)
	}

	tr := evalJSONOut(t, "--checkpoint", ckpt, "--data", data, "--batch", "4", "--split", "train")
	val := evalJSONOut(t, "--checkpoint", ckpt, "--data", data, "--batch", "4")
	if tr["split"] != "train" || tr["loss"] == val["loss"] || tr["batches"].(float64) <= val["batches"].(float64) {
		t.Errorf("--split train printed %v; the val split %v: want the larger train split and a loss of its own", tr, val)
	}
}
