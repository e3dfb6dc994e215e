package tensor

import (
	"math"
	"math/rand/v2"
	"testing"
)

// geluInputs covers the interesting range densely, the clamp edges of tanhf exactly,
// and some extreme and special values.
func geluInputs() []float32 {
	r := rand.New(rand.NewPCG(41, 42))
	var x []float32
	for v := float32(-12); v < 12; v += 0.00173 {
		x = append(x, v)
	}
	for range 5000 {
		x = append(x, float32(r.NormFloat64()*3))
	}
	// u = ±9 and ±9 nudged: the tanh clamp boundary.
	x = append(x, 5.3, -5.3, 4.9, -4.9, 0, float32(math.Copysign(0, -1)), 1e-30, -1e-30, 80, -80, 1e6, -1e6, float32(math.NaN()), float32(math.Inf(1)), float32(math.Inf(-1)))
	for len(x)%8 != 3 { // a scalar tail too
		x = append(x, 0.25)
	}
	return x
}

// TestGeluVectorMatchesScalar checks that the vector GELU gives the scalar code's bits.
func TestGeluVectorMatchesScalar(t *testing.T) {
	x := geluInputs()
	out := make([]float32, len(x))
	n := geluForwardVec(out, x)
	if n == 0 {
		t.Skip("no vector GELU on this CPU")
	}
	dout := make([]float32, len(x))
	for i := range dout {
		dout[i] = float32(i%13) - 6.5
	}
	din := make([]float32, len(x))
	for i := range din {
		din[i] = 0.125 * float32(i%5)
	}
	vb := append([]float32(nil), din...)
	geluBackwardVec(vb, x, dout)
	same := func(a, b float32) bool { return math.Float32bits(a) == math.Float32bits(b) || a != a && b != b }
	for i := range n {
		if want := geluForwardScalar(x[i]); !same(out[i], want) {
			t.Fatalf("gelu(%g): vector %g, scalar %g", x[i], out[i], want)
		}
		want := din[i] + geluBackwardScalar(x[i])*dout[i]
		if !same(vb[i], want) {
			t.Fatalf("gelu'(%g): vector %g, scalar %g", x[i], vb[i], want)
		}
	}
}

// TestGeluMatchesNaive compares the kernels with the float64-tanh reference.
func TestGeluMatchesNaive(t *testing.T) {
	x := geluInputs()
	be := NewCPU()
	got, want := make([]float32, len(x)), make([]float32, len(x))
	be.GeluForward(got, x)
	NaiveGeluForward(want, x)
	for i := range x {
		if math.IsNaN(float64(x[i])) || math.IsInf(float64(x[i]), 0) {
			continue
		}
		if d := math.Abs(float64(got[i] - want[i])); d > 2e-7*math.Max(1, math.Abs(float64(x[i]))) {
			t.Fatalf("gelu(%g) = %g, want %g", x[i], got[i], want[i])
		}
	}
	dout := make([]float32, len(x))
	for i := range dout {
		dout[i] = 1
	}
	gb, wb := make([]float32, len(x)), make([]float32, len(x))
	be.GeluBackward(gb, x, dout)
	NaiveGeluBackward(wb, x, dout)
	for i := range x {
		if math.IsNaN(float64(x[i])) || math.IsInf(float64(x[i]), 0) {
			continue
		}
		if d := math.Abs(float64(gb[i] - wb[i])); d > 1e-6*math.Max(1, math.Abs(float64(x[i]))) {
			t.Fatalf("gelu'(%g) = %g, want %g", x[i], gb[i], wb[i])
		}
	}
}
