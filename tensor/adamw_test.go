package tensor

import (
	"math"
	"math/rand/v2"
	"testing"
)

// naiveAdamW is model.AdamW's per-element update, written out as the reference.
func naiveAdamW(p, g, m, v []float32, b1, b2, eps, stepSize, invSqrtBC2, decayFactor float32) {
	for i := range p {
		gi := g[i]
		mi := b1*m[i] + (1-b1)*gi
		vi := b2*v[i] + (1-b2)*gi*gi
		m[i], v[i] = mi, vi
		denom := float32(math.Sqrt(float64(vi)))*invSqrtBC2 + eps
		p[i] = p[i]*decayFactor - stepSize*mi/denom
	}
}

// TestAdamWMatchesNaive checks the parallel, vector AdamW bit for bit against the
// scalar update over several steps, with and without decay.
func TestAdamWMatchesNaive(t *testing.T) {
	r := rand.New(rand.NewPCG(45, 46))
	n := 100_003
	p, m, v := randSlice(r, n, 1), make([]float32, n), make([]float32, n)
	wp, wm, wv := append([]float32(nil), p...), make([]float32, n), make([]float32, n)
	for step := 1; step <= 5; step++ {
		g := randSlice(r, n, 0.1)
		lr, wd := 1e-3, 0.1
		bc1, bc2 := 1-math.Pow(0.9, float64(step)), 1-math.Pow(0.95, float64(step))
		df := float32(1 - lr*wd)
		if step%2 == 0 {
			df = 1
		}
		args := []float32{0.9, 0.95, 1e-8, float32(lr / bc1), float32(1 / math.Sqrt(bc2)), df}
		AdamW(p, g, m, v, args[0], args[1], args[2], args[3], args[4], args[5])
		naiveAdamW(wp, g, wm, wv, args[0], args[1], args[2], args[3], args[4], args[5])
		for name, pair := range map[string][2][]float32{"p": {p, wp}, "m": {m, wm}, "v": {v, wv}} {
			if i := firstDiff(pair[0], pair[1]); i >= 0 {
				t.Fatalf("step %d: %s[%d] = %g, want %g", step, name, i, pair[0][i], pair[1][i])
			}
		}
	}
}
