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
