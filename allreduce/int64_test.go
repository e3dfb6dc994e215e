package allreduce

import (
	"errors"
	"math"
	"math/rand/v2"
	"testing"
	"time"
)

// TestAllReduceInt64IsTheExactSum checks the integer all-reduce against the
// plain integer sum for world sizes 1..8, segment sizes down to one element and
// buffer lengths around the chunk and segment boundaries: every rank ends with
// exactly the sum, whatever the world size or segment size.
func TestAllReduceInt64IsTheExactSum(t *testing.T) {
	rng := rand.New(rand.NewPCG(seedFor(t), 3))
	ctx := ctxTimeout(t, time.Minute)
	for world := 1; world <= 8; world++ {
		for _, segBytes := range []int{4, 8, 8 * (1 + rng.IntN(9)), 0} {
			rings, _ := makeRings(t, world, Config{Generation: 3, SegmentBytes: segBytes})
			for _, n := range []int{0, 1, world, 2*world + 1, 1 + rng.IntN(3000)} {
				in := make([][]int64, world)
				want := make([]int64, n)
				for r := range in {
					in[r] = make([]int64, n)
					for i := range in[r] {
						in[r][i] = rng.Int64N(1<<60) - 1<<59
						want[i] += in[r][i]
					}
				}
				res := onAll(rings, func(rank int, r *Ring) error { return r.AllReduceInt64(ctx, in[rank]) })
				for rank, x := range res {
					if x.err != nil {
						t.Fatalf("world %d n %d seg %d: rank %d: %v", world, n, segBytes, rank, x.err)
					}
					for i, v := range in[rank] {
						if v != want[i] {
							t.Fatalf("world %d n %d seg %d: rank %d element %d = %d, want %d", world, n, segBytes, rank, i, v, want[i])
						}
					}
				}
			}
			for _, r := range rings {
				r.Close()
			}
		}
	}
}

// TestAllReduceInt64MixesWithFloat checks that integer and float32 operations
// interleave on one ring (the worker reduces its gradient buckets as integers
// and nothing else changes), and that bf16 compression leaves integers exact.
func TestAllReduceInt64MixesWithFloat(t *testing.T) {
	for _, c := range []Compression{NoCompression, CompressBF16} {
		t.Run(c.String(), func(t *testing.T) { mixInt64AndFloat(t, c) })
	}
}

func mixInt64AndFloat(t *testing.T, c Compression) {
	const world = 3
	rings, _ := makeRings(t, world, Config{Generation: 1, SegmentBytes: 64, Compression: c})
	ctx := ctxTimeout(t, 30*time.Second)
	ints := make([][]int64, world)
	floats := make([][]float32, world)
	for r := range world {
		ints[r] = []int64{int64(r + 1), -int64(r), 1 << 40}
		floats[r] = []float32{float32(r), 0.5}
	}
	res := onAll(rings, func(rank int, r *Ring) error {
		h1 := r.StartInt64(ctx, ints[rank])
		h2 := r.Start(ctx, floats[rank])
		if err := h1.Wait(); err != nil {
			return err
		}
		return h2.Wait()
	})
	for rank, x := range res {
		if x.err != nil {
			t.Fatalf("rank %d: %v", rank, x.err)
		}
		if got := ints[rank]; got[0] != 6 || got[1] != -3 || got[2] != 3<<40 {
			t.Errorf("rank %d: integers %v, want [6 -3 %d]", rank, got, int64(3<<40))
		}
		if got := floats[rank]; got[0] != 3 || got[1] != 1.5 {
			t.Errorf("rank %d: floats %v, want [3 1.5]", rank, got)
		}
	}
}

// TestAllReduceInt64Overflow checks that a sum leaving the int64 range fails
// the operation on every rank with ErrOverflow (where it was found) or as a
// lost peer (the failure travelling round the ring), never wraps.
func TestAllReduceInt64Overflow(t *testing.T) {
	const world = 3
	rings, _ := makeRings(t, world, Config{Generation: 1})
	ctx := ctxTimeout(t, 30*time.Second)
	in := make([][]int64, world)
	for r := range in {
		in[r] = []int64{1, math.MaxInt64 / 2, 5}
	}
	res := onAll(rings, func(rank int, r *Ring) error { return r.AllReduceInt64(ctx, in[rank]) })
	requireAll(t, res, 10*time.Second, ErrOverflow, ErrPeerLost, ErrClosed)
	found := false
	for _, x := range res {
		found = found || errors.Is(x.err, ErrOverflow)
	}
	if !found {
		t.Errorf("no rank reported ErrOverflow: %v", res)
	}
}

func TestAddInt64ToOverflow(t *testing.T) {
	for _, c := range []struct {
		a, b     int64
		overflow bool
	}{
		{1, 2, false},
		{math.MaxInt64, 0, false},
		{math.MaxInt64, 1, true},
		{math.MinInt64, -1, true},
		{math.MinInt64, math.MaxInt64, false},
		{math.MaxInt64 / 2, math.MaxInt64/2 + 1, false},
		{math.MaxInt64/2 + 1, math.MaxInt64/2 + 1, true},
		{-5, 3, false},
	} {
		dst := []int64{0, c.a, 7}
		of := addInt64To(dst, []int64{0, c.b, -7})
		if of != c.overflow {
			t.Errorf("%d + %d: overflow %v, want %v", c.a, c.b, of, c.overflow)
		}
		if !c.overflow && (dst[1] != c.a+c.b || dst[2] != 0) {
			t.Errorf("%d + %d = %v", c.a, c.b, dst)
		}
	}
}
