package tensor

import "math"

// SoftmaxCrossEntropy implements Backend.
func (CPU) SoftmaxCrossEntropy(losses, logits []float32, targets []int32, N, V int) float64 {
	parallelFor(N, 1, func(lo, hi int) {
		for r := lo; r < hi; r++ {
			row := logits[r*V : r*V+V]
			maxv := float32(math.Inf(-1))
			for _, v := range row {
				if v > maxv {
					maxv = v
				}
			}
			tg := targets[r]
			var ltg float32
			if tg >= 0 {
				ltg = row[tg]
			}
			var sum float64
			for i, v := range row {
				e := math.Exp(float64(v - maxv))
				row[i] = float32(e)
				sum += e
			}
			inv := 1 / sum
			for i := range row {
				row[i] = float32(float64(row[i]) * inv)
			}
			if tg >= 0 {
				// -log p from the logits directly keeps precision for tiny p.
				losses[r] = float32(math.Log(sum) - float64(ltg-maxv))
			} else {
				losses[r] = 0
			}
		}
	})
	var total float64
	for _, l := range losses[:N] {
		total += float64(l)
	}
	return total
}

// CrossEntropyBackward implements Backend.
func (CPU) CrossEntropyBackward(probs []float32, targets []int32, scale float32, N, V int) {
	parallelFor(N, 1, func(lo, hi int) {
		for r := lo; r < hi; r++ {
			row := probs[r*V : r*V+V]
			tg := targets[r]
			if tg < 0 {
				clear(row)
				continue
			}
			for i := range row {
				row[i] *= scale
			}
			row[tg] -= scale
		}
	})
}
