package model

import (
	"fmt"
	"math"
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
	// decayMask[i] is 1 for parameters that get weight decay, else 0 (derived from config).
	decay []bool
}

// NewAdamW allocates zeroed optimizer state for a model of shape c.
func NewAdamW(c Config) *AdamW {
	n := c.NumParams()
	return &AdamW{M: make([]float32, n), V: make([]float32, n), decay: decayMask(c)}
}

func decayMask(c Config) []bool {
	d := make([]bool, 0, len(c.Tensors()))
	for _, t := range c.Tensors() {
		d = append(d, t.Decay)
	}
	return d
}

// Update applies one AdamW step with learning rate lr to params using grads (torch.optim.AdamW
// semantics: decoupled decay p -= lr*wd*p on 2-D weights only, then the bias-corrected Adam
// update). It is deterministic and element-wise, so the result does not depend on threads.
func (o *AdamW) Update(c Config, cfg AdamWConfig, lr float64, params, grads []float32) error {
	if len(params) != len(o.M) || len(grads) != len(o.M) {
		return fmt.Errorf("%w: adamw state has %d floats, params %d, grads %d", ErrShape, len(o.M), len(params), len(grads))
	}
	if o.decay == nil {
		o.decay = decayMask(c)
	}
	o.Step++
	bc1 := 1 - math.Pow(cfg.Beta1, float64(o.Step))
	bc2 := 1 - math.Pow(cfg.Beta2, float64(o.Step))
	stepSize := float32(lr / bc1)
	invSqrtBC2 := float32(1 / math.Sqrt(bc2))
	b1, b2 := float32(cfg.Beta1), float32(cfg.Beta2)
	eps := float32(cfg.Eps)
	decayFactor := float32(1 - lr*cfg.WeightDecay)
	for ti, t := range c.Tensors() {
		p := params[t.Offset : t.Offset+t.Size]
		g := grads[t.Offset : t.Offset+t.Size]
		m := o.M[t.Offset : t.Offset+t.Size]
		v := o.V[t.Offset : t.Offset+t.Size]
		df := float32(1)
		if o.decay[ti] {
			df = decayFactor
		}
		adamwKernel(p, g, m, v, b1, b2, eps, stepSize, invSqrtBC2, df)
	}
	return nil
}

// adamwKernel updates one tensor in place. Shapes: all (n).
func adamwKernel(p, g, m, v []float32, b1, b2, eps, stepSize, invSqrtBC2, decayFactor float32) {
	n := len(p)
	g, m, v = g[:n], m[:n], v[:n]
	for i := range n {
		gi := g[i]
		mi := b1*m[i] + (1-b1)*gi
		vi := b2*v[i] + (1-b2)*gi*gi
		m[i], v[i] = mi, vi
		denom := float32(math.Sqrt(float64(vi)))*invSqrtBC2 + eps
		p[i] = p[i]*decayFactor - stepSize*mi/denom
	}
}
