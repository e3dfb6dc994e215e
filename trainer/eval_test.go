package trainer

import (
	"context"
	"math"
	"slices"
	"testing"
)

// TestEvaluateIsRepeatableAndLeavesGradients checks that Evaluate gives the same bits
// each time (the masked objective masks each batch the same way) and does not touch
// the gradients.
func TestEvaluateIsRepeatableAndLeavesGradients(t *testing.T) {
	data := prepareData(t)
	for _, obj := range []Objective{CausalLM, MaskedLM} {
		t.Run(string(obj), func(t *testing.T) {
			spec := tinySpec(data, t.TempDir())
			spec.Objective, spec.EvalBatches = obj, 3
			tr, p := newTrainer(t, spec)
			if p.Val == nil || p.Val.Len() != 3 {
				t.Fatalf("validation iterator %v, want 3 batches", p.Val)
			}
			ctx := context.Background()
			if _, err := tr.Gradients(ctx, 0, tr.Spec.AllStreams(), nil); err != nil {
				t.Fatal(err)
			}
			grads := slices.Clone(tr.Model.Grads.Slab)
			first, err := tr.Evaluate(ctx, p.Val)
			if err != nil {
				t.Fatal(err)
			}
			second, err := tr.Evaluate(ctx, p.Val)
			if err != nil {
				t.Fatal(err)
			}
			if math.Float64bits(first) != math.Float64bits(second) {
				t.Errorf("two evaluations: %v and %v", first, second)
			}
			if !(first > 3 && first < 5.5) {
				t.Errorf("untrained loss %v, want about ln(61) = 4.1 (61 characters)", first)
			}
			if i := firstBitDiff(grads, tr.Model.Grads.Slab); i >= 0 {
				t.Errorf("Evaluate changed the gradient at %d", i)
			}
		})
	}
}
