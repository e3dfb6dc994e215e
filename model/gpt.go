package model

import (
	"fmt"
	"math"
	"math/rand/v2"
	"runtime"

	"github.com/ringtrain/ringtrain/tensor"
)

// GPT is a GPT-2 language model with its parameters, gradients and activation buffers.
//
// A GPT is not safe for concurrent use: one goroutine calls Forward, Backward and
// ZeroGrad in turn. Params.Slab and Grads.Slab are owned by the GPT; callers may read and
// write them between calls (the all-reduce sums Grads.Slab in place, the optimizer
// updates Params.Slab).
//
// Params and Grads are host memory and the canonical state (what the ring sums,
// checkpoints save and state sync streams). The backend computes on its own buffers,
// dev and dgrads: the same slabs on the CPU, device copies elsewhere. Forward uploads
// Params before it runs; Backward downloads each gradient range before handing it to
// ready (and the whole slab by the time it returns); ZeroGrad clears both.
type GPT struct {
	Config Config
	Params *Params // (N) weights
	Grads  *Params // (N) gradients, accumulated by Backward until ZeroGrad

	be     tensor.Backend
	dev    *Params // (N) the backend's weights: Params itself where the backend shares host memory
	dgrads *Params // (N) the backend's gradients: Grads itself where the backend shares host memory
	acts   *activations
	// set by a Forward with targets, consumed by Backward
	haveLoss bool
	causal   bool
	packed   bool // the last Forward was ForwardPacked: acts.start holds its ranges
	// noLogits stops forward at the final LayerNorm (ForwardReward); reward holds
	// what BackwardReward needs.
	noLogits bool
	reward   *rewardState
	policy   *policyState // what BackwardPolicy needs (ForwardPolicy)
	// hostStart (B,T) is the host's copy of the last ForwardPacked's starts.
	hostStart []int32
}

// activations holds everything forward saves for backward, sized for one (B,T).
//
// A frozen model's (forwardOnly) holds only what forward itself reads: one block's
// buffers, which every layer reuses as generation's Decoder does (ln_1 and ln_2 share
// ln, mean and rstd, and the block's output res3 is its input, the residual stream in
// encoded), no backward scratch, and logits only once a forward has needed them (a
// reward model never does). The same ops run on the same values, so its outputs are
// a trainable model's bit for bit.
type activations struct {
	B, T        int
	forwardOnly bool        // a frozen model's buffers: nothing kept for backward
	inputs      []int32     // (B,T)
	targets     []int32     // (B,T), -1 = ignored
	start       []int32     // (B,T) first position of each position's example (ForwardPacked)
	encoded     []float32   // (B,T,C); forwardOnly: the residual stream of every layer
	layers      []blockActs // (L) views into one (L,B,T,·) slab per kind of buffer; forwardOnly: (L) views of one block's buffers
	lnf         []float32   // (B,T,C)
	lnfMean     []float32   // (B,T)
	lnfRstd     []float32   // (B,T)
	logits      []float32   // (B,T,V): logits, then probabilities, then dlogits; nil when not allocated (forwardOnly)
	losses      []float32   // (B,T)
	grads       blockGrads  // backward scratch, shared by the head and every block; empty when forwardOnly

	// host copies of logits and losses (the buffers themselves on a host-shared backend)
	hostLogits, hostLosses []float32
	// hostLnf (B,T,C) is the host copy of lnf a reward model reads, allocated on use
	hostLnf []float32
	// bufs lists every buffer allocated, for free; cleanup frees them if the
	// activations are collected first (backends that do not share host memory)
	bufs    []any
	cleanup runtime.Cleanup
}

// newActivations allocates the buffers of one (B,T) on be: a trainable model's
// (everything backward reads) or, with forwardOnly, a frozen model's, with the
// logits only when logits is set.
func newActivations(be tensor.Backend, c Config, B, T int, forwardOnly, logits bool) *activations {
	L, C, H, V := c.Layers, c.Embd, c.Heads, c.VocabSize
	N := B * T
	var bufs []any
	f := func(n int) []float32 {
		b := be.Alloc(n)
		bufs = append(bufs, b)
		return b
	}
	i32 := func(n int) []int32 {
		b := be.AllocInt32(n)
		bufs = append(bufs, b)
		return b
	}
	a := &activations{
		B: B, T: T, forwardOnly: forwardOnly,
		inputs: i32(N), targets: i32(N), start: i32(N),
		encoded: f(N * C),
		lnf:     f(N * C), lnfMean: f(N), lnfRstd: f(N),
		losses: f(N),
	}
	if forwardOnly {
		a.layers = sharedBlockActs(f, L, B, T, C, H, a.encoded)
	} else {
		a.layers = layerBlockActs(f, L, B, T, C, H)
		a.grads = blockGrads{
			dres: f(N * C), dbuf: f(N * C), dfch: f(N * 4 * C), dfchG: f(N * 4 * C), dqkv: f(N * 3 * C),
		}
		logits = true
	}
	if logits {
		a.logits = f(N * V)
		a.hostLogits = tensor.HostBuffer(be, a.logits)
	}
	a.hostLosses = tensor.HostBuffer(be, a.losses)
	a.bufs = bufs
	if !be.HostShared() {
		a.cleanup = runtime.AddCleanup(a, freeAll, deviceBufs{be: be, bufs: bufs})
	}
	return a
}

// layerBlockActs allocates with f the activations of L blocks over (B,T), each
// layer's its own (backward reads them all); proj is scratch every layer shares.
func layerBlockActs(f func(int) []float32, L, B, T, C, H int) []blockActs {
	N := B * T
	ln1, ln1Mean, ln1Rstd := f(L*N*C), f(L*N), f(L*N)
	qkv, atty, lse := f(L*N*3*C), f(L*N*C), f(L*B*H*T)
	res2 := f(L * N * C)
	ln2, ln2Mean, ln2Rstd := f(L*N*C), f(L*N), f(L*N)
	fch, fchGelu := f(L*N*4*C), f(L*N*4*C)
	res3 := f(L * N * C)
	proj := f(N * C)
	layers := make([]blockActs, L)
	for l := range layers {
		// view returns layer l's share of a slab of n floats per layer.
		view := func(slab []float32, n int) []float32 { return slab[l*n : (l+1)*n] }
		layers[l] = blockActs{
			ln1: view(ln1, N*C), ln1Mean: view(ln1Mean, N), ln1Rstd: view(ln1Rstd, N),
			qkv: view(qkv, N*3*C), atty: view(atty, N*C), lse: view(lse, B*H*T),
			proj: proj, res2: view(res2, N*C),
			ln2: view(ln2, N*C), ln2Mean: view(ln2Mean, N), ln2Rstd: view(ln2Rstd, N),
			fch: view(fch, N*4*C), fchGelu: view(fchGelu, N*4*C),
			res3: view(res3, N*C),
		}
	}
	return layers
}

// sharedBlockActs allocates with f one block's buffers over (B,T) and returns L
// views of them, for a forward that keeps nothing for backward: blockForward has
// finished with ln_1's output and statistics before it writes ln_2's, and with its
// input x before it writes res3, so ln1 and ln2 share buffers and every block's
// output is written over its input, the residual stream res (N,C) that the first
// block reads (the embeddings).
func sharedBlockActs(f func(int) []float32, L, B, T, C, H int, res []float32) []blockActs {
	N := B * T
	ln, mean, rstd := f(N*C), f(N), f(N)
	one := blockActs{
		ln1: ln, ln1Mean: mean, ln1Rstd: rstd,
		qkv: f(N * 3 * C), atty: f(N * C), lse: f(B * H * T),
		proj: f(N * C), res2: f(N * C),
		ln2: ln, ln2Mean: mean, ln2Rstd: rstd,
		fch: f(N * 4 * C), fchGelu: f(N * 4 * C),
		res3: res,
	}
	layers := make([]blockActs, L)
	for l := range layers {
		layers[l] = one
	}
	return layers
}

// free returns the buffers to be now; a must not be used afterwards.
func (a *activations) free(be tensor.Backend) {
	a.cleanup.Stop()
	freeAll(deviceBufs{be: be, bufs: a.bufs})
	a.bufs = nil
}

// residualOut returns the residual stream leaving the last block, (B,T,C): the
// embeddings when there are no blocks.
func (a *activations) residualOut() []float32 {
	if len(a.layers) == 0 {
		return a.encoded
	}
	return a.layers[len(a.layers)-1].res3
}

// residualIn returns the residual stream entering block l, (B,T,C).
func (a *activations) residualIn(l int) []float32 {
	if l == 0 {
		return a.encoded
	}
	return a.layers[l-1].res3
}

// New builds a model of shape c with zeroed parameters on backend be (nil: the CPU).
func New(c Config, be tensor.Backend) (*GPT, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	if be == nil {
		be = tensor.NewCPU()
	}
	m := &GPT{Config: c, Params: NewParams(c), Grads: NewParams(c), be: be}
	m.dev, m.dgrads = ViewParams(c, be.Mirror(m.Params.Slab)), ViewParams(c, be.Mirror(m.Grads.Slab))
	if err := be.Err(); err != nil {
		return nil, fmt.Errorf("model: allocating %d parameters on %s: %w", c.NumParams(), be.Device(), err)
	}
	if !be.HostShared() {
		// Device buffers are not garbage collected: free them with the model.
		// The host slabs stay reachable until then: the backend may have pinned them.
		runtime.AddCleanup(m, freeAll, deviceBufs{be: be, bufs: []any{m.dev.Slab, m.dgrads.Slab},
			host: [][]float32{m.Params.Slab, m.Grads.Slab}})
	}
	return m, nil
}

// deviceBufs are buffers of a backend to free when their owner is collected.
type deviceBufs struct {
	be   tensor.Backend
	bufs []any
	host [][]float32 // host memory kept reachable until the buffers are freed
}

func freeAll(d deviceBufs) {
	for _, b := range d.bufs {
		d.be.Free(b)
	}
}

// Backend returns the backend the model runs on.
func (m *GPT) Backend() tensor.Backend { return m.be }

// uploadParams copies Params to the backend's weights (nothing on a host-shared
// backend, where they are the same slab).
func (m *GPT) uploadParams() { m.be.Upload(m.dev.Slab, m.Params.Slab) }

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

// ZeroGrad clears the gradient slab (and the backend's gradients).
func (m *GPT) ZeroGrad() {
	if m.dgrads == nil {
		return // a frozen model (NewFrozen) has no gradients
	}
	m.be.Zero(m.dgrads.Slab)
	if !m.be.HostShared() {
		clear(m.Grads.Slab)
	}
}

// Forward runs the model on inputs (B,T). With targets (B,T) (-1 marks a position
// without a target) it also computes the cross-entropy losses, returns their sum and the
// number of targets, and prepares Backward. With nil targets it leaves the logits in
// Logits() and Backward may not be called. causal selects causal attention (the causal-LM
// objective) or bidirectional attention (masked LM).
//
// Bad token ids, target ids or shapes are reported as errors wrapping ErrShape.
func (m *GPT) Forward(inputs, targets []int32, B, T int, causal bool) (lossSum float64, count int, err error) {
	return m.forward(inputs, targets, nil, B, T, causal)
}

// ForwardPacked is causal Forward over rows that each hold several whole examples, the
// rows of a packed SFT dataset. start (B,T) gives each position the first position of
// its example in the row: start[b·T+t] is t (an example begins) or start[b·T+t-1]. Each
// example is embedded with positions restarting at 0 (position t - start[b·T+t]) and
// attends only to its own tokens up to t (tensor.Backend.AttentionForwardRanges), so
// its losses, and through Backward its gradients, are those the example has alone in a
// row, up to float rounding. Backward uses the same ranges. A nil start is Forward with
// causal true, bit for bit. A start that is not such a segmentation is an error
// wrapping ErrShape.
func (m *GPT) ForwardPacked(inputs, targets, start []int32, B, T int) (lossSum float64, count int, err error) {
	if start != nil {
		if err := checkStarts(start, B, T); err != nil {
			return 0, 0, err
		}
	}
	return m.forward(inputs, targets, start, B, T, true)
}

// checkStarts checks that start (B,T) cuts every row into consecutive examples.
func checkStarts(start []int32, B, T int) error {
	if len(start) != B*T {
		return fmt.Errorf("%w: %d example starts for B=%d T=%d", ErrShape, len(start), B, T)
	}
	for b := range B {
		row := start[b*T : (b+1)*T]
		for t, s := range row {
			if int(s) != t && (t == 0 || s != row[t-1]) {
				return fmt.Errorf("%w: example start %d at position %d of row %d: want %d (a new example) or the start of position %d", ErrShape, s, t, b, t, t-1)
			}
		}
	}
	return nil
}

// segments calls f with each example [lo, hi) of the flattened (B,T) positions that
// start cuts out (rows never share an example).
func segments(start []int32, B, T int, f func(lo, hi int)) {
	for b := range B {
		lo := b * T
		for t := 1; t <= T; t++ {
			if t == T || int(start[b*T+t]) == t {
				f(lo, b*T+t)
				lo = b*T + t
			}
		}
	}
}

func (m *GPT) forward(inputs, targets, start []int32, B, T int, causal bool) (lossSum float64, count int, err error) {
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
	frozen := m.dgrads == nil // a frozen model (NewFrozen) keeps nothing for backward
	if m.acts == nil || m.acts.B != B || m.acts.T != T || (!m.noLogits && m.acts.logits == nil) {
		if err := c.CheckLimits(HardLimits, B, T); err != nil {
			return 0, 0, fmt.Errorf("%w: %w", ErrShape, err)
		}
		if m.acts != nil {
			m.acts.free(m.be)
		}
		m.acts = nil // let the old buffers go before allocating new ones
		m.acts = newActivations(m.be, c, B, T, frozen, !m.noLogits)
	}
	a := m.acts
	m.be.UploadInt32(a.inputs, inputs)
	m.uploadParams()
	m.causal = causal
	m.haveLoss = false
	m.reward = nil
	m.policy = nil
	m.packed = start != nil
	var st []int32 // (B,T) the attention ranges' starts on the backend; nil unpacked
	if m.packed {
		// The host keeps its own copy to cut rows into examples; the kernels read
		// the backend's.
		m.hostStart = append(m.hostStart[:0], start...)
		m.be.UploadInt32(a.start, start)
		st = a.start
	}

	be, p := m.be, m.dev
	C, H, V := c.Embd, c.Heads, c.VocabSize
	BT := B * T
	if m.packed {
		// Each example on its own, so that its positions start at 0.
		segments(m.hostStart, B, T, func(lo, hi int) {
			be.EncoderForward(a.encoded[lo*C:hi*C], a.inputs[lo:hi], p.Wte, p.Wpe, 1, hi-lo, C)
		})
	} else {
		be.EncoderForward(a.encoded, a.inputs, p.Wte, p.Wpe, B, T, C)
	}
	for l := range a.layers {
		blockForward(be, &p.Blocks[l], &a.layers[l], a.residualIn(l), B, T, C, H, causal, nil, st)
	}
	be.LayerNormForward(a.lnf, a.lnfMean, a.lnfRstd, a.residualOut(), p.LnfW, p.LnfB, BT, C)
	if m.noLogits {
		if err := be.Err(); err != nil {
			return 0, 0, fmt.Errorf("model: forward on %s: %w", be.Device(), err)
		}
		return 0, 0, nil
	}
	be.MatmulForward(a.logits, a.lnf, p.Wte, nil, BT, C, V)
	if targets == nil {
		if err := be.Err(); err != nil {
			return 0, 0, fmt.Errorf("model: forward on %s: %w", be.Device(), err)
		}
		return 0, 0, nil
	}
	be.UploadInt32(a.targets, targets)
	for _, t := range targets {
		if t >= 0 {
			count++
		}
	}
	lossSum = be.SoftmaxCrossEntropy(a.losses, a.logits, a.targets, BT, V)
	if err := be.Err(); err != nil {
		return 0, 0, fmt.Errorf("model: forward on %s: %w", be.Device(), err)
	}
	m.haveLoss = m.dgrads != nil // a frozen model (NewFrozen) has no backward
	return lossSum, count, nil
}

// Logits returns the (B,T,V) logits of the last Forward without targets. The slice is
// host memory owned by the model and overwritten by the next Forward. On a backend
// that does not share host memory each call downloads them.
func (m *GPT) Logits() []float32 {
	if m.acts == nil {
		return nil
	}
	return m.download(m.acts.hostLogits, m.acts.logits)
}

// Losses returns the (B,T) per-position losses of the last Forward with targets, owned
// by the model.
func (m *GPT) Losses() []float32 {
	if m.acts == nil {
		return nil
	}
	return m.download(m.acts.hostLosses, m.acts.losses)
}

// download copies buffer src into host dst and waits for it; nil if the backend failed.
func (m *GPT) download(dst, src []float32) []float32 {
	m.be.Download(dst, src)
	if m.be.Record().Wait() != nil {
		return nil
	}
	return dst
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
	a := m.acts
	if ready == nil {
		ready = func(int, int) {}
	}
	m.be.CrossEntropyBackward(a.logits, a.targets, scale, a.B*a.T, m.Config.VocabSize)
	return m.backwardFromLogits(ready)
}

// BackwardRows is Backward with one scale per row: it adds into Grads the gradient of
// sum over rows b of scales[b] * (sum of row b's losses of the last Forward). A
// preference objective whose loss depends on each row's summed log-probability (DPO)
// passes the derivative of its loss with respect to each row's summed loss. scales is
// (B); the rest is as Backward.
func (m *GPT) BackwardRows(scales []float32, ready func(lo, hi int)) error {
	if !m.haveLoss {
		return fmt.Errorf("%w: BackwardRows without a Forward with targets", ErrShape)
	}
	a := m.acts
	if len(scales) != a.B {
		return fmt.Errorf("%w: %d row scales for B=%d", ErrShape, len(scales), a.B)
	}
	m.haveLoss = false
	T, V := a.T, m.Config.VocabSize
	if ready == nil {
		ready = func(int, int) {}
	}
	for b, s := range scales {
		m.be.CrossEntropyBackward(a.logits[b*T*V:(b+1)*T*V], a.targets[b*T:(b+1)*T], s, T, V)
	}
	return m.backwardFromLogits(ready)
}

// backwardFromLogits runs Backward from the logits' gradient (in acts.logits) down.
func (m *GPT) backwardFromLogits(ready func(lo, hi int)) error {
	c, a, be, p, g := m.Config, m.acts, m.be, m.dev, m.dgrads
	BT, C, V := a.B*a.T, c.Embd, c.VocabSize
	d := &a.grads
	be.Zero(d.dbuf)
	be.MatmulBackward(d.dbuf, g.Wte, nil, a.logits, a.lnf, p.Wte, BT, C, V)
	return m.backwardFromHidden(ready)
}

// backwardFromHidden runs Backward from the gradient of the final LayerNorm's output
// (in acts.grads.dbuf) down; the final LayerNorm's and the score head's gradients are
// handed over first.
func (m *GPT) backwardFromHidden(ready func(lo, hi int)) error {
	c, a, be, p, g := m.Config, m.acts, m.be, m.dev, m.dgrads
	B, T := a.B, a.T
	L, C, H := c.Layers, c.Embd, c.Heads
	BT := B * T
	d := &a.grads
	be.Zero(d.dres)
	be.LayerNormBackward(d.dres, g.LnfW, g.LnfB, d.dbuf, a.residualOut(), p.LnfW, a.lnfMean, a.lnfRstd, BT, C)
	// ln_f weight and bias (and a reward model's score head or a value head) close the slab
	if err := m.handOver(len(g.Slab)-len(g.LnfW)-len(g.LnfB)-len(g.Score)-len(g.Value)-len(g.ValueB), len(g.Slab), ready); err != nil {
		return err
	}

	var st []int32
	if m.packed {
		st = a.start
	}
	for l := L - 1; l >= 0; l-- {
		dw := &g.Blocks[l]
		blockBackward(be, &p.Blocks[l], dw, &a.layers[l], a.residualIn(l), d, B, T, C, H, m.causal, st)
		lo, hi := dw.Range()
		if err := m.handOver(lo, hi, ready); err != nil {
			return err
		}
	}
	if m.packed {
		// Position by position in the order of one call: the same sums as unpacked.
		segments(m.hostStart, B, T, func(lo, hi int) {
			be.EncoderBackward(g.Wte, g.Wpe, d.dres[lo*C:hi*C], a.inputs[lo:hi], 1, hi-lo, C)
		})
	} else {
		be.EncoderBackward(g.Wte, g.Wpe, d.dres, a.inputs, B, T, C)
	}
	return m.handOver(0, len(g.Wte)+len(g.Wpe), ready)
}

// handOver downloads the gradients [lo, hi) into Grads, waits for them, and passes the
// range to ready. A failed backend is an error wrapping tensor.ErrDevice.
func (m *GPT) handOver(lo, hi int, ready func(lo, hi int)) error {
	m.be.Download(m.Grads.Slab[lo:hi], m.dgrads.Slab[lo:hi])
	if err := m.be.Record().Wait(); err != nil {
		return fmt.Errorf("model: backward on %s: %w", m.be.Device(), err)
	}
	ready(lo, hi)
	return nil
}
