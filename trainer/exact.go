package trainer

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/bits"
)

// Exact mode (Spec.Exact): the summed gradient of a step does not depend on how the
// streams are spread over ranks, so the weights are bit-identical for every world
// size and after any fault.
//
// Float addition is not associative: a rank that pre-sums its streams' gradients and a
// ring that sums the ranks' partial sums give bits that depend on which rank owns
// which stream. In exact mode each stream's gradient (already scaled by
// 1/GlobalTargets) is converted on its own to fixed point, an int64 count of quanta of
// 2^-ExactGradBits, rounded to nearest even; ranks and the ring add these integers
// (integer addition is associative, so any grouping gives the same sum), and the sum is
// converted back to float32 once, after the all-reduce. The loss sum travels the same
// way, with quanta of 2^-ExactLossBits.
//
// The precision contract:
//
//   - quantum: 2^-40 (about 9.1e-13) per gradient value and stream; the rounding error
//     of the summed gradient is at most M/2 quanta for M streams, an absolute error far
//     below AdamW's eps (1e-8), which already sets the scale under which a gradient
//     value makes no difference to an update.
//   - range: each stream's value must satisfy |g| <= 2^(22-k), where 2^k is the
//     smallest power of two >= M (M = 6: |g| <= 2^19 = 524288). M such values sum to at
//     most 2^62 in magnitude, so no partial sum, in any order, can overflow int64.
//   - beyond it (or NaN, Inf): the step fails with ErrExactRange naming the step,
//     stream, slab index and value; nothing is clamped or wrapped. A gradient that large
//     is a diverged run, which the float path also stops (its norm is then not finite).
const (
	// ExactGradBits is the number of fractional bits of a gradient value in fixed
	// point: the quantum is 2^-ExactGradBits.
	ExactGradBits = 40
	// ExactLossBits is the number of fractional bits of a stream's loss sum.
	ExactLossBits = 24
)

// ErrExactRange reports, in exact mode, a gradient value or loss sum of one stream
// outside the fixed-point range (see ExactGradBits): the step cannot be summed exactly.
var ErrExactRange = errors.New("trainer: value outside the exact-mode fixed-point range")

// exactLimit returns the largest magnitude, in quanta, that one of streams
// contributions may have: 2^(62-k) with 2^k the smallest power of two >= streams,
// so that the sum of all contributions stays within 2^62.
func exactLimit(streams int) float64 {
	k := bits.Len(uint(max(streams, 1) - 1))
	return math.Ldexp(1, 62-k)
}

// ExactGradLimit returns the largest gradient magnitude one stream may contribute in
// exact mode for a job of streams streams.
func ExactGradLimit(streams int) float64 {
	return math.Ldexp(exactLimit(streams), -ExactGradBits)
}

// GradientsExact is Gradients in exact mode: it sets acc (one int64 per gradient
// value, owned by the caller) to the fixed-point sum of the gradients of the given
// streams' micro-batches at step, each converted on its own, and returns the
// fixed-point sum of their token losses (ExactLossSum converts it). ready is called,
// as by Gradients, for each range of the last micro-batch once its values are in acc;
// the ranges tile the slab. The model's float32 gradients are scratch: their contents
// afterwards are unspecified until ExactGrads fills them. A value outside the range
// returns an error wrapping ErrExactRange. For the reward and dpo objectives it sets
// t.PrefFixed to the fixed-point sum of the streams' preference measures (each
// converted on its own) and t.Pref to their float sum.
func (t *Trainer) GradientsExact(ctx context.Context, step int64, streams []int, acc []int64, ready func(lo, hi int)) (lossSum int64, err error) {
	g := t.Model.Grads.Slab
	if len(acc) != len(g) {
		return 0, fmt.Errorf("trainer: exact accumulator of %d values for %d gradients", len(acc), len(g))
	}
	if t.ppo != nil {
		_, lossSum, err := t.ppoGradients(ctx, step, streams, ready, acc)
		return lossSum, err
	}
	if len(streams) == 0 {
		clear(acc)
	}
	limit := exactLimit(t.Spec.Streams)
	var pref PrefStats
	t.PrefFixed = PrefFixed{}
	defer func() { t.Pref = pref }()
	for i, stream := range streams {
		last := i == len(streams)-1
		taken := 0
		var takeErr error
		take := func(lo, hi int) {
			taken += hi - lo
			if takeErr != nil {
				return
			}
			// The first stream stores into acc, the others add: one pass less over it.
			if j, ok := toFixed(acc[lo:hi], g[lo:hi], ExactGradBits, limit, i > 0); !ok {
				takeErr = fmt.Errorf("%w: step %d stream %d: gradient value %g at index %d is outside ±%g",
					ErrExactRange, step, stream, g[lo+j], lo+j, ExactGradLimit(t.Spec.Streams))
				return
			}
			if last && ready != nil {
				ready(lo, hi)
			}
		}
		sum, err := t.Gradients(ctx, step, streams[i:i+1], take)
		if err != nil {
			return 0, err
		}
		if takeErr != nil {
			return 0, takeErr
		}
		if taken != len(g) {
			return 0, fmt.Errorf("trainer: exact mode: backward reported %d of %d gradient values final", taken, len(g))
		}
		q := math.Ldexp(sum, ExactLossBits)
		if !(math.Abs(q) <= limit) {
			return 0, fmt.Errorf("%w: step %d stream %d: loss sum %g is outside ±%g", ErrExactRange, step, stream, sum, math.Ldexp(limit, -ExactLossBits))
		}
		lossSum += int64(math.RoundToEven(q))
		pf, err := t.Pref.fixed(limit)
		if err != nil {
			return 0, fmt.Errorf("step %d stream %d: %w", step, stream, err)
		}
		pref, t.PrefFixed = pref.Add(t.Pref), t.PrefFixed.Add(pf)
	}
	return lossSum, nil
}

// toFixed converts src to fixed point with the given fractional bits (rounded to
// nearest even) and adds it into dst, or with add false stores it there. It stops
// at the first value whose magnitude in quanta exceeds limit (or that is NaN) and
// returns its index and false.
func toFixed(dst []int64, src []float32, fracBits int, limit float64, add bool) (int, bool) {
	scale := math.Ldexp(1, fracBits)
	src = src[:len(dst)]
	for i, v := range src {
		q := float64(v) * scale // exact: a power-of-two scale of a float32 fits a float64
		if !(math.Abs(q) <= limit) {
			return i, false
		}
		if add {
			dst[i] += int64(math.RoundToEven(q))
		} else {
			dst[i] = int64(math.RoundToEven(q))
		}
	}
	return 0, true
}

// ExactGrads sets the model's gradients to the float32 values of the fixed-point sum
// acc (all streams' gradients, after the all-reduce), ready for Apply. The conversion
// is a pure function of acc, so every rank gets the same bits.
func (t *Trainer) ExactGrads(acc []int64) {
	g := t.Model.Grads.Slab
	scale := math.Ldexp(1, -ExactGradBits)
	for i, q := range acc[:len(g)] {
		g[i] = float32(float64(q) * scale)
	}
}

// ExactLossSum converts a fixed-point loss sum (GradientsExact's, summed over the
// streams) to the sum of token losses MeanLoss takes.
func ExactLossSum(q int64) float64 { return math.Ldexp(float64(q), -ExactLossBits) }

// StepGradients computes the summed gradient of streams at step into the model's
// gradients, as the spec asks: Gradients (float32 accumulation) or, in exact mode,
// GradientsExact followed by ExactGrads. It returns the sum of the token losses; t.Pref
// holds the step's preference measures (in exact mode those of t.PrefFixed, as a
// cluster's exact summary gives them). It is the single process's step; a worker
// calls the two halves around its all-reduce.
func (t *Trainer) StepGradients(ctx context.Context, step int64, streams []int) (lossSum float64, err error) {
	if !t.Spec.Exact {
		return t.Gradients(ctx, step, streams, nil)
	}
	if len(t.exactAcc) != len(t.Model.Grads.Slab) {
		t.exactAcc = make([]int64, len(t.Model.Grads.Slab))
	}
	q, err := t.GradientsExact(ctx, step, streams, t.exactAcc, nil)
	if err != nil {
		return 0, err
	}
	t.ExactGrads(t.exactAcc)
	t.Pref = t.PrefFixed.Stats()
	return ExactLossSum(q), nil
}
