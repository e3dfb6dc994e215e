package tensor

// Backend is the op set a GPT is written against: memory (Memory) and compute. Shapes
// are given in the comments of each method; all tensors are row-major float32 (or int32)
// buffers. Forward methods overwrite their outputs. Backward methods ADD into their
// gradient outputs (parameter gradients and input gradients alike): zeroing is explicit
// and the caller's job.
//
// Every buffer argument of an op is a buffer of this backend (see Memory): a slice of
// one Alloc'd buffer, or of a Mirror. Callers slice buffers to make views but never read
// or write their elements; they move data with Upload and Download.
//
// A Backend is called from one goroutine at a time per model; it may use several
// goroutines inside a call. Every method is deterministic: the same inputs give the same
// bits whatever the number of threads. Ops may run asynchronously (in order); an op that
// returns a value (SoftmaxCrossEntropy, SumSquares) waits for the ops before it.
type Backend interface {
	Memory

	// EncoderForward: out (B,T,C) = wte[inp] + wpe[t]; inp (B,T); wte (V,C); wpe (maxT,C).
	EncoderForward(out []float32, inp []int32, wte, wpe []float32, B, T, C int)
	// EncoderBackward adds dout (B,T,C) into dwte (V,C) rows and dwpe (maxT,C).
	EncoderBackward(dwte, dwpe, dout []float32, inp []int32, B, T, C int)

	// LayerNormForward: out (N,C), mean and rstd (N) saved for backward; w, b (C).
	LayerNormForward(out, mean, rstd, inp, w, b []float32, N, C int)
	// LayerNormBackward adds into dinp (N,C), dw (C), db (C).
	LayerNormBackward(dinp, dw, db, dout, inp, w, mean, rstd []float32, N, C int)

	// MatmulForward: out (N,OC) = inp (N,C) · wᵀ + bias; w (OC,C); bias (OC) or nil.
	MatmulForward(out, inp, w, bias []float32, N, C, OC int)
	// MatmulBackward adds into dinp (N,C), dw (OC,C) and dbias (OC) (nil to skip).
	MatmulBackward(dinp, dw, dbias, dout, inp, w []float32, N, C, OC int)

	// AttentionForward: qkv (B,T,3C) holds q, k, v; out (B,T,C) = softmax(q·kᵀ/√hs)·v per
	// head (hs = C/H); lse (B,H,T) saves each query row's log-sum-exp of its scaled
	// scores for backward. causal masks future positions. No (T,T) matrix is stored.
	AttentionForward(out, lse, qkv []float32, B, T, C, H int, causal bool)
	// AttentionBackward adds into dqkv (B,T,3C) given dout (B,T,C), and the qkv, out and
	// lse of the forward; it recomputes the probabilities from them.
	AttentionBackward(dqkv, dout, qkv, out, lse []float32, B, T, C, H int, causal bool)
	// AttentionForwardRanges is causal AttentionForward where each query's range of
	// keys starts per position: query t of batch row b attends to keys [start[b·T+t], t]
	// (0 <= start[b·T+t] <= t), which is how several examples packed into one row are
	// kept apart. start (B,T) nil is causal AttentionForward, bit for bit. lse holds
	// the log-sum-exp over each query's range.
	AttentionForwardRanges(out, lse, qkv []float32, start []int32, B, T, C, H int)
	// AttentionBackwardRanges is the backward of AttentionForwardRanges, with the same
	// start; it adds into dqkv as AttentionBackward does.
	AttentionBackwardRanges(dqkv, dout, qkv, out, lse []float32, start []int32, B, T, C, H int)
	// AttentionDecodeForward is causal attention for T new positions pos0..pos0+T-1 of
	// one sequence over a key/value cache, the step of incremental generation: qkv
	// (T,3C) holds their q, k, v; their k and v are written to rows pos0..pos0+T-1 of
	// kcache and vcache (maxT,C), whose rows 0..pos0-1 hold the earlier positions'; out
	// (T,C) = softmax(q·kᵀ/√hs)·v per head over positions 0..pos0+t for query t. It has
	// no backward (decoding does not train) and saves nothing.
	AttentionDecodeForward(out, kcache, vcache, qkv []float32, T, pos0, C, H int)

	// GeluForward: out (N) = gelu_tanh(inp).
	GeluForward(out, inp []float32)
	// GeluBackward adds into dinp (N).
	GeluBackward(dinp, inp, dout []float32)

	// ResidualForward: out (N) = a + b.
	ResidualForward(out, a, b []float32)
	// Accumulate: dst (N) += src.
	Accumulate(dst, src []float32)

	// SoftmaxCrossEntropy turns logits (N,V) into probabilities in place, writes each
	// row's loss -log p[target] into losses (N) (0 where target < 0, which marks an
	// ignored position), and returns the sum of the losses in a fixed order.
	SoftmaxCrossEntropy(losses, logits []float32, targets []int32, N, V int) float64
	// CrossEntropyBackward turns probabilities (N,V) in place into dlogits =
	// (p - onehot(target)) * scale; rows with target < 0 become zero.
	CrossEntropyBackward(probs []float32, targets []int32, scale float32, N, V int)

	// SumSquares returns the sum of x's squares in float64 over fixed chunks of chunk
	// elements, the chunks' sums added in order (the gradient norm's reduction).
	SumSquares(x []float32, chunk int) float64
	// Scale: x (N) *= c.
	Scale(x []float32, c float32)
	// AdamW applies one AdamW step to p, g, m, v (N) (see the function AdamW).
	AdamW(p, g, m, v []float32, b1, b2, eps, stepSize, invSqrtBC2, decayFactor float32)
}

// CPU is the Backend that runs on the host's cores. Its buffers are host memory: Alloc
// is make, Mirror returns the host slice itself, and Upload or Download between a slice
// and itself does nothing, so a model on the CPU copies nothing it did not copy before
// the op set became device-aware.
type CPU struct{}

// NewCPU returns the CPU backend.
func NewCPU() CPU { return CPU{} }

var _ Backend = CPU{}
