package vec

import (
	"math"
	"math/rand/v2"
	"testing"
)

// TestAddToMatchesLoop: AddTo gives the plain loop's bits over lengths 0..99 with
// special values mixed in, with vector registers and without.
func TestAddToMatchesLoop(t *testing.T) {
	for _, vector := range []bool{true, false} {
		if vector && !haveAVX2 {
			continue
		}
		saved := haveAVX2
		haveAVX2 = vector
		testAddToMatchesLoop(t)
		haveAVX2 = saved
	}
}

func testAddToMatchesLoop(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	specials := []float32{
		0, float32(math.Copysign(0, -1)), float32(math.Inf(1)), float32(math.Inf(-1)),
		math.MaxFloat32, -math.MaxFloat32, math.SmallestNonzeroFloat32, 1e-40, -1e-40,
		float32(math.NaN()),
	}
	for n := range 100 {
		src := make([]float32, n)
		dst := make([]float32, n)
		for i := range src {
			src[i] = float32(rng.NormFloat64() * 1e3)
			dst[i] = float32(rng.NormFloat64())
			if rng.IntN(4) == 0 {
				if rng.IntN(2) == 0 {
					src[i] = specials[rng.IntN(len(specials))]
				} else {
					dst[i] = specials[rng.IntN(len(specials))]
				}
			}
		}
		want := append([]float32(nil), dst...)
		for i := range want {
			want[i] += src[i]
		}
		// A longer dst keeps its tail untouched.
		got := append(append([]float32(nil), dst...), 7)
		AddTo(got, src)
		for i := range want {
			if math.Float32bits(got[i]) != math.Float32bits(want[i]) {
				t.Fatalf("n=%d: element %d is %#x, want %#x", n, i, math.Float32bits(got[i]), math.Float32bits(want[i]))
			}
		}
		if got[n] != 7 {
			t.Fatalf("n=%d: element past src changed to %v", n, got[n])
		}
	}
}
