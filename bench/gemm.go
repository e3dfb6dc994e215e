package bench

import (
	"context"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"runtime"
	"strings"
	"time"

	"gonum.org/v1/gonum/blas"
	"gonum.org/v1/gonum/blas/gonum"

	"github.com/ringtrain/ringtrain/tensor"
)

// GemmShape is one matrix product C (M,N) = op(A) (M,K) · op(B) (K,N); Op is "NT",
// "NN" or "TN" (the transposes of A and B). Name is "<set>.<product>".
type GemmShape struct {
	Name    string
	Op      string
	M, N, K int
}

// modelGemmShapes lists the products of one training step of a GPT-2 with rows = batch ×
// seq positions and width c: for each linear layer (in, out) of a block and the tied LM
// head, forward (NT: m=rows, n=out, k=in), input gradient (NN: m=rows, n=in, k=out) and
// weight gradient (TN: m=out, n=in, k=rows).
func modelGemmShapes(name string, rows, c, vocab int) []GemmShape {
	var out []GemmShape
	for _, l := range []struct {
		name    string
		in, out int
	}{{"qkv", c, 3 * c}, {"attnproj", c, c}, {"fc", c, 4 * c}, {"fcproj", 4 * c, c}, {"lmhead", c, vocab}} {
		out = append(out,
			GemmShape{name + "." + l.name + ".fwd", "NT", rows, l.out, l.in},
			GemmShape{name + "." + l.name + ".dinp", "NN", rows, l.in, l.out},
			GemmShape{name + "." + l.name + ".dw", "TN", l.out, l.in, rows})
	}
	return out
}

// gemmShapeSets are the shape sets of GemmShapes; scripts/bench/openblas_gemm.py lists
// the same ones.
var gemmShapeSets = map[string]func() []GemmShape{
	"tiny":    func() []GemmShape { return modelGemmShapes("tiny", 12*64, 128, 67) },
	"nanogpt": func() []GemmShape { return modelGemmShapes("nanogpt", 8*256, 384, 65) },
	"square": func() []GemmShape {
		var out []GemmShape
		for _, s := range []int{256, 512, 1024, 2048} {
			out = append(out, GemmShape{fmt.Sprintf("square.%d", s), "NN", s, s, s})
		}
		return out
	},
}

// gemmSetOrder is the order of the sets in Gemm's geometric means.
var gemmSetOrder = []string{"tiny", "nanogpt", "square"}

// GemmShapes returns the products of a shape set: "tiny" (the tiny recipe's training
// step), "nanogpt" (nanoGPT shakespeare-char's) or "square" (256 to 2048).
func GemmShapes(set string) ([]GemmShape, error) {
	f, ok := gemmShapeSets[set]
	if !ok {
		return nil, fmt.Errorf("unknown set %q (have tiny, nanogpt, square)", set)
	}
	return f(), nil
}

// GemmOptions configure Gemm.
type GemmOptions struct {
	Shapes  []GemmShape   // the products to time (GemmShapes)
	Threads int           // GOMAXPROCS while Gemm runs, and the peak's threads (>= 1)
	Reps    int           // interleaved repetitions; the best of each is kept (>= 1)
	Time    time.Duration // time per measurement (> 0)
	NoGonum bool          // leave gonum's Sgemm out
	// OpenBLAS, when set, is timed beside the Go implementations (StartOpenBLAS);
	// Gemm does not close it.
	OpenBLAS *OpenBLAS
}

// GemmResult is what Gemm measured.
type GemmResult struct {
	Peak  float64     // GFLOP/s of the micro-kernel on cache-resident data, best of Reps
	Impls []string    // "ringtrain", then "gonum" and "openblas" when timed
	Best  [][]float64 // [shape][impl]: the best GFLOP/s of each, in the order of Options.Shapes and Impls
}

// gemmOperands holds the inputs and output of one shape.
type gemmOperands struct {
	s             GemmShape
	ta, tb        bool
	a, b, c       []float32
	lda, ldb, ldc int
}

func newGemmOperands(s GemmShape, r *rand.Rand) *gemmOperands {
	o := &gemmOperands{s: s, ta: s.Op[0] == 'T', tb: s.Op[1] == 'T', ldc: s.N}
	o.lda, o.ldb = s.K, s.N
	if o.ta {
		o.lda = s.M
	}
	if o.tb {
		o.ldb = s.K
	}
	fill := func(n int) []float32 {
		x := make([]float32, n)
		for i := range x {
			x[i] = float32(r.NormFloat64())
		}
		return x
	}
	o.a, o.b, o.c = fill(s.M*s.K), fill(s.K*s.N), make([]float32, s.M*s.N)
	return o
}

// gemmImpl is one implementation under test: run computes one product of o.
type gemmImpl struct {
	name string
	run  func(o *gemmOperands)
}

// timeGemm runs impl on o repeatedly for at least d and returns GFLOP/s.
func timeGemm(run func(*gemmOperands), o *gemmOperands, d time.Duration) float64 {
	start := time.Now()
	calls := 0
	for {
		run(o)
		calls++
		if el := time.Since(start); el >= d {
			return 2 * float64(o.s.M*o.s.N*o.s.K) * float64(calls) / el.Seconds() / 1e9
		}
	}
}

// Gemm measures tensor.Gemm (with the micro-kernel tensor uses: tensor.SetGemmKernel)
// in GFLOP/s on o.Shapes, beside gonum's pure-Go Sgemm and OpenBLAS when o asks.
// Implementations are timed interleaved, shape by shape, o.Reps times, and the best
// of each is kept: on a shared machine the best is the least disturbed. The peak is
// the micro-kernel's own speed on cache-resident data on o.Threads cores, measured in
// the same run. Gemm writes the report to w: the setup first, then, once measured,
// the peak, one line per shape and the geometric means of the speed-ups per shape
// set. It sets GOMAXPROCS to o.Threads until it returns, and stops early when ctx
// ends.
func Gemm(ctx context.Context, o GemmOptions, w io.Writer) (*GemmResult, error) {
	if len(o.Shapes) == 0 || o.Threads < 1 || o.Reps < 1 || o.Time <= 0 {
		return nil, fmt.Errorf("%w: Shapes, Threads, Reps and Time must be positive", ErrBadOptions)
	}
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(o.Threads))
	threads, reps, dur, ob := o.Threads, o.Reps, o.Time, o.OpenBLAS

	var gonumImpl gonum.Implementation
	impls := []gemmImpl{{"ringtrain", func(o *gemmOperands) {
		tensor.Gemm(o.ta, o.tb, o.s.M, o.s.N, o.s.K, 1, o.a, o.lda, o.b, o.ldb, 0, o.c, o.ldc)
	}}}
	if !o.NoGonum {
		impls = append(impls, gemmImpl{"gonum", func(o *gemmOperands) {
			ta, tb := blas.NoTrans, blas.NoTrans
			if o.ta {
				ta = blas.Trans
			}
			if o.tb {
				tb = blas.Trans
			}
			gonumImpl.Sgemm(ta, tb, o.s.M, o.s.N, o.s.K, 1, o.a, o.lda, o.b, o.ldb, 0, o.c, o.ldc)
		}})
	}

	fmt.Fprintf(w, "gemm kernel %s (available %s), threads %d, %d reps of %v per shape and implementation\n",
		tensor.GemmKernel(), strings.Join(tensor.GemmKernels(), ", "), threads, reps, dur)
	if ob != nil {
		fmt.Fprintf(w, "openblas: %s\n", ob.Banner())
	}
	r := rand.New(rand.NewPCG(1, 2))
	ops := make([]*gemmOperands, len(o.Shapes))
	for i, s := range o.Shapes {
		ops[i] = newGemmOperands(s, r)
	}
	res := &GemmResult{}
	for _, im := range impls {
		res.Impls = append(res.Impls, im.name)
	}
	if ob != nil {
		res.Impls = append(res.Impls, "openblas")
	}
	res.Best = make([][]float64, len(o.Shapes))
	for i := range res.Best {
		res.Best[i] = make([]float64, len(res.Impls))
	}
	best := res.Best
	for rep := range reps {
		res.Peak = max(res.Peak, tensor.MeasurePeak(threads, dur))
		for i, op := range ops {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
			for j, im := range impls {
				if rep == 0 {
					im.run(op) // warm up: pack buffers, helpers, caches
				}
				best[i][j] = max(best[i][j], timeGemm(im.run, op, dur))
			}
			if ob != nil {
				g, err := ob.Measure(op.s, dur)
				if err != nil {
					return nil, err
				}
				best[i][len(impls)] = max(best[i][len(impls)], g)
			}
		}
	}
	peak := res.Peak

	fmt.Fprintf(w, "peak (micro-kernel on cached data, %d threads): %.1f GFLOP/s\n\n", threads, peak)
	fmt.Fprintf(w, "%-22s %-3s %5s %5s %5s %10s %6s", "shape", "op", "m", "n", "k", "ringtrain", "%peak")
	if !o.NoGonum {
		fmt.Fprintf(w, " %8s %8s", "gonum", "x gonum")
	}
	if ob != nil {
		fmt.Fprintf(w, " %9s %11s", "openblas", "x openblas")
	}
	fmt.Fprintln(w)
	for i, s := range o.Shapes {
		b := best[i]
		fmt.Fprintf(w, "%-22s %-3s %5d %5d %5d %10.1f %5.0f%%", s.Name, s.Op, s.M, s.N, s.K, b[0], 100*b[0]/peak)
		j := 1
		if !o.NoGonum {
			fmt.Fprintf(w, " %8.1f %8.2f", b[j], b[0]/b[j])
			j++
		}
		if ob != nil {
			fmt.Fprintf(w, " %9.1f %11.2f", b[j], b[0]/b[j])
		}
		fmt.Fprintln(w)
	}
	// Geometric means of the ratios, per shape set.
	for col, name := range res.Impls {
		if col == 0 {
			continue
		}
		logs := map[string][]float64{}
		for i, s := range o.Shapes {
			set, _, _ := strings.Cut(s.Name, ".")
			logs[set] = append(logs[set], math.Log(best[i][0]/best[i][col]))
		}
		fmt.Fprintf(w, "geometric mean of ringtrain/%s:", name)
		for _, set := range gemmSetOrder {
			if l := logs[set]; len(l) > 0 {
				var sum float64
				for _, v := range l {
					sum += v
				}
				fmt.Fprintf(w, " %s %.2f", set, math.Exp(sum/float64(len(l))))
			}
		}
		fmt.Fprintln(w)
	}
	return res, nil
}
