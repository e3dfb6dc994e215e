package tensor

import (
	"math"
	"math/rand/v2"
	"runtime"
	"testing"
)

// TestSumSquares compares SumSquares with a plain float64 sum on lengths around the
// vector width and the chunk size, checks the same bits with 1, 2 and 3 threads and
// with and without the vector code.
func TestSumSquares(t *testing.T) {
	r := rand.New(rand.NewPCG(51, 52))
	for _, n := range []int{0, 1, 7, 8, 9, 63, 1000, 4096, 4097, 50001} {
		for _, chunk := range []int{1, 8, 13, 1024, 1 << 16} {
			x := randSlice(r, n, 1)
			var want float64
			for _, v := range x {
				want += float64(v) * float64(v)
			}
			run := func(procs int) float64 {
				defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(procs))
				return SumSquares(x, chunk)
			}
			got := run(1)
			if math.Abs(got-want) > 1e-12*want {
				t.Fatalf("n=%d chunk=%d: %v, want %v", n, chunk, got, want)
			}
			for _, procs := range []int{2, 3} {
				if g := run(procs); math.Float64bits(g) != math.Float64bits(got) {
					t.Fatalf("n=%d chunk=%d: %v with %d threads, %v with 1", n, chunk, g, procs, got)
				}
			}
			if haveAVX2 {
				haveAVX2 = false
				g := SumSquares(x, chunk)
				haveAVX2 = true
				if math.Float64bits(g) != math.Float64bits(got) {
					t.Fatalf("n=%d chunk=%d: scalar %v, vector %v", n, chunk, g, got)
				}
			}
		}
	}
}

func TestScale(t *testing.T) {
	r := rand.New(rand.NewPCG(53, 54))
	x := randSlice(r, 100003, 1)
	want := append([]float32(nil), x...)
	for i := range want {
		want[i] *= 0.37
	}
	Scale(x, 0.37)
	if i := firstDiff(x, want); i >= 0 {
		t.Fatalf("x[%d] = %g, want %g", i, x[i], want[i])
	}
}
