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

// Evaluate returns the mean loss per target token over every batch of val (and the
// rows after its last whole batch, see evaluateWith). It runs
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
//
// It evaluates every batch of val and, when val also has rows after its last whole
// batch (shard.ValIterator.Tail), those too, in a batch of the usual shape whose
// other rows have no target, so that every row of the split counts, as
// EvaluatePreference counts every pair.
func (t *Trainer) evaluateWith(ctx context.Context, val ValSource, after func(targets []int32)) (float64, int64, error) {
	if t.pref != nil {
		ev, err := t.EvaluatePreference(ctx, val)
		return ev.Loss, ev.Pairs, err
	}
	var sum float64
	var count int
	packed, _ := val.(PackedValSource)
	if packed != nil && !packed.Packed() {
		packed = nil
	}
	add := func(l float64, n int) {
		sum += l
		count += n
		if after != nil {
			after(t.targets)
		}
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
		l, n, err := t.evalForward(i, t.Spec.MicroBatch, packed != nil)
		if err != nil {
			return 0, 0, fmt.Errorf("eval batch %d: %w", i, err)
		}
		add(l, n)
	}
	batches := val.Len()
	if vt, ok := val.(valTail); ok && vt.Tail() > 0 {
		rows := vt.Tail()
		if err := t.fillTail(ctx, vt, packed); err != nil {
			return 0, 0, fmt.Errorf("eval: the last %d rows: %w", rows, err)
		}
		l, n, err := t.evalForward(batches, rows, packed != nil)
		if err != nil {
			return 0, 0, fmt.Errorf("eval: the last %d rows: %w", rows, err)
		}
		add(l, n)
		batches++
	}
	if count == 0 {
		return 0, 0, fmt.Errorf("evaluation has no target tokens (%d batches)", batches)
	}
	return sum / float64(count), int64(count), nil
}

// packedValTail is a valTail whose rows are packed (shard.ValIterator on a packed
// dataset): BatchTailPacked also fills the tail rows' example starts.
type packedValTail interface {
	BatchTailPacked(ctx context.Context, inputs, targets, start []int32) error
}

// fillTail fills the first Tail() rows of the trainer's batch buffers with the rows
// after val's last whole batch, and the others with rows that count for nothing:
// token 0, no target, one example a row.
func (t *Trainer) fillTail(ctx context.Context, vt valTail, packed PackedValSource) error {
	clear(t.inputs)
	clear(t.start)
	for i := range t.targets {
		t.targets[i] = -1
	}
	if packed == nil {
		return vt.BatchTail(ctx, t.inputs, t.targets)
	}
	pt, ok := vt.(packedValTail)
	if !ok {
		return fmt.Errorf("%w: packed evaluation rows without their example starts", ErrBadSpec)
	}
	return pt.BatchTailPacked(ctx, t.inputs, t.targets, t.start)
}

// evalForward runs evaluation batch i, whose first rows rows are in the trainer's
// buffers, forward and returns its loss sum and target count. The masked objective
// masks those rows as every evaluation masks batch i.
func (t *Trainer) evalForward(i, rows int, packed bool) (float64, int, error) {
	s := t.Spec
	causal := s.Objective != MaskedLM
	if !causal {
		T := s.SeqLen
		for r := 0; r < rows; r++ {
			MaskRow(t.inputs[r*T:(r+1)*T], t.targets[r*T:(r+1)*T], s.MaskRate, t.maskID, s.Model.VocabSize, maskRNG(s.Seed, maskEval, i, 0, r))
		}
	}
	if packed {
		return t.Model.ForwardPacked(t.inputs, t.targets, t.start, s.MicroBatch, s.SeqLen)
	}
	return t.Model.Forward(t.inputs, t.targets, s.MicroBatch, s.SeqLen, causal)
}
