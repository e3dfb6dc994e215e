package trainer

import (
	"context"
	"fmt"
)

// ValSource yields the evaluation batches: a fixed, deterministic sequence of (b,T)
// windows of the validation split.
type ValSource interface {
	Len() int
	Batch(ctx context.Context, i int, inputs, targets []int32) error
}

// Evaluate returns the mean loss per target token over every batch of val. It runs
// forward passes only and leaves the gradients untouched. The masked objective masks
// each evaluation batch the same way every time it is evaluated.
func (t *Trainer) Evaluate(ctx context.Context, val ValSource) (float64, error) {
	loss, _, err := t.evaluate(ctx, val)
	return loss, err
}

// evaluate is Evaluate that also returns the number of target tokens the mean is
// over: every position for the causal objective, the masked ones for the masked, the
// trained (answer) tokens for sft.
func (t *Trainer) evaluate(ctx context.Context, val ValSource) (float64, int64, error) {
	return t.evaluateWith(ctx, val, nil)
}

// evaluateWith is evaluate calling after, when not nil, following each batch's forward
// pass with the batch's targets (the model's Logits then hold its probabilities).
func (t *Trainer) evaluateWith(ctx context.Context, val ValSource, after func(targets []int32)) (float64, int64, error) {
	if t.pref != nil {
		ev, err := t.EvaluatePreference(ctx, val)
		return ev.Loss, ev.Pairs, err
	}
	s := t.Spec
	var sum float64
	var count int
	packed, _ := val.(PackedValSource)
	if packed != nil && !packed.Packed() {
		packed = nil
	}
	for i := 0; i < val.Len(); i++ {
		if err := ctx.Err(); err != nil {
			return 0, 0, err
		}
		var err error
		if packed != nil {
			err = packed.BatchPacked(ctx, i, t.inputs, t.targets, t.start)
		} else {
			err = val.Batch(ctx, i, t.inputs, t.targets)
		}
		if err != nil {
			return 0, 0, fmt.Errorf("eval batch %d: %w", i, err)
		}
		causal := s.Objective != MaskedLM
		if !causal {
			T := s.SeqLen
			for r := 0; r < s.MicroBatch; r++ {
				MaskRow(t.inputs[r*T:(r+1)*T], t.targets[r*T:(r+1)*T], s.MaskRate, t.maskID, s.Model.VocabSize, maskRNG(s.Seed, maskEval, i, 0, r))
			}
		}
		var l float64
		var n int
		if packed != nil {
			l, n, err = t.Model.ForwardPacked(t.inputs, t.targets, t.start, s.MicroBatch, s.SeqLen)
		} else {
			l, n, err = t.Model.Forward(t.inputs, t.targets, s.MicroBatch, s.SeqLen, causal)
		}
		if err != nil {
			return 0, 0, fmt.Errorf("eval batch %d: %w", i, err)
		}
		sum += l
		count += n
		if after != nil {
			after(t.targets)
		}
	}
	if count == 0 {
		return 0, 0, fmt.Errorf("evaluation has no target tokens (%d batches)", val.Len())
	}
	return sum / float64(count), int64(count), nil
}
