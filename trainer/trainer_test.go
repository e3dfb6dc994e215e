package trainer

import (
	"context"
	"runtime"
	"slices"
	"testing"

	"github.com/ringtrain/ringtrain/model"
)

// TestGradientsAccumulateToTheGlobalBatch checks that the gradient summed over M=3
// streams of b=2 sequences is the gradient of one forward/backward over the same 6
// sequences, i.e. that every micro-batch is scaled by the global target count.
func TestGradientsAccumulateToTheGlobalBatch(t *testing.T) {
	data := prepareData(t)
	for _, obj := range []Objective{CausalLM, MaskedLM} {
		t.Run(string(obj), func(t *testing.T) {
			spec := tinySpec(data, t.TempDir())
			spec.Objective, spec.Streams, spec.MicroBatch = obj, 3, 2
			tr, p := newTrainer(t, spec)
			s := tr.Spec
			const step = 5
			ctx := context.Background()

			readies := 0
			lossSum, err := tr.Gradients(ctx, step, s.AllStreams(), func(lo, hi int) { readies++ })
			if err != nil {
				t.Fatal(err)
			}
			if want := s.Model.Layers + 2; readies != want {
				t.Errorf("ready called %d times, want %d (the last micro-batch's backward only)", readies, want)
			}

			// The same 6 sequences as one batch of B=6, masked as Gradients masks them.
			B, T := s.Streams*s.MicroBatch, s.SeqLen
			inputs, targets := make([]int32, B*T), make([]int32, B*T)
			for m := range s.Streams {
				in, tg := inputs[m*s.MicroBatch*T:(m+1)*s.MicroBatch*T], targets[m*s.MicroBatch*T:(m+1)*s.MicroBatch*T]
				if err := p.Loader.Batch(ctx, m, step, in, tg); err != nil {
					t.Fatal(err)
				}
				if obj == MaskedLM {
					for r := range s.MicroBatch {
						MaskRow(in[r*T:(r+1)*T], tg[r*T:(r+1)*T], s.MaskRate, tr.maskID, s.Model.VocabSize, maskRNG(s.Seed, maskTrain, m, step, r))
					}
				}
			}
			one, err := model.New(s.Model, nil)
			if err != nil {
				t.Fatal(err)
			}
			copy(one.Params.Slab, tr.Model.Params.Slab)
			sum, count, err := one.Forward(inputs, targets, B, T, obj == CausalLM)
			if err != nil {
				t.Fatal(err)
			}
			if want := tr.GlobalTargets(step); count != want {
				t.Fatalf("the batch has %d targets, GlobalTargets says %d", count, want)
			}
			if obj == CausalLM && count != B*T {
				t.Fatalf("causal batch has %d targets, want B*T = %d", count, B*T)
			}
			if err := one.Backward(float32(1/float64(count)), nil); err != nil {
				t.Fatal(err)
			}
			if d := (lossSum - sum) / sum; d > 1e-6 || d < -1e-6 {
				t.Errorf("loss sum over streams %v, over one batch %v", lossSum, sum)
			}
			if model.GradNorm(one.Grads.Slab) == 0 {
				t.Fatal("the reference gradient is zero")
			}
			if d := relL2(tr.Model.Grads.Slab, one.Grads.Slab); d > 1e-5 {
				t.Errorf("accumulated gradient differs from the one-batch gradient by %.3g (relative L2)", d)
			}
		})
	}
}

// TestGradientsZeroesFirst checks that Gradients does not add to a stale gradient.
func TestGradientsZeroesFirst(t *testing.T) {
	tr, _ := newTrainer(t, tinySpec(prepareData(t), t.TempDir()))
	ctx := context.Background()
	if _, err := tr.Gradients(ctx, 0, tr.Spec.AllStreams(), nil); err != nil {
		t.Fatal(err)
	}
	first := slices.Clone(tr.Model.Grads.Slab)
	if _, err := tr.Gradients(ctx, 0, tr.Spec.AllStreams(), nil); err != nil {
		t.Fatal(err)
	}
	if i := firstBitDiff(first, tr.Model.Grads.Slab); i >= 0 {
		t.Fatalf("the second Gradients of the same step differs at %d: %v vs %v", i, tr.Model.Grads.Slab[i], first[i])
	}
}

// trainSteps runs n optimizer steps of spec with GOMAXPROCS set to procs and returns
// the parameters and optimizer moments.
func trainSteps(t *testing.T, spec Spec, n, procs int) (params, m, v []float32) {
	t.Helper()
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(procs))
	tr, _ := newTrainer(t, spec)
	for range n {
		if _, err := tr.Gradients(context.Background(), tr.Step, tr.Spec.AllStreams(), nil); err != nil {
			t.Fatal(err)
		}
		if _, _, err := tr.Apply(); err != nil {
			t.Fatal(err)
		}
	}
	return tr.Model.Params.Slab, tr.Opt.M, tr.Opt.V
}

// TestStepsAreBitIdenticalAcrossThreadCounts checks the determinism the distributed
// trainer relies on: the same job gives the same bits whatever GOMAXPROCS is. The
// micro-batch (3 x 16 = 48 rows) and widths (3C = 96, 4C = 128) are large enough for
// the CPU kernels to split their work over 2 and 3 threads.
func TestStepsAreBitIdenticalAcrossThreadCounts(t *testing.T) {
	data := prepareData(t)
	for _, obj := range []Objective{CausalLM, MaskedLM} {
		t.Run(string(obj), func(t *testing.T) {
			spec := tinySpec(data, t.TempDir())
			spec.Objective, spec.Streams, spec.MicroBatch = obj, 2, 3
			p1, m1, v1 := trainSteps(t, spec, 3, 1)
			for _, procs := range []int{2, 3} {
				p, m, v := trainSteps(t, spec, 3, procs)
				for name, pair := range map[string][2][]float32{"params": {p1, p}, "exp_avg": {m1, m}, "exp_avg_sq": {v1, v}} {
					if i := firstBitDiff(pair[0], pair[1]); i >= 0 {
						t.Errorf("GOMAXPROCS 1 vs %d: %s differ first at %d: %v vs %v", procs, name, i, pair[0][i], pair[1][i])
					}
				}
			}
		})
	}
}

// TestMaskedTargetsMatchGlobalTargets checks that GlobalTargets, which counts masked
// positions without reading data, equals the targets the masking of every stream
// actually produces, step after step, and that masking is deterministic.
func TestMaskedTargetsMatchGlobalTargets(t *testing.T) {
	spec := tinySpec(prepareData(t), t.TempDir())
	spec.Objective, spec.Streams, spec.MicroBatch, spec.MaskRate = MaskedLM, 3, 2, 0.3
	tr, p := newTrainer(t, spec)
	s := tr.Spec
	ctx := context.Background()
	n := s.MicroBatch * s.SeqLen
	orig, origTargets := make([]int32, n), make([]int32, n)
	prevMask := map[int][]bool{} // chosen positions of each stream at the previous step
	for step := int64(0); step < 6; step++ {
		got := 0
		for m := range s.Streams {
			// Gradients over one stream leaves that stream's masked micro-batch in the
			// trainer's buffers.
			if _, err := tr.Gradients(ctx, step, []int{m}, nil); err != nil {
				t.Fatal(err)
			}
			inputs, targets := slices.Clone(tr.inputs), slices.Clone(tr.targets)
			if err := p.Loader.Batch(ctx, m, step, orig, origTargets); err != nil {
				t.Fatal(err)
			}
			masked, changed := 0, 0
			for i := range targets {
				switch {
				case targets[i] == -1:
					if inputs[i] != orig[i] {
						t.Fatalf("step %d stream %d position %d: unmasked input changed %d -> %d", step, m, i, orig[i], inputs[i])
					}
				case targets[i] != orig[i]:
					t.Fatalf("step %d stream %d position %d: target %d, want the original token %d", step, m, i, targets[i], orig[i])
				default:
					masked++
					if inputs[i] != orig[i] {
						changed++
					}
				}
			}
			if masked > 0 && changed == 0 {
				t.Errorf("step %d stream %d: %d positions chosen but no input replaced", step, m, masked)
			}
			got += masked

			if _, err := tr.Gradients(ctx, step, []int{m}, nil); err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(inputs, tr.inputs) || !slices.Equal(targets, tr.targets) {
				t.Fatalf("step %d stream %d: masking the same micro-batch twice differs", step, m)
			}
			chosen := make([]bool, n)
			for i, tg := range targets {
				chosen[i] = tg >= 0
			}
			if prev, ok := prevMask[m]; ok && slices.Equal(prev, chosen) {
				t.Errorf("stream %d: step %d masks the same positions as step %d", m, step, step-1)
			}
			prevMask[m] = chosen
		}
		if want := tr.GlobalTargets(step); got != want {
			t.Errorf("step %d: masking produced %d targets, GlobalTargets says %d", step, got, want)
		}
		if got == 0 {
			t.Errorf("step %d: no position masked at rate %v", step, s.MaskRate)
		}
	}
}
