package model

import (
	"fmt"
	"math"

	"github.com/ringtrain/ringtrain/tensor"
)

// AdamWConfig holds the optimizer's hyperparameters (torch.optim.AdamW semantics).
type AdamWConfig struct {
	Beta1       float64 `json:"beta1" yaml:"beta1"`
	Beta2       float64 `json:"beta2" yaml:"beta2"`
	Eps         float64 `json:"eps" yaml:"eps"`
	WeightDecay float64 `json:"weight_decay" yaml:"weight_decay"`
}

// DefaultAdamW returns the GPT-2/nanoGPT defaults: betas (0.9, 0.95), eps 1e-8, decay 0.1.
func DefaultAdamW() AdamWConfig {
	return AdamWConfig{Beta1: 0.9, Beta2: 0.95, Eps: 1e-8, WeightDecay: 0.1}
}

// AdamW is the optimizer state: first and second moments over the whole parameter slab,
// and the number of updates applied so far (the bias-correction step t).
// It is identical on every rank after every step.
type AdamW struct {
	M, V []float32 // (N) moments, same layout as the parameter slab
	Step int64     // updates applied
	// tensors is the layout of the config the state was built for (cached: Update runs
	// every step and must not allocate).
	tensors []Tensor
}

// NewAdamW allocates zeroed optimizer state for a model of shape c.
func NewAdamW(c Config) *AdamW {
	n := c.NumParams()
	return &AdamW{M: make([]float32, n), V: make([]float32, n), tensors: c.Tensors()}
}

// Update applies one AdamW step with learning rate lr to params using grads (torch.optim.AdamW
// semantics: decoupled decay p -= lr*wd*p on 2-D weights only, then the bias-corrected Adam
// update). It is deterministic and element-wise, so the result does not depend on threads.
func (o *AdamW) Update(c Config, cfg AdamWConfig, lr float64, params, grads []float32) error {
	return o.UpdateOn(tensor.NewCPU(), c, cfg, lr, params, grads)
}

// UpdateOn is Update with the element-wise kernel run by backend be: params, grads, M
// and V must be memory be computes on (host slices for a backend that shares host
// memory). Only the kernel runs there; the bias corrections are computed here.
func (o *AdamW) UpdateOn(be tensor.Backend, c Config, cfg AdamWConfig, lr float64, params, grads []float32) error {
	if len(params) != len(o.M) || len(grads) != len(o.M) {
		return fmt.Errorf("%w: adamw state has %d floats, params %d, grads %d", ErrShape, len(o.M), len(params), len(grads))
	}
	if o.tensors == nil {
		o.tensors = c.Tensors()
	}
	o.Step++
	bc1 := 1 - math.Pow(cfg.Beta1, float64(o.Step))
	bc2 := 1 - math.Pow(cfg.Beta2, float64(o.Step))
	stepSize := float32(lr / bc1)
	invSqrtBC2 := float32(1 / math.Sqrt(bc2))
	b1, b2 := float32(cfg.Beta1), float32(cfg.Beta2)
	eps := float32(cfg.Eps)
	decayFactor := float32(1 - lr*cfg.WeightDecay)
	for _, t := range o.tensors {
		p := params[t.Offset : t.Offset+t.Size]
		g := grads[t.Offset : t.Offset+t.Size]
		m := o.M[t.Offset : t.Offset+t.Size]
		v := o.V[t.Offset : t.Offset+t.Size]
		df := float32(1)
		if t.Decay {
			df = decayFactor
		}
		be.AdamW(p, g, m, v, b1, b2, eps, stepSize, invSqrtBC2, df)
	}
	if err := be.Err(); err != nil {
		return fmt.Errorf("model: adamw on %s: %w", be.Device(), err)
	}
	return nil
}
