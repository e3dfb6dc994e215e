package trainer

import (
	"context"
	"errors"
	"math"
	"testing"
)

func TestToFixed(t *testing.T) {
	const bits = 4 // quantum 1/16
	limit := 100.0
	for _, c := range []struct {
		name string
		v    float32
		want int64
		ok   bool
	}{
		{"zero", 0, 0, true},
		{"one quantum", 1.0 / 16, 1, true},
		{"half quantum rounds to even (0)", 1.0 / 32, 0, true},
		{"three halves round to even (2)", 3.0 / 32, 2, true},
		{"negative", -2.5, -40, true},
		{"at the limit", 100.0 / 16, 100, true},
		{"beyond the limit", 101.0 / 16, 0, false},
		{"negative beyond", -101.0 / 16, 0, false},
		{"NaN", float32(math.NaN()), 0, false},
		{"Inf", float32(math.Inf(1)), 0, false},
	} {
		dst := []int64{5, 5}
		i, ok := toFixed(dst, []float32{0, c.v}, bits, limit, true)
		if ok != c.ok {
			t.Errorf("%s: ok %v, want %v", c.name, ok, c.ok)
			continue
		}
		if !ok {
			if i != 1 {
				t.Errorf("%s: bad value reported at %d, want 1", c.name, i)
			}
			continue
		}
		if dst[0] != 5 || dst[1] != 5+c.want {
			t.Errorf("%s: dst %v, want [5 %d]", c.name, dst, 5+c.want)
		}
		if _, ok := toFixed(dst, []float32{0, c.v}, bits, limit, false); !ok || dst[0] != 0 || dst[1] != c.want {
			t.Errorf("%s: stored %v, want [0 %d]", c.name, dst, c.want)
		}
	}
}

func TestExactLimit(t *testing.T) {
	for _, c := range []struct {
		streams int
		log2    int
	}{{1, 62}, {2, 61}, {3, 60}, {4, 60}, {6, 59}, {8, 59}, {9, 58}, {1024, 52}} {
		if got := exactLimit(c.streams); got != math.Ldexp(1, c.log2) {
			t.Errorf("%d streams: limit %g, want 2^%d", c.streams, got, c.log2)
		}
		// streams contributions at the limit sum inside int64.
		if float64(c.streams)*exactLimit(c.streams) > math.Ldexp(1, 62) {
			t.Errorf("%d streams can overflow", c.streams)
		}
	}
	if got := ExactGradLimit(6); got != 524288 {
		t.Errorf("ExactGradLimit(6) = %g, want 2^19", got)
	}
}

// TestGradientsExactDoNotDependOnThePartition checks the point of exact mode: the
// fixed-point gradient of 4 streams is the same integers whether one trainer
// computes them all or several compute parts that are then added, and converted
// back it is close to the float32 accumulation.
func TestGradientsExactDoNotDependOnThePartition(t *testing.T) {
	data := prepareData(t)
	for _, obj := range []Objective{CausalLM, MaskedLM} {
		t.Run(string(obj), func(t *testing.T) {
			spec := tinySpec(data, t.TempDir())
			spec.Objective, spec.Streams, spec.MicroBatch, spec.Exact = obj, 4, 1, true
			tr, _ := newTrainer(t, spec)
			ctx := context.Background()
			const step = 3
			n := len(tr.Model.Grads.Slab)
			whole := make([]int64, n)
			readies := 0
			lossWhole, err := tr.GradientsExact(ctx, step, tr.Spec.AllStreams(), whole, func(lo, hi int) { readies++ })
			if err != nil {
				t.Fatal(err)
			}
			if want := spec.Model.Layers + 2; readies != want {
				t.Errorf("ready called %d times, want %d (the last micro-batch's ranges)", readies, want)
			}
			for _, parts := range [][][]int{{{0, 1, 2, 3}}, {{0, 2}, {1, 3}}, {{3}, {0, 1}, {2}}, {{0}, {1}, {2}, {3}}} {
				sum := make([]int64, n)
				var lossSum int64
				part := make([]int64, n)
				for _, streams := range parts {
					l, err := tr.GradientsExact(ctx, step, streams, part, nil)
					if err != nil {
						t.Fatal(err)
					}
					lossSum += l
					for i, v := range part {
						sum[i] += v
					}
				}
				if lossSum != lossWhole {
					t.Errorf("parts %v: loss sum %d, want %d", parts, lossSum, lossWhole)
				}
				for i := range sum {
					if sum[i] != whole[i] {
						t.Fatalf("parts %v: value %d is %d, want %d", parts, i, sum[i], whole[i])
					}
				}
			}
			floatLoss, err := tr.Gradients(ctx, step, tr.Spec.AllStreams(), nil)
			if err != nil {
				t.Fatal(err)
			}
			ref := append([]float32(nil), tr.Model.Grads.Slab...)
			tr.ExactGrads(whole)
			if d := relL2(tr.Model.Grads.Slab, ref); d > 1e-6 {
				t.Errorf("exact gradient differs from the float32 sum by %.3g relative L2", d)
			}
			if got := ExactLossSum(lossWhole); math.Abs(got-floatLoss) > 1e-5*math.Abs(floatLoss) {
				t.Errorf("exact loss sum %v, float %v", got, floatLoss)
			}
		})
	}
}

// TestGradientsExactRefusesNonFinite checks that a gradient that cannot be held in
// fixed point stops the step with ErrExactRange naming it, rather than wrapping.
func TestGradientsExactRefusesNonFinite(t *testing.T) {
	spec := tinySpec(prepareData(t), t.TempDir())
	spec.Streams, spec.MicroBatch, spec.Exact = 2, 1, true
	tr, _ := newTrainer(t, spec)
	for i := range tr.Model.Params.LnfW {
		tr.Model.Params.LnfW[i] = float32(math.Inf(1))
	}
	acc := make([]int64, len(tr.Model.Grads.Slab))
	_, err := tr.GradientsExact(context.Background(), 0, []int{0, 1}, acc, nil)
	if !errors.Is(err, ErrExactRange) {
		t.Fatalf("err = %v, want ErrExactRange", err)
	}
	t.Log(err)
}

// TestRunExactIsDeterministicAndClose checks the single process in exact mode: it
// trains, its weights stay close to the float32 run's, and two runs give the same
// bits.
func TestRunExactIsDeterministicAndClose(t *testing.T) {
	data := prepareData(t)
	run := func(exact bool) []float32 {
		spec := tinySpec(data, t.TempDir())
		spec.Streams, spec.MicroBatch, spec.Exact = 3, 1, exact
		tr, _ := newTrainer(t, spec)
		for tr.Step < spec.Steps {
			if _, err := tr.StepGradients(context.Background(), tr.Step, tr.Spec.AllStreams()); err != nil {
				t.Fatal(err)
			}
			if _, _, err := tr.Apply(); err != nil {
				t.Fatal(err)
			}
		}
		return append([]float32(nil), tr.Model.Params.Slab...)
	}
	a, b, f := run(true), run(true), run(false)
	for i := range a {
		if math.Float32bits(a[i]) != math.Float32bits(b[i]) {
			t.Fatalf("two exact runs differ at %d: %v and %v", i, a[i], b[i])
		}
	}
	if d := relL2(a, f); d > 1e-4 {
		t.Errorf("exact run differs from the float32 run by %.3g relative L2", d)
	}
}

// BenchmarkAddFixed is the per-stream conversion of exact mode: one float32
// gradient value to fixed point, added into the accumulator.
func BenchmarkToFixed(b *testing.B) {
	src := make([]float32, 1<<20)
	for i := range src {
		src[i] = float32(i%1000-500) * 1e-4
	}
	dst := make([]int64, len(src))
	limit := exactLimit(6)
	b.SetBytes(int64(4 * len(src)))
	for b.Loop() {
		if _, ok := toFixed(dst, src, ExactGradBits, limit, true); !ok {
			b.Fatal("out of range")
		}
	}
}
