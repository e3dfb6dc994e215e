package trainer

import (
	"context"
	"fmt"
	"math"

	"github.com/ringtrain/ringtrain/model"
	"github.com/ringtrain/ringtrain/shard"
)

// The preference objectives (reward, dpo) read a preference dataset through the pair
// sampler (shard.NewPairSampler): a micro-batch of b pairs arrives as b pair windows,
// which SplitPairs cuts into 2b rows, chosen at 2p and rejected at 2p+1, so the model
// runs on (2b, T). A pair never leaves its stream, and a stream never leaves its rank,
// so both answers of a pair are always computed together.
//
// The loss of a step is the mean over the global batch's pairs (streams x micro_batch,
// known to every rank): each stream's backward is scaled by 1/pairs, so the gradients
// summed over ranks are those of the global mean, whatever the world size.
//
// DPO's reference log-probabilities come from a second model instance, loaded from
// init_from when the trainer first needs it and never updated: it recomputes them for
// every micro-batch (one forward, no backward). Recomputing costs a third more compute
// than caching them beside the data, but needs no cache to keep in step with the data,
// the init_from checkpoint or the tokenizer, and a recovered or re-planned rank derives
// the same numbers from what every rank already has (the job spec).

// PrefStats are the preference measures of one step's streams on this rank, summed:
// the pairs, those whose chosen answer scores higher (reward: the reward; dpo: the
// implicit reward beta*(pi - ref)), and the sum of the margins (chosen minus rejected).
type PrefStats struct {
	Pairs     int64
	Correct   int64
	MarginSum float64
}

// Accuracy is the share of pairs ranked correctly (0 with no pairs).
func (s PrefStats) Accuracy() float64 {
	if s.Pairs == 0 {
		return 0
	}
	return float64(s.Correct) / float64(s.Pairs)
}

// MeanMargin is the mean margin (0 with no pairs).
func (s PrefStats) MeanMargin() float64 {
	if s.Pairs == 0 {
		return 0
	}
	return s.MarginSum / float64(s.Pairs)
}

// isPreference reports whether o trains on preference pairs.
func isPreference(o Objective) bool { return o == Reward || o == DPO }

// resolvePreference reconciles a preference objective with its dataset: they go
// together, and seq_len must be the rows' T.
func resolvePreference(spec *Spec, ds *shard.Dataset) error {
	m := ds.Manifest()
	pref := m.IsPreference()
	switch {
	case isPreference(spec.Objective) && !pref:
		return fmt.Errorf("%w: objective=%s needs a preference dataset (ringtrain prepare --format preference), and dataset %s is not one", ErrBadSpec, spec.Objective, spec.Data)
	case pref && !isPreference(spec.Objective):
		return fmt.Errorf("%w: dataset %s holds preference pairs: train it with objective reward or dpo, not %s", ErrBadSpec, spec.Data, spec.Objective)
	}
	if spec.SeqLen != m.SFT.RowTokens-1 {
		return fmt.Errorf("%w: seq_len=%d, but preference dataset %s holds answers in rows of %d tokens: seq_len must be %d (--seq %d)",
			ErrBadSpec, spec.SeqLen, spec.Data, m.SFT.RowTokens, m.SFT.RowTokens-1, m.SFT.RowTokens-1)
	}
	if spec.Objective == Reward {
		spec.Model.NumLabels = 1
	}
	if spec.Objective == DPO && spec.Beta == 0 {
		spec.Beta = DefaultBeta
	}
	return nil
}

// prefBuffers holds a preference trainer's micro-batch buffers.
type prefBuffers struct {
	pairIn, pairTg []int32 // (b, 2T+1) pair windows as the loader fills them
	rowIn, rowTg   []int32 // (2b, T) the pairs' rows, chosen then rejected
	last           []int   // (2b) each row's last real token (reward)
	ref            *model.GPT
}

func newPrefBuffers(spec Spec) *prefBuffers {
	b, T := spec.MicroBatch, spec.SeqLen
	W := shard.PairSeqLen(T)
	return &prefBuffers{
		pairIn: make([]int32, b*W), pairTg: make([]int32, b*W),
		rowIn: make([]int32, 2*b*T), rowTg: make([]int32, 2*b*T), last: make([]int, 2*b),
	}
}

// lastTokens sets last[r] to the input position of row r's last real token: the one
// whose target is the row's last trained target (the end-of-text that closes the
// answer), i.e. the answer's last token, where Hugging Face's
// GPT2ForSequenceClassification reads the score.
func lastTokens(targets []int32, rows, T int, last []int) {
	for r := range rows {
		last[r] = T - 1
		for t := T - 1; t >= 0; t-- {
			if targets[r*T+t] >= 0 {
				last[r] = t
				break
			}
		}
	}
}

// reference returns DPO's frozen reference model, loading init_from on first use.
func (t *Trainer) reference() (*model.GPT, error) {
	if t.pref.ref != nil {
		return t.pref.ref, nil
	}
	ck, err := model.LoadCheckpoint(t.Spec.InitFrom)
	if err != nil {
		return nil, fmt.Errorf("dpo reference: %w", err)
	}
	if err := checkModel("init_from", t.Spec.InitFrom, ck.Config, t.Spec.Model); err != nil {
		return nil, err
	}
	ref, err := model.New(ck.Config, t.Model.Backend())
	if err != nil {
		return nil, fmt.Errorf("dpo reference: %w", err)
	}
	copy(ref.Params.Slab, ck.Params)
	t.pref.ref = ref
	return ref, nil
}

// SetReference gives a dpo trainer its frozen reference model instead of loading
// init_from (tests; a caller that already holds the weights).
func (t *Trainer) SetReference(ref *model.GPT) error {
	if ref.Config != t.Spec.Model {
		return fmt.Errorf("%w: reference model shape %+v differs from the spec's %+v", ErrBadSpec, ref.Config, t.Spec.Model)
	}
	t.pref.ref = ref
	return nil
}

// preferenceGradients is Gradients for the reward and dpo objectives (see the top of
// this file). It returns the loss sum over the streams' pairs and adds their measures
// to t.Pref.
func (t *Trainer) preferenceGradients(ctx context.Context, step int64, streams []int, ready func(lo, hi int)) (lossSum float64, err error) {
	s := t.Spec
	b, T := s.MicroBatch, s.SeqLen
	pairs := s.Streams * s.MicroBatch
	pb := t.pref
	for i, stream := range streams {
		if err := ctx.Err(); err != nil {
			return 0, err
		}
		if err := t.data.Batch(ctx, stream, step, pb.pairIn, pb.pairTg); err != nil {
			return 0, fmt.Errorf("step %d stream %d: %w", step, stream, err)
		}
		if err := shard.SplitPairs(pb.pairIn, pb.pairTg, b, T, pb.rowIn, pb.rowTg); err != nil {
			return 0, err
		}
		var cb func(lo, hi int)
		if i == len(streams)-1 {
			cb = ready
		}
		var sum float64
		var st PrefStats
		if s.Objective == Reward {
			sum, st, err = t.rewardMicroBatch(pairs, cb)
		} else {
			sum, st, err = t.dpoMicroBatch(pairs, cb)
		}
		if err != nil {
			return 0, fmt.Errorf("step %d stream %d: %w", step, stream, err)
		}
		lossSum += sum
		t.Pref.Pairs += st.Pairs
		t.Pref.Correct += st.Correct
		t.Pref.MarginSum += st.MarginSum
	}
	return lossSum, nil
}

// rewardMicroBatch runs the Bradley-Terry loss of the micro-batch's pairs (in
// t.pref's rows) forward and backward, normalised by the global pair count.
func (t *Trainer) rewardMicroBatch(pairs int, ready func(lo, hi int)) (float64, PrefStats, error) {
	pb := t.pref
	rows, T := 2*t.Spec.MicroBatch, t.Spec.SeqLen
	lastTokens(pb.rowTg, rows, T, pb.last)
	r, err := t.Model.ForwardReward(pb.rowIn, pb.last, rows, T)
	if err != nil {
		return 0, PrefStats{}, err
	}
	sum, dr, correct := model.BradleyTerry(r, pairs)
	st := PrefStats{Pairs: int64(rows / 2), Correct: int64(correct)}
	for p := 0; p < rows; p += 2 {
		st.MarginSum += float64(r[p]) - float64(r[p+1])
	}
	return sum, st, t.Model.BackwardReward(dr, ready)
}

// dpoMicroBatch runs the DPO loss of the micro-batch's pairs forward and backward:
// the reference's summed answer log-probabilities, the policy's, and the policy's
// backward with each row's masked cross-entropy scaled by the loss's derivative with
// respect to that row's summed log-probability.
func (t *Trainer) dpoMicroBatch(pairs int, ready func(lo, hi int)) (float64, PrefStats, error) {
	pb := t.pref
	rows, T := 2*t.Spec.MicroBatch, t.Spec.SeqLen
	ref, err := t.reference()
	if err != nil {
		return 0, PrefStats{}, err
	}
	if _, _, err := ref.Forward(pb.rowIn, pb.rowTg, rows, T, true); err != nil {
		return 0, PrefStats{}, fmt.Errorf("dpo reference: %w", err)
	}
	refLogp := model.RowLogProbs(ref.Losses(), pb.rowTg, rows, T)
	if _, _, err := t.Model.Forward(pb.rowIn, pb.rowTg, rows, T, true); err != nil {
		return 0, PrefStats{}, err
	}
	logp := model.RowLogProbs(t.Model.Losses(), pb.rowTg, rows, T)
	sum, dlogp, margins := model.DPO(logp, refLogp, t.Spec.Beta, pairs)
	st := PrefStats{Pairs: int64(len(margins))}
	for _, m := range margins {
		st.MarginSum += m
		if m > 0 {
			st.Correct++
		}
	}
	// A row's summed loss is minus its summed log-probability.
	scales := make([]float32, rows)
	for r, g := range dlogp {
		scales[r] = float32(-g)
	}
	return sum, st, t.Model.BackwardRows(scales, ready)
}

// PrefEval is an evaluation of a preference objective over validation pairs: the mean
// loss per pair, the share of pairs ranked correctly, the mean margin, and the mean
// and standard deviation of the rewards of the chosen and the rejected answers (the
// reward model's scores; for dpo the implicit rewards beta*(pi - ref)).
type PrefEval struct {
	Pairs                      int64
	Loss, Accuracy, MeanMargin float64
	// PolicyAccuracy (dpo) is the share of pairs whose chosen answer the model itself
	// finds more likely than the rejected one (summed answer log-probabilities), with
	// no reference: it compares a tuned policy with the model it started from.
	PolicyAccuracy            float64
	ChosenMean, ChosenStd     float64
	RejectedMean, RejectedStd float64
}

// EvaluatePreference runs every batch of val (pair windows, as the pair sampler's
// validation iterator yields them) forward through the reward or dpo objective and
// returns its measures. It leaves the gradients untouched.
func (t *Trainer) EvaluatePreference(ctx context.Context, val ValSource) (PrefEval, error) {
	var ev PrefEval
	if t.pref == nil {
		return ev, fmt.Errorf("%w: objective %s has no preference evaluation", ErrBadSpec, t.Spec.Objective)
	}
	s, pb := t.Spec, t.pref
	b, T, rows := s.MicroBatch, s.SeqLen, 2*s.MicroBatch
	var chosen, rejected []float64
	var lossSum float64
	var policyCorrect int64
	for i := 0; i < val.Len(); i++ {
		if err := ctx.Err(); err != nil {
			return ev, err
		}
		if err := val.Batch(ctx, i, pb.pairIn, pb.pairTg); err != nil {
			return ev, fmt.Errorf("eval batch %d: %w", i, err)
		}
		if err := shard.SplitPairs(pb.pairIn, pb.pairTg, b, T, pb.rowIn, pb.rowTg); err != nil {
			return ev, err
		}
		var r []float64 // (2b) rewards, chosen at 2p
		if s.Objective == Reward {
			lastTokens(pb.rowTg, rows, T, pb.last)
			r32, err := t.Model.ForwardReward(pb.rowIn, pb.last, rows, T)
			if err != nil {
				return ev, fmt.Errorf("eval batch %d: %w", i, err)
			}
			sum, _, _ := model.BradleyTerry(r32, 1)
			lossSum += sum
			for _, v := range r32 {
				r = append(r, float64(v))
			}
		} else {
			ref, err := t.reference()
			if err != nil {
				return ev, err
			}
			if _, _, err := ref.Forward(pb.rowIn, pb.rowTg, rows, T, true); err != nil {
				return ev, fmt.Errorf("eval batch %d: dpo reference: %w", i, err)
			}
			refLogp := model.RowLogProbs(ref.Losses(), pb.rowTg, rows, T)
			if _, _, err := t.Model.Forward(pb.rowIn, pb.rowTg, rows, T, true); err != nil {
				return ev, fmt.Errorf("eval batch %d: %w", i, err)
			}
			logp := model.RowLogProbs(t.Model.Losses(), pb.rowTg, rows, T)
			sum, _, _ := model.DPO(logp, refLogp, s.Beta, 1)
			lossSum += sum
			for p := 0; p < rows; p += 2 {
				if logp[p] > logp[p+1] {
					policyCorrect++
				}
			}
			for j := range logp {
				r = append(r, s.Beta*(logp[j]-refLogp[j]))
			}
		}
		for p := 0; p < rows; p += 2 {
			chosen, rejected = append(chosen, r[p]), append(rejected, r[p+1])
		}
	}
	ev.Pairs = int64(len(chosen))
	if ev.Pairs == 0 {
		return ev, fmt.Errorf("evaluation has no pairs (%d batches)", val.Len())
	}
	var correct int64
	var margin float64
	for i := range chosen {
		d := chosen[i] - rejected[i]
		margin += d
		if d > 0 {
			correct++
		}
	}
	ev.Loss = lossSum / float64(ev.Pairs)
	ev.Accuracy = float64(correct) / float64(ev.Pairs)
	ev.MeanMargin = margin / float64(ev.Pairs)
	ev.PolicyAccuracy = float64(policyCorrect) / float64(ev.Pairs)
	ev.ChosenMean, ev.ChosenStd = meanStd(chosen)
	ev.RejectedMean, ev.RejectedStd = meanStd(rejected)
	return ev, nil
}

func meanStd(xs []float64) (mean, std float64) {
	for _, x := range xs {
		mean += x
	}
	mean /= float64(len(xs))
	for _, x := range xs {
		std += (x - mean) * (x - mean)
	}
	return mean, math.Sqrt(std / float64(len(xs)))
}
