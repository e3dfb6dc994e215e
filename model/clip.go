package model

import (
	"math"

	"github.com/ringtrain/ringtrain/tensor"
)

// normChunk fixes the partition of the gradient-norm reduction, so that the norm has
// the same bits whatever the number of threads or ranks.
const normChunk = 1 << 16

// GradNorm returns the L2 norm of g: the squares summed in float64 over fixed chunks of
// normChunk elements, the chunks in parallel and their sums added in order
// (tensor.SumSquares), so the same bits whatever the number of threads.
func GradNorm(g []float32) float64 { return GradNormOn(tensor.NewCPU(), g) }

// GradNormOn is GradNorm computed by backend be over its buffer g.
func GradNormOn(be tensor.Backend, g []float32) float64 {
	return math.Sqrt(be.SumSquares(g, normChunk))
}

// ClipGradNorm scales g so that its norm is at most maxNorm (torch.nn.utils.
// clip_grad_norm_ semantics: coefficient maxNorm/(norm+1e-6), applied when below 1) and
// returns the norm before clipping. maxNorm <= 0 disables clipping.
func ClipGradNorm(g []float32, maxNorm float64) float64 {
	return ClipGradNormOn(tensor.NewCPU(), g, maxNorm)
}

// ClipGradNormOn is ClipGradNorm computed by backend be over its buffer g.
func ClipGradNormOn(be tensor.Backend, g []float32, maxNorm float64) float64 {
	norm := GradNormOn(be, g)
	if maxNorm <= 0 {
		return norm
	}
	if coef := maxNorm / (norm + 1e-6); coef < 1 {
		be.Scale(g, float32(coef))
	}
	return norm
}
