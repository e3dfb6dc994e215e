package trainer

import (
	"context"
	"fmt"

	"github.com/ringtrain/ringtrain/shard"
)

// TargetCounter gives the denominator of an SFT step's loss: the trained targets of the
// whole global batch of step, derived from the data plan alone (shard.Loader's
// TrainedTargets sums the row counts an SFT dataset stores), so every rank computes the
// same number without reading the other ranks' data. A BatchSource of the sft objective
// must implement it.
type TargetCounter interface {
	TrainedTargets(ctx context.Context, step int64) (int64, error)
}

// resolveObjective reconciles the job's objective with its dataset: an SFT dataset
// under the default objective (causal) trains the sft objective, and note says so; the
// sft objective needs an SFT dataset whose rows are seq_len+1 tokens; the masked
// objective cannot read an SFT dataset.
func resolveObjective(spec *Spec, ds *shard.Dataset) (note string, err error) {
	if spec.Objective == PPO {
		return "", resolvePPO(spec, ds)
	}
	if isPreference(spec.Objective) || ds.Manifest().IsPreference() {
		return "", resolvePreference(spec, ds)
	}
	sft := ds.Manifest().SFT
	switch {
	case sft == nil && spec.Objective == SFT:
		return "", fmt.Errorf("%w: objective=sft needs an SFT dataset (ringtrain prepare --format sft or --synthetic), and dataset %s is plain text", ErrBadSpec, spec.Data)
	case sft == nil:
		return "", nil
	case spec.Objective == MaskedLM:
		return "", fmt.Errorf("%w: objective=masked cannot train on SFT dataset %s (objective sft does)", ErrBadSpec, spec.Data)
	case spec.Objective == CausalLM:
		spec.Objective = SFT
		note = fmt.Sprintf("dataset %s is an SFT dataset (template %s): training the sft objective, the loss over answer tokens", spec.Data, sft.Template)
		if sft.TrainOnPrompt {
			note = fmt.Sprintf("dataset %s is an SFT dataset (template %s, prompts trained too): training the sft objective", spec.Data, sft.Template)
		}
	}
	if spec.SeqLen != sft.RowTokens-1 {
		return "", fmt.Errorf("%w: seq_len=%d, but SFT dataset %s holds one example per row of %d tokens: seq_len must be %d (--seq %d)",
			ErrBadSpec, spec.SeqLen, spec.Data, sft.RowTokens, sft.RowTokens-1, sft.RowTokens-1)
	}
	return note, nil
}

// newSampler returns the job's train sampler: whole examples for an SFT dataset,
// overlapping windows of text otherwise.
func newSampler(spec Spec, m *shard.Manifest) (*shard.Sampler, error) {
	if m.IsPreference() {
		return shard.NewPairSampler(m.TrainTokens(), spec.Seed, spec.Streams, spec.MicroBatch, spec.SeqLen)
	}
	if m.SFT != nil {
		return shard.NewExampleSampler(m.TrainTokens(), spec.Seed, spec.Streams, spec.MicroBatch, spec.SeqLen)
	}
	return shard.NewSampler(m.TrainTokens(), spec.Seed, spec.Streams, spec.MicroBatch, spec.SeqLen)
}

// resolveEpochs sets spec.Steps from spec.Epochs (when > 0) and the sampler's steps per
// epoch. A spec that gives both must agree.
func resolveEpochs(spec Spec, sampler *shard.Sampler) (Spec, error) {
	if spec.Epochs <= 0 {
		return spec, nil
	}
	steps := spec.Epochs * sampler.StepsPerEpoch()
	if spec.Steps != 0 && spec.Steps != steps {
		return spec, fmt.Errorf("%w: steps=%d and epochs=%d disagree: an epoch of dataset %s is %d steps, so epochs=%d is %d steps; give one of them",
			ErrBadSpec, spec.Steps, spec.Epochs, spec.Data, sampler.StepsPerEpoch(), spec.Epochs, steps)
	}
	spec.Steps = steps
	return spec, nil
}

// ResolveEpochs returns spec with steps set from epochs (when epochs > 0), reading the
// dataset's manifest for the steps per epoch; the objective is reconciled with the
// dataset first (see Prepare), since an SFT dataset's epoch counts examples. The
// commands call it before a job is submitted, so the coordinator knows the job's
// length; Prepare calls the same rules.
func ResolveEpochs(spec Spec) (Spec, error) {
	if spec.Epochs <= 0 {
		return spec, nil
	}
	ds, err := shard.Open(spec.Data)
	if err != nil {
		return spec, fmt.Errorf("dataset %s: %w", spec.Data, err)
	}
	resolved := spec
	if _, err := resolveObjective(&resolved, ds); err != nil {
		return spec, err
	}
	sampler, err := newSampler(resolved, ds.Manifest())
	if err != nil {
		return spec, fmt.Errorf("dataset %s: %w", spec.Data, err)
	}
	resolved, err = resolveEpochs(resolved, sampler)
	if err != nil {
		return spec, err
	}
	spec.Steps = resolved.Steps
	return spec, nil
}

// EvalResult is one evaluation: the mean loss per target token, the share of target
// tokens the model ranks first (token accuracy), and the number of target tokens.
type EvalResult struct {
	Loss     float64
	Accuracy float64
	Tokens   int64
}

// EvaluateFull is Evaluate that also measures token accuracy: for the sft objective
// over the trained (answer) tokens, for the others over every target. For the reward
// and dpo objectives it is EvaluatePreference's loss per pair and pair accuracy, with
// Tokens the pairs.
func (t *Trainer) EvaluateFull(ctx context.Context, val ValSource) (EvalResult, error) {
	var r EvalResult
	if t.pref != nil {
		// The mean loss per pair and the share of pairs ranked correctly.
		ev, err := t.EvaluatePreference(ctx, val)
		if err != nil {
			return r, err
		}
		return EvalResult{Loss: ev.Loss, Accuracy: ev.Accuracy, Tokens: ev.Pairs}, nil
	}
	var correct int64
	loss, n, err := t.evaluateWith(ctx, val, func(targets []int32) {
		correct += countCorrect(t.Model.Logits(), targets, t.Spec.Model.VocabSize)
	})
	if err != nil {
		return r, err
	}
	r.Loss, r.Tokens = loss, n
	r.Accuracy = float64(correct) / float64(n)
	return r, nil
}

// countCorrect counts the positions with a target whose highest-scoring id (lowest id
// on ties) is the target. scores is (N,V): logits or probabilities.
func countCorrect(scores []float32, targets []int32, V int) int64 {
	var n int64
	for i, tg := range targets {
		if tg < 0 {
			continue
		}
		row := scores[i*V : (i+1)*V]
		best := 0
		for j, v := range row {
			if v > row[best] {
				best = j
			}
		}
		if int32(best) == tg {
			n++
		}
	}
	return n
}
