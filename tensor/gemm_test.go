package tensor

import (
	"fmt"
	"math"
	"math/rand/v2"
	"runtime"
	"sync"
	"testing"
)

// forEachKernel runs f once with each micro-kernel this CPU can run made active.
func forEachKernel(t *testing.T, f func(t *testing.T)) {
	t.Helper()
	saved := activeKernel
	defer func() { activeKernel = saved }()
	for _, k := range gemmKernels {
		activeKernel = k
		t.Run(k.name, f)
	}
}

// gemmCase is one Gemm call: shapes, transposes, scalars and strides (each at least the
// stored row length; larger ones leave a margin between rows).
type gemmCase struct {
	m, n, k        int
	transA, transB bool
	alpha, beta    float32
	lda, ldb, ldc  int
}

func (g gemmCase) String() string {
	return fmt.Sprintf("m=%d n=%d k=%d ta=%v tb=%v alpha=%g beta=%g lda=%d ldb=%d ldc=%d",
		g.m, g.n, g.k, g.transA, g.transB, g.alpha, g.beta, g.lda, g.ldb, g.ldc)
}

// stored returns the rows and columns of A and B as stored.
func (g gemmCase) stored() (ar, ac, br, bc int) {
	ar, ac, br, bc = g.m, g.k, g.k, g.n
	if g.transA {
		ar, ac = ac, ar
	}
	if g.transB {
		br, bc = bc, br
	}
	return
}

// randomCase draws a case; margin adds up to that many elements to each stride.
func randomCase(r *rand.Rand, m, n, k, margin int) gemmCase {
	alphas := []float32{1, 1, 0.5, -2}
	betas := []float32{0, 1, 1, 0.25, -1}
	g := gemmCase{m: m, n: n, k: k, transA: r.IntN(2) == 1, transB: r.IntN(2) == 1,
		alpha: alphas[r.IntN(len(alphas))], beta: betas[r.IntN(len(betas))]}
	_, ac, _, bc := g.stored()
	g.lda, g.ldb, g.ldc = max(1, ac), max(1, bc), max(1, n)
	if margin > 0 {
		g.lda += r.IntN(margin + 1)
		g.ldb += r.IntN(margin + 1)
		g.ldc += r.IntN(margin + 1)
	}
	return g
}

// matrix returns a (rows,cols) matrix with stride ld; the margins hold NaN, which must
// never reach C. With ints the values are small integers, so that every sum is exact.
func matrix(r *rand.Rand, rows, cols, ld int, ints bool) []float32 {
	if rows == 0 || cols == 0 {
		return nil
	}
	s := make([]float32, (rows-1)*ld+cols)
	for i := range s {
		if i%ld >= cols {
			s[i] = float32(math.NaN())
		} else if ints {
			s[i] = float32(r.IntN(7) - 3)
		} else {
			s[i] = float32(r.NormFloat64())
		}
	}
	return s
}

// checkCase runs Gemm and NaiveGemm on case g and compares them: exactly for integer
// inputs, else within a bound on float32 rounding. Margins of C must be left alone,
// and with beta 0 the old C (NaN here) must not be read.
func checkCase(t *testing.T, r *rand.Rand, g gemmCase, ints bool) {
	t.Helper()
	ar, ac, br, bc := g.stored()
	a := matrix(r, ar, ac, g.lda, ints)
	b := matrix(r, br, bc, g.ldb, ints)
	c0 := matrix(r, g.m, g.n, g.ldc, ints)
	if g.beta == 0 {
		for i := range c0 {
			if i%g.ldc < g.n {
				c0[i] = float32(math.NaN())
			}
		}
	}
	got := append([]float32(nil), c0...)
	Gemm(g.transA, g.transB, g.m, g.n, g.k, g.alpha, a, g.lda, b, g.ldb, g.beta, got, g.ldc)
	want := append([]float32(nil), c0...)
	NaiveGemm(g.transA, g.transB, g.m, g.n, g.k, g.alpha, a, g.lda, b, g.ldb, g.beta, want, g.ldc)
	// bound(i,j) = eps (k+2) (|alpha| Σ|a||b| + |beta c|), from the absolute values.
	absA, absB := absOf(a), absOf(b)
	mag := make([]float32, len(c0))
	NaiveGemm(g.transA, g.transB, g.m, g.n, g.k, float32(math.Abs(float64(g.alpha))), absA, g.lda, absB, g.ldb, 0, mag, g.ldc)
	for i := range got {
		if i%g.ldc >= g.n {
			if !math.IsNaN(float64(got[i])) {
				t.Fatalf("%v: margin element %d of C was written: %g", g, i, got[i])
			}
			continue
		}
		if ints {
			if got[i] != want[i] {
				t.Fatalf("%v: integer inputs: c[%d,%d] = %g, want exactly %g", g, i/g.ldc, i%g.ldc, got[i], want[i])
			}
			continue
		}
		bound := float64(mag[i])
		if g.beta != 0 {
			bound += math.Abs(float64(g.beta * c0[i]))
		}
		bound *= 1.2e-7 * float64(g.k+2)
		if d := math.Abs(float64(got[i] - want[i])); !(d <= bound) {
			t.Fatalf("%v: c[%d,%d] = %g, want %g (difference %g > bound %g)", g, i/g.ldc, i%g.ldc, got[i], want[i], d, bound)
		}
	}
}

func absOf(s []float32) []float32 {
	out := make([]float32, len(s))
	for i, v := range s {
		out[i] = float32(math.Abs(float64(v)))
	}
	return out
}

// TestGemmMatchesNaive compares Gemm with NaiveGemm over chosen edge shapes and random
// ones, with every transpose combination, scalars and strides, for every kernel.
func TestGemmMatchesNaive(t *testing.T) {
	forEachKernel(t, func(t *testing.T) {
		r := rand.New(rand.NewPCG(15, 16))
		var cases []gemmCase
		// Degenerate and edge shapes, with every transpose combination.
		edges := [][3]int{
			{1, 1, 1}, {1, 37, 5}, {37, 1, 5}, {5, 5, 1}, {1, 1, 700}, {3, 4, 1000},
			{14, 32, 3}, {15, 33, 257}, {13, 31, 256}, {6, 16, 513}, {7, 17, 255},
			{65, 130, 67}, {128, 64, 256}, {200, 515, 9}, {1, 600, 40}, {600, 1, 40},
			{0, 5, 5}, {5, 0, 5}, {5, 5, 0},
		}
		for _, s := range edges {
			for _, ta := range []bool{false, true} {
				for _, tb := range []bool{false, true} {
					g := randomCase(r, s[0], s[1], s[2], 0)
					g.transA, g.transB = ta, tb
					_, ac, _, bc := g.stored()
					g.lda, g.ldb = max(1, ac), max(1, bc)
					cases = append(cases, g)
				}
			}
		}
		for range 60 {
			cases = append(cases, randomCase(r, 1+r.IntN(150), 1+r.IntN(150), 1+r.IntN(300), 5))
		}
		for range 6 { // large k: several k blocks
			cases = append(cases, randomCase(r, 1+r.IntN(40), 1+r.IntN(70), 600+r.IntN(1500), 3))
		}
		for range 4 { // large enough to be split into several tasks
			cases = append(cases, randomCase(r, 100+r.IntN(300), 100+r.IntN(700), 1+r.IntN(400), 2))
		}
		for _, g := range cases {
			checkCase(t, r, g, false)
		}
	})
}

// TestGemmExactOnIntegers checks every element exactly: with small integer inputs all
// sums are exact in float32, so any indexing or packing mistake shows.
func TestGemmExactOnIntegers(t *testing.T) {
	forEachKernel(t, func(t *testing.T) {
		r := rand.New(rand.NewPCG(17, 18))
		for range 40 {
			g := randomCase(r, 1+r.IntN(120), 1+r.IntN(200), 1+r.IntN(700), 4)
			g.alpha = []float32{1, 2, -1}[r.IntN(3)]
			g.beta = []float32{0, 1, -2}[r.IntN(3)]
			checkCase(t, r, g, true)
		}
	})
}

// TestGemmEdgeScalars covers alpha 0 and k 0 (C = beta C) and beta 0 over NaN.
func TestGemmEdgeScalars(t *testing.T) {
	r := rand.New(rand.NewPCG(19, 20))
	for _, g := range []gemmCase{
		{m: 7, n: 9, k: 0, alpha: 1, beta: 0.5, lda: 1, ldb: 9, ldc: 9},
		{m: 7, n: 9, k: 0, alpha: 1, beta: 0, lda: 1, ldb: 9, ldc: 9},
		{m: 7, n: 9, k: 5, alpha: 0, beta: 2, lda: 5, ldb: 9, ldc: 11},
		{m: 7, n: 9, k: 5, alpha: 0, beta: 1, lda: 5, ldb: 9, ldc: 9},
	} {
		checkCase(t, r, g, false)
	}
}

// gemmResult runs one fixed large-ish Gemm with GOMAXPROCS procs and returns C.
func gemmResult(procs int, g gemmCase, a, b, c0 []float32) []float32 {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(procs))
	c := append([]float32(nil), c0...)
	Gemm(g.transA, g.transB, g.m, g.n, g.k, g.alpha, a, g.lda, b, g.ldb, g.beta, c, g.ldc)
	return c
}

func firstDiff(a, b []float32) int {
	for i := range a {
		if math.Float32bits(a[i]) != math.Float32bits(b[i]) {
			return i
		}
	}
	return -1
}

// TestGemmThreadCountIndependent checks that 1, 2 and 3 goroutines give the same bits,
// for every kernel and transpose combination, on shapes cut into many tasks.
func TestGemmThreadCountIndependent(t *testing.T) {
	forEachKernel(t, func(t *testing.T) {
		r := rand.New(rand.NewPCG(21, 22))
		for _, s := range [][3]int{{301, 700, 530}, {768, 128, 384}, {67, 128, 768}} {
			for _, ta := range []bool{false, true} {
				for _, tb := range []bool{false, true} {
					g := randomCase(r, s[0], s[1], s[2], 0)
					g.transA, g.transB, g.beta = ta, tb, 1
					ar, ac, br, bc := g.stored()
					g.lda, g.ldb = ac, bc
					a, b, c0 := matrix(r, ar, ac, g.lda, false), matrix(r, br, bc, g.ldb, false), matrix(r, g.m, g.n, g.ldc, false)
					one := gemmResult(1, g, a, b, c0)
					for _, procs := range []int{2, 3} {
						if i := firstDiff(one, gemmResult(procs, g, a, b, c0)); i >= 0 {
							t.Fatalf("%v: GOMAXPROCS 1 and %d differ first at %d", g, procs, i)
						}
					}
				}
			}
		}
	})
}

// TestGemmVectorKernelsAgree checks that the AVX-512 and AVX2 kernels give the same
// bits, so that machines of both kinds compute identical steps.
func TestGemmVectorKernelsAgree(t *testing.T) {
	var vec []*gemmKernel
	for _, k := range gemmKernels {
		if k != genericKernel {
			vec = append(vec, k)
		}
	}
	if len(vec) < 2 {
		t.Skipf("this CPU runs %d vector kernels", len(vec))
	}
	saved := activeKernel
	defer func() { activeKernel = saved }()
	r := rand.New(rand.NewPCG(23, 24))
	for range 20 {
		g := randomCase(r, 1+r.IntN(300), 1+r.IntN(300), 1+r.IntN(900), 3)
		ar, ac, br, bc := g.stored()
		a, b, c0 := matrix(r, ar, ac, g.lda, false), matrix(r, br, bc, g.ldb, false), matrix(r, g.m, g.n, g.ldc, false)
		var first []float32
		for _, k := range vec {
			activeKernel = k
			c := append([]float32(nil), c0...)
			Gemm(g.transA, g.transB, g.m, g.n, g.k, g.alpha, a, g.lda, b, g.ldb, g.beta, c, g.ldc)
			if first == nil {
				first = c
			} else if i := firstDiff(first, c); i >= 0 {
				t.Fatalf("%v: %s and %s differ first at %d: %g vs %g", g, vec[0].name, k.name, i, first[i], c[i])
			}
		}
	}
}

// TestGemmAllocatesNothing checks that a warmed-up Gemm allocates nothing, on one and
// on several goroutines.
func TestGemmAllocatesNothing(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(2))
	r := rand.New(rand.NewPCG(25, 26))
	m, n, k := 300, 200, 300
	a, b, c := randSlice(r, m*k, 1), randSlice(r, k*n, 1), make([]float32, m*n)
	for _, ta := range []bool{false, true} {
		lda := k
		if ta {
			lda = m
		}
		f := func() { Gemm(ta, true, m, n, k, 1, a, lda, b, k, 1, c, n) }
		f()
		if allocs := testing.AllocsPerRun(50, f); allocs != 0 {
			t.Errorf("transA=%v: %v allocations per call", ta, allocs)
		}
	}
}

// TestGemmConcurrentCalls runs Gemm from several goroutines at once on disjoint
// outputs and checks each result against a sequential run.
func TestGemmConcurrentCalls(t *testing.T) {
	r := rand.New(rand.NewPCG(27, 28))
	const m, n, k, calls = 130, 170, 260, 6
	a, b := randSlice(r, m*k, 1), randSlice(r, k*n, 1)
	want := make([]float32, m*n)
	Gemm(false, false, m, n, k, 1, a, k, b, n, 0, want, n)
	got := make([][]float32, calls)
	var wg sync.WaitGroup
	for i := range got {
		got[i] = make([]float32, m*n)
		wg.Go(func() {
			for range 5 {
				Gemm(false, false, m, n, k, 1, a, k, b, n, 0, got[i], n)
			}
		})
	}
	wg.Wait()
	for i := range got {
		if j := firstDiff(want, got[i]); j >= 0 {
			t.Fatalf("call %d differs at %d", i, j)
		}
	}
}

func TestGemmRejectsBadArguments(t *testing.T) {
	s := make([]float32, 12)
	for name, f := range map[string]func(){
		"negative m": func() { Gemm(false, false, -1, 2, 2, 1, s, 2, s, 2, 0, s, 2) },
		"short A":    func() { Gemm(false, false, 4, 2, 4, 1, s, 4, s, 2, 0, s, 2) },
		"small ldb":  func() { Gemm(false, false, 2, 3, 2, 1, s, 2, s, 2, 0, s, 3) },
		"short C":    func() { Gemm(false, true, 5, 3, 2, 1, s, 2, s, 2, 0, s, 3) },
	} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("%s: no panic", name)
				}
			}()
			f()
		}()
	}
}

// BenchmarkGemm measures the model's shapes (tiny recipe: N=768 rows, C=128) and a
// square one, in the three transpose cases the model uses.
func BenchmarkGemm(b *testing.B) {
	for _, s := range []struct {
		name           string
		transA, transB bool
		m, n, k        int
	}{
		{"NT_768x384x128", false, true, 768, 384, 128},
		{"NN_768x128x512", false, false, 768, 128, 512},
		{"TN_512x128x768", true, false, 512, 128, 768},
		{"NT_2048x1536x384", false, true, 2048, 1536, 384},
		{"square_1024", false, false, 1024, 1024, 1024},
	} {
		for _, kern := range gemmKernels {
			b.Run(s.name+"/"+kern.name, func(b *testing.B) {
				saved := activeKernel
				defer func() { activeKernel = saved }()
				activeKernel = kern
				r := rand.New(rand.NewPCG(1, 1))
				lda, ldb := s.k, s.n
				if s.transA {
					lda = s.m
				}
				if s.transB {
					ldb = s.k
				}
				a, bm, c := randSlice(r, s.m*s.k, 1), randSlice(r, s.k*s.n, 1), make([]float32, s.m*s.n)
				b.ResetTimer()
				for b.Loop() {
					Gemm(s.transA, s.transB, s.m, s.n, s.k, 1, a, lda, bm, ldb, 0, c, s.n)
				}
				b.ReportMetric(2*float64(s.m*s.n*s.k)*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
			})
		}
	}
}

// TestGemmBiasMatchesNaive checks GemmBias against NaiveGemm plus the bias, with and
// without a bias, for every kernel; C starts as NaN and must not be read.
func TestGemmBiasMatchesNaive(t *testing.T) {
	forEachKernel(t, func(t *testing.T) {
		r := rand.New(rand.NewPCG(35, 36))
		for i := range 30 {
			g := randomCase(r, 1+r.IntN(100), 1+r.IntN(100), 1+r.IntN(600), 3)
			g.beta = 0
			if i == 0 {
				g.k = 0
			}
			ar, ac, br, bc := g.stored()
			a, b := matrix(r, ar, ac, g.lda, true), matrix(r, br, bc, g.ldb, true)
			var bias []float32
			if i%3 != 0 {
				bias = matrix(r, 1, g.n, g.n, true)
			}
			got := make([]float32, (g.m-1)*g.ldc+g.n)
			for j := range got {
				got[j] = float32(math.NaN())
			}
			want := append([]float32(nil), got...)
			GemmBias(g.transA, g.transB, g.m, g.n, g.k, g.alpha, a, g.lda, b, g.ldb, bias, got, g.ldc)
			NaiveGemm(g.transA, g.transB, g.m, g.n, g.k, g.alpha, a, g.lda, b, g.ldb, 0, want, g.ldc)
			for row := range g.m {
				for j := range g.n {
					w := want[row*g.ldc+j]
					if bias != nil {
						w += bias[j]
					}
					if got[row*g.ldc+j] != w {
						t.Fatalf("%v bias=%v: c[%d,%d] = %g, want %g", g, bias != nil, row, j, got[row*g.ldc+j], w)
					}
				}
			}
		}
	})
}

// TestTransposeInto checks the packing transpose (vector blocks and scalar rest) on
// sizes around the 8x8 block, with strides larger than the rows.
func TestTransposeInto(t *testing.T) {
	r := rand.New(rand.NewPCG(37, 38))
	for _, s := range [][2]int{{1, 1}, {8, 8}, {7, 9}, {9, 7}, {16, 24}, {32, 257}, {14, 256}, {33, 15}} {
		rows, cols := s[0], s[1]
		lds, ld := cols+r.IntN(5), rows+r.IntN(5)
		src := randSlice(r, rows*lds, 1)
		dst := make([]float32, cols*ld)
		for i := range dst {
			dst[i] = -1
		}
		want := append([]float32(nil), dst...)
		transposeInto(dst, ld, src, lds, rows, cols)
		for i := range rows {
			for p := range cols {
				want[p*ld+i] = src[i*lds+p]
			}
		}
		if i := firstDiff(dst, want); i >= 0 {
			t.Fatalf("rows %d cols %d: element %d is %g, want %g", rows, cols, i, dst[i], want[i])
		}
	}
}

// TestGemmTailKernels checks each narrow tail kernel against its full kernel on the
// same tile: random k, A read in place (row stride) or packed (k-major), B with the full
// kernel's sliver stride, accumulating into C or writing alpha·acc + bias. The tail's
// columns must have the full kernel's bits, and the columns past them must be
// untouched.
func TestGemmTailKernels(t *testing.T) {
	r := rand.New(rand.NewPCG(25, 26))
	for _, k := range gemmKernels {
		if k.tail == nil {
			continue
		}
		t.Run(k.tail.name, func(t *testing.T) {
			mr, nr, tnr := k.mr, k.nr, k.tail.nr
			for range 200 {
				kc := 1 + r.IntN(300)
				packed := r.IntN(2) == 0
				ars, aks := kc+r.IntN(5), 1 // rows of A in place
				if packed {
					ars, aks = 1, mr
				}
				a := randSlice(r, (mr-1)*ars+(kc-1)*aks+1, 1)
				b := randSlice(r, kc*nr, 1)
				alpha := []float32{1, 0.5, -2}[r.IntN(3)]
				var bias []float32
				if r.IntN(2) == 0 {
					bias = randSlice(r, nr, 1)
				}
				ldc := nr + r.IntN(4)
				c0 := randSlice(r, mr*ldc, 1)
				full, tail := append([]float32(nil), c0...), append([]float32(nil), c0...)
				var bp *float32
				if bias != nil {
					bp = &bias[0]
				}
				k.fn(kc, &a[0], ars, aks, &b[0], nr, &full[0], ldc, alpha, bp)
				k.tail.fn(kc, &a[0], ars, aks, &b[0], nr, &tail[0], ldc, alpha, bp)
				for i := range mr {
					for j := range ldc {
						want := full[i*ldc+j]
						if j >= tnr {
							want = c0[i*ldc+j]
						}
						if got := tail[i*ldc+j]; math.Float32bits(got) != math.Float32bits(want) {
							t.Fatalf("kc=%d packed=%v bias=%v: c[%d,%d] = %g, want %g", kc, packed, bias != nil, i, j, got, want)
						}
					}
				}
			}
		})
	}
}

// TestGemmNarrowEdges compares Gemm with NaiveGemm, and the vector kernels with each
// other, on shapes whose last column sliver is narrow (n mod 16 in 1..8, n mod 32 in
// 1..8), where the tail kernels run.
func TestGemmNarrowEdges(t *testing.T) {
	r := rand.New(rand.NewPCG(27, 28))
	var cases []gemmCase
	for range 40 {
		n := 16*r.IntN(12) + 1 + r.IntN(8)
		if r.IntN(2) == 0 {
			n = 32*r.IntN(6) + 1 + r.IntN(8)
		}
		cases = append(cases, randomCase(r, 1+r.IntN(100), n, 1+r.IntN(600), 3))
	}
	forEachKernel(t, func(t *testing.T) {
		for _, g := range cases {
			checkCase(t, r, g, false)
		}
	})
	saved := activeKernel
	defer func() { activeKernel = saved }()
	for _, g := range cases {
		ar, ac, br, bc := g.stored()
		a, b, c0 := matrix(r, ar, ac, g.lda, false), matrix(r, br, bc, g.ldb, false), matrix(r, g.m, g.n, g.ldc, false)
		var first []float32
		var firstName string
		for _, k := range gemmKernels {
			if k == genericKernel {
				continue
			}
			activeKernel = k
			c := append([]float32(nil), c0...)
			Gemm(g.transA, g.transB, g.m, g.n, g.k, g.alpha, a, g.lda, b, g.ldb, g.beta, c, g.ldc)
			if first == nil {
				first, firstName = c, k.name
			} else if i := firstDiff(first, c); i >= 0 {
				t.Fatalf("%v: %s and %s differ first at %d: %g vs %g", g, firstName, k.name, i, first[i], c[i])
			}
		}
	}
}

// BenchmarkGemmNarrowEdge measures the LM head's forward products (the odd vocabulary
// leaves a last column sliver of 1 or 3 columns) with each vector kernel, with its
// tail kernel and with the full kernel on a padded tile instead ("padded").
func BenchmarkGemmNarrowEdge(b *testing.B) {
	for _, s := range []struct {
		name    string
		m, n, k int
	}{
		{"tiny_768x67x128", 768, 67, 128},
		{"nanogpt_2048x65x384", 2048, 65, 384},
	} {
		for _, kern := range gemmKernels {
			if kern.tail == nil {
				continue
			}
			padded := *kern
			padded.tail = nil
			for _, k := range []*gemmKernel{kern, &padded} {
				name := s.name + "/" + kern.name + "/" + kern.tail.name
				if k.tail == nil {
					name = s.name + "/" + kern.name + "/padded"
				}
				b.Run(name, func(b *testing.B) {
					saved := activeKernel
					defer func() { activeKernel = saved }()
					activeKernel = k
					r := rand.New(rand.NewPCG(1, 1))
					a, bm, c := randSlice(r, s.m*s.k, 1), randSlice(r, s.k*s.n, 1), make([]float32, s.m*s.n)
					for b.Loop() {
						Gemm(false, true, s.m, s.n, s.k, 1, a, s.k, bm, s.k, 0, c, s.n)
					}
					b.ReportMetric(2*float64(s.m*s.n*s.k)*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
				})
			}
		}
	}
}
