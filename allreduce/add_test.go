package allreduce

import (
	"math"
	"math/rand/v2"
	"testing"
)

func TestAddToMatchesNaive(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for n := range 70 {
		for range 3 {
			a := make([]float32, n)
			b := make([]float32, n)
			for i := range a {
				a[i] = float32(rng.NormFloat64())
				b[i] = float32(rng.NormFloat64() * 1e3)
			}
			want := append([]float32(nil), a...)
			addToNaive(want, b)
			addTo(a, b)
			for i := range a {
				if math.Float32bits(a[i]) != math.Float32bits(want[i]) {
					t.Fatalf("n=%d: element %d is %v, want %v", n, i, a[i], want[i])
				}
			}
		}
	}
}

// TestAddToRandomLengths checks addTo against addToNaive bit for bit over
// random lengths up to 1e5 (odd ones included) and unaligned starts.
func TestAddToRandomLengths(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	lengths := []int{0, 1, 7, 9, 15, 17, 99999, 100000}
	for range 40 {
		lengths = append(lengths, rng.IntN(100001), rng.IntN(50000)*2+1)
	}
	for _, n := range lengths {
		off := rng.IntN(8)
		a := make([]float32, off+n)
		b := make([]float32, off+n)
		for i := range a {
			a[i] = float32(rng.NormFloat64() * 1e-3)
			b[i] = float32(rng.NormFloat64() * 1e4)
		}
		dst, src := a[off:], b[off:]
		want := append([]float32(nil), dst...)
		addToNaive(want, src)
		addTo(dst, src)
		for i := range dst {
			if math.Float32bits(dst[i]) != math.Float32bits(want[i]) {
				t.Fatalf("n=%d off=%d: element %d is %#x, want %#x", n, off, i,
					math.Float32bits(dst[i]), math.Float32bits(want[i]))
			}
		}
	}
}

// TestAddToSpecialValues covers infinities, signed zeros, subnormals and
// single NaNs, where the bits must still match addToNaive's.
func TestAddToSpecialValues(t *testing.T) {
	vals := []float32{
		0, float32(math.Copysign(0, -1)), 1, -1, float32(math.Inf(1)), float32(math.Inf(-1)),
		math.MaxFloat32, -math.MaxFloat32, math.SmallestNonzeroFloat32, -math.SmallestNonzeroFloat32,
		1e-40, -1e-40, float32(math.NaN()),
	}
	var dst, src []float32
	for _, x := range vals {
		for _, y := range vals {
			if math.IsNaN(float64(x)) && math.IsNaN(float64(y)) {
				continue // which payload survives NaN + NaN is not specified
			}
			dst, src = append(dst, x), append(src, y)
		}
	}
	want := append([]float32(nil), dst...)
	addToNaive(want, src)
	addTo(dst, src)
	for i := range dst {
		if math.Float32bits(dst[i]) != math.Float32bits(want[i]) {
			t.Fatalf("element %d is %#x, want %#x", i, math.Float32bits(dst[i]), math.Float32bits(want[i]))
		}
	}
}

func TestBF16(t *testing.T) {
	cases := []struct {
		in   float32
		want uint16
	}{
		{0, 0},
		{1, 0x3f80},
		{-2, 0xc000},
		{math.Float32frombits(0x3f808000), 0x3f80}, // tie, even stays
		{math.Float32frombits(0x3f818000), 0x3f82}, // tie, odd rounds up
		{math.Float32frombits(0x3f808001), 0x3f81}, // above the tie
		{float32(math.Inf(1)), 0x7f80},
		{math.MaxFloat32, 0x7f80}, // rounds to infinity
	}
	for _, c := range cases {
		if got := toBF16(c.in); got != c.want {
			t.Errorf("toBF16(%#x) = %#x, want %#x", math.Float32bits(c.in), got, c.want)
		}
	}
	if nan := fromBF16(toBF16(float32(math.NaN()))); !math.IsNaN(float64(nan)) {
		t.Errorf("NaN became %v", nan)
	}
	rng := rand.New(rand.NewPCG(3, 4))
	for range 10000 {
		f := float32(rng.NormFloat64() * 100)
		g := fromBF16(toBF16(f))
		if math.Abs(float64(g-f)) > math.Abs(float64(f))/256 {
			t.Fatalf("bf16 round trip of %v gave %v", f, g)
		}
		if fromBF16(toBF16(g)) != g {
			t.Fatalf("bf16 rounding of %v is not idempotent", f)
		}
	}
}

func BenchmarkAddTo(b *testing.B) {
	dst := make([]float32, 1<<20)
	src := make([]float32, 1<<20)
	b.SetBytes(4 << 20)
	for b.Loop() {
		addTo(dst, src)
	}
}

func BenchmarkAddToNaive(b *testing.B) {
	dst := make([]float32, 1<<20)
	src := make([]float32, 1<<20)
	b.SetBytes(4 << 20)
	for b.Loop() {
		addToNaive(dst, src)
	}
}
