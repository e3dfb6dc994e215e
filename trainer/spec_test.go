package trainer

import (
	"encoding/json"
	"errors"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ringtrain/ringtrain/model"
)

// validSpec is DefaultSpec with the fields Prepare fills in from the data.
func validSpec() Spec {
	s := DefaultSpec()
	s.Data = "data"
	s.Model.VocabSize = 61
	s.Model.MaxSeqLen = s.SeqLen
	return s
}

func TestValidateAcceptsDefaults(t *testing.T) {
	if err := validSpec().Validate(); err != nil {
		t.Fatalf("the default spec is invalid: %v", err)
	}
	s := validSpec()
	s.MaskRate = 0 // ignored by the causal objective
	s.GradClip, s.WarmupSteps, s.MinLR, s.EvalInterval, s.EvalBatches, s.CheckpointInterval = 0, 0, 0, 0, 0, 0
	if err := s.Validate(); err != nil {
		t.Fatalf("zero clip, warmup, min_lr and intervals should be valid: %v", err)
	}
}

func TestValidateNamesTheField(t *testing.T) {
	cases := []struct {
		field string // as in the job YAML
		edit  func(*Spec)
	}{
		{"objective", func(s *Spec) { s.Objective = "mlm" }},
		{"objective", func(s *Spec) { s.Objective = "" }},
		{"seq_len", func(s *Spec) { s.SeqLen = 0 }},
		{"seq_len", func(s *Spec) { s.SeqLen = s.Model.MaxSeqLen + 1 }},
		{"micro_batch", func(s *Spec) { s.MicroBatch = 0 }},
		{"streams", func(s *Spec) { s.Streams = -1 }},
		{"steps", func(s *Spec) { s.Steps = 0 }},
		{"steps", func(s *Spec) { s.Steps, s.Epochs = 0, 2 }}, // epochs not resolved
		{"epochs", func(s *Spec) { s.Epochs = -1 }},
		{"lr", func(s *Spec) { s.LR = 0 }},
		{"lr", func(s *Spec) { s.LR = math.NaN() }},
		{"min_lr", func(s *Spec) { s.MinLR = -1e-5 }},
		{"min_lr", func(s *Spec) { s.MinLR = 2 * s.LR }},
		{"warmup_steps", func(s *Spec) { s.WarmupSteps = -1 }},
		{"adamw.beta1", func(s *Spec) { s.AdamW.Beta1 = 1 }},
		{"adamw.beta2", func(s *Spec) { s.AdamW.Beta2 = -0.1 }},
		{"adamw.eps", func(s *Spec) { s.AdamW.Eps = 0 }},
		{"adamw.weight_decay", func(s *Spec) { s.AdamW.WeightDecay = -0.1 }},
		{"grad_clip", func(s *Spec) { s.GradClip = -1 }},
		{"mask_rate", func(s *Spec) { s.Objective, s.MaskRate = MaskedLM, 0 }},
		{"mask_rate", func(s *Spec) { s.Objective, s.MaskRate = MaskedLM, 1 }},
		{"log_interval", func(s *Spec) { s.LogInterval = 0 }},
		{"eval_interval", func(s *Spec) { s.EvalInterval = -1 }},
		{"eval_batches", func(s *Spec) { s.EvalBatches = -1 }},
		{"checkpoint_interval", func(s *Spec) { s.CheckpointInterval = -1 }},
		{"layers", func(s *Spec) { s.Model.Layers = 0 }},
		{"embd", func(s *Spec) { s.Model.Embd = 30 }}, // not a multiple of 4 heads
		{"vocab_size", func(s *Spec) { s.Model.VocabSize = 1 }},
		{"keep_checkpoints", func(s *Spec) { s.KeepCheckpoints = -1 }},
		{"max_time", func(s *Spec) { s.MaxTime = -1 }},
		{"target_val_loss", func(s *Spec) { s.TargetValLoss = -0.5 }},
		{"target_val_loss", func(s *Spec) { s.TargetValLoss = math.NaN() }},
		{"target_val_loss", func(s *Spec) { s.TargetValLoss = math.Inf(1) }},
		{"target_val_loss", func(s *Spec) { s.TargetValLoss, s.EvalInterval = 2, 0 }},
		{"target_val_loss", func(s *Spec) { s.TargetValLoss, s.EvalBatches = 2, 0 }},
		{"patience", func(s *Spec) { s.Patience = -1 }},
		{"dpo_nll", func(s *Spec) { s.DPONLL = 1 }}, // not a dpo job
		{"dpo_nll", func(s *Spec) { s.Objective, s.InitFrom, s.DPONLL = DPO, "sft", -0.5 }},
		{"dpo_nll", func(s *Spec) { s.Objective, s.InitFrom, s.DPONLL = DPO, "sft", math.NaN() }},
		{"dpo_nll", func(s *Spec) { s.Objective, s.InitFrom, s.DPONLL = DPO, "sft", math.Inf(1) }},
		{"patience", func(s *Spec) { s.Patience, s.EvalInterval = 3, 0 }},
	}
	for _, c := range cases {
		s := validSpec()
		c.edit(&s)
		err := s.Validate()
		if err == nil {
			t.Errorf("%s: bad value accepted: %+v", c.field, s)
			continue
		}
		if !errors.Is(err, ErrBadSpec) {
			t.Errorf("%s: error %q does not wrap ErrBadSpec", c.field, err)
		}
		if !strings.Contains(err.Error(), c.field+"=") {
			t.Errorf("error %q does not name the field %s", err, c.field)
		}
	}
}

func TestLoadSpec(t *testing.T) {
	dir := t.TempDir()
	write := func(name, text string) string {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		return path
	}

	good := write("good.yaml", `
model: {layers: 2, heads: 2, embd: 32}
objective: masked
data: /data/shakespeare
seq_len: 32
micro_batch: 3
streams: 4
steps: 50
lr: 0.01
adamw: {weight_decay: 0.0}
mask_rate: 0.2
`)
	s, err := LoadSpec(good)
	if err != nil {
		t.Fatalf("LoadSpec(good): %v", err)
	}
	want := DefaultSpec()
	want.Model = model.Config{Layers: 2, Heads: 2, Embd: 32}
	want.Objective, want.Data = MaskedLM, "/data/shakespeare"
	want.SeqLen, want.MicroBatch, want.Streams, want.Steps, want.LR = 32, 3, 4, 50, 0.01
	want.AdamW.WeightDecay, want.MaskRate = 0, 0.2
	if s != want {
		t.Errorf("LoadSpec(good) =\n%+v\nwant (defaults under the file)\n%+v", s, want)
	}

	for name, text := range map[string]string{
		"unknown_top.yaml":   "steps: 10\nlearning_rate: 0.1\n",
		"unknown_model.yaml": "model: {layers: 2, dropout: 0.1}\n",
		"unknown_adamw.yaml": "adamw: {beta3: 0.9}\n",
	} {
		_, err := LoadSpec(write(name, text))
		if !errors.Is(err, ErrBadSpec) {
			t.Errorf("%s: error %v, want ErrBadSpec for an unknown field", name, err)
			continue
		}
		if !strings.Contains(err.Error(), name) {
			t.Errorf("%s: error %q does not name the file", name, err)
		}
	}
	for _, text := range []string{"", "# only a comment\n"} {
		s, err := LoadSpec(write("empty.yaml", text))
		if err != nil || s != DefaultSpec() {
			t.Errorf("LoadSpec(%q) = %+v, %v; want the defaults", text, s, err)
		}
	}
	// epochs without steps leaves steps to ResolveEpochs; with steps both stand.
	if s, err := LoadSpec(write("epochs.yaml", "objective: sft\nepochs: 3\n")); err != nil || s.Epochs != 3 || s.Steps != 0 || s.Objective != SFT {
		t.Errorf("epochs without steps: %+v, %v", s, err)
	}
	if s, err := LoadSpec(write("both.yaml", "epochs: 3\nsteps: 90\n")); err != nil || s.Epochs != 3 || s.Steps != 90 {
		t.Errorf("epochs and steps: %+v, %v", s, err)
	}
	if _, err := LoadSpec(write("bad_type.yaml", "steps: many\n")); !errors.Is(err, ErrBadSpec) {
		t.Errorf("a string for steps: error %v, want ErrBadSpec", err)
	}
	if _, err := LoadSpec(filepath.Join(dir, "missing.yaml")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a missing file: error %v, want os.ErrNotExist", err)
	}
}

// TestStoppingAndRetentionFields checks the job YAML keys of the stopping rules and
// retention: they load (max_time as a duration with a unit), are valid together,
// a duration without a unit is refused naming the value and its line, and a job
// that sets none of them has the JSON it had before they existed.
func TestStoppingAndRetentionFields(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "job.yaml")
	write := func(text string) {
		if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("keep_checkpoints: 3\nmax_time: 1h30m\ntarget_val_loss: 1.75\npatience: 4\n")
	s, err := LoadSpec(path)
	if err != nil {
		t.Fatal(err)
	}
	if s.KeepCheckpoints != 3 || time.Duration(s.MaxTime) != 90*time.Minute || s.TargetValLoss != 1.75 || s.Patience != 4 {
		t.Errorf("loaded keep %d, max_time %s, target %v, patience %d", s.KeepCheckpoints, s.MaxTime, s.TargetValLoss, s.Patience)
	}
	s.Data, s.Model.VocabSize, s.Model.MaxSeqLen = "data", 61, s.SeqLen
	if err := s.Validate(); err != nil {
		t.Errorf("valid stopping rules refused: %v", err)
	}

	// The job's JSON (checkpoints, the coordinator) writes max_time as YAML does and
	// reads it back.
	b, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), `"max_time":"1h30m0s"`) || !strings.Contains(string(b), `"keep_checkpoints":3`) {
		t.Errorf("job JSON %s lacks the stopping rules", b)
	}
	var back Spec
	if err := json.Unmarshal(b, &back); err != nil || back != s {
		t.Errorf("JSON round trip: %+v, %v; want %+v", back, err, s)
	}
	b, err = json.Marshal(DefaultSpec())
	if err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{"keep_checkpoints", "max_time", "target_val_loss", "patience"} {
		if strings.Contains(string(b), key) {
			t.Errorf("the default job's JSON has %s: %s", key, b)
		}
	}

	for _, bad := range []string{"max_time: 60\n", "max_time: soon\n", "max_time: [1m]\n"} {
		write("steps: 10\n" + bad)
		_, err := LoadSpec(path)
		if !errors.Is(err, ErrBadSpec) || !strings.Contains(err.Error(), "line 2") || !strings.Contains(err.Error(), "duration") {
			t.Errorf("%q: error %v, want ErrBadSpec naming line 2 and the duration", bad, err)
		}
	}
}
