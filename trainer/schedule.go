package trainer

import "math"

// LearningRate returns the learning rate of step (0-based): a linear warmup from
// lr/warmup to lr over the first warmup steps, then a cosine decay from lr to minLR
// reached at the last step (steps-1). This is nanoGPT's schedule with lr_decay_iters =
// steps-1.
func LearningRate(step, warmup, steps int64, lr, minLR float64) float64 {
	if step < warmup {
		return lr * float64(step+1) / float64(warmup)
	}
	decay := steps - 1 - warmup
	if decay <= 0 {
		return lr
	}
	ratio := math.Min(1, float64(step-warmup)/float64(decay))
	return minLR + 0.5*(1+math.Cos(math.Pi*ratio))*(lr-minLR)
}
