package tensor

import (
	"fmt"
	"math"
	"math/rand/v2"
	"runtime"
	"testing"
)

// closeTo checks |got-want| <= tol·(1+|want|) element-wise.
func closeTo(t *testing.T, what string, got, want []float32, tol float64) {
	t.Helper()
	for i := range want {
		if d := math.Abs(float64(got[i] - want[i])); !(d <= tol*(1+math.Abs(float64(want[i])))) {
			t.Fatalf("%s[%d] = %g, want %g", what, i, got[i], want[i])
		}
	}
}

// attnShape is one attention call's shape: hs = C/H.
type attnShape struct{ B, T, C, H int }

// checkAttentionAgainstNaive runs the tiled kernels and the naive ones on random inputs
// of shape s and compares out, lse and dqkv.
func checkAttentionAgainstNaive(t *testing.T, r *rand.Rand, s attnShape, causal bool) {
	t.Helper()
	be := NewCPU()
	B, T, C, H := s.B, s.T, s.C, s.H
	qkv, dout := randSlice(r, B*T*3*C, 1), randSlice(r, B*T*C, 1)
	// Stale outputs must be overwritten.
	out, lse := randSlice(r, B*T*C, 1), randSlice(r, B*H*T, 1)
	wantOut, wantLse := make([]float32, B*T*C), make([]float32, B*H*T)
	be.AttentionForward(out, lse, qkv, B, T, C, H, causal)
	NaiveAttentionForward(wantOut, wantLse, qkv, B, T, C, H, causal)
	closeTo(t, "out", out, wantOut, 1e-5)
	closeTo(t, "lse", lse, wantLse, 1e-5)
	d0 := randSlice(r, len(qkv), 1) // backward adds into what is there
	dqkv, want := append([]float32(nil), d0...), append([]float32(nil), d0...)
	be.AttentionBackward(dqkv, dout, qkv, out, lse, B, T, C, H, causal)
	NaiveAttentionBackward(want, dout, qkv, B, T, C, H, causal)
	closeTo(t, "dqkv", dqkv, want, 1e-4)
}

// TestAttentionMatchesNaive compares the tiled attention kernels with the naive ones
// on sequence lengths below, at and across the query and key tile sizes, causal and
// not, for every gemm micro-kernel.
func TestAttentionMatchesNaive(t *testing.T) {
	forEachKernel(t, func(t *testing.T) {
		r := rand.New(rand.NewPCG(31, 32))
		for _, s := range []attnShape{
			{1, 1, 8, 1}, {2, 7, 12, 3}, {1, attnBlock, 16, 2}, {2, attnBlock + 1, 32, 4},
			{1, 100, 48, 3}, {1, 130, 64, 1}, {1, attnKeyBlock, 8, 1}, {2, attnKeyBlock + 1, 12, 2},
			{1, 2*attnKeyBlock + 37, 8, 2},
		} {
			for _, causal := range []bool{true, false} {
				t.Run(fmt.Sprintf("B%d_T%d_C%d_H%d_causal=%v", s.B, s.T, s.C, s.H, causal), func(t *testing.T) {
					checkAttentionAgainstNaive(t, r, s, causal)
				})
			}
		}
	})
}

// TestAttentionRandomShapes is the property test: random batch, length (from 1 to past
// two key tiles), head count and head size, causal and not.
func TestAttentionRandomShapes(t *testing.T) {
	r := rand.New(rand.NewPCG(35, 36))
	n := 40
	if testing.Short() {
		n = 12
	}
	for i := range n {
		H := 1 + r.IntN(4)
		s := attnShape{B: 1 + r.IntN(3), T: 1 + r.IntN(2*attnKeyBlock+50), C: H * (1 + r.IntN(20)), H: H}
		if i%4 == 0 {
			s.T = 1 + r.IntN(3) // the shortest sequences often
		}
		causal := i%2 == 0
		t.Run(fmt.Sprintf("B%d_T%d_C%d_H%d_causal=%v", s.B, s.T, s.C, s.H, causal), func(t *testing.T) {
			checkAttentionAgainstNaive(t, r, s, causal)
		})
	}
}

// TestAttentionThreadCountIndependent checks bit-identical results with 1, 2 and 3
// threads, on a length that spans several query and key tiles.
func TestAttentionThreadCountIndependent(t *testing.T) {
	r := rand.New(rand.NewPCG(33, 34))
	B, T, C, H := 3, attnKeyBlock+50, 24, 3
	qkv, dout := randSlice(r, B*T*3*C, 1), randSlice(r, B*T*C, 1)
	for _, causal := range []bool{true, false} {
		run := func(procs int) (out, lse, dqkv []float32) {
			defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(procs))
			out, lse, dqkv = make([]float32, B*T*C), make([]float32, B*H*T), make([]float32, len(qkv))
			NewCPU().AttentionForward(out, lse, qkv, B, T, C, H, causal)
			NewCPU().AttentionBackward(dqkv, dout, qkv, out, lse, B, T, C, H, causal)
			return
		}
		o1, l1, d1 := run(1)
		for _, procs := range []int{2, 3} {
			o, l, d := run(procs)
			for name, pair := range map[string][2][]float32{"out": {o1, o}, "lse": {l1, l}, "dqkv": {d1, d}} {
				if i := firstDiff(pair[0], pair[1]); i >= 0 {
					t.Errorf("causal=%v: %s differs at %d between 1 and %d threads", causal, name, i, procs)
				}
			}
		}
	}
}

// BenchmarkAttention times a forward and a backward on the shapes of nanoGPT
// shakespeare-char (T 256) and of GPT-2 124M at sequence length 64.
func BenchmarkAttention(b *testing.B) {
	for _, s := range []attnShape{{8, 256, 384, 6}, {4, 64, 768, 12}} {
		b.Run(fmt.Sprintf("B%d_T%d_C%d_H%d", s.B, s.T, s.C, s.H), func(b *testing.B) {
			r := rand.New(rand.NewPCG(1, 2))
			B, T, C, H := s.B, s.T, s.C, s.H
			qkv, dout := randSlice(r, B*T*3*C, 1), randSlice(r, B*T*C, 1)
			out, lse, dqkv := make([]float32, B*T*C), make([]float32, B*H*T), make([]float32, len(qkv))
			be := NewCPU()
			b.ReportAllocs()
			for b.Loop() {
				be.AttentionForward(out, lse, qkv, B, T, C, H, true)
				be.AttentionBackward(dqkv, dout, qkv, out, lse, B, T, C, H, true)
			}
		})
	}
}

// TestAttentionVectorMatchesScalar runs the attention kernels with and without the
// vector row helpers and checks the same bits.
func TestAttentionVectorMatchesScalar(t *testing.T) {
	if !haveAVX2 {
		t.Skip("no vector row helpers on this CPU")
	}
	r := rand.New(rand.NewPCG(37, 38))
	B, T, C, H := 2, attnKeyBlock+45, 36, 3
	qkv, dout := randSlice(r, B*T*3*C, 1), randSlice(r, B*T*C, 1)
	for _, causal := range []bool{true, false} {
		run := func() (out, lse, dqkv []float32) {
			out, lse, dqkv = make([]float32, B*T*C), make([]float32, B*H*T), make([]float32, len(qkv))
			NewCPU().AttentionForward(out, lse, qkv, B, T, C, H, causal)
			NewCPU().AttentionBackward(dqkv, dout, qkv, out, lse, B, T, C, H, causal)
			return
		}
		ov, lv, dv := run()
		haveAVX2 = false
		os, ls, ds := run()
		haveAVX2 = true
		for name, pair := range map[string][2][]float32{"out": {ov, os}, "lse": {lv, ls}, "dqkv": {dv, ds}} {
			if i := firstDiff(pair[0], pair[1]); i >= 0 {
				t.Errorf("causal=%v: %s[%d]: vector %g, scalar %g", causal, name, i, pair[0][i], pair[1][i])
			}
		}
	}
}

// randomStarts draws a segmentation of each of B rows of T positions into examples of
// random lengths (short ones often, a whole row sometimes) and returns each position's
// start: the first position of its example.
func randomStarts(r *rand.Rand, B, T int) []int32 {
	start := make([]int32, B*T)
	for b := range B {
		s := 0
		for s < T {
			n := 1 + r.IntN(1+r.IntN(T))
			for t := s; t < min(s+n, T); t++ {
				start[b*T+t] = int32(s)
			}
			s += n
		}
	}
	return start
}

// checkRangesAgainstNaive runs the tiled ranged kernels and the naive ones on random
// inputs and compares out, lse and dqkv.
func checkRangesAgainstNaive(t *testing.T, r *rand.Rand, s attnShape, start []int32) {
	t.Helper()
	be := NewCPU()
	B, T, C, H := s.B, s.T, s.C, s.H
	qkv, dout := randSlice(r, B*T*3*C, 1), randSlice(r, B*T*C, 1)
	out, lse := randSlice(r, B*T*C, 1), randSlice(r, B*H*T, 1)
	wantOut, wantLse := make([]float32, B*T*C), make([]float32, B*H*T)
	be.AttentionForwardRanges(out, lse, qkv, start, B, T, C, H)
	NaiveAttentionForwardRanges(wantOut, wantLse, qkv, start, B, T, C, H)
	closeTo(t, "out", out, wantOut, 1e-5)
	closeTo(t, "lse", lse, wantLse, 1e-5)
	d0 := randSlice(r, len(qkv), 1)
	dqkv, want := append([]float32(nil), d0...), append([]float32(nil), d0...)
	be.AttentionBackwardRanges(dqkv, dout, qkv, out, lse, start, B, T, C, H)
	NaiveAttentionBackwardRanges(want, dout, qkv, start, B, T, C, H)
	closeTo(t, "dqkv", dqkv, want, 1e-4)
}

// TestAttentionRangesRandomSegments is the property test of the ranged kernels: random
// shapes (lengths past two key tiles) and random segmentations, against the naive ones,
// for every gemm micro-kernel.
func TestAttentionRangesRandomSegments(t *testing.T) {
	forEachKernel(t, func(t *testing.T) {
		r := rand.New(rand.NewPCG(41, 42))
		n := 30
		if testing.Short() {
			n = 10
		}
		for i := range n {
			H := 1 + r.IntN(4)
			s := attnShape{B: 1 + r.IntN(3), T: 1 + r.IntN(2*attnKeyBlock+50), C: H * (1 + r.IntN(20)), H: H}
			if i%3 == 0 {
				s.T = 1 + r.IntN(attnBlock+5)
			}
			start := randomStarts(r, s.B, s.T)
			t.Run(fmt.Sprintf("B%d_T%d_C%d_H%d", s.B, s.T, s.C, s.H), func(t *testing.T) {
				checkRangesAgainstNaive(t, r, s, start)
			})
		}
	})
}

// TestAttentionRangesNilIsCausal checks that the ranged kernels with nil start, and
// with every start 0, give the bits of causal AttentionForward and AttentionBackward.
func TestAttentionRangesNilIsCausal(t *testing.T) {
	r := rand.New(rand.NewPCG(43, 44))
	B, T, C, H := 2, attnKeyBlock+70, 24, 3
	qkv, dout := randSlice(r, B*T*3*C, 1), randSlice(r, B*T*C, 1)
	run := func(start []int32, ranged bool) (out, lse, dqkv []float32) {
		out, lse, dqkv = make([]float32, B*T*C), make([]float32, B*H*T), make([]float32, len(qkv))
		if ranged {
			NewCPU().AttentionForwardRanges(out, lse, qkv, start, B, T, C, H)
			NewCPU().AttentionBackwardRanges(dqkv, dout, qkv, out, lse, start, B, T, C, H)
		} else {
			NewCPU().AttentionForward(out, lse, qkv, B, T, C, H, true)
			NewCPU().AttentionBackward(dqkv, dout, qkv, out, lse, B, T, C, H, true)
		}
		return
	}
	o0, l0, d0 := run(nil, false)
	for name, start := range map[string][]int32{"nil": nil, "zeros": make([]int32, B*T)} {
		o, l, d := run(start, true)
		for what, pair := range map[string][2][]float32{"out": {o0, o}, "lse": {l0, l}, "dqkv": {d0, d}} {
			if i := firstDiff(pair[0], pair[1]); i >= 0 {
				t.Errorf("start %s: %s differs from causal attention at %d", name, what, i)
			}
		}
	}
}

// TestAttentionRangesSeparateRows checks the packing contract at the kernel: examples
// packed into one row give the out, lse and dqkv of the same examples each alone in a
// row of its own length.
func TestAttentionRangesSeparateRows(t *testing.T) {
	r := rand.New(rand.NewPCG(45, 46))
	T, C, H := attnKeyBlock+30, 16, 2
	lens := []int{5, attnBlock + 3, 1, 200, T - 5 - attnBlock - 3 - 1 - 200}
	start := make([]int32, T)
	qkv, dout := randSlice(r, T*3*C, 1), randSlice(r, T*C, 1)
	out, lse, dqkv := make([]float32, T*C), make([]float32, H*T), make([]float32, T*3*C)
	NewCPU().AttentionForwardRanges(out, lse, qkv, start, 1, T, C, H) // all zeros first: stale pool state
	s := 0
	for _, n := range lens {
		for t := s; t < s+n; t++ {
			start[t] = int32(s)
		}
		s += n
	}
	NewCPU().AttentionForwardRanges(out, lse, qkv, start, 1, T, C, H)
	NewCPU().AttentionBackwardRanges(dqkv, dout, qkv, out, lse, start, 1, T, C, H)
	s = 0
	for _, n := range lens {
		o, l, d := make([]float32, n*C), make([]float32, H*n), make([]float32, n*3*C)
		NewCPU().AttentionForward(o, l, qkv[s*3*C:(s+n)*3*C], 1, n, C, H, true)
		NewCPU().AttentionBackward(d, dout[s*C:(s+n)*C], qkv[s*3*C:(s+n)*3*C], o, l, 1, n, C, H, true)
		closeTo(t, fmt.Sprintf("out of example at %d", s), out[s*C:(s+n)*C], o, 1e-6)
		closeTo(t, fmt.Sprintf("dqkv of example at %d", s), dqkv[s*3*C:(s+n)*3*C], d, 1e-5)
		for h := range H {
			closeTo(t, fmt.Sprintf("lse of example at %d head %d", s, h), lse[h*T+s:h*T+s+n], l[h*n:(h+1)*n], 1e-6)
		}
		s += n
	}
}

// TestAttentionRangesThreadCountIndependent checks bit-identical ranged results with 1
// and 3 threads.
func TestAttentionRangesThreadCountIndependent(t *testing.T) {
	r := rand.New(rand.NewPCG(47, 48))
	B, T, C, H := 3, attnKeyBlock+50, 24, 3
	qkv, dout := randSlice(r, B*T*3*C, 1), randSlice(r, B*T*C, 1)
	start := randomStarts(r, B, T)
	run := func(procs int) (out, lse, dqkv []float32) {
		defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(procs))
		out, lse, dqkv = make([]float32, B*T*C), make([]float32, B*H*T), make([]float32, len(qkv))
		NewCPU().AttentionForwardRanges(out, lse, qkv, start, B, T, C, H)
		NewCPU().AttentionBackwardRanges(dqkv, dout, qkv, out, lse, start, B, T, C, H)
		return
	}
	o1, l1, d1 := run(1)
	o3, l3, d3 := run(3)
	for name, pair := range map[string][2][]float32{"out": {o1, o3}, "lse": {l1, l3}, "dqkv": {d1, d3}} {
		if i := firstDiff(pair[0], pair[1]); i >= 0 {
			t.Errorf("%s differs at %d between 1 and 3 threads", name, i)
		}
	}
}

// BenchmarkAttentionRanges times the ranged kernels on the first shape of
// BenchmarkAttention with rows cut into examples of 64 positions (packed rows).
func BenchmarkAttentionRanges(b *testing.B) {
	r := rand.New(rand.NewPCG(1, 2))
	B, T, C, H := 8, 256, 384, 6
	qkv, dout := randSlice(r, B*T*3*C, 1), randSlice(r, B*T*C, 1)
	out, lse, dqkv := make([]float32, B*T*C), make([]float32, B*H*T), make([]float32, len(qkv))
	start := make([]int32, B*T)
	for i := range start {
		t := i % T
		start[i] = int32(t - t%64)
	}
	be := NewCPU()
	b.ReportAllocs()
	for b.Loop() {
		be.AttentionForwardRanges(out, lse, qkv, start, B, T, C, H)
		be.AttentionBackwardRanges(dqkv, dout, qkv, out, lse, start, B, T, C, H)
	}
}
