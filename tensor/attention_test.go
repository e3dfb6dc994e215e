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

// TestAttentionMatchesNaive compares the blocked attention kernels with the naive ones
// on sequence lengths below, at and across the block size, causal and not.
func TestAttentionMatchesNaive(t *testing.T) {
	forEachKernel(t, func(t *testing.T) {
		r := rand.New(rand.NewPCG(31, 32))
		be := NewCPU()
		for _, s := range [][4]int{{1, 1, 8, 1}, {2, 7, 12, 3}, {1, 42, 16, 2}, {2, 43, 32, 4}, {1, 100, 48, 3}, {1, 130, 64, 1}} {
			for _, causal := range []bool{true, false} {
				B, T, C, H := s[0], s[1], s[2], s[3]
				t.Run(fmt.Sprintf("B%d_T%d_C%d_H%d_causal=%v", B, T, C, H, causal), func(t *testing.T) {
					qkv, dout := randSlice(r, B*T*3*C, 1), randSlice(r, B*T*C, 1)
					out, att := make([]float32, B*T*C), randSlice(r, B*H*T*T, 1) // stale att must be overwritten
					wantOut, wantAtt := make([]float32, B*T*C), make([]float32, B*H*T*T)
					be.AttentionForward(out, att, qkv, B, T, C, H, causal)
					NaiveAttentionForward(wantOut, wantAtt, qkv, B, T, C, H, causal)
					closeTo(t, "out", out, wantOut, 1e-5)
					closeTo(t, "att", att, wantAtt, 1e-5)
					d0 := randSlice(r, len(qkv), 1) // backward adds into what is there
					dqkv, want := append([]float32(nil), d0...), append([]float32(nil), d0...)
					be.AttentionBackward(dqkv, dout, qkv, att, B, T, C, H, causal)
					NaiveAttentionBackward(want, dout, qkv, wantAtt, B, T, C, H, causal)
					closeTo(t, "dqkv", dqkv, want, 1e-4)
				})
			}
		}
	})
}

// TestAttentionThreadCountIndependent checks bit-identical results with 1 and 3 threads.
func TestAttentionThreadCountIndependent(t *testing.T) {
	r := rand.New(rand.NewPCG(33, 34))
	B, T, C, H := 3, 50, 24, 3
	qkv, dout := randSlice(r, B*T*3*C, 1), randSlice(r, B*T*C, 1)
	run := func(procs int) (out, att, dqkv []float32) {
		defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(procs))
		out, att, dqkv = make([]float32, B*T*C), make([]float32, B*H*T*T), make([]float32, len(qkv))
		NewCPU().AttentionForward(out, att, qkv, B, T, C, H, true)
		NewCPU().AttentionBackward(dqkv, dout, qkv, att, B, T, C, H, true)
		return
	}
	o1, a1, d1 := run(1)
	o3, a3, d3 := run(3)
	for name, pair := range map[string][2][]float32{"out": {o1, o3}, "att": {a1, a3}, "dqkv": {d1, d3}} {
		if i := firstDiff(pair[0], pair[1]); i >= 0 {
			t.Errorf("%s differs at %d between 1 and 3 threads", name, i)
		}
	}
}
