package tensor

import "math"

// AdamW applies one AdamW step to a tensor, element by element: with gradient g,
//
//	m = b1·m + (1-b1)·g
//	v = b2·v + (1-b2)·g·g
//	p = p·decayFactor − stepSize·m / (sqrt(v)·invSqrtBC2 + eps)
//
// (stepSize = lr / (1 - b1^t), invSqrtBC2 = 1/sqrt(1 - b2^t), decayFactor = 1 - lr·wd
// or 1), every operation in float32 in that order, which is model.AdamW's update. p, g,
// m and v have the same length. Elements are split over goroutines; each is computed
// the same way wherever it runs, and the vector code gives the scalar code's bits.
func AdamW(p, g, m, v []float32, b1, b2, eps, stepSize, invSqrtBC2, decayFactor float32) {
	n := len(p)
	_, _, _ = g[:n], m[:n], v[:n]
	k := adamwPool.get()
	k.p, k.g, k.m, k.v = p, g, m, v
	k.c = [8]float32{b1, 1 - b1, b2, 1 - b2, eps, stepSize, invSqrtBC2, decayFactor}
	parallelRange(n, 1<<14, k)
	adamwPool.put(k)
}

type adamw struct {
	p, g, m, v []float32
	c          [8]float32 // b1, 1-b1, b2, 1-b2, eps, stepSize, invSqrtBC2, decayFactor
}

var adamwPool kernelPool[adamw]

func (k *adamw) do(lo, hi int) {
	p, g, m, v := k.p[lo:hi], k.g[lo:hi], k.m[lo:hi], k.v[lo:hi]
	i := adamwVec(p, g, m, v, &k.c)
	b1, c1, b2, c2, eps, stepSize, invSqrtBC2, df := k.c[0], k.c[1], k.c[2], k.c[3], k.c[4], k.c[5], k.c[6], k.c[7]
	for ; i < len(p); i++ {
		gi := g[i]
		mi := b1*m[i] + c1*gi
		vi := b2*v[i] + c2*gi*gi
		m[i], v[i] = mi, vi
		denom := float32(math.Sqrt(float64(vi)))*invSqrtBC2 + eps
		p[i] = p[i]*df - stepSize*mi/denom
	}
}
