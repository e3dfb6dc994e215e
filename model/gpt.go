package model

import (
	"fmt"
	"math"
	"math/rand/v2"

	"github.com/ringtrain/ringtrain/tensor"
)

// GPT is a GPT-2 language model with its parameters, gradients and activation buffers.
//
// A GPT is not safe for concurrent use: one goroutine calls Forward, Backward and
// ZeroGrad in turn. Params.Slab and Grads.Slab are owned by the GPT; callers may read and
// write them between calls (the all-reduce sums Grads.Slab in place, the optimizer
// updates Params.Slab).
type GPT struct {
	Config Config
	Params *Params // (N) weights
	Grads  *Params // (N) gradients, accumulated by Backward until ZeroGrad

	be   tensor.Backend
	acts *activations
	// set by a Forward with targets, consumed by Backward
	haveLoss bool
	causal   bool
}

// activations holds everything forward saves for backward, sized for one (B,T).
type activations struct {
	B, T      int
	inputs    []int32   // (B,T)
	targets   []int32   // (B,T), -1 = ignored
	encoded   []float32 // (B,T,C)
	ln1       []float32 // (L,B,T,C)
	ln1Mean   []float32 // (L,B,T)
	ln1Rstd   []float32 // (L,B,T)
	qkv       []float32 // (L,B,T,3C)
	atty      []float32 // (L,B,T,C)
	lse       []float32 // (L,B,H,T) attention log-sum-exp per query row
	residual2 []float32 // (L,B,T,C)
	ln2       []float32 // (L,B,T,C)
	ln2Mean   []float32 // (L,B,T)
	ln2Rstd   []float32 // (L,B,T)
	fch       []float32 // (L,B,T,4C)
	fchGelu   []float32 // (L,B,T,4C)
	residual3 []float32 // (L,B,T,C)
	lnf       []float32 // (B,T,C)
	lnfMean   []float32 // (B,T)
	lnfRstd   []float32 // (B,T)
	logits    []float32 // (B,T,V): logits, then probabilities, then dlogits
	losses    []float32 // (B,T)
	proj      []float32 // (B,T,C) scratch for projection outputs

	// backward scratch
	dres  []float32 // (B,T,C) gradient of the residual stream
	dbuf  []float32 // (B,T,C)
	dfch  []float32 // (B,T,4C)
	dfchG []float32 // (B,T,4C)
	dqkv  []float32 // (B,T,3C)
}

func newActivations(c Config, B, T int) *activations {
	L, C, H, V := c.Layers, c.Embd, c.Heads, c.VocabSize
	BT := B * T
	f := func(n int) []float32 { return make([]float32, n) }
	return &activations{
		B: B, T: T,
		inputs: make([]int32, BT), targets: make([]int32, BT),
		encoded: f(BT * C),
		ln1:     f(L * BT * C), ln1Mean: f(L * BT), ln1Rstd: f(L * BT),
		qkv: f(L * BT * 3 * C), atty: f(L * BT * C), lse: f(L * B * H * T),
		residual2: f(L * BT * C),
		ln2:       f(L * BT * C), ln2Mean: f(L * BT), ln2Rstd: f(L * BT),
		fch: f(L * BT * 4 * C), fchGelu: f(L * BT * 4 * C),
		residual3: f(L * BT * C),
		lnf:       f(BT * C), lnfMean: f(BT), lnfRstd: f(BT),
		logits: f(BT * V), losses: f(BT), proj: f(BT * C),
		dres: f(BT * C), dbuf: f(BT * C), dfch: f(BT * 4 * C), dfchG: f(BT * 4 * C), dqkv: f(BT * 3 * C),
	}
}

// New builds a model of shape c with zeroed parameters on backend be (nil: the CPU).
func New(c Config, be tensor.Backend) (*GPT, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	if be == nil {
		be = tensor.NewCPU()
	}
	return &GPT{Config: c, Params: NewParams(c), Grads: NewParams(c), be: be}, nil
}

// InitWeights draws GPT-2's initialisation from seed: weights normal(0, 0.02), the two
// residual projections of each block normal(0, 0.02/sqrt(2*layers)), biases 0, LayerNorm
// weights 1 and biases 0. The same seed gives the same bits on every machine.
func (m *GPT) InitWeights(seed uint64) {
	rng := newNormal(seed)
	residStd := 0.02 / math.Sqrt(2*float64(m.Config.Layers))
	for _, t := range m.Config.Tensors() {
		p := m.Params.Slab[t.Offset : t.Offset+t.Size]
		switch {
		case isLayerNormWeight(t.Name):
			for i := range p {
				p[i] = 1
			}
		case len(t.Shape) == 1:
			clear(p)
		default:
			std := 0.02
			if isResidualProjection(t.Name) {
				std = residStd
			}
			for i := range p {
				p[i] = float32(rng.next() * std)
			}
		}
	}
}

func isLayerNormWeight(name string) bool {
	return hasSuffix(name, "ln_1.weight") || hasSuffix(name, "ln_2.weight") || name == "ln_f.weight"
}

func isResidualProjection(name string) bool {
	return hasSuffix(name, "attn.c_proj.weight") || hasSuffix(name, "mlp.c_proj.weight")
}

func hasSuffix(s, suf string) bool { return len(s) >= len(suf) && s[len(s)-len(suf):] == suf }

// normal draws standard normal deviates with Box-Muller over PCG, an algorithm fixed here
// so that initialisation never changes with the Go version.
type normal struct {
	src   *rand.PCG
	spare float64
	have  bool
}

func newNormal(seed uint64) *normal {
	return &normal{src: rand.NewPCG(seed, 0x9e3779b97f4a7c15)}
}

func (n *normal) uniform() float64 {
	// 53 random bits in (0, 1].
	return (float64(n.src.Uint64()>>11) + 1) / (1 << 53)
}

func (n *normal) next() float64 {
	if n.have {
		n.have = false
		return n.spare
	}
	u1, u2 := n.uniform(), n.uniform()
	r := math.Sqrt(-2 * math.Log(u1))
	n.spare = r * math.Sin(2*math.Pi*u2)
	n.have = true
	return r * math.Cos(2*math.Pi*u2)
}

// ZeroGrad clears the gradient slab.
func (m *GPT) ZeroGrad() { clear(m.Grads.Slab) }

// Forward runs the model on inputs (B,T). With targets (B,T) (-1 marks a position
// without a target) it also computes the cross-entropy losses, returns their sum and the
// number of targets, and prepares Backward. With nil targets it leaves the logits in
// Logits() and Backward may not be called. causal selects causal attention (the causal-LM
// objective) or bidirectional attention (masked LM).
//
// Bad token ids, target ids or shapes are reported as errors wrapping ErrShape.
func (m *GPT) Forward(inputs, targets []int32, B, T int, causal bool) (lossSum float64, count int, err error) {
	c := m.Config
	if B < 1 || T < 1 || T > c.MaxSeqLen {
		return 0, 0, fmt.Errorf("%w: B=%d T=%d (max_seq_len %d)", ErrShape, B, T, c.MaxSeqLen)
	}
	if len(inputs) != B*T || (targets != nil && len(targets) != B*T) {
		return 0, 0, fmt.Errorf("%w: %d inputs and %d targets for B=%d T=%d", ErrShape, len(inputs), len(targets), B, T)
	}
	for i, id := range inputs {
		if id < 0 || int(id) >= c.VocabSize {
			return 0, 0, fmt.Errorf("%w: input token %d at position %d outside vocabulary of %d", ErrShape, id, i, c.VocabSize)
		}
	}
	for i, id := range targets {
		if id < -1 || int(id) >= c.VocabSize {
			return 0, 0, fmt.Errorf("%w: target token %d at position %d outside vocabulary of %d", ErrShape, id, i, c.VocabSize)
		}
	}
	if m.acts == nil || m.acts.B != B || m.acts.T != T {
		m.acts = nil // let the old buffers go before allocating new ones
		m.acts = newActivations(c, B, T)
	}
	a := m.acts
	copy(a.inputs, inputs)
	m.causal = causal
	m.haveLoss = false

	be, p := m.be, m.Params
	L, C, H, V := c.Layers, c.Embd, c.Heads, c.VocabSize
	BT := B * T
	be.EncoderForward(a.encoded, inputs, p.Wte, p.Wpe, B, T, C)
	residual := a.encoded
	for l := 0; l < L; l++ {
		w := &p.Blocks[l]
		ln1, ln1Mean, ln1Rstd := a.ln1[l*BT*C:(l+1)*BT*C], a.ln1Mean[l*BT:(l+1)*BT], a.ln1Rstd[l*BT:(l+1)*BT]
		qkv := a.qkv[l*BT*3*C : (l+1)*BT*3*C]
		atty := a.atty[l*BT*C : (l+1)*BT*C]
		lse := a.lse[l*B*H*T : (l+1)*B*H*T]
		res2 := a.residual2[l*BT*C : (l+1)*BT*C]
		ln2, ln2Mean, ln2Rstd := a.ln2[l*BT*C:(l+1)*BT*C], a.ln2Mean[l*BT:(l+1)*BT], a.ln2Rstd[l*BT:(l+1)*BT]
		fch, fchGelu := a.fch[l*BT*4*C:(l+1)*BT*4*C], a.fchGelu[l*BT*4*C:(l+1)*BT*4*C]
		res3 := a.residual3[l*BT*C : (l+1)*BT*C]

		be.LayerNormForward(ln1, ln1Mean, ln1Rstd, residual, w.Ln1W, w.Ln1B, BT, C)
		be.MatmulForward(qkv, ln1, w.QKVW, w.QKVB, BT, C, 3*C)
		be.AttentionForward(atty, lse, qkv, B, T, C, H, causal)
		be.MatmulForward(a.proj, atty, w.AttnProjW, w.AttnProjB, BT, C, C)
		be.ResidualForward(res2, residual, a.proj)
		be.LayerNormForward(ln2, ln2Mean, ln2Rstd, res2, w.Ln2W, w.Ln2B, BT, C)
		be.MatmulForward(fch, ln2, w.FcW, w.FcB, BT, C, 4*C)
		be.GeluForward(fchGelu, fch)
		be.MatmulForward(a.proj, fchGelu, w.FcProjW, w.FcProjB, BT, 4*C, C)
		be.ResidualForward(res3, res2, a.proj)
		residual = res3
	}
	be.LayerNormForward(a.lnf, a.lnfMean, a.lnfRstd, residual, p.LnfW, p.LnfB, BT, C)
	be.MatmulForward(a.logits, a.lnf, p.Wte, nil, BT, C, V)
	if targets == nil {
		return 0, 0, nil
	}
	copy(a.targets, targets)
	for _, t := range targets {
		if t >= 0 {
			count++
		}
	}
	lossSum = be.SoftmaxCrossEntropy(a.losses, a.logits, targets, BT, V)
	m.haveLoss = true
	return lossSum, count, nil
}

// Logits returns the (B,T,V) logits of the last Forward without targets. The slice is
// owned by the model and overwritten by the next Forward.
func (m *GPT) Logits() []float32 {
	if m.acts == nil {
		return nil
	}
	return m.acts.logits
}

// Losses returns the (B,T) per-position losses of the last Forward with targets, owned
// by the model.
func (m *GPT) Losses() []float32 {
	if m.acts == nil {
		return nil
	}
	return m.acts.losses
}

// Backward adds into Grads the gradient of scale * (sum of the losses of the last
// Forward). With scale = 1/(number of targets in the global batch) the gradients summed
// over all micro-batches and ranks are those of the global mean loss.
//
// ready, if not nil, is called with slab ranges [lo, hi) whose gradients are final for
// this micro-batch, in this order: the final LayerNorm, each block from the last to the
// first, then the embeddings (wte and wpe). A worker starts reducing a range as soon as
// it is handed over. It is called on the calling goroutine.
func (m *GPT) Backward(scale float32, ready func(lo, hi int)) error {
	if !m.haveLoss {
		return fmt.Errorf("%w: Backward without a Forward with targets", ErrShape)
	}
	m.haveLoss = false
	c, a, be, p, g := m.Config, m.acts, m.be, m.Params, m.Grads
	B, T := a.B, a.T
	L, C, H, V := c.Layers, c.Embd, c.Heads, c.VocabSize
	BT := B * T
	if ready == nil {
		ready = func(int, int) {}
	}

	be.CrossEntropyBackward(a.logits, a.targets, scale, BT, V)
	clear(a.dbuf)
	be.MatmulBackward(a.dbuf, g.Wte, nil, a.logits, a.lnf, p.Wte, BT, C, V)
	clear(a.dres)
	lastRes := a.encoded
	if L > 0 {
		lastRes = a.residual3[(L-1)*BT*C : L*BT*C]
	}
	be.LayerNormBackward(a.dres, g.LnfW, g.LnfB, a.dbuf, lastRes, p.LnfW, a.lnfMean, a.lnfRstd, BT, C)
	ready(len(g.Slab)-len(g.LnfW)-len(g.LnfB), len(g.Slab)) // ln_f weight and bias close the slab

	for l := L - 1; l >= 0; l-- {
		w, dw := &p.Blocks[l], &g.Blocks[l]
		residual := a.encoded
		if l > 0 {
			residual = a.residual3[(l-1)*BT*C : l*BT*C]
		}
		ln1, ln1Mean, ln1Rstd := a.ln1[l*BT*C:(l+1)*BT*C], a.ln1Mean[l*BT:(l+1)*BT], a.ln1Rstd[l*BT:(l+1)*BT]
		qkv := a.qkv[l*BT*3*C : (l+1)*BT*3*C]
		atty := a.atty[l*BT*C : (l+1)*BT*C]
		lse := a.lse[l*B*H*T : (l+1)*B*H*T]
		res2 := a.residual2[l*BT*C : (l+1)*BT*C]
		ln2, ln2Mean, ln2Rstd := a.ln2[l*BT*C:(l+1)*BT*C], a.ln2Mean[l*BT:(l+1)*BT], a.ln2Rstd[l*BT:(l+1)*BT]
		fch, fchGelu := a.fch[l*BT*4*C:(l+1)*BT*4*C], a.fchGelu[l*BT*4*C:(l+1)*BT*4*C]

		// res3 = res2 + fcproj(gelu(fc(ln2(res2)))): dres holds d res3.
		clear(a.dfchG)
		be.MatmulBackward(a.dfchG, dw.FcProjW, dw.FcProjB, a.dres, fchGelu, w.FcProjW, BT, 4*C, C)
		clear(a.dfch)
		be.GeluBackward(a.dfch, fch, a.dfchG)
		clear(a.dbuf)
		be.MatmulBackward(a.dbuf, dw.FcW, dw.FcB, a.dfch, ln2, w.FcW, BT, C, 4*C)
		be.LayerNormBackward(a.dres, dw.Ln2W, dw.Ln2B, a.dbuf, res2, w.Ln2W, ln2Mean, ln2Rstd, BT, C)
		// res2 = residual + attproj(attn(qkv(ln1(residual)))): dres now holds d res2.
		clear(a.dbuf)
		be.MatmulBackward(a.dbuf, dw.AttnProjW, dw.AttnProjB, a.dres, atty, w.AttnProjW, BT, C, C)
		clear(a.dqkv)
		be.AttentionBackward(a.dqkv, a.dbuf, qkv, atty, lse, B, T, C, H, m.causal)
		clear(a.dbuf)
		be.MatmulBackward(a.dbuf, dw.QKVW, dw.QKVB, a.dqkv, ln1, w.QKVW, BT, C, 3*C)
		be.LayerNormBackward(a.dres, dw.Ln1W, dw.Ln1B, a.dbuf, residual, w.Ln1W, ln1Mean, ln1Rstd, BT, C)
		ready(dw.Range())
	}
	be.EncoderBackward(g.Wte, g.Wpe, a.dres, a.inputs, B, T, C)
	ready(0, len(g.Wte)+len(g.Wpe))
	return nil
}
