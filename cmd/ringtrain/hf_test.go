package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ringtrain/ringtrain/examples"
	"github.com/ringtrain/ringtrain/shard"
	"github.com/ringtrain/ringtrain/tokenizer"
)

// ringtrainErr runs the command line in-process and returns stdout and stderr.
func ringtrainErr(t *testing.T, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	root := newRoot()
	var out, errOut bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&errOut)
	root.SetArgs(append([]string{"--log-level", "warn"}, args...))
	err = root.ExecuteContext(context.Background())
	return out.String(), errOut.String(), err
}

func readJSON(t *testing.T, path string) map[string]any {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return m
}

// The export is a Hugging Face directory: the model, generation_config.json and the
// tokenizer in the files transformers reads, with config.json as the checkpoint has it.
func TestExportHuggingFaceFiles(t *testing.T) {
	data := prepareData(t)
	run := filepath.Join(t.TempDir(), "run")
	mustRun(t, tinyTrain(data, run, "--steps", "4")...)
	ckpt := ckptDir(run, 4)
	hf := filepath.Join(t.TempDir(), "hf")
	mustRun(t, "export", "--checkpoint", ckpt, "--out", hf)

	tok, err := tokenizer.Load(filepath.Join(data, "tokenizer.json"))
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"config.json", "generation_config.json", "model.safetensors", "tokenizer.json",
		"tokenizer_config.json", "special_tokens_map.json", "ringtrain_tokenizer.json"} {
		if _, err := os.Stat(filepath.Join(hf, f)); err != nil {
			t.Errorf("export lacks %s: %v", f, err)
		}
	}
	for _, f := range []string{"vocab.json", "merges.txt"} { // a char tokenizer is not byte-level
		if _, err := os.Stat(filepath.Join(hf, f)); err == nil {
			t.Errorf("a char export has %s", f)
		}
	}
	for _, f := range []string{"config.json", "generation_config.json", "tokenizer.json", "ringtrain_tokenizer.json"} {
		a, _ := os.ReadFile(filepath.Join(ckpt, f))
		b, _ := os.ReadFile(filepath.Join(hf, f))
		if len(a) == 0 || !bytes.Equal(a, b) {
			t.Errorf("%s differs between the checkpoint and its export", f)
		}
	}
	cfg := readJSON(t, filepath.Join(hf, "config.json"))
	if cfg["eos_token_id"] != float64(tok.EOT()) || cfg["bos_token_id"] != float64(tok.EOT()) {
		t.Errorf("config.json bos %v eos %v, want %d", cfg["bos_token_id"], cfg["eos_token_id"], tok.EOT())
	}
	tj, err := os.ReadFile(filepath.Join(hf, "tokenizer.json"))
	if err != nil {
		t.Fatal(err)
	}
	if !tokenizer.IsHFSchema(tj) {
		t.Errorf("tokenizer.json is not in the tokenizers library's schema: %.80s", tj)
	}
	if tc := readJSON(t, filepath.Join(hf, "tokenizer_config.json")); tc["tokenizer_class"] != "PreTrainedTokenizerFast" || tc["model_max_length"] != 16.0 {
		t.Errorf("tokenizer_config.json %v", tc)
	}
}

// A masked-LM checkpoint is refused unless --force-causal, which warns.
func TestExportMaskedModel(t *testing.T) {
	data := prepareData(t)
	run := filepath.Join(t.TempDir(), "run")
	mustRun(t, tinyTrain(data, run, "--steps", "2", "--objective", "masked")...)
	ckpt := ckptDir(run, 2)
	hf := filepath.Join(t.TempDir(), "hf")
	_, _, err := ringtrainErr(t, "export", "--checkpoint", ckpt, "--out", hf)
	if err == nil || !strings.Contains(err.Error(), "masked objective") || !strings.Contains(err.Error(), "--force-causal") {
		t.Fatalf("export of a masked model: error %v, want a refusal naming --force-causal", err)
	}
	if _, err := os.Stat(hf); err == nil {
		t.Error("a refused export left a directory")
	}
	out, stderr, err := ringtrainErr(t, "export", "--checkpoint", ckpt, "--out", hf, "--force-causal")
	if err != nil || !strings.Contains(out, "exported") {
		t.Fatalf("export --force-causal: %v\n%s", err, out)
	}
	if !strings.Contains(stderr, "warning:") || !strings.Contains(stderr, "masked objective") {
		t.Errorf("export --force-causal printed no warning: %q", stderr)
	}
}

// llm.c shards without a tokenizer file train and evaluate with the gpt2 tokenizer
// (and the commands say so), or with --tokenizer; the export carries GPT-2's files.
func TestLLMCShardsCLI(t *testing.T) {
	g, err := tokenizer.NewGPT2()
	if err != nil {
		t.Fatal(err)
	}
	ids := g.Encode(examples.TinyShakespeare[:12_000])
	data := t.TempDir()
	n := len(ids)
	for name, part := range map[string][]int{"shakespeare_train_000000.bin": ids[:n*45/100], "shakespeare_train_000001.bin": ids[n*45/100 : n*9/10],
		"shakespeare_val_000000.bin": ids[n*9/10:]} {
		tokens := make([]int32, len(part))
		for i, id := range part {
			tokens[i] = int32(id)
		}
		if _, err := shard.WriteShardFile(filepath.Join(data, name), shard.FormatLLMC, tokens); err != nil {
			t.Fatal(err)
		}
	}
	run := filepath.Join(t.TempDir(), "run")
	out := mustRun(t, tinyTrain(data, run, "--steps", "2")...)
	if !strings.Contains(out, "reading it with the gpt2 tokenizer") || !strings.Contains(out, "done: step 2") {
		t.Errorf("train on llm.c shards printed:\n%s", out)
	}
	ckpt := ckptDir(run, 2)
	stdout, stderr, err := ringtrainErr(t, "eval", "--checkpoint", ckpt, "--data", data, "--batch", "2", "--batches", "2")
	if err != nil || !strings.Contains(stdout, "loss") || !strings.Contains(stderr, "gpt2 tokenizer") {
		t.Errorf("eval on llm.c shards: %v\nstdout %q\nstderr %q", err, stdout, stderr)
	}
	_, err = ringtrain(t, tinyTrain(data, filepath.Join(t.TempDir(), "run"), "--steps", "1", "--tokenizer", "byte")...)
	if err == nil || !strings.Contains(err.Error(), "vocabulary size 258") {
		t.Errorf("train --tokenizer byte on GPT-2 tokens: error %v, want one about the byte vocabulary", err)
	}
	_, err = ringtrain(t, tinyTrain(data, filepath.Join(t.TempDir(), "run"), "--steps", "1", "--tokenizer", "char")...)
	if err == nil || !strings.Contains(err.Error(), "tokenizer=char") {
		t.Errorf("train --tokenizer char: error %v, want one naming it", err)
	}

	hf := filepath.Join(t.TempDir(), "hf")
	mustRun(t, "export", "--checkpoint", ckpt, "--out", hf)
	files, err := tokenizer.HFFiles(g, 16)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"vocab.json", "merges.txt", "tokenizer.json"} {
		b, err := os.ReadFile(filepath.Join(hf, f))
		if err != nil || !bytes.Equal(b, files[f]) {
			t.Errorf("export's %s is not GPT-2's (%v)", f, err)
		}
	}
	if cfg := readJSON(t, filepath.Join(hf, "config.json")); cfg["eos_token_id"] != 50256.0 || cfg["vocab_size"] != 50257.0 {
		t.Errorf("config.json eos %v vocab %v", cfg["eos_token_id"], cfg["vocab_size"])
	}
}
