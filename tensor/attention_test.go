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
