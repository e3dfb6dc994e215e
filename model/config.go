package model

import (
	"errors"
	"fmt"
)

// Config is the shape of a GPT-2 model. Field names follow Hugging Face's GPT2Config
// in config.json (n_layer, n_head, n_embd, n_positions, vocab_size).
type Config struct {
	Layers    int `json:"n_layer" yaml:"layers"`
	Heads     int `json:"n_head" yaml:"heads"`
	Embd      int `json:"n_embd" yaml:"embd"`
	MaxSeqLen int `json:"n_positions" yaml:"max_seq_len"`
	VocabSize int `json:"vocab_size" yaml:"vocab_size"`
	// NumLabels is 0 for a language model and 1 for a reward model: a GPT-2 with a
	// scalar head "score.weight" (1, Embd), no bias, read at the last real token of
	// each row (Hugging Face's GPT2ForSequenceClassification with one label).
	NumLabels int `json:"num_labels,omitempty" yaml:"num_labels,omitempty"`
	// ValueHead adds a PPO value head to a language model: "value.weight" (1, Embd)
	// and "value.bias" (1), applied to the final LayerNorm's output at every position
	// (model/value.go). The language-model head is unchanged.
	ValueHead bool `json:"value_head,omitempty" yaml:"value_head,omitempty"`
}

// Sentinel errors of the model package.
var (
	// ErrBadConfig reports a model configuration that cannot be built.
	ErrBadConfig = errors.New("model: invalid config")
	// ErrShape reports inputs whose shape does not fit the model or its buffers.
	ErrShape = errors.New("model: shape mismatch")
)

// Validate checks the configuration and names the offending field. A valid config's
// parameter count is within HardLimits (limits.go), so building the model allocates
// lengths that cannot overflow.
func (c Config) Validate() error {
	switch {
	case c.Layers < 1:
		return fmt.Errorf("%w: layers=%d must be >= 1", ErrBadConfig, c.Layers)
	case c.Heads < 1:
		return fmt.Errorf("%w: heads=%d must be >= 1", ErrBadConfig, c.Heads)
	case c.Embd < 1 || c.Embd%c.Heads != 0:
		return fmt.Errorf("%w: embd=%d must be a positive multiple of heads=%d", ErrBadConfig, c.Embd, c.Heads)
	case c.MaxSeqLen < 1:
		return fmt.Errorf("%w: max_seq_len=%d must be >= 1", ErrBadConfig, c.MaxSeqLen)
	case c.VocabSize < 2:
		return fmt.Errorf("%w: vocab_size=%d must be >= 2", ErrBadConfig, c.VocabSize)
	case c.NumLabels != 0 && c.NumLabels != 1:
		return fmt.Errorf("%w: num_labels=%d: 0 (a language model) or 1 (a reward model's scalar head)", ErrBadConfig, c.NumLabels)
	case c.ValueHead && c.NumLabels != 0:
		return fmt.Errorf("%w: value_head needs a language model (num_labels 0), not num_labels %d", ErrBadConfig, c.NumLabels)
	}
	return c.CheckLimits(HardLimits, 0, 0)
}

// NumParams returns the number of float32 parameters (the tied LM head is counted
// once). It is meaningful for a config that Validate accepts; ParamCount is the
// overflow-checked count of any config.
func (c Config) NumParams() int {
	return layoutOf(c).size
}
