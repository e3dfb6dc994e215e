package tensor

import "math"

// SoftmaxCrossEntropy implements Backend. Rows run in parallel; the total is summed in
// row order afterwards.
func (CPU) SoftmaxCrossEntropy(losses, logits []float32, targets []int32, N, V int) float64 {
	k := cePool.get()
	k.losses, k.logits, k.targets, k.V = losses, logits, targets, V
	parallelRange(N, 8, k)
	cePool.put(k)
	var total float64
	for _, l := range losses[:N] {
		total += float64(l)
	}
	return total
}

type ce struct {
	losses, logits []float32 // (N), (N,V)
	targets        []int32   // (N)
	V              int
	scale          float32 // backward only
}

var cePool kernelPool[ce]

func (k *ce) do(lo, hi int) {
	V := k.V
	for r := lo; r < hi; r++ {
		row := k.logits[r*V : r*V+V]
		maxv := float32(math.Inf(-1))
		for _, v := range row {
			maxv = max(maxv, v)
		}
		tg := k.targets[r]
		var ltg float32
		if tg >= 0 {
			ltg = row[tg]
		}
		for i := expShiftVec(row, row, maxv); i < len(row); i++ {
			row[i] = expf(row[i] - maxv)
		}
		var sum float64
		for _, e := range row {
			sum += float64(e)
		}
		inv := 1 / sum
		for i := range row {
			row[i] = float32(float64(row[i]) * inv)
		}
		if tg >= 0 {
			// -log p from the logits directly keeps precision for tiny p.
			k.losses[r] = float32(math.Log(sum) - float64(ltg-maxv))
		} else {
			k.losses[r] = 0
		}
	}
}

// CrossEntropyBackward implements Backend.
func (CPU) CrossEntropyBackward(probs []float32, targets []int32, scale float32, N, V int) {
	k := cePool.get()
	k.logits, k.targets, k.V, k.scale = probs, targets, V, scale
	parallelRange(N, 8, (*ceBwd)(k))
	cePool.put(k)
}

type ceBwd ce

func (k *ceBwd) do(lo, hi int) {
	V := k.V
	for r := lo; r < hi; r++ {
		row := k.logits[r*V : r*V+V]
		tg := k.targets[r]
		if tg < 0 {
			clear(row)
			continue
		}
		for i := range row {
			row[i] *= k.scale
		}
		row[tg] -= k.scale
	}
}
