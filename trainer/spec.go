package trainer

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"os"

	"gopkg.in/yaml.v3"

	"github.com/ringtrain/ringtrain/model"
)

// Objective names a training objective.
type Objective string

// The objectives a job can train.
const (
	CausalLM Objective = "causal" // predict the next token (GPT)
	MaskedLM Objective = "masked" // predict masked tokens with bidirectional attention
	// SFT is supervised fine-tuning on an instruction dataset (shard.SFTInfo): causal
	// attention, the loss over the tokens the dataset's mask trains (the answers).
	SFT Objective = "sft"
	// Reward trains a reward model (model.Config.NumLabels 1) on a preference dataset:
	// the Bradley-Terry loss -log sigmoid(r_chosen - r_rejected), the mean over the
	// global batch's pairs.
	Reward Objective = "reward"
	// DPO is direct preference optimisation on a preference dataset: the mean over the
	// global batch's pairs of -log sigmoid(beta*((pi_c - ref_c) - (pi_r - ref_r))),
	// the reference the frozen init_from model, plus dpo_nll times the chosen answer's
	// mean per-token NLL when dpo_nll is set.
	DPO Objective = "dpo"
)

// DefaultBeta is the DPO beta a job that sets none trains with.
const DefaultBeta = 0.1

// Spec is everything a training job needs. It is what a job YAML file holds; the same
// spec drives the single-process trainer and the distributed workers, so that both
// follow the same trajectory.
type Spec struct {
	Model     model.Config `yaml:"model" json:"model"`
	Objective Objective    `yaml:"objective" json:"objective"`
	Data      string       `yaml:"data" json:"data"` // prepared dataset directory (manifest.json)
	Out       string       `yaml:"out" json:"out"`   // run directory: checkpoints, metrics
	InitFrom  string       `yaml:"init_from,omitempty" json:"init_from,omitempty"`
	// Tokenizer reads a dataset directory that carries no tokenizer file (llm.c
	// shards): "gpt2" (what "" means there), "byte", or a tokenizer file. A dataset
	// with its own tokenizer must leave it empty or name the same one.
	Tokenizer string `yaml:"tokenizer,omitempty" json:"tokenizer,omitempty"`

	SeqLen     int   `yaml:"seq_len" json:"seq_len"`         // T
	MicroBatch int   `yaml:"micro_batch" json:"micro_batch"` // b: sequences per stream per step
	Streams    int   `yaml:"streams" json:"streams"`         // M: the global batch is M*b sequences
	Steps      int64 `yaml:"steps" json:"steps"`
	// Epochs, when > 0, sets steps to epochs x the dataset's steps per epoch
	// (ResolveEpochs); steps must then be 0 or that number.
	Epochs int64  `yaml:"epochs" json:"epochs,omitempty"`
	Seed   uint64 `yaml:"seed" json:"seed"`

	LR          float64           `yaml:"lr" json:"lr"`
	MinLR       float64           `yaml:"min_lr" json:"min_lr"`
	WarmupSteps int64             `yaml:"warmup_steps" json:"warmup_steps"`
	AdamW       model.AdamWConfig `yaml:"adamw" json:"adamw"`
	GradClip    float64           `yaml:"grad_clip" json:"grad_clip"` // 0 disables clipping
	MaskRate    float64           `yaml:"mask_rate" json:"mask_rate"` // masked LM only
	// Beta is DPO's inverse temperature (dpo only; 0 means DefaultBeta). Omitted from
	// the JSON of a job that does not set it.
	Beta float64 `yaml:"beta" json:"beta,omitempty"`
	// DPONLL (dpo only) is the weight alpha of an NLL term on the chosen answers added
	// to the DPO loss: alpha times the chosen answer's mean per-token NLL, averaged over
	// the global batch's pairs. 0 trains plain DPO. Omitted from the JSON of a job that
	// does not set it.
	DPONLL float64 `yaml:"dpo_nll" json:"dpo_nll,omitempty"`
	// PPO holds the ppo objective's settings (ppo_spec.go); nil for the others. For
	// ppo, beta is the KL penalty's coefficient (0 means DefaultPPOBeta).
	PPO *PPOSpec `yaml:"ppo,omitempty" json:"ppo,omitempty"`

	LogInterval        int64 `yaml:"log_interval" json:"log_interval"`
	EvalInterval       int64 `yaml:"eval_interval" json:"eval_interval"` // 0: only at the end
	EvalBatches        int   `yaml:"eval_batches" json:"eval_batches"`
	CheckpointInterval int64 `yaml:"checkpoint_interval" json:"checkpoint_interval"` // 0: only at the end

	// Stopping and retention (Cadence.Stop, Retain); the zero value of each turns it
	// off. They are omitted from the JSON of a job that does not use them, so such a
	// job's JSON (in checkpoints and the coordinator) is what it was without them.
	KeepCheckpoints int      `yaml:"keep_checkpoints" json:"keep_checkpoints,omitempty"` // newest N kept, and the best; 0: all
	MaxTime         Duration `yaml:"max_time" json:"max_time,omitempty"`                 // stop after this wall time
	TargetValLoss   float64  `yaml:"target_val_loss" json:"target_val_loss,omitempty"`   // stop once val loss <= this
	Patience        int      `yaml:"patience" json:"patience,omitempty"`                 // stop after N evaluations without a better val loss

	// Exact sums every step's gradient in fixed point (exact.go), so the weights do
	// not depend on the world size or on faults. Omitted from the JSON while false.
	Exact bool `yaml:"exact" json:"exact,omitempty"`
}

// ErrBadSpec reports an invalid job spec; the message names the field and value.
var ErrBadSpec = errors.New("trainer: invalid job spec")

// DefaultSpec returns the tiny-shakespeare recipe: 4 layers, 4 heads, 128 wide, context
// 64, 12 sequences per step, 2000 steps, AdamW lr 1e-3 cosine to 1e-4 after 100 warmup
// steps, weight decay 0.1, clipping at 1.0.
func DefaultSpec() Spec {
	return Spec{
		Model:     model.Config{Layers: 4, Heads: 4, Embd: 128},
		Objective: CausalLM,
		Out:       "run",
		SeqLen:    64, MicroBatch: 12, Streams: 1, Steps: 2000, Seed: 1337,
		LR: 1e-3, MinLR: 1e-4, WarmupSteps: 100,
		AdamW:    model.DefaultAdamW(),
		GradClip: 1.0, MaskRate: 0.15,
		LogInterval: 10, EvalInterval: 250, EvalBatches: 20, CheckpointInterval: 1000,
	}
}

// LoadSpec reads a job YAML file over the defaults. Unknown fields are errors; an empty
// file is the defaults.
func LoadSpec(path string) (Spec, error) {
	s := DefaultSpec()
	f, err := os.Open(path)
	if err != nil {
		return s, fmt.Errorf("job spec: %w", err)
	}
	defer f.Close()
	return parseSpec(f, path)
}

// parseSpec decodes a job YAML document read from path (named in errors) over the
// defaults.
func parseSpec(r io.Reader, path string) (Spec, error) {
	s := DefaultSpec()
	raw, err := io.ReadAll(r)
	if err != nil {
		return s, fmt.Errorf("job spec: %s: %w", path, err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(raw))
	dec.KnownFields(true)
	if err := dec.Decode(&s); err != nil && !errors.Is(err, io.EOF) {
		return s, fmt.Errorf("%w: %s: %v", ErrBadSpec, path, err)
	}
	// epochs without steps: the default steps must not stand against it.
	var keys map[string]any
	if yaml.Unmarshal(raw, &keys) == nil && keys["epochs"] != nil && keys["steps"] == nil {
		s.Steps = 0
	}
	return s, nil
}

// AssumedVocabSize is the vocabulary a submitted job's size is checked with when its
// model.vocab_size is 0 (filled in later from the data's tokenizer): GPT-2's, the
// largest of the tokenizers ringtrain ships.
const AssumedVocabSize = 50257

// CheckSubmitted checks a job spec as it is submitted, before Prepare fills in
// model.vocab_size and model.max_seq_len from the data: every field as Validate
// checks it, with a vocab_size of 0 taken as AssumedVocabSize and a max_seq_len of 0
// as seq_len, and the model's parameters and the activations of one micro-batch
// (micro_batch sequences of seq_len tokens) within lim. It reads nothing but s.
func (s Spec) CheckSubmitted(lim model.Limits) error {
	if s.Model.VocabSize == 0 {
		s.Model.VocabSize = AssumedVocabSize
	}
	if s.Model.MaxSeqLen == 0 {
		s.Model.MaxSeqLen = s.SeqLen
	}
	if err := s.Validate(); err != nil {
		return err
	}
	if err := s.Model.CheckLimits(lim, s.MicroBatch, s.SeqLen); err != nil {
		return fmt.Errorf("%w: model: %w", ErrBadSpec, err)
	}
	return nil
}

// GlobalBatch is the number of sequences per optimizer step (streams * micro_batch).
func (s Spec) GlobalBatch() int { return s.Streams * s.MicroBatch }

// TokensPerStep returns the tokens one step computes over the global batch
// (streams x StreamTokens). Throughput (tokens/s), metrics.jsonl's tokens and a
// checkpoint's tokens_seen count these (Trainer.TokensSeen), except for ppo, whose
// steps count the prompt and answer tokens of their rollouts.
func (s Spec) TokensPerStep() int64 { return int64(s.Streams) * s.StreamTokens() }

// StreamTokens returns the tokens of one stream's micro-batch in a step: every row of
// T tokens, so for the reward and dpo objectives, whose micro-batch counts pairs, both
// rows of each pair (dpo's reference forward pass is not counted again).
func (s Spec) StreamTokens() int64 {
	n := int64(s.MicroBatch) * int64(s.SeqLen)
	if isPreference(s.Objective) {
		n *= 2
	}
	return n
}

// Validate checks every field and names the first bad one. The model's vocabulary and
// maximum sequence length must have been filled in (from the data and seq_len).
func (s Spec) Validate() error {
	bad := func(field string, v any, why string) error {
		return fmt.Errorf("%w: %s=%v %s", ErrBadSpec, field, v, why)
	}
	for _, f := range []struct {
		name string
		v    float64
	}{
		{"lr", s.LR}, {"min_lr", s.MinLR}, {"adamw.beta1", s.AdamW.Beta1}, {"adamw.beta2", s.AdamW.Beta2},
		{"adamw.eps", s.AdamW.Eps}, {"adamw.weight_decay", s.AdamW.WeightDecay}, {"grad_clip", s.GradClip},
		{"mask_rate", s.MaskRate}, {"target_val_loss", s.TargetValLoss}, {"beta", s.Beta},
		{"dpo_nll", s.DPONLL},
	} {
		if math.IsNaN(f.v) || math.IsInf(f.v, 0) {
			return bad(f.name, f.v, "must be a finite number")
		}
	}
	switch {
	case s.Objective != CausalLM && s.Objective != MaskedLM && s.Objective != SFT && s.Objective != Reward && s.Objective != DPO && s.Objective != PPO:
		return bad("objective", s.Objective, `must be "causal", "masked", "sft", "reward", "dpo" or "ppo"`)
	case s.Objective == Reward && s.Model.NumLabels != 0 && s.Model.NumLabels != 1:
		return bad("model.num_labels", s.Model.NumLabels, "must be 1 (or 0, which Prepare makes 1) for objective reward: the scalar score head")
	case s.Objective != Reward && s.Model.NumLabels != 0:
		return bad("model.num_labels", s.Model.NumLabels, fmt.Sprintf("must be 0 for objective %s (a language model)", s.Objective))
	case s.Objective == DPO && s.InitFrom == "":
		return bad("init_from", s.InitFrom, "is required for objective dpo: the frozen reference is the model training starts from")
	case s.Beta < 0 || (s.Beta != 0 && s.Objective != DPO && s.Objective != PPO):
		return bad("beta", s.Beta, "must be >= 0, and is set only for objectives dpo and ppo")
	case s.DPONLL < 0 || (s.DPONLL != 0 && s.Objective != DPO):
		return bad("dpo_nll", s.DPONLL, "must be >= 0, and is set only for objective dpo")
	case s.Epochs < 0:
		return bad("epochs", s.Epochs, "must be >= 0 (0: steps decides)")
	case s.SeqLen < 1:
		return bad("seq_len", s.SeqLen, "must be >= 1")
	case s.MicroBatch < 1:
		return bad("micro_batch", s.MicroBatch, "must be >= 1")
	case s.Streams < 1:
		return bad("streams", s.Streams, "must be >= 1")
	case s.Steps < 1 && s.Epochs > 0:
		return bad("steps", s.Steps, fmt.Sprintf("is not resolved from epochs=%d (ResolveEpochs reads the dataset)", s.Epochs))
	case s.Steps < 1:
		return bad("steps", s.Steps, "must be >= 1")
	case !(s.LR > 0):
		return bad("lr", s.LR, "must be > 0")
	case s.MinLR < 0 || s.MinLR > s.LR:
		return bad("min_lr", s.MinLR, "must be in [0, lr]")
	case s.WarmupSteps < 0:
		return bad("warmup_steps", s.WarmupSteps, "must be >= 0")
	case s.AdamW.Beta1 < 0 || s.AdamW.Beta1 >= 1:
		return bad("adamw.beta1", s.AdamW.Beta1, "must be in [0, 1)")
	case s.AdamW.Beta2 < 0 || s.AdamW.Beta2 >= 1:
		return bad("adamw.beta2", s.AdamW.Beta2, "must be in [0, 1)")
	case !(s.AdamW.Eps > 0):
		return bad("adamw.eps", s.AdamW.Eps, "must be > 0")
	case s.AdamW.WeightDecay < 0:
		return bad("adamw.weight_decay", s.AdamW.WeightDecay, "must be >= 0")
	case s.GradClip < 0:
		return bad("grad_clip", s.GradClip, "must be >= 0 (0 disables clipping)")
	case s.Objective == MaskedLM && !(s.MaskRate > 0 && s.MaskRate < 1):
		return bad("mask_rate", s.MaskRate, "must be in (0, 1)")
	case s.LogInterval < 1:
		return bad("log_interval", s.LogInterval, "must be >= 1")
	case s.EvalInterval < 0:
		return bad("eval_interval", s.EvalInterval, "must be >= 0")
	case s.EvalBatches < 0:
		return bad("eval_batches", s.EvalBatches, "must be >= 0")
	case s.CheckpointInterval < 0:
		return bad("checkpoint_interval", s.CheckpointInterval, "must be >= 0")
	case s.KeepCheckpoints < 0:
		return bad("keep_checkpoints", s.KeepCheckpoints, "must be >= 0 (0 keeps every checkpoint)")
	case s.MaxTime < 0:
		return bad("max_time", s.MaxTime, "must be >= 0 (0 sets no limit)")
	case !(s.TargetValLoss >= 0) || math.IsInf(s.TargetValLoss, 0):
		return bad("target_val_loss", s.TargetValLoss, "must be a finite number >= 0 (0 sets no target)")
	case s.Patience < 0:
		return bad("patience", s.Patience, "must be >= 0 (0 turns early stopping off)")
	case s.TargetValLoss > 0 && (s.EvalInterval < 1 || s.EvalBatches < 1):
		return bad("target_val_loss", s.TargetValLoss, fmt.Sprintf("needs evaluations during the run: eval_interval (%d) and eval_batches (%d) must be >= 1", s.EvalInterval, s.EvalBatches))
	case s.Patience > 0 && (s.EvalInterval < 1 || s.EvalBatches < 1):
		return bad("patience", s.Patience, fmt.Sprintf("needs evaluations during the run: eval_interval (%d) and eval_batches (%d) must be >= 1", s.EvalInterval, s.EvalBatches))
	case s.SeqLen > s.Model.MaxSeqLen:
		return bad("seq_len", s.SeqLen, fmt.Sprintf("exceeds the model's max_seq_len %d", s.Model.MaxSeqLen))
	}
	if err := s.validatePPO(); err != nil {
		return err
	}
	if err := s.Model.Validate(); err != nil {
		return fmt.Errorf("%w: model: %w", ErrBadSpec, err)
	}
	return nil
}
