package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/ringtrain/ringtrain/examples"
	"github.com/ringtrain/ringtrain/model"
	"github.com/ringtrain/ringtrain/tensor"
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

// mainEnv, set to 1 in the environment, makes the test binary run ringtrain's main
// with its arguments instead of the tests: subprocess tests exec the test binary
// itself, so that they see real exit statuses and signals without a separate build.
const mainEnv = "RINGTRAIN_TEST_MAIN"

func TestMain(m *testing.M) {
	if os.Getenv(mainEnv) == "1" {
		main() // exits
	}
	os.Exit(m.Run())
}

// subprocess returns the command that runs ringtrain with args in a child process,
// killed when ctx ends.
func subprocess(t *testing.T, ctx context.Context, args ...string) *exec.Cmd {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.CommandContext(ctx, exe, args...)
	cmd.Env = append(os.Environ(), mainEnv+"=1")
	return cmd
}

// runMain runs ringtrain in a child process and returns its stdout, stderr and exit
// status.
func runMain(t *testing.T, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := subprocess(t, ctx, args...)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		t.Fatalf("ringtrain %s: %v", strings.Join(args, " "), err)
	}
	return out.String(), errOut.String(), cmd.ProcessState.ExitCode()
}

// execIn runs the command line in-process through execute, as main does, and
// returns stdout, what execute printed to stderr, and the exit status.
func execIn(t *testing.T, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	root := newRoot()
	var out, errOut bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&errOut)
	root.SetArgs(append([]string{"--log-level", "error"}, args...))
	code = execute(context.Background(), root, &errOut)
	return out.String(), errOut.String(), code
}

// smallData prepares the first 3,000 characters of tiny shakespeare (2 shards), a
// corpus a tiny job passes over many times in a few hundred steps.
func smallData(t *testing.T) string {
	t.Helper()
	tmp := t.TempDir()
	text := filepath.Join(tmp, "small.txt")
	if err := os.WriteFile(text, []byte(examples.TinyShakespeare[:3000]), 0o644); err != nil {
		t.Fatal(err)
	}
	data := filepath.Join(tmp, "data")
	mustRun(t, "prepare", "--input", text, "--tokenizer", "char", "--out", data, "--min-shards", "2")
	return data
}

// TestStartBanner checks the banner train prints before its first step.
func TestStartBanner(t *testing.T) {
	data := prepareData(t)
	run := filepath.Join(t.TempDir(), "run")
	out := mustRun(t, tinyTrain(data, run, "--steps", "10")...)
	// 54,000 train tokens; each of the 2 streams reads 2 rows of 16 tokens a step.
	vocab := jobOf(t, ckptDir(run, 10)).Model.VocabSize
	params := model.Config{Layers: 2, Heads: 2, Embd: 32, MaxSeqLen: 16, VocabSize: vocab}.NumParams()
	want := []string{
		fmt.Sprintf("model: 2 layers, 2 heads, 32 wide, context 16, vocabulary %d; %s (%.1fK) parameters; causal objective", vocab, commas(params), float64(params)/1e3),
		"batch: 4 sequences (2 streams x 2) of 16 tokens = 64 tokens per step",
		"data: 54,000 train tokens in 4 shards; ",
		"run: 10 steps, 0.0",
		"from fresh weights; lr 0.01 after 2 warmup steps, cosine to 0.001",
		"writes: " + filepath.Join(run, "ckpt", "step-NNNNNN") + " (checkpoints), " + filepath.Join(run, "metrics.jsonl"),
	}
	first := strings.Index(out, "step  5/10")
	for _, w := range want {
		if i := strings.Index(out, w); i < 0 || i > first {
			t.Errorf("train output lacks %q before the first progress line:\n%s", w, out)
		}
	}
	if m := regexp.MustCompile(`; (\d+) steps per epoch\n`).FindStringSubmatch(out); m == nil || m[1] < "800" {
		t.Errorf("train output lacks the steps per epoch (about 54,000 / 64):\n%s", out)
	}
	if strings.Contains(out, "warning:") {
		t.Errorf("a sound job drew a warning:\n%s", out)
	}
}

// commas is n with its digits grouped in threes.
func commas(n int) string {
	s := strconv.Itoa(n)
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}

// TestWarnings checks the warnings for a warmup not shorter than the run and for
// many passes over the data: on the progress output and, at WARN, in the log.
func TestWarnings(t *testing.T) {
	data := smallData(t)
	run := filepath.Join(t.TempDir(), "run")
	stdout, stderr, code := runMain(t, tinyTrain(data, run, "--steps", "600", "--warmup", "600", "--log-interval", "600", "--log-level", "warn")...)
	if code != 0 {
		t.Fatalf("exit status %d\n%s", code, stderr)
	}
	m := regexp.MustCompile(`warning: 600 steps make (\d+) passes over the train split`).FindStringSubmatch(stdout)
	if m == nil {
		t.Fatalf("no many-epochs warning on the progress output:\n%s", stdout)
	}
	if n, _ := strconv.Atoi(m[1]); n <= 10 || n > 100 {
		t.Errorf("warned of %d passes over a 2,700-token split in 600 steps of 64 tokens, want about 20", n)
	}
	if !strings.Contains(stdout, "warning: warmup of 600 steps is not shorter than the run's 600 steps") {
		t.Errorf("no warmup warning on the progress output:\n%s", stdout)
	}
	for _, w := range []string{`level=WARN msg="warmup of 600 steps`, `level=WARN msg="600 steps make`} {
		if !strings.Contains(stderr, w) {
			t.Errorf("log lacks %q:\n%s", w, stderr)
		}
	}
}

// TestNothingToDo checks that training a finished run again says so, exits 0, and
// prints no loss or speed of steps it did not run.
func TestNothingToDo(t *testing.T) {
	data := prepareData(t)
	run := filepath.Join(t.TempDir(), "run")
	mustRun(t, tinyTrain(data, run, "--steps", "5")...)
	stdout, stderr, code := execIn(t, tinyTrain(data, run, "--steps", "5")...)
	want := "already at step 5 of 5, nothing to do\ndone: step 5; checkpoint " + ckptDir(run, 5) + "\n"
	if code != 0 || stdout != want {
		t.Errorf("rerun: status %d, printed %q (stderr %q), want 0 and %q", code, stdout, stderr, want)
	}
	stdout, _, code = execIn(t, tinyTrain(data, run, "--steps", "3")...)
	if code != 0 || !strings.HasPrefix(stdout, "already at step 5, past --steps 3: nothing to do\n") {
		t.Errorf("rerun with fewer steps: status %d, printed %q", code, stdout)
	}
}

// TestLocalBannerAndNothingToDo checks local's banner (rank 0 of the embedded
// cluster prints it) and its rerun of a finished run.
func TestLocalBannerAndNothingToDo(t *testing.T) {
	data := prepareData(t)
	dir := t.TempDir()
	args := []string{"local", "--data", data, "--dir", dir, "--steps", "3", "--sample-tokens", "0",
		"--layers", "1", "--heads", "2", "--embd", "16", "--seq", "16", "--batch", "2", "--eval-batches", "1", "--warmup", "3"}
	out := mustRun(t, args...)
	run := filepath.Join(dir, "run")
	for _, w := range []string{"model: 1 layer, 2 heads, 16 wide, context 16", "batch: 2 sequences (2 streams x 1) of 16 tokens = 32 tokens per step, on 2 workers",
		"steps per epoch", "writes: " + filepath.Join(run, "ckpt"), "warning: warmup of 3 steps is not shorter than the run's 3 steps"} {
		if !strings.Contains(out, w) {
			t.Errorf("local output lacks %q:\n%s", w, out)
		}
	}
	if n := strings.Count(out, "model: "); n != 1 {
		t.Errorf("local printed the banner %d times, want once (rank 0):\n%s", n, out)
	}
	out = mustRun(t, args...)
	if !strings.Contains(out, "already at step 3 of 3, nothing to do\ndone: step 3; checkpoint "+ckptDir(run, 3)) ||
		strings.Contains(out, "NaN") || strings.Contains(out, "model: ") {
		t.Errorf("local on a finished run printed:\n%s", out)
	}
}

// TestExitCodes checks the exit status and the message of each kind of outcome:
// 0 done, 1 failure, 2 usage.
func TestExitCodes(t *testing.T) {
	data := prepareData(t)
	missing := filepath.Join(t.TempDir(), "missing")
	cases := []struct {
		args []string
		code int
		want string // in stderr, or in stdout for status 0
	}{
		{[]string{"--version"}, 0, "ringtrain "},
		{[]string{"version"}, 0, "gemm kernel:"},
		{[]string{"--help"}, 0, "Available Commands:"},
		{[]string{"train", "--help"}, 0, "--no-resume"},
		{[]string{"trian"}, 2, `unknown command "trian" for "ringtrain"; did you mean train?`},
		{[]string{"bench", "nope"}, 2, `unknown command "nope" for "ringtrain bench"`},
		{[]string{"train", "extra"}, 2, `unknown command "extra" for "ringtrain train"`},
		{[]string{"train", "--bogus"}, 2, "unknown flag: --bogus"},
		{[]string{"train", "--steps", "ten"}, 2, `invalid argument "ten" for "--steps"`},
		{[]string{"train", "--steps", "1"}, 2, "--data is required"},
		{[]string{"generate"}, 2, "required flag --checkpoint not given"},
		{[]string{"eval"}, 2, "required flag --checkpoint not given"},
		{[]string{"eval", "--checkpoint", missing}, 2, "--data is required (or --exact-match)"},
		{[]string{"prepare", "--input", "x"}, 2, "required flag --out not given"},
		{[]string{"export", "--checkpoint", "x", "--out", "y", "--format", "onnx"}, 2, "--format"},
		{tinyTrain(data, t.TempDir(), "--batch", "5"), 2, "--batch 5 must be a positive multiple of --streams 2"},
		{tinyTrain(data, t.TempDir(), "--embd", "33"), 2, "embd=33"},
		{tinyTrain(data, t.TempDir(), "--log-format", "xml"), 2, "--log-format"},
		{[]string{"local", "--workers", "0"}, 2, "--workers 0"},
		{[]string{"eval", "--checkpoint", missing, "--data", data, "--split", "test"}, 2, `--split "test"`},
		{[]string{"eval", "--checkpoint", missing, "--data", data, "--objective", "ppo"}, 2, `--objective "ppo"`},
		{[]string{"status", "--coordinators", "127.0.0.1:1", "--watch", "--interval", "0s"}, 2, "--interval 0s"},
		{[]string{"submit", "job.yaml", "--coordinators", "127.0.0.1:1", "--interval", "-1s"}, 2, "--interval -1s"},
		{[]string{"health", "--addr", "nowhere"}, 2, `--addr "nowhere"`},
		{[]string{"health", "--addr", "127.0.0.1:1", "--timeout", "0s"}, 2, "--timeout 0s"},
		{[]string{"worker", "--coordinators", "127.0.0.1:1", "--id", "w0", "--leave-exit-code", "300"}, 2, "--leave-exit-code 300"},
		{[]string{"coordinator", "--id", "c0", "--peers", "c0"}, 2, "--peers"},
		{[]string{"bench", "allreduce", "--world", "0"}, 2, "--world 0"},
		{[]string{"bench", "allreduce", "--size", "3"}, 2, `--size "3"`},
		{tinyTrain(missing, t.TempDir()), 1, "dataset " + missing},
		{[]string{"generate", "--checkpoint", missing}, 1, missing},
	}
	for _, c := range cases {
		stdout, stderr, code := execIn(t, c.args...)
		name := "ringtrain " + strings.Join(c.args, " ")
		if code != c.code {
			t.Errorf("%s: exit status %d, want %d\nstderr: %s", name, code, c.code, stderr)
			continue
		}
		got := stderr
		if c.code == 0 {
			got = stdout
		}
		if !strings.Contains(got, c.want) {
			t.Errorf("%s: printed %q, want %q in it", name, got, c.want)
		}
		switch {
		case c.code == 2 && !strings.Contains(stderr, "--help' for usage."):
			t.Errorf("%s: a usage error without a pointer to the usage: %q", name, stderr)
		case c.code == 1 && (!strings.HasPrefix(stderr, "ringtrain: ") || strings.Contains(stderr, "for usage")):
			t.Errorf("%s: a failure printed %q", name, stderr)
		}
	}

	// The real process exits with the same statuses.
	if _, _, code := runMain(t, "trian"); code != 2 {
		t.Errorf("ringtrain trian: exit status %d, want 2", code)
	}
	if _, stderr, code := runMain(t, "generate", "--checkpoint", missing); code != 1 {
		t.Errorf("ringtrain generate --checkpoint %s: exit status %d, want 1\n%s", missing, code, stderr)
	}
	// A required flag can come from the environment, as every flag can.
	t.Setenv("RINGTRAIN_CHECKPOINT", missing)
	if _, stderr, code := execIn(t, "generate"); code != 1 || !strings.Contains(stderr, missing) {
		t.Errorf("generate with RINGTRAIN_CHECKPOINT: status %d, stderr %q; want 1 naming the checkpoint", code, stderr)
	}
}

var (
	interruptedTrainRE = regexp.MustCompile(`ringtrain: interrupted: checkpoint written at step (\d+) \((\S+)\); rerun to resume\n`)
	progressRE         = regexp.MustCompile(`^step\s+(\d+)/`)
)

// interrupt runs ringtrain with args in a child process, sends it sig once it has
// printed a progress line of a step at or past atStep, and returns its stdout,
// stderr and exit status.
func interrupt(t *testing.T, sig os.Signal, atStep int, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := subprocess(t, ctx, args...)
	var errOut bytes.Buffer
	cmd.Stderr = &errOut
	pipe, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	sc := bufio.NewScanner(pipe)
	sent := false
	for sc.Scan() {
		line := sc.Text()
		out.WriteString(line + "\n")
		if m := progressRE.FindStringSubmatch(line); m != nil && !sent {
			if n, _ := strconv.Atoi(m[1]); n >= atStep {
				if err := cmd.Process.Signal(sig); err != nil {
					t.Fatal(err)
				}
				sent = true
			}
		}
	}
	err = cmd.Wait()
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		t.Fatal(err)
	}
	if !sent {
		t.Fatalf("no progress line of step %d appeared:\n%s\n%s", atStep, out.String(), errOut.String())
	}
	return out.String(), errOut.String(), cmd.ProcessState.ExitCode()
}

// TestInterrupt checks that SIGINT stops train after a checkpoint of the last step,
// with status 130 and a message that says where, and that a rerun resumes there;
// and the same of local, whose cluster's rank 0 writes the checkpoint (no interval
// checkpoint is due), and of SIGTERM.
func TestInterrupt(t *testing.T) {
	data := prepareData(t)
	run := filepath.Join(t.TempDir(), "run")
	stdout, stderr, code := interrupt(t, os.Interrupt, 1,
		tinyTrain(data, run, "--steps", "1000000", "--log-interval", "1", "--eval-interval", "0", "--log-level", "warn")...)
	m := interruptedTrainRE.FindStringSubmatch(stderr)
	if code != 130 || m == nil || strings.Contains(stderr, "context canceled") {
		t.Fatalf("train after SIGINT: exit status %d, stderr:\n%s\nwant 130 and where the checkpoint is", code, stderr)
	}
	step, _ := strconv.ParseInt(m[1], 10, 64)
	if m[2] != ckptDir(run, step) || jobOf(t, m[2]).Steps != 1_000_000 {
		t.Errorf("checkpoint %s, want %s of the interrupted job", m[2], ckptDir(run, step))
	}
	if !strings.Contains(stdout, fmt.Sprintf("step %7d/1000000", step)) {
		t.Errorf("the checkpoint's step %d is not the last step printed:\n%s", step, stdout)
	}
	out := mustRun(t, tinyTrain(data, run, "--steps", strconv.FormatInt(step+2, 10))...)
	if !strings.Contains(out, fmt.Sprintf("resuming at step %s from %s", commas(int(step)), m[2])) || !strings.Contains(out, fmt.Sprintf("done: step %d,", step+2)) {
		t.Errorf("rerun after the interruption printed:\n%s", out)
	}

	dir := t.TempDir()
	local := func(steps string) []string {
		return []string{"local", "--data", data, "--dir", dir, "--steps", steps, "--sample-tokens", "0",
			"--layers", "1", "--heads", "2", "--embd", "16", "--seq", "16", "--batch", "2", "--eval-interval", "0", "--eval-batches", "1",
			"--log-interval", "1", "--checkpoint-interval", "0", "--log-level", "error"}
	}
	for _, sig := range []os.Signal{os.Interrupt, syscall.SIGTERM} {
		stdout, stderr, code = interrupt(t, sig, 6, local("1000000")...)
		m = interruptedTrainRE.FindStringSubmatch(stderr)
		if code != 130 || m == nil || strings.Contains(stderr, "context canceled") {
			t.Fatalf("local after %v: exit status %d, stderr:\n%s\nwant 130 and where the checkpoint is", sig, code, stderr)
		}
		step, _ = strconv.ParseInt(m[1], 10, 64)
		if step < 6 || m[2] != ckptDir(filepath.Join(dir, "run"), step) || !strings.Contains(stdout, fmt.Sprintf("step %7d/1000000", step)) {
			t.Errorf("local after %v: checkpoint %s at step %d, want the last step printed, at least 6, in %s:\n%s", sig, m[2], step, filepath.Join(dir, "run"), stdout)
		}
	}
	out = mustRun(t, local(strconv.FormatInt(step+2, 10))...)
	if !strings.Contains(out, fmt.Sprintf("resuming at step %s from %s", commas(int(step)), m[2])) || !strings.Contains(out, fmt.Sprintf("done: step %d,", step+2)) {
		t.Errorf("local rerun after the interruption printed:\n%s", out)
	}
}

// TestVersion checks --version and the version command against the running
// binary's build.
func TestVersion(t *testing.T) {
	out := mustRun(t, "--version")
	want := fmt.Sprintf(`^ringtrain \S+ \(commit \S+, %s %s/%s, gemm %s\)\n$`,
		regexp.QuoteMeta(runtime.Version()), runtime.GOOS, runtime.GOARCH, regexp.QuoteMeta(tensor.GemmKernel()))
	if !regexp.MustCompile(want).MatchString(out) {
		t.Errorf("--version printed %q, want it to match %s", out, want)
	}
	out = mustRun(t, "version")
	for _, w := range []string{"version:", "commit:", "commit time:", "go:          " + runtime.Version() + "\n",
		"platform:    " + runtime.GOOS + "/" + runtime.GOARCH + "\n", "gemm kernel: " + tensor.GemmKernel() + "\n"} {
		if !strings.Contains(out, w) {
			t.Errorf("version printed %q, lacking %q", out, w)
		}
	}

	// The revision line, from build settings as `go build` records them in a checkout.
	b := buildInfo{Version: "v1.2.0", Revision: "0123456789abcdef0123", Time: "2026-01-02T03:04:05Z", Modified: true,
		GoVersion: "go1.26.0", OS: "linux", Arch: "amd64", Gemm: "avx2"}
	if got, want := b.short(), "ringtrain v1.2.0 (commit 0123456789ab+modified, go1.26.0 linux/amd64, gemm avx2)"; got != want {
		t.Errorf("short version %q, want %q", got, want)
	}
	if got := b.long(); !strings.Contains(got, "commit:      0123456789ab+modified\ncommit time: 2026-01-02T03:04:05Z\n") {
		t.Errorf("long version:\n%s", got)
	}
}

// TestManPages checks the man pages: one per command, roff that groff renders
// without a warning (when groff is installed), the flags and their required marks.
func TestManPages(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "man1")
	t.Setenv("SOURCE_DATE_EPOCH", "1767225600") // 2026-01-01
	if out := mustRun(t, "man", "--dir", dir); out != "wrote man pages to "+dir+"\n" {
		t.Errorf("man printed %q", out)
	}
	pages, err := filepath.Glob(filepath.Join(dir, "*.1"))
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{}
	for _, p := range pages {
		names[filepath.Base(p)] = true
	}
	for _, n := range []string{"ringtrain.1", "ringtrain-train.1", "ringtrain-local.1", "ringtrain-prepare.1", "ringtrain-bench-gemm.1", "ringtrain-version.1"} {
		if !names[n] {
			t.Errorf("no %s among %v", n, pages)
		}
	}
	b, err := os.ReadFile(filepath.Join(dir, "ringtrain-generate.1"))
	if err != nil {
		t.Fatal(err)
	}
	page := string(b)
	for _, w := range []string{`.TH "RINGTRAIN" "1" "Jan 2026" "ringtrain `, "ringtrain-generate - Generate text from a checkpoint",
		`\fB--checkpoint\fP=""`, "checkpoint directory (ringtrain's or a Hugging Face GPT-2 directory) (required)", ".SH SEE ALSO"} {
		if !strings.Contains(page, w) {
			t.Errorf("ringtrain-generate.1 lacks %q:\n%s", w, page)
		}
	}
	groff, err := exec.LookPath("groff")
	if err != nil {
		t.Log("groff not installed: the pages are not rendered")
		return
	}
	for _, p := range pages {
		out, err := exec.Command(groff, "-man", "-Tutf8", "-ww", "-P-cbou", p).CombinedOutput()
		if err != nil || !strings.Contains(string(out), "NAME") {
			t.Errorf("groff %s: %v\n%s", p, err, out)
		}
		if i := strings.Index(string(out), "warning"); i >= 0 {
			t.Errorf("groff %s warns: %s", p, out[i:])
		}
	}
}

// TestMessagesInFlagTerms checks that errors and help name flags, not Go fields or
// struct dumps.
func TestMessagesInFlagTerms(t *testing.T) {
	data := prepareData(t)
	run := filepath.Join(t.TempDir(), "run")
	mustRun(t, tinyTrain(data, run, "--steps", "2")...)

	// Resuming with another shape names the flags that differ.
	_, stderr, code := execIn(t, tinyTrain(data, run, "--steps", "4", "--layers", "3", "--context", "32")...)
	want := "ringtrain: the run directory's checkpoint " + ckptDir(run, 2) + " has another model shape: --layers 2 in the checkpoint, 3 given; --context 16 in the checkpoint, 32 given"
	if code != 2 || !strings.Contains(stderr, want) || strings.Contains(stderr, "{") {
		t.Errorf("resume with another shape: status %d, stderr %q; want 2 and %q", code, stderr, want)
	}
	_, stderr, code = execIn(t, tinyTrain(data, t.TempDir(), "--init-from", ckptDir(run, 2), "--embd", "64")...)
	if want := "--init-from " + ckptDir(run, 2) + " has another model shape: --embd 32 in the checkpoint, 64 given"; code != 2 || !strings.Contains(stderr, want) {
		t.Errorf("--init-from another shape: status %d, stderr %q; want 2 and %q", code, stderr, want)
	}

	// --no-resume refuses a run directory with checkpoints, as its help says.
	_, stderr, code = execIn(t, tinyTrain(data, run, "--steps", "4", "--no-resume")...)
	if code != 1 || !strings.Contains(stderr, "--no-resume: run directory "+run+" already holds checkpoint "+ckptDir(run, 2)) {
		t.Errorf("--no-resume on a run with checkpoints: status %d, stderr %q", code, stderr)
	}
	if out := mustRun(t, tinyTrain(data, filepath.Join(t.TempDir(), "fresh"), "--steps", "1", "--no-resume")...); !strings.Contains(out, "done: step 1,") {
		t.Errorf("--no-resume on a fresh run directory printed:\n%s", out)
	}
	help := mustRun(t, "train", "--help")
	if !regexp.MustCompile(`--no-resume +refuse to start when --out already holds checkpoints`).MatchString(help) {
		t.Errorf("train --help does not say what --no-resume does:\n%s", help)
	}
	if !regexp.MustCompile(`--data string +prepared dataset directory`).MatchString(help) || strings.Contains(help, "--data ringtrain") {
		t.Errorf("train --help shows --data wrongly:\n%s", help)
	}

	// local --help shows the defaults local uses.
	help = mustRun(t, "local", "--help")
	for _, re := range []string{`--steps int +optimizer steps \(default 600\)\n`, `--out string +run directory .*\(default: <dir>/run\)\n`,
		`--streams int +data streams M.*\(default: one per worker\)\n`, `--data string +.*\(default: the shipped tiny shakespeare corpus`,
		`--log-interval int +steps between progress lines \(default 25\)\n`} {
		if !regexp.MustCompile(re).MatchString(help) {
			t.Errorf("local --help does not match %s:\n%s", re, help)
		}
	}

	// prepare names its flags: --overwrite, and the bpe size the corpus allows.
	text := filepath.Join(t.TempDir(), "small.txt")
	if err := os.WriteFile(text, []byte(examples.TinyShakespeare[:3000]), 0o644); err != nil {
		t.Fatal(err)
	}
	_, stderr, code = execIn(t, "prepare", "--input", text, "--out", data, "--tokenizer", "char")
	if code != 1 || !strings.Contains(stderr, "--out "+data+" already holds a dataset: --overwrite replaces it, --if-missing keeps it") || strings.Contains(stderr, "Overwrite") {
		t.Errorf("prepare over a dataset: status %d, stderr %q", code, stderr)
	}
	bpeOut := filepath.Join(t.TempDir(), "bpe")
	_, stderr, code = execIn(t, "prepare", "--input", text, "--out", bpeOut, "--min-shards", "1")
	m := regexp.MustCompile(`the largest bpe vocabulary it can build is (bpe:\d+)\n`).FindStringSubmatch(stderr)
	if code != 2 || m == nil || !strings.HasPrefix(stderr, "ringtrain: --tokenizer: ") {
		t.Fatalf("prepare --tokenizer bpe:4096 on 3,000 characters: status %d, stderr %q; want 2 and the size that works", code, stderr)
	}
	if out := mustRun(t, "prepare", "--input", text, "--out", bpeOut, "--min-shards", "1", "--tokenizer", m[1]); !strings.Contains(out, "tokenizer bpe (vocab "+strings.TrimPrefix(m[1], "bpe:")+")") {
		t.Errorf("prepare --tokenizer %s, the size named, printed %q", m[1], out)
	}
}
