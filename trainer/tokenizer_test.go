package trainer

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ringtrain/ringtrain/examples"
	"github.com/ringtrain/ringtrain/model"
	"github.com/ringtrain/ringtrain/shard"
	"github.com/ringtrain/ringtrain/tokenizer"
)

// llmcDir writes llm.c shards (uint16, magic 20240520) of train and val tokens into a
// fresh directory with no tokenizer file and no manifest, as llm.c's data scripts do.
func llmcDir(t *testing.T, train, val []int32) string {
	t.Helper()
	dir := t.TempDir()
	for name, ids := range map[string][]int32{"tiny_train_000000.bin": train, "tiny_val_000000.bin": val} {
		if _, err := shard.WriteShardFile(filepath.Join(dir, name), shard.FormatForVocab(tokenizer.GPT2VocabSize), ids); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func toInt32(ids []int) []int32 {
	out := make([]int32, len(ids))
	for i, id := range ids {
		out[i] = int32(id)
	}
	return out
}

// A directory of llm.c shards without a tokenizer file trains and evaluates with the
// gpt2 tokenizer, and says so.
func TestLLMCShardsDefaultToGPT2(t *testing.T) {
	g, err := tokenizer.NewGPT2()
	if err != nil {
		t.Fatal(err)
	}
	ids := toInt32(g.Encode(examples.TinyShakespeare[:12_000]))
	data := llmcDir(t, ids[:len(ids)*9/10], ids[len(ids)*9/10:])
	spec := tinySpec(data, filepath.Join(t.TempDir(), "run"))
	spec.Steps = 2
	var progress bytes.Buffer
	res, err := Run(context.Background(), spec, RunOptions{Progress: &progress})
	if err != nil {
		t.Fatalf("train on llm.c shards: %v", err)
	}
	if !strings.Contains(progress.String(), "has no tokenizer file: reading it with the gpt2 tokenizer") {
		t.Errorf("the run did not say which tokenizer it chose:\n%s", progress.String())
	}
	if math.IsNaN(res.ValLoss) || res.Step != 2 {
		t.Errorf("step %d val loss %v", res.Step, res.ValLoss)
	}
	ck, err := model.LoadCheckpoint(res.Checkpoint)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := tokenizer.Unmarshal(ck.Tokenizer)
	if err != nil || tok.Name() != "gpt2" {
		t.Fatalf("checkpoint tokenizer %v, %v; want gpt2", tok, err)
	}
	if ck.EOT == nil || *ck.EOT != tokenizer.GPT2EOT || ck.Config.VocabSize != tokenizer.GPT2VocabSize {
		t.Errorf("checkpoint eot %v vocab %d", ck.EOT, ck.Config.VocabSize)
	}
	for _, name := range tokenizer.HFFileNames {
		if len(ck.HFTokenizer[name]) == 0 {
			t.Errorf("checkpoint lacks %s", name)
		}
	}

	var notes bytes.Buffer
	loss, n, err := EvaluateCheckpoint(context.Background(), res.Checkpoint, EvalOptions{Data: data, Batches: 2, Notes: &notes})
	if err != nil || n != 2 || math.IsNaN(loss) {
		t.Fatalf("eval on llm.c shards: loss %v batches %d err %v", loss, n, err)
	}
	if !strings.Contains(notes.String(), "gpt2 tokenizer") {
		t.Errorf("eval did not say which tokenizer it chose: %q", notes.String())
	}
}

// tokenizer names another tokenizer for such a directory; ids it does not have are
// refused as they are read.
func TestLLMCShardsTokenizerSetting(t *testing.T) {
	text := examples.TinyShakespeare[:8_000]
	ids := toInt32(tokenizer.NewByte().Encode(text))
	data := llmcDir(t, ids[:7_000], ids[7_000:])
	spec := tinySpec(data, filepath.Join(t.TempDir(), "run"))
	spec.Tokenizer, spec.Steps = "byte", 1
	p, err := Prepare(context.Background(), spec)
	if err != nil {
		t.Fatal(err)
	}
	if p.Tokenizer.Name() != "byte" || p.Spec.Model.VocabSize != tokenizer.ByteVocabSize || !strings.Contains(p.TokenizerNote, "byte tokenizer") {
		t.Errorf("tokenizer %s vocab %d note %q", p.Tokenizer.Name(), p.Spec.Model.VocabSize, p.TokenizerNote)
	}
	if _, err := Run(context.Background(), spec, RunOptions{}); err != nil {
		t.Fatalf("train with tokenizer=byte: %v", err)
	}

	// A token id beyond the byte vocabulary is a clear error, not a crash.
	bad := append([]int32(nil), ids[:7_000]...)
	for i := 0; i < len(bad); i += 10 {
		bad[i] = 300 // in every row
	}
	spec.Data, spec.Out = llmcDir(t, bad, ids[7_000:]), filepath.Join(t.TempDir(), "run")
	if _, err := Run(context.Background(), spec, RunOptions{}); !errors.Is(err, shard.ErrBadToken) {
		t.Errorf("token 300 with the byte tokenizer: err %v, want ErrBadToken", err)
	}

	// A tokenizer file (ringtrain's or the Hugging Face schema) or a model directory.
	dir := t.TempDir()
	files, err := tokenizer.HFFiles(tokenizer.NewByte(), 16)
	if err != nil {
		t.Fatal(err)
	}
	hf := filepath.Join(dir, "tokenizer.json")
	if err := os.WriteFile(hf, files[tokenizer.HFTokenizerFile], 0o644); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{hf, dir} {
		spec.Data, spec.Tokenizer = data, name
		if p, err := Prepare(context.Background(), spec); err != nil || p.Tokenizer.Name() != "byte" {
			t.Errorf("tokenizer=%s: %v", name, err)
		}
	}

	for name, want := range map[string]string{
		"char":                  "needs the corpus",
		"bpe:300":               "needs the corpus",
		filepath.Join(dir, "x"): "want gpt2, byte, or a tokenizer file",
		t.TempDir():             "holds neither",
	} {
		spec.Tokenizer = name
		if _, err := Prepare(context.Background(), spec); !errors.Is(err, ErrBadSpec) || !strings.Contains(err.Error(), "tokenizer="+name) || !strings.Contains(err.Error(), want) {
			t.Errorf("tokenizer=%s: err %v, want ErrBadSpec naming it and %q", name, err, want)
		}
	}
}

// A prepared dataset is read with its own tokenizer; a different one named in the job
// is refused.
func TestPreparedDatasetTokenizerSetting(t *testing.T) {
	data := prepareData(t)
	spec := tinySpec(data, filepath.Join(t.TempDir(), "run"))
	p, err := Prepare(context.Background(), spec)
	if err != nil {
		t.Fatal(err)
	}
	if p.TokenizerNote != "" || p.Tokenizer.Name() != "char" {
		t.Errorf("tokenizer %s note %q", p.Tokenizer.Name(), p.TokenizerNote)
	}
	spec.Tokenizer = "gpt2"
	if _, err := Prepare(context.Background(), spec); !errors.Is(err, ErrBadSpec) || !strings.Contains(err.Error(), "carries its own char tokenizer") {
		t.Errorf("tokenizer=gpt2 on a char dataset: err %v", err)
	}
	spec.Tokenizer = filepath.Join(data, "tokenizer.json")
	if _, err := Prepare(context.Background(), spec); err != nil {
		t.Errorf("tokenizer naming the dataset's own file: %v", err)
	}
}

// A checkpoint's config.json carries the tokenizer's EOT id as bos and eos.
func TestCheckpointConfigEOT(t *testing.T) {
	data := prepareData(t)
	spec := tinySpec(data, filepath.Join(t.TempDir(), "run"))
	spec.Steps = 1
	res, err := Run(context.Background(), spec, RunOptions{})
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(res.Checkpoint, "config.json"))
	if err != nil {
		t.Fatal(err)
	}
	var cfg struct{ BOS, EOS *int }
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(b, &raw); err != nil {
		t.Fatal(err)
	}
	_ = json.Unmarshal(raw["bos_token_id"], &cfg.BOS)
	_ = json.Unmarshal(raw["eos_token_id"], &cfg.EOS)
	tok, err := tokenizer.Load(filepath.Join(data, "tokenizer.json"))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.BOS == nil || cfg.EOS == nil || *cfg.BOS != tok.EOT() || *cfg.EOS != tok.EOT() {
		t.Errorf("config.json bos %v eos %v, want %d", cfg.BOS, cfg.EOS, tok.EOT())
	}
}
