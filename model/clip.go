package model

import "math"

// normChunk fixes the partition of the gradient-norm reduction, so that the norm has
// the same bits whatever the number of threads or ranks.
const normChunk = 1 << 16

// GradNorm returns the L2 norm of g, summed in float64 over fixed chunks in order.
func GradNorm(g []float32) float64 {
	var total float64
	for lo := 0; lo < len(g); lo += normChunk {
		var s float64
		for _, v := range g[lo:min(lo+normChunk, len(g))] {
			s += float64(v) * float64(v)
		}
		total += s
	}
	return math.Sqrt(total)
}

// ClipGradNorm scales g so that its norm is at most maxNorm (torch.nn.utils.
// clip_grad_norm_ semantics: coefficient maxNorm/(norm+1e-6), applied when below 1) and
// returns the norm before clipping. maxNorm <= 0 disables clipping.
func ClipGradNorm(g []float32, maxNorm float64) float64 {
	norm := GradNorm(g)
	if maxNorm <= 0 {
		return norm
	}
	if coef := maxNorm / (norm + 1e-6); coef < 1 {
		c := float32(coef)
		for i := range g {
			g[i] *= c
		}
	}
	return norm
}
