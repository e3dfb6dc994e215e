package model

import (
	"fmt"
	"io"
	"math"
	"runtime"

	"github.com/ringtrain/ringtrain/safetensors"
	"github.com/ringtrain/ringtrain/tensor"
)

// A PPO policy is a GPT-2 language model with a value head (Config.ValueHead): a
// scalar head on the final LayerNorm's output at every position, value.weight (1, C)
// and value.bias (1), sharing the transformer with the language-model head. Its
// tensors close the parameter slab, so the ring sums their gradients, state sync and
// checkpoints carry them, and the optimizer updates them, like any other parameter.
//
// Checkpoints keep them in model.safetensors beside the transformer (as a reward
// model keeps score.weight) and mark config.json with "ringtrain_value_head": true.
// ExportHF writes the language model alone (a plain GPT2LMHeadModel) and the head to
// the side file value_head.safetensors.

// The value head's tensor names.
const (
	ValueTensor     = "value.weight"
	ValueBiasTensor = "value.bias"
	// ValueHeadFile is the side file ExportHF writes a value head to.
	ValueHeadFile = "value_head.safetensors"
	valueHeadKey  = "ringtrain_value_head"
)

func isValueTensor(name string) bool { return name == ValueTensor || name == ValueBiasTensor }

// SplitValueHead returns the language model of a config with a value head and the
// head's floats (weight then bias, a view of params): the head closes the slab, so
// the language model's parameters are params[:lm.NumParams()]. A config without a
// head is returned as it is, with a nil head; so is the head for params shorter than
// cfg's slab (nil params: only the config is wanted).
func SplitValueHead(cfg Config, params []float32) (lm Config, head []float32) {
	if !cfg.ValueHead {
		return cfg, nil
	}
	lm = cfg
	lm.ValueHead = false
	if len(params) < cfg.NumParams() {
		return lm, nil
	}
	return lm, params[lm.NumParams():]
}

// writeValueHead writes head (value.weight then value.bias) to dir's ValueHeadFile;
// nothing when cfg has no head.
func writeValueHead(dir string, cfg Config, head []float32) error {
	if !cfg.ValueHead {
		return nil
	}
	C := cfg.Embd
	tensors := []safetensors.Tensor{
		safetensors.FromFloat32(ValueTensor, []int{1, C}, head[:C]),
		safetensors.FromFloat32(ValueBiasTensor, []int{1}, head[C:C+1]),
	}
	return writeSynced(dir, ValueHeadFile, map[string][]byte{}, func(w io.Writer) error {
		return safetensors.Write(w, tensors, nil)
	})
}

// InitValue draws a value head's weight as InitWeights draws a weight (normal, std
// 0.02, from seed) and zeroes its bias, leaving every other parameter as it is: a
// PPO policy that starts from a language model gets a fresh head. No-op without one.
func (m *GPT) InitValue(seed uint64) {
	rng := newNormal(seed ^ 0x76616c7565) // "value": not the stream InitWeights uses
	for i := range m.Params.Value {
		m.Params.Value[i] = float32(rng.next() * 0.02)
	}
	clear(m.Params.ValueB)
}

// NewFrozen builds a model that only runs forward, as PPO's frozen reference and
// reward model and DPO's reference do: it has no gradient slab (Grads is nil), so
// it costs its weights and the buffers of its forward passes, not twice its
// weights, and those buffers keep nothing for backward (one block's buffers that
// every layer reuses, no backward scratch, logits only once a forward needs them:
// Config.FrozenActivationBytes). Its outputs are a trainable model's bit for bit.
// ZeroGrad does nothing, and no Forward prepares a backward: every Backward returns
// an error wrapping ErrShape.
func NewFrozen(c Config, be tensor.Backend) (*GPT, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	if be == nil {
		be = tensor.NewCPU()
	}
	m := &GPT{Config: c, Params: NewParams(c), be: be}
	m.dev = ViewParams(c, be.Mirror(m.Params.Slab))
	if err := be.Err(); err != nil {
		return nil, fmt.Errorf("model: allocating %d parameters on %s: %w", c.NumParams(), be.Device(), err)
	}
	if !be.HostShared() {
		runtime.AddCleanup(m, freeAll, deviceBufs{be: be, bufs: []any{m.dev.Slab}, host: [][]float32{m.Params.Slab}})
	}
	return m, nil
}

// PolicyOutput is what ForwardPolicy computes at each position (B,T) of a batch.
// The slices are the caller's.
type PolicyOutput struct {
	LogProbs []float32 // (B,T) log-probability of the position's target; 0 without one
	Entropy  []float32 // (B,T) entropy of the next-token distribution; 0 without a target
	Values   []float32 // (B,T) the value head's output (every position)
}

// policyState is what ForwardPolicy keeps for BackwardPolicy.
type policyState struct {
	targets []int32   // (B,T)
	entropy []float32 // (B,T)
	lnf     []float32 // (B,T,C) host copy of the final LayerNorm's output
}

// ForwardPolicy runs a model with a value head causally on inputs (B,T) with targets
// (B,T) (-1: no target) and returns, at each position, the log-probability of the
// target, the entropy of the next-token distribution (positions with a target) and
// the value. BackwardPolicy may follow. A model without a value head, or bad ids or
// shapes, is an error wrapping ErrShape.
func (m *GPT) ForwardPolicy(inputs, targets []int32, B, T int) (*PolicyOutput, error) {
	c := m.Config
	if !c.ValueHead {
		return nil, fmt.Errorf("%w: ForwardPolicy needs a model with a value head", ErrShape)
	}
	if targets == nil {
		return nil, fmt.Errorf("%w: ForwardPolicy needs targets", ErrShape)
	}
	if _, _, err := m.forward(inputs, targets, nil, B, T, true); err != nil {
		return nil, err
	}
	a := m.acts
	C, V := c.Embd, c.VocabSize
	if len(a.hostLnf) != B*T*C {
		a.hostLnf = make([]float32, B*T*C)
	}
	lnf := m.download(a.hostLnf, a.lnf)
	probs := m.download(a.hostLogits, a.logits)
	losses := m.download(a.hostLosses, a.losses)
	if lnf == nil || probs == nil || losses == nil {
		return nil, fmt.Errorf("model: forward on %s: %w", m.be.Device(), m.be.Err())
	}
	out := &PolicyOutput{LogProbs: make([]float32, B*T), Entropy: make([]float32, B*T), Values: make([]float32, B*T)}
	w, bias := m.Params.Value, float64(m.Params.ValueB[0])
	for i := range B * T {
		v := bias
		for j, h := range lnf[i*C : (i+1)*C] {
			v += float64(w[j]) * float64(h)
		}
		out.Values[i] = float32(v)
		if targets[i] < 0 {
			continue
		}
		out.LogProbs[i] = -losses[i]
		var h float64
		for _, p := range probs[i*V : (i+1)*V] {
			if p > 0 {
				h -= float64(p) * math.Log(float64(p))
			}
		}
		out.Entropy[i] = float32(h)
	}
	if m.dgrads == nil {
		return out, nil // a frozen model (NewFrozen) has no backward
	}
	m.policy = &policyState{targets: append([]int32(nil), targets...), entropy: append([]float32(nil), out.Entropy...), lnf: lnf}
	m.haveLoss = false
	return out, nil
}

// BackwardPolicy adds into Grads the gradient of
//
//	sum over positions i of dlogp[i]*logp[i] + dent[i]*entropy[i] + dvalue[i]*value[i]
//
// of the last ForwardPolicy: dlogp, dent and dvalue (B,T) are a loss's derivatives with
// respect to each position's log-probability, entropy and value (PPOLoss). The
// log-probability and entropy terms enter the logits (d logp/dz = onehot - p,
// d H/dz = -p (log p + H)), the value term the value head and the final LayerNorm's
// output; then the rest of Backward runs. ready is as in Backward.
func (m *GPT) BackwardPolicy(dlogp, dent, dvalue []float32, ready func(lo, hi int)) error {
	st := m.policy
	if st == nil {
		return fmt.Errorf("%w: BackwardPolicy without a ForwardPolicy", ErrShape)
	}
	a := m.acts
	BT := a.B * a.T
	if len(dlogp) != BT || len(dent) != BT || len(dvalue) != BT {
		return fmt.Errorf("%w: %d, %d and %d gradients for B*T=%d", ErrShape, len(dlogp), len(dent), len(dvalue), BT)
	}
	m.policy = nil
	if ready == nil {
		ready = func(int, int) {}
	}
	c, be, p, g := m.Config, m.be, m.dev, m.dgrads
	C, V := c.Embd, c.VocabSize
	// The logits' gradient, from the probabilities on the host.
	d := a.hostLogits // (B,T,V): probabilities in, dlogits out
	for i := range BT {
		row := d[i*V : (i+1)*V]
		tg := st.targets[i]
		if tg < 0 {
			clear(row)
			continue
		}
		gl, ge, h := float64(dlogp[i]), float64(dent[i]), float64(st.entropy[i])
		for j, pj := range row {
			pf := float64(pj)
			v := -gl * pf
			if pf > 0 {
				v -= ge * pf * (math.Log(pf) + h)
			}
			row[j] = float32(v)
		}
		row[tg] += float32(gl)
	}
	be.Upload(a.logits, d)
	// The value head's gradients, added to what the backend holds, and its share of
	// the final LayerNorm output's gradient.
	dw := make([]float32, C+1)
	be.Download(dw[:C], g.Value)
	be.Download(dw[C:], g.ValueB)
	if err := be.Record().Wait(); err != nil {
		return fmt.Errorf("model: backward on %s: %w", be.Device(), err)
	}
	w := m.Params.Value
	dh := make([]float32, BT*C) // (B,T,C)
	for i := range BT {
		dv := dvalue[i]
		if dv == 0 {
			continue
		}
		h := st.lnf[i*C : (i+1)*C]
		gh := dh[i*C : (i+1)*C]
		for j := range C {
			dw[j] += dv * h[j]
			gh[j] = dv * w[j]
		}
		dw[C] += dv
	}
	be.Upload(g.Value, dw[:C])
	be.Upload(g.ValueB, dw[C:])
	be.Upload(a.grads.dbuf, dh)
	be.MatmulBackward(a.grads.dbuf, g.Wte, nil, a.logits, a.lnf, p.Wte, BT, C, V)
	return m.backwardFromHidden(ready)
}
