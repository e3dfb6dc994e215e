package trainer

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"

	"github.com/ringtrain/ringtrain/model"
)

// TestDescribe checks the RunInfo of a prepared job against the dataset and the
// spec: 54,000 train characters in 4 shards read 2 x 16 tokens a step.
func TestDescribe(t *testing.T) {
	spec := tinySpec(prepareData(t), "out")
	p, err := Prepare(context.Background(), spec)
	if err != nil {
		t.Fatal(err)
	}
	r := Describe(p, 4, "out/ckpt/step-000004")
	if r.Params != p.Spec.Model.NumParams() || r.Model != p.Spec.Model || r.Model.VocabSize == 0 {
		t.Errorf("model %+v with %d parameters, want the prepared %+v with %d", r.Model, r.Params, p.Spec.Model, p.Spec.Model.NumParams())
	}
	if r.TokensPerStep != 32 || r.TrainShards != 4 || r.TrainTokens != 54_000 {
		t.Errorf("tokens per step %d, train shards %d, train tokens %d; want 32, 4, 54000", r.TokensPerStep, r.TrainShards, r.TrainTokens)
	}
	if want := p.Loader.Sampler().StepsPerEpoch(); r.StepsPerEpoch != want || want < 1000 {
		t.Errorf("steps per epoch %d, want the sampler's %d (about 54000/32)", r.StepsPerEpoch, want)
	}
	if r.StartStep != 4 || r.ResumedFrom != "out/ckpt/step-000004" {
		t.Errorf("start %d from %q", r.StartStep, r.ResumedFrom)
	}
}

// TestBanner checks the banner's lines and the warnings of a RunInfo.
func TestBanner(t *testing.T) {
	base := RunInfo{
		Model: model.Config{Layers: 4, Heads: 4, Embd: 128, MaxSeqLen: 64, VocabSize: 65}, Objective: CausalLM,
		Params: 801_408, Streams: 1, MicroBatch: 12, SeqLen: 64, TokensPerStep: 768,
		TrainTokens: 301_966, TrainShards: 16, StepsPerEpoch: 390,
		Steps: 2000, LR: 1e-3, MinLR: 1e-4, WarmupSteps: 100, Out: "run",
	}
	want := []string{
		"model: 4 layers, 4 heads, 128 wide, context 64, vocabulary 65; 801,408 (0.80M) parameters; causal objective",
		"batch: 12 sequences (1 stream x 12) of 64 tokens = 768 tokens per step",
		"data: 301,966 train tokens in 16 shards; 390 steps per epoch",
		"run: 2,000 steps, 5.1 epochs, from fresh weights; lr 0.001 after 100 warmup steps, cosine to 0.0001",
		"writes: run/ckpt/step-NNNNNN (checkpoints), run/metrics.jsonl",
	}
	if got := base.Banner(); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("banner:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if w := base.Warnings(); len(w) != 0 {
		t.Errorf("warnings of a sound job: %q", w)
	}

	cluster := base
	cluster.Workers, cluster.Streams, cluster.MicroBatch = 3, 6, 2
	cluster.StartStep, cluster.ResumedFrom = 1000, "run/ckpt/step-001000"
	b := strings.Join(cluster.Banner(), "\n")
	for _, s := range []string{"12 sequences (6 streams x 2) of 64 tokens = 768 tokens per step, on 3 workers", "resuming at step 1,000 from run/ckpt/step-001000"} {
		if !strings.Contains(b, s) {
			t.Errorf("cluster banner lacks %q:\n%s", s, b)
		}
	}

	cases := []struct {
		name   string
		mod    func(r *RunInfo)
		warned []string
	}{
		{"warmup = steps", func(r *RunInfo) { r.WarmupSteps = 2000 }, []string{"warmup of 2,000 steps is not shorter than the run's 2,000 steps", "never decays"}},
		{"warmup > steps", func(r *RunInfo) { r.Steps, r.WarmupSteps = 20, 100 }, []string{"warmup of 100 steps is not shorter than the run's 20 steps", "to 0.0002 at the last step"}},
		{"10 epochs", func(r *RunInfo) { r.Steps = 3900 }, nil},
		{"many epochs", func(r *RunInfo) { r.Steps = 3901 }, []string{"3,901 steps make 10 passes over the train split"}},
		{"hundreds of epochs", func(r *RunInfo) { r.Steps, r.StepsPerEpoch = 100_000, 52 }, []string{"100,000 steps make 1,923 passes", "more than 10"}},
	}
	for _, c := range cases {
		r := base
		c.mod(&r)
		got := strings.Join(r.Warnings(), "\n")
		if c.warned == nil && got != "" {
			t.Errorf("%s: warned %q", c.name, got)
		}
		for _, s := range c.warned {
			if !strings.Contains(got, s) {
				t.Errorf("%s: warnings %q lack %q", c.name, got, s)
			}
		}
	}
}

// TestAnnounce checks that the banner and the warnings go to the progress writer and
// the warnings, at WARN, to the log.
func TestAnnounce(t *testing.T) {
	r := RunInfo{Model: model.Config{Layers: 1, Heads: 1, Embd: 8, MaxSeqLen: 8, VocabSize: 10}, Objective: CausalLM,
		Streams: 1, MicroBatch: 1, SeqLen: 8, TokensPerStep: 8, TrainTokens: 100, TrainShards: 1, StepsPerEpoch: 12,
		Steps: 10, WarmupSteps: 10, LR: 1e-3, Out: "o"}
	var out, logs bytes.Buffer
	r.Announce(&out, slog.New(slog.NewTextHandler(&logs, nil)))
	lines := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
	if len(lines) != 6 || !strings.HasPrefix(lines[0], "model: ") || !strings.HasPrefix(lines[5], "warning: warmup of 10 steps") {
		t.Errorf("announced:\n%s\nwant the 5 banner lines and one warning", out.String())
	}
	if !strings.Contains(logs.String(), "level=WARN") || !strings.Contains(logs.String(), "warmup of 10 steps") {
		t.Errorf("logged %q, want the warning at WARN", logs.String())
	}
	r.Announce(nil, nil) // neither: no output, no panic
}

// TestRunAnnounces checks that Run prints the banner before the first progress line
// and nothing when the run directory is already at the last step.
func TestRunAnnounces(t *testing.T) {
	ctx := context.Background()
	spec := tinySpec(prepareData(t), t.TempDir())
	spec.Steps, spec.WarmupSteps = 2, 2
	var out bytes.Buffer
	res, err := Run(ctx, spec, RunOptions{Progress: &out})
	if err != nil {
		t.Fatal(err)
	}
	s := out.String()
	if !strings.HasPrefix(s, "model: 2 layers") || !strings.Contains(s, "\nwarning: warmup of 2 steps") ||
		strings.Index(s, "writes: ") > strings.Index(s, "step 1/2") {
		t.Errorf("progress output:\n%s\nwant the banner and the warmup warning before the first step", s)
	}
	if res.StartStep != 0 || res.Step != 2 {
		t.Errorf("start step %d, step %d; want 0 and 2", res.StartStep, res.Step)
	}
	out.Reset()
	again, err := Run(ctx, spec, RunOptions{Progress: &out})
	if err != nil {
		t.Fatal(err)
	}
	if out.Len() != 0 || again.StartStep != 2 || again.Step != 2 {
		t.Errorf("rerun: start step %d, step %d, printed %q; want 2, 2 and nothing", again.StartStep, again.Step, out.String())
	}
}

// TestModelMismatchError checks that resuming, or starting from init_from, with
// another model shape lists exactly the fields that differ.
func TestModelMismatchError(t *testing.T) {
	ctx := context.Background()
	data := prepareData(t)
	spec := tinySpec(data, t.TempDir())
	spec.Steps = 1
	first, err := Run(ctx, spec, RunOptions{})
	if err != nil {
		t.Fatal(err)
	}
	resume := spec
	resume.Steps, resume.Model.Layers, resume.Model.MaxSeqLen = 2, 3, 32
	_, err = Run(ctx, resume, RunOptions{})
	var mm *ModelMismatchError
	if !errors.As(err, &mm) || !errors.Is(err, ErrBadSpec) {
		t.Fatalf("resume with another shape: error %v, want a ModelMismatchError wrapping ErrBadSpec", err)
	}
	want := []ModelField{{"layers", 2, 3}, {"max_seq_len", 16, 32}}
	if got := mm.Fields(); len(got) != 2 || got[0] != want[0] || got[1] != want[1] || mm.Source != "checkpoint" || mm.Dir != first.Checkpoint {
		t.Errorf("mismatch from %s %s: %+v, want %+v from checkpoint %s", mm.Source, mm.Dir, got, want, first.Checkpoint)
	}
	if msg := err.Error(); !strings.Contains(msg, "model.layers 2 in the checkpoint, 3 in the job") || strings.Contains(msg, "{") {
		t.Errorf("message %q, want the differing fields named, no struct dump", msg)
	}

	init := tinySpec(data, t.TempDir())
	init.InitFrom, init.Model.Embd = first.Checkpoint, 64
	_, err = Run(ctx, init, RunOptions{})
	if !errors.As(err, &mm) || mm.Source != "init_from" || len(mm.Fields()) != 1 || mm.Fields()[0] != (ModelField{"embd", 32, 64}) {
		t.Errorf("init_from with another embd: error %v", err)
	}
}
