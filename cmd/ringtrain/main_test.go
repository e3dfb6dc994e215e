package main

import (
	"bytes"
	"context"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/ringtrain/ringtrain/examples"
	"github.com/ringtrain/ringtrain/model"
	"github.com/ringtrain/ringtrain/trainer"
)

// ringtrain runs the command line in-process and returns what it wrote to stdout.
func ringtrain(t *testing.T, args ...string) (string, error) {
	t.Helper()
	root := newRoot()
	var out, errOut bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&errOut)
	root.SetArgs(append([]string{"--log-level", "warn"}, args...))
	err := root.ExecuteContext(context.Background())
	if errOut.Len() > 0 {
		t.Logf("ringtrain %s: stderr:\n%s", strings.Join(args, " "), errOut.String())
	}
	return out.String(), err
}

// mustRun is ringtrain that fails the test on an error.
func mustRun(t *testing.T, args ...string) string {
	t.Helper()
	out, err := ringtrain(t, args...)
	if err != nil {
		t.Fatalf("ringtrain %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

// prepareData runs `ringtrain prepare` (character level, 4 shards) on the first 60 KB
// of tiny shakespeare copied to a temporary file, and returns the dataset directory.
func prepareData(t *testing.T) string {
	t.Helper()
	tmp := t.TempDir()
	text := filepath.Join(tmp, "input.txt")
	if err := os.WriteFile(text, []byte(examples.TinyShakespeare[:60_000]), 0o644); err != nil {
		t.Fatal(err)
	}
	data := filepath.Join(tmp, "data")
	out := mustRun(t, "prepare", "--input", text, "--tokenizer", "char", "--out", data, "--min-shards", "4")
	if !strings.Contains(out, "prepared "+data) || !strings.Contains(out, "in 4 shards") {
		t.Errorf("prepare printed %q", out)
	}
	return data
}

// tinyTrain is the flags of a job that trains in a fraction of a second.
func tinyTrain(data, out string, extra ...string) []string {
	return append([]string{"train", "--data", data, "--out", out,
		"--layers", "2", "--heads", "2", "--embd", "32", "--seq", "16", "--batch", "4", "--streams", "2",
		"--lr", "1e-2", "--min-lr", "1e-3", "--warmup", "2", "--eval-batches", "2",
		"--log-interval", "5", "--checkpoint-interval", "0"}, extra...)
}

func ckptDir(out string, step int64) string {
	return model.CheckpointDir(trainer.CheckpointRoot(out), step)
}

// jobOf returns the spec a checkpoint was trained with.
func jobOf(t *testing.T, dir string) trainer.Spec {
	t.Helper()
	ck, err := model.LoadCheckpoint(dir)
	if err != nil {
		t.Fatal(err)
	}
	var s trainer.Spec
	if err := json.Unmarshal(ck.Trainer.Job, &s); err != nil {
		t.Fatalf("job of %s: %v", dir, err)
	}
	return s
}

var lossRE = regexp.MustCompile(`loss (\S+)$`)

// evalLoss runs `ringtrain eval` and returns the loss it printed.
func evalLoss(t *testing.T, ckpt, data string) float64 {
	t.Helper()
	out := strings.TrimSpace(mustRun(t, "eval", "--checkpoint", ckpt, "--data", data, "--batch", "4", "--batches", "3"))
	if !strings.Contains(out, "(val, 3 batches of 4 x the model's context)") {
		t.Errorf("eval printed %q, want the batch shape", out)
	}
	m := lossRE.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("eval printed %q, want a loss", out)
	}
	loss, err := strconv.ParseFloat(m[1], 64)
	if err != nil || math.IsNaN(loss) || math.IsInf(loss, 0) || loss <= 0 {
		t.Fatalf("eval printed loss %q, want a finite positive number", m[1])
	}
	return loss
}

// continuation returns what generate printed after the prompt, without the final newline.
func continuation(t *testing.T, out, prompt string) string {
	t.Helper()
	rest, ok := strings.CutPrefix(out, prompt)
	if !ok {
		t.Fatalf("generate printed %q, which does not start with the prompt %q", out, prompt)
	}
	rest, ok = strings.CutSuffix(rest, "\n")
	if !ok {
		t.Fatalf("generate printed %q without a final newline", out)
	}
	return rest
}

// TestPipeline drives prepare, train, eval, generate and export end to end.
func TestPipeline(t *testing.T) {
	data := prepareData(t)
	run := filepath.Join(t.TempDir(), "run")
	out := mustRun(t, tinyTrain(data, run, "--steps", "20")...)
	for _, want := range []string{"step  5/20  loss", "step 20/20  val loss", "done: step 20", ckptDir(run, 20)} {
		if !strings.Contains(out, want) {
			t.Errorf("train output lacks %q:\n%s", want, out)
		}
	}
	ckpt := ckptDir(run, 20)
	if s := jobOf(t, ckpt); s.Streams != 2 || s.MicroBatch != 2 || s.Model.Embd != 32 || s.Model.MaxSeqLen != 16 {
		t.Errorf("trained job: streams %d micro_batch %d embd %d context %d, want 2, 2, 32, 16",
			s.Streams, s.MicroBatch, s.Model.Embd, s.Model.MaxSeqLen)
	}
	loss := evalLoss(t, ckpt, data)

	const prompt = "ROMEO:"
	gen := func(dir string, extra ...string) string {
		args := append([]string{"generate", "--checkpoint", dir, "--prompt", prompt, "--max-tokens", "20"}, extra...)
		return continuation(t, mustRun(t, args...), prompt)
	}
	text := gen(ckpt, "--seed", "3")
	if n := utf8.RuneCountInString(text); n < 1 || n > 20 {
		t.Errorf("generated %q: %d characters, want 1 to 20", text, n)
	}
	if again := gen(ckpt, "--seed", "3"); again != text {
		t.Errorf("the same seed generated %q, then %q", text, again)
	}
	greedy := gen(ckpt, "--temperature", "0")
	if n := utf8.RuneCountInString(greedy); n != 20 {
		t.Errorf("greedy decoding generated %q (%d characters), want 20", greedy, n)
	}

	hf := filepath.Join(t.TempDir(), "hf")
	if out := mustRun(t, "export", "--checkpoint", ckpt, "--format", "hf", "--out", hf); !strings.Contains(out, "exported") {
		t.Errorf("export printed %q", out)
	}
	for _, f := range []string{"config.json", "model.safetensors", "tokenizer.json"} {
		if _, err := os.Stat(filepath.Join(hf, f)); err != nil {
			t.Errorf("export: %v", err)
		}
	}
	// The export carries the character tokenizer, so it generates and evaluates as the
	// checkpoint does, whatever --tokenizer says.
	if got := gen(hf, "--seed", "3"); got != text {
		t.Errorf("the export generated %q, the checkpoint %q", got, text)
	}
	if got := gen(hf, "--seed", "3", "--tokenizer", "byte"); got != text {
		t.Errorf("the export with --tokenizer byte generated %q, the checkpoint %q", got, text)
	}
	if got := evalLoss(t, hf, data); got != loss {
		t.Errorf("the export evaluates to %v, the checkpoint to %v", got, loss)
	}
	if _, err := ringtrain(t, "export", "--checkpoint", ckpt, "--out", hf); err == nil || !strings.Contains(err.Error(), "exists") {
		t.Errorf("export over an existing directory: error %v", err)
	}

	// Without its tokenizer files the export needs --tokenizer, and neither built-in
	// one fits a model with the corpus' few dozen characters.
	for _, f := range []string{"tokenizer.json", "ringtrain_tokenizer.json"} {
		if err := os.Remove(filepath.Join(hf, f)); err != nil {
			t.Fatal(err)
		}
	}
	for _, tok := range []string{"gpt2", "byte"} {
		_, err := ringtrain(t, "generate", "--checkpoint", hf, "--tokenizer", tok, "--max-tokens", "5")
		if err == nil || !regexp.MustCompile(`tokenizer has \d+ ids but the model only \d+$`).MatchString(err.Error()) {
			t.Errorf("generate from a tokenizer-less export with --tokenizer %s: error %v", tok, err)
		}
	}
	if _, err := ringtrain(t, "generate", "--checkpoint", hf, "--tokenizer", "char"); err == nil || !strings.Contains(err.Error(), "--tokenizer") {
		t.Errorf("generate from a tokenizer-less export with --tokenizer char: error %v", err)
	}

	// Running train again on the finished run directory resumes at step 20 and stops.
	out = mustRun(t, tinyTrain(data, run, "--steps", "20")...)
	if !strings.Contains(out, "done: step 20") || strings.Contains(out, "step  5/20") {
		t.Errorf("training a finished run again printed:\n%s", out)
	}
}

func TestBadFlagValues(t *testing.T) {
	data := prepareData(t)
	text := filepath.Join(t.TempDir(), "in.txt")
	if err := os.WriteFile(text, []byte("hello"), 0o644); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		args []string
		want string
	}{
		{[]string{"prepare", "--input", text, "--out", filepath.Join(t.TempDir(), "d"), "--tokenizer", "bpe:abc"}, "--tokenizer"},
		{tinyTrain(data, t.TempDir(), "--objective", "foo"), "objective=foo"},
		{tinyTrain(data, t.TempDir(), "--batch", "5", "--streams", "2"), "--batch 5 must be a positive multiple of --streams 2"},
		{tinyTrain(data, t.TempDir(), "--lr", "-1"), "lr=-1"},
		{tinyTrain(data, t.TempDir(), "--seq", "0"), "seq_len=0"},
		{tinyTrain(data, t.TempDir(), "--embd", "33"), "embd=33"},
		{tinyTrain(data, t.TempDir(), "--log-format", "xml"), "--log-format"},
		{tinyTrain(data, t.TempDir(), "--steps", "ten"), "--steps"},
		{[]string{"train", "--steps", "1"}, "--data"},
		{[]string{"eval", "--checkpoint", "x"}, "--data"},
		{[]string{"eval", "--checkpoint", "x", "--data", data, "--split", "test"}, "--split"},
		{[]string{"eval", "--checkpoint", "x", "--data", data, "--objective", "mlm"}, "--objective"},
		{[]string{"export", "--checkpoint", "x", "--out", "y", "--format", "onnx"}, "--format"},
		{[]string{"generate"}, "--checkpoint"},
	}
	for _, c := range cases {
		_, err := ringtrain(t, c.args...)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("ringtrain %s: error %v, want one naming %q", strings.Join(c.args, " "), err, c.want)
		}
	}
}

// TestStepsFromEnvironment checks that RINGTRAIN_STEPS applies when --steps is not
// given and loses to --steps when it is; a bad value names the variable.
func TestStepsFromEnvironment(t *testing.T) {
	data := prepareData(t)
	t.Setenv("RINGTRAIN_STEPS", "3")
	run := filepath.Join(t.TempDir(), "env")
	if out := mustRun(t, tinyTrain(data, run)...); !strings.Contains(out, "done: step 3,") {
		t.Errorf("with RINGTRAIN_STEPS=3 train printed:\n%s", out)
	}
	if s := jobOf(t, ckptDir(run, 3)); s.Steps != 3 {
		t.Errorf("job steps %d, want 3 from the environment", s.Steps)
	}

	run = filepath.Join(t.TempDir(), "flag")
	if out := mustRun(t, tinyTrain(data, run, "--steps", "2")...); !strings.Contains(out, "done: step 2,") {
		t.Errorf("with RINGTRAIN_STEPS=3 and --steps 2 train printed:\n%s", out)
	}

	t.Setenv("RINGTRAIN_STEPS", "many")
	if _, err := ringtrain(t, tinyTrain(data, t.TempDir())...); err == nil || !strings.Contains(err.Error(), "RINGTRAIN_STEPS") {
		t.Errorf("RINGTRAIN_STEPS=many: error %v, want one naming the variable", err)
	}
}

// TestConfigFileWithOverrides trains from a job YAML with some flags overriding it.
func TestConfigFileWithOverrides(t *testing.T) {
	data := prepareData(t)
	dir := t.TempDir()
	run := filepath.Join(dir, "run")
	job := filepath.Join(dir, "job.yaml")
	yaml := `model: {layers: 1, heads: 2, embd: 16}
data: ` + data + `
out: ` + run + `
seq_len: 16
micro_batch: 3
streams: 2
steps: 5
lr: 0.005
warmup_steps: 1
eval_batches: 1
checkpoint_interval: 0
`
	if err := os.WriteFile(job, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}

	// --steps overrides the file; everything else comes from it.
	mustRun(t, "train", "--config", job, "--steps", "2")
	s := jobOf(t, ckptDir(run, 2))
	if s.Steps != 2 || s.Model.Layers != 1 || s.Model.Embd != 16 || s.LR != 0.005 || s.Streams != 2 || s.MicroBatch != 3 || s.Data != data {
		t.Errorf("job from --config with --steps 2: %+v", s)
	}

	// --streams alone splits the file's global batch (6) over the new streams.
	run2 := filepath.Join(dir, "run2")
	mustRun(t, "train", "--config", job, "--steps", "1", "--streams", "3", "--out", run2)
	if s := jobOf(t, ckptDir(run2, 1)); s.Streams != 3 || s.MicroBatch != 2 || s.Out != run2 {
		t.Errorf("--config with --streams 3: streams %d micro_batch %d out %q, want 3, 2, %q", s.Streams, s.MicroBatch, s.Out, run2)
	}

	// --batch splits over the file's streams.
	run3 := filepath.Join(dir, "run3")
	mustRun(t, "train", "--config", job, "--steps", "1", "--batch", "8", "--out", run3)
	if s := jobOf(t, ckptDir(run3, 1)); s.Streams != 2 || s.MicroBatch != 4 {
		t.Errorf("--config with --batch 8: streams %d micro_batch %d, want 2 and 4", s.Streams, s.MicroBatch)
	}

	bad := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(bad, []byte("stepz: 3\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := ringtrain(t, "train", "--config", bad); err == nil || !strings.Contains(err.Error(), "stepz") {
		t.Errorf("--config with an unknown field: error %v, want one naming it", err)
	}
}

// TestLocalOnPreparedData runs `ringtrain local` on a prepared dataset with a tiny
// model: it trains, checkpoints under --dir and prints a sample.
func TestLocalOnPreparedData(t *testing.T) {
	data := prepareData(t)
	dir := t.TempDir()
	out := mustRun(t, "local", "--data", data, "--dir", dir, "--steps", "3", "--sample-tokens", "10",
		"--layers", "1", "--heads", "2", "--embd", "16", "--seq", "16", "--batch", "2", "--eval-batches", "1")
	run := filepath.Join(dir, "run")
	for _, want := range []string{"training 1-layer 16-wide GPT for 3 steps on " + data, "done: step 3,", ckptDir(run, 3),
		"rank 0 step time ", "rank 1 step time ", "over 3 steps: compute ", "--- sample ---\nROMEO:"} {
		if !strings.Contains(out, want) {
			t.Errorf("local output lacks %q:\n%s", want, out)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "tinyshakespeare.txt")); err == nil {
		t.Errorf("local with --data still wrote the shipped corpus")
	}
}
