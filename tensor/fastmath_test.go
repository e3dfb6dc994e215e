package tensor

import (
	"math"
	"testing"
)

// ulps returns how many float32 steps got is from the correctly rounded want.
func ulps(got float32, want float64) float64 {
	w := float32(want)
	if got == w {
		return 0
	}
	step := math.Abs(float64(math.Nextafter32(w, float32(math.Inf(1))) - w))
	return math.Abs(float64(got)-want) / step
}

func TestExpfAccuracy(t *testing.T) {
	worst, at := 0.0, float32(0)
	for x := float32(-87.3); x < 88.7; x += 0.000731 {
		if u := ulps(expf(x), math.Exp(float64(x))); u > worst {
			worst, at = u, x
		}
	}
	t.Logf("expf: worst %.2f ulp at %g", worst, at)
	if worst > 2 {
		t.Errorf("expf(%g) is %.2f ulp off", at, worst)
	}
	for _, c := range []struct{ x, want float32 }{
		{0, 1}, {-100, 0}, {100, float32(math.Inf(1))}, {float32(math.Inf(-1)), 0}, {float32(math.Inf(1)), float32(math.Inf(1))},
	} {
		if got := expf(c.x); got != c.want {
			t.Errorf("expf(%g) = %g, want %g", c.x, got, c.want)
		}
	}
	if got := expf(float32(math.NaN())); got == got {
		t.Errorf("expf(NaN) = %g", got)
	}
}

func TestTanhfAccuracy(t *testing.T) {
	worst, at := 0.0, float32(0)
	for x := float32(-12); x < 12; x += 0.0001237 {
		if d := math.Abs(float64(tanhf(x)) - math.Tanh(float64(x))); d > worst {
			worst, at = d, x
		}
	}
	t.Logf("tanhf: worst absolute error %.3g at %g", worst, at)
	if worst > 4e-7 {
		t.Errorf("tanhf(%g) is %.3g off", at, worst)
	}
}

func BenchmarkExpf(b *testing.B) {
	x := make([]float32, 4096)
	for i := range x {
		x[i] = float32(i%200) * -0.05
	}
	var s float32
	for b.Loop() {
		for _, v := range x {
			s += expf(v)
		}
	}
	_ = s
}

func BenchmarkMathExp(b *testing.B) {
	x := make([]float32, 4096)
	for i := range x {
		x[i] = float32(i%200) * -0.05
	}
	var s float32
	for b.Loop() {
		for _, v := range x {
			s += float32(math.Exp(float64(v)))
		}
	}
	_ = s
}

// TestExpVectorMatchesScalar checks the vector expf against the scalar one bit for bit,
// limits and special values included.
func TestExpVectorMatchesScalar(t *testing.T) {
	var x []float32
	for v := float32(-100); v < 100; v += 0.00917 {
		x = append(x, v)
	}
	x = append(x, 88.72283, 88.72284, 88.7228, -87.33654, -87.33655, -87.3365, 0,
		float32(math.Copysign(0, -1)), float32(math.Inf(1)), float32(math.Inf(-1)), float32(math.NaN()))
	for len(x)%8 != 5 {
		x = append(x, 1)
	}
	for _, shift := range []float32{0, 1.5, -3} {
		got := make([]float32, len(x))
		n := expShiftVec(got, x, shift)
		if n == 0 {
			t.Skip("no vector expf on this CPU")
		}
		for i := range n {
			want := expf(x[i] - shift)
			if math.Float32bits(got[i]) != math.Float32bits(want) && !(got[i] != got[i] && want != want) {
				t.Fatalf("expf(%g - %g): vector %g, scalar %g", x[i], shift, got[i], want)
			}
		}
	}
}
