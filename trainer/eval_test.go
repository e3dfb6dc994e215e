package trainer

import (
	"context"
	"math"
	"slices"
	"testing"

	"github.com/ringtrain/ringtrain/shard"
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

// TestEvaluateEveryRow: the evaluation of a causal, an sft and a packed sft
// validation split whose rows are not a whole number of batches scores every row
// (every window of T+1 tokens of a text split, every example row of an sft one):
// the whole batches, then the rows after them in one partial batch. Its loss and
// target count equal those of an evaluation one row per batch (no partial batch),
// and `eval` counts the partial batch among its batches.
func TestEvaluateEveryRow(t *testing.T) {
	for _, tc := range []struct {
		name string
		data func(t testing.TB) string
		T    int
	}{
		{"causal", prepareData, 16},
		{"sft", func(t testing.TB) string { return prepareSFTData(t, 200) }, sftSeq},
		{"sft packed", func(t testing.TB) string {
			return prepareSFTDataWith(t, 200, shard.SFTOptions{SeqLen: 160, MinShards: 3, Pack: true, ValFraction: 0.2})
		}, 160},
	} {
		t.Run(tc.name, func(t *testing.T) {
			data := tc.data(t)
			type result struct {
				loss         float64
				tokens, rows int64
				whole, tail  int
			}
			eval := func(b int) result {
				spec := tinySpec(data, t.TempDir())
				spec.SeqLen, spec.MicroBatch = tc.T, b
				tr, p := newTrainer(t, spec)
				val, err := p.Loader.Val(0)
				if err != nil {
					t.Fatal(err)
				}
				r := result{whole: val.Len(), tail: val.Tail()}
				T := tr.Spec.SeqLen
				// A row is scored when it has a target in the batch the model ran.
				r.loss, r.tokens, err = tr.evaluateWith(t.Context(), val, func(targets []int32) {
					for row := range len(targets) / T {
						if slices.ContainsFunc(targets[row*T:(row+1)*T], func(tg int32) bool { return tg >= 0 }) {
							r.rows++
						}
					}
				})
				if err != nil {
					t.Fatal(err)
				}
				return r
			}
			// The split's rows, from its token count: windows of T+1 tokens every T
			// (text) or example rows of T+1 tokens (sft).
			ds, err := shard.Open(data)
			if err != nil {
				t.Fatal(err)
			}
			var n int64
			for _, v := range ds.Manifest().ValTokens() {
				n += v
			}
			want := (n-int64(tc.T)-1)/int64(tc.T) + 1
			if ds.Manifest().SFT != nil {
				want = n / int64(tc.T+1)
			}
			const b = 7
			if want%b == 0 || want < b {
				t.Fatalf("the validation split has %d rows: the test needs a partial batch of %d", want, b)
			}
			seven, one := eval(b), eval(1)
			if seven.whole != int(want/b) || seven.tail != int(want%b) {
				t.Fatalf("batches of %d: %d whole and a tail of %d rows, want %d and %d", b, seven.whole, seven.tail, want/b, want%b)
			}
			if seven.rows != want || one.rows != want {
				t.Errorf("%d rows scored in batches of %d, %d one row per batch, want every row of the split: %d", seven.rows, b, one.rows, want)
			}
			if seven.tokens != one.tokens || math.Abs(seven.loss-one.loss) > 1e-5*one.loss {
				t.Errorf("batches of %d: loss %v over %d targets; one row per batch: %v over %d", b, seven.loss, seven.tokens, one.loss, one.tokens)
			}
		})
	}
}
