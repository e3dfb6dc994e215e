package tensor

import (
	"fmt"
	"math/rand/v2"
	"runtime"
	"slices"
	"testing"
)

// decodeShape is one decode attention call: T new positions after pos0 cached ones in a
// cache of maxT rows, hs = C/H.
type decodeShape struct{ T, pos0, maxT, C, H int }

// decodeInputs returns random queries, keys and values for s, caches of maxT rows whose
// first pos0 rows are random (the rest stale), and a stale out.
func decodeInputs(r *rand.Rand, s decodeShape) (out, kc, vc, qkv []float32) {
	return randSlice(r, s.T*s.C, 1), randSlice(r, s.maxT*s.C, 1), randSlice(r, s.maxT*s.C, 1), randSlice(r, s.T*3*s.C, 1)
}

// TestAttentionDecodeMatchesNaive compares the decode attention kernel with the naive
// one on single tokens and chunks, at the start of the cache and deep into it, with one
// head and several, below and above the size at which heads run in parallel.
func TestAttentionDecodeMatchesNaive(t *testing.T) {
	r := rand.New(rand.NewPCG(41, 42))
	shapes := []decodeShape{
		{1, 0, 1, 8, 1}, {1, 0, 16, 12, 3}, {1, 9, 16, 12, 3}, {5, 0, 8, 16, 2}, {7, 20, 40, 32, 4},
		{1, 200, 256, 128, 4}, {64, 100, 256, 64, 2}, {3, 61, 64, 20, 5},
	}
	for range 12 {
		H := 1 + r.IntN(4)
		maxT := 1 + r.IntN(300)
		T := 1 + r.IntN(min(maxT, 64))
		shapes = append(shapes, decodeShape{T: T, pos0: r.IntN(maxT - T + 1), maxT: maxT, C: H * (1 + r.IntN(24)), H: H})
	}
	for _, s := range shapes {
		t.Run(fmt.Sprintf("T%d_pos%d_max%d_C%d_H%d", s.T, s.pos0, s.maxT, s.C, s.H), func(t *testing.T) {
			out, kc, vc, qkv := decodeInputs(r, s)
			wantOut, wantK, wantV := make([]float32, len(out)), slices.Clone(kc), slices.Clone(vc)
			NewCPU().AttentionDecodeForward(out, kc, vc, qkv, s.T, s.pos0, s.C, s.H)
			NaiveAttentionDecodeForward(wantOut, wantK, wantV, qkv, s.T, s.pos0, s.C, s.H)
			if i := firstDiff(kc, wantK); i >= 0 {
				t.Fatalf("key cache differs at %d", i)
			}
			if i := firstDiff(vc, wantV); i >= 0 {
				t.Fatalf("value cache differs at %d", i)
			}
			closeTo(t, "out", out, wantOut, 1e-5)
		})
	}
}

// TestAttentionDecodeMatchesAttentionForward decodes a sequence chunk by chunk over
// the cache and compares every position with causal AttentionForward over the whole
// sequence.
func TestAttentionDecodeMatchesAttentionForward(t *testing.T) {
	r := rand.New(rand.NewPCG(43, 44))
	for _, s := range []attnShape{{1, 1, 8, 1}, {1, 50, 24, 3}, {1, attnKeyBlock + 20, 32, 4}} {
		t.Run(fmt.Sprintf("T%d_C%d_H%d", s.T, s.C, s.H), func(t *testing.T) {
			T, C, H := s.T, s.C, s.H
			qkv := randSlice(r, T*3*C, 1)
			want, lse := make([]float32, T*C), make([]float32, H*T)
			NewCPU().AttentionForward(want, lse, qkv, 1, T, C, H, true)
			got, kc, vc := make([]float32, T*C), make([]float32, T*C), make([]float32, T*C)
			for pos := 0; pos < T; {
				n := min(T-pos, 1+r.IntN(20))
				NewCPU().AttentionDecodeForward(got[pos*C:], kc, vc, qkv[pos*3*C:], n, pos, C, H)
				pos += n
			}
			closeTo(t, "out", got, want, 1e-5)
		})
	}
}

// TestAttentionDecodeThreadCountIndependent checks bit-identical results with 1, 2 and
// 3 threads on a call large enough for the heads to run in parallel.
func TestAttentionDecodeThreadCountIndependent(t *testing.T) {
	r := rand.New(rand.NewPCG(45, 46))
	s := decodeShape{T: 16, pos0: 180, maxT: 256, C: 96, H: 6}
	if s.T*(s.pos0+s.T)*s.C < decodeParallelWork {
		t.Fatal("shape below the parallel threshold")
	}
	out0, kc0, vc0, qkv := decodeInputs(r, s)
	run := func(procs int) []float32 {
		defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(procs))
		out, kc, vc := slices.Clone(out0), slices.Clone(kc0), slices.Clone(vc0)
		NewCPU().AttentionDecodeForward(out, kc, vc, qkv, s.T, s.pos0, s.C, s.H)
		return out
	}
	o1 := run(1)
	for _, procs := range []int{2, 3} {
		if i := firstDiff(o1, run(procs)); i >= 0 {
			t.Errorf("out differs at %d between 1 and %d threads", i, procs)
		}
	}
}
