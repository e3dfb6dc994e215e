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
// init_from when the trainer first needs it and never updated: a frozen model
// (model.NewFrozen: weights and forward buffers, no gradients) that recomputes them
// for every micro-batch (one forward, no backward). Recomputing costs a third more compute
// than caching them beside the data, but needs no cache to keep in step with the data,
// the init_from checkpoint or the tokenizer, and a recovered or re-planned rank derives
// the same numbers from what every rank already has (the job spec).

// PrefStats are the preference measures of a step's pairs, summed: the pairs, those
// whose chosen answer scores higher (reward: the reward; dpo: the implicit reward
// beta*(pi - ref)), the sum of the margins (chosen minus rejected), and the sums of the
// chosen and of the rejected answers' rewards. Sums and counts, not means, so that the
// ranks' measures add up to the global batch's, as their loss sums do.
type PrefStats struct {
	Pairs       int64
	Correct     int64
	MarginSum   float64
	ChosenSum   float64
	RejectedSum float64
}

// prefStats returns the measures of the pairs whose rewards r holds (2n values, the
// chosen answer's at 2p and the rejected one's at 2p+1). A pair counts as correct when
// its chosen reward is the higher, as in EvaluatePreference.
func prefStats(r []float64) PrefStats {
	var s PrefStats
	for p := 0; p+1 < len(r); p += 2 {
		d := r[p] - r[p+1]
		s.Pairs++
		if d > 0 {
			s.Correct++
		}
		s.MarginSum += d
		s.ChosenSum += r[p]
		s.RejectedSum += r[p+1]
	}
	return s
}

// Add returns the sum of s and o.
func (s PrefStats) Add(o PrefStats) PrefStats {
	return PrefStats{Pairs: s.Pairs + o.Pairs, Correct: s.Correct + o.Correct, MarginSum: s.MarginSum + o.MarginSum,
		ChosenSum: s.ChosenSum + o.ChosenSum, RejectedSum: s.RejectedSum + o.RejectedSum}
}

// Accuracy is the share of pairs ranked correctly (0 with no pairs).
func (s PrefStats) Accuracy() float64 { return s.mean(float64(s.Correct)) }

// MeanMargin is the mean margin (0 with no pairs).
func (s PrefStats) MeanMargin() float64 { return s.mean(s.MarginSum) }

// MeanChosen is the mean reward of the chosen answers (0 with no pairs).
func (s PrefStats) MeanChosen() float64 { return s.mean(s.ChosenSum) }

// MeanRejected is the mean reward of the rejected answers (0 with no pairs).
func (s PrefStats) MeanRejected() float64 { return s.mean(s.RejectedSum) }

func (s PrefStats) mean(sum float64) float64 {
	if s.Pairs == 0 {
		return 0
	}
	return sum / float64(s.Pairs)
}

// PrefSlots is the number of values a PrefStats travels as in a step's summary
// (Put, PrefStatsOf): pairs, correct, and the margin, chosen and rejected sums.
const PrefSlots = 5

// Put writes s into dst[:PrefSlots] as float32, the float step summary's type. The
// counts are exact up to 2^24 pairs per step.
func (s PrefStats) Put(dst []float32) {
	dst[0], dst[1] = float32(s.Pairs), float32(s.Correct)
	dst[2], dst[3], dst[4] = float32(s.MarginSum), float32(s.ChosenSum), float32(s.RejectedSum)
}

// PrefStatsOf reads the PrefStats Put wrote (summed over ranks) from src[:PrefSlots].
func PrefStatsOf(src []float32) PrefStats {
	return PrefStats{Pairs: int64(src[0]), Correct: int64(src[1]),
		MarginSum: float64(src[2]), ChosenSum: float64(src[3]), RejectedSum: float64(src[4])}
}

// PrefFixed is a PrefStats in exact mode's fixed point: the counts as they are and the
// sums in quanta of 2^-ExactLossBits, each stream's converted on its own
// (GradientsExact), so that their integer sum does not depend on which rank computed
// which stream.
type PrefFixed [PrefSlots]int64

// fixed converts s to fixed point. A sum beyond limit quanta (or NaN) is an error
// wrapping ErrExactRange.
func (s PrefStats) fixed(limit float64) (PrefFixed, error) {
	f := PrefFixed{s.Pairs, s.Correct}
	for i, v := range []float64{s.MarginSum, s.ChosenSum, s.RejectedSum} {
		q := math.Ldexp(v, ExactLossBits)
		if !(math.Abs(q) <= limit) {
			return f, fmt.Errorf("%w: preference sum %g is outside ±%g", ErrExactRange, v, math.Ldexp(limit, -ExactLossBits))
		}
		f[2+i] = int64(math.RoundToEven(q))
	}
	return f, nil
}

// Add returns the sum of f and o.
func (f PrefFixed) Add(o PrefFixed) PrefFixed {
	for i := range f {
		f[i] += o[i]
	}
	return f
}

// Stats converts f (summed over streams and ranks) back to a PrefStats.
func (f PrefFixed) Stats() PrefStats {
	return PrefStats{Pairs: f[0], Correct: f[1], MarginSum: ExactLossSum(f[2]), ChosenSum: ExactLossSum(f[3]),
		RejectedSum: ExactLossSum(f[4])}
}

// Record books a step's preference measures (global: summed over every rank) into
// its metrics record: reward_acc (the share of pairs whose chosen answer has the
// higher reward: the reward model's, or dpo's implicit reward beta*(pi - ref)),
// reward_margin (the mean of chosen minus rejected), reward_chosen and
// reward_rejected (the mean rewards). A step without pairs books nothing.
func (s PrefStats) Record(rec Record) {
	if s.Pairs == 0 {
		return
	}
	rec["reward_acc"], rec["reward_margin"] = s.Accuracy(), s.MeanMargin()
	rec["reward_chosen"], rec["reward_rejected"] = s.MeanChosen(), s.MeanRejected()
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
	// Frozen: the reference only runs forward, so it has no gradient slab (nor, in
	// the trainer, optimizer state).
	ref, err := model.NewFrozen(ck.Config, t.Model.Backend())
	if err != nil {
		return nil, fmt.Errorf("dpo reference: %w", err)
	}
	copy(ref.Params.Slab, ck.Params)
	t.pref.ref = ref
	return ref, nil
}

// SetReference gives a dpo trainer its frozen reference model instead of loading
// init_from (tests; a caller that already holds the weights). It is only run
// forward; a model built with model.NewFrozen is enough.
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
		t.Pref = t.Pref.Add(st)
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
	sum, dr, _ := model.BradleyTerry(r, pairs)
	r64 := make([]float64, rows)
	for i, v := range r {
		r64[i] = float64(v)
	}
	return sum, prefStats(r64), t.Model.BackwardReward(dr, ready)
}

// dpoMicroBatch runs the DPO loss of the micro-batch's pairs forward and backward:
// the reference's summed answer log-probabilities, the policy's, and the policy's
// backward with each row's masked cross-entropy scaled by the loss's derivative with
// respect to that row's summed log-probability. With dpo_nll alpha > 0 the loss adds
// alpha times each chosen answer's mean per-token NLL (model.ChosenNLL), whose
// gradient joins the chosen row's scale: alpha/(tokens*pairs).
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
	sum, dlogp, _ := model.DPO(logp, refLogp, t.Spec.Beta, pairs)
	if a := t.Spec.DPONLL; a != 0 {
		sum += model.ChosenNLL(logp, model.RowTargets(pb.rowTg, rows, T), a, pairs, dlogp)
	}
	st := prefStats(implicitRewards(logp, refLogp, t.Spec.Beta))
	// A row's summed loss is minus its summed log-probability.
	scales := make([]float32, rows)
	for r, g := range dlogp {
		scales[r] = float32(-g)
	}
	return sum, st, t.Model.BackwardRows(scales, ready)
}

// implicitRewards returns DPO's implicit rewards beta*(pi - ref) of rows whose summed
// answer log-probabilities are logp under the policy and ref under the reference.
func implicitRewards(logp, ref []float64, beta float64) []float64 {
	r := make([]float64, len(logp))
	for i := range logp {
		r[i] = beta * (logp[i] - ref[i])
	}
	return r
}

// PrefEval is an evaluation of a preference objective over validation pairs: the mean
// loss per pair, the share of pairs ranked correctly, the mean margin, and the mean
// and standard deviation of the rewards of the chosen and the rejected answers (the
// reward model's scores; for dpo the implicit rewards beta*(pi - ref)).
type PrefEval struct {
	Pairs int64
	// Batches is the number of batches evaluated, a final partial one included.
	Batches                    int
	Loss, Accuracy, MeanMargin float64
	// PolicyAccuracy (dpo) is the share of pairs whose chosen answer the model itself
	// finds more likely than the rejected one (summed answer log-probabilities), with
	// no reference: it compares a tuned policy with the model it started from.
	PolicyAccuracy            float64
	ChosenMean, ChosenStd     float64
	RejectedMean, RejectedStd float64
}

// valTail is a ValSource whose split ends with a partial batch (shard.ValIterator):
// Tail pairs after the last whole batch, which BatchTail reads into the first rows of
// a batch's buffers.
type valTail interface {
	Tail() int
	BatchTail(ctx context.Context, inputs, targets []int32) error
}

// EvaluatePreference runs every batch of val (pair windows, as the pair sampler's
// validation iterator yields them) forward through the reward or dpo objective and
// returns its measures. When val also has a partial batch after its whole ones
// (shard.ValIterator.Tail), its pairs are evaluated too, in a batch of the usual
// shape whose other rows are left out of every measure, so every pair of the split
// counts. It leaves the gradients untouched.
func (t *Trainer) EvaluatePreference(ctx context.Context, val ValSource) (PrefEval, error) {
	var ev PrefEval
	if t.pref == nil {
		return ev, fmt.Errorf("%w: objective %s has no preference evaluation", ErrBadSpec, t.Spec.Objective)
	}
	b := t.Spec.MicroBatch
	var chosen, rejected []float64
	var lossSum float64
	var policyCorrect int64
	add := func(r []float64, loss float64, policy int64) {
		for p := 0; p+1 < len(r); p += 2 {
			chosen, rejected = append(chosen, r[p]), append(rejected, r[p+1])
		}
		lossSum += loss
		policyCorrect += policy
	}
	pb := t.pref
	for i := 0; i < val.Len(); i++ {
		if err := ctx.Err(); err != nil {
			return ev, err
		}
		if err := val.Batch(ctx, i, pb.pairIn, pb.pairTg); err != nil {
			return ev, fmt.Errorf("eval batch %d: %w", i, err)
		}
		r, loss, policy, err := t.evalPrefBatch(b)
		if err != nil {
			return ev, fmt.Errorf("eval batch %d: %w", i, err)
		}
		add(r, loss, policy)
	}
	batches := val.Len()
	if vt, ok := val.(valTail); ok && vt.Tail() > 0 {
		if err := vt.BatchTail(ctx, pb.pairIn, pb.pairTg); err != nil {
			return ev, fmt.Errorf("eval: the last %d pairs: %w", vt.Tail(), err)
		}
		r, loss, policy, err := t.evalPrefBatch(vt.Tail())
		if err != nil {
			return ev, fmt.Errorf("eval: the last %d pairs: %w", vt.Tail(), err)
		}
		add(r, loss, policy)
		batches++
	}
	ev.Pairs = int64(len(chosen))
	if ev.Pairs == 0 {
		return ev, fmt.Errorf("evaluation has no pairs (%d batches)", batches)
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
	ev.Batches = batches
	ev.Loss = lossSum / float64(ev.Pairs)
	ev.Accuracy = float64(correct) / float64(ev.Pairs)
	ev.MeanMargin = margin / float64(ev.Pairs)
	ev.PolicyAccuracy = float64(policyCorrect) / float64(ev.Pairs)
	ev.ChosenMean, ev.ChosenStd = meanStd(chosen)
	ev.RejectedMean, ev.RejectedStd = meanStd(rejected)
	return ev, nil
}

// evalPrefBatch runs the batch of pair windows in t.pref's buffers forward and
// returns the rewards of its first n pairs (2n, chosen at 2p: the reward model's, or
// dpo's implicit rewards), their loss sum and, for dpo, how many of them the policy
// itself ranks correctly. The batch is computed whole (b pairs), so a partial batch
// runs in the shape of the others; the pairs after the first n are left out.
func (t *Trainer) evalPrefBatch(n int) (r []float64, lossSum float64, policyCorrect int64, err error) {
	s, pb := t.Spec, t.pref
	b, T, rows := s.MicroBatch, s.SeqLen, 2*s.MicroBatch
	if err := shard.SplitPairs(pb.pairIn, pb.pairTg, b, T, pb.rowIn, pb.rowTg); err != nil {
		return nil, 0, 0, err
	}
	if s.Objective == Reward {
		lastTokens(pb.rowTg, rows, T, pb.last)
		r32, err := t.Model.ForwardReward(pb.rowIn, pb.last, rows, T)
		if err != nil {
			return nil, 0, 0, err
		}
		lossSum, _, _ = model.BradleyTerry(r32[:2*n], 1)
		r = make([]float64, 2*n)
		for i := range r {
			r[i] = float64(r32[i])
		}
		return r, lossSum, 0, nil
	}
	ref, err := t.reference()
	if err != nil {
		return nil, 0, 0, err
	}
	if _, _, err := ref.Forward(pb.rowIn, pb.rowTg, rows, T, true); err != nil {
		return nil, 0, 0, fmt.Errorf("dpo reference: %w", err)
	}
	refLogp := model.RowLogProbs(ref.Losses(), pb.rowTg, rows, T)[:2*n]
	if _, _, err := t.Model.Forward(pb.rowIn, pb.rowTg, rows, T, true); err != nil {
		return nil, 0, 0, err
	}
	logp := model.RowLogProbs(t.Model.Losses(), pb.rowTg, rows, T)[:2*n]
	lossSum, dlogp, _ := model.DPO(logp, refLogp, s.Beta, 1)
	if s.DPONLL != 0 {
		lossSum += model.ChosenNLL(logp, model.RowTargets(pb.rowTg, rows, T)[:2*n], s.DPONLL, 1, dlogp)
	}
	for p := 0; p < 2*n; p += 2 {
		if logp[p] > logp[p+1] {
			policyCorrect++
		}
	}
	return implicitRewards(logp, refLogp, s.Beta), lossSum, policyCorrect, nil
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
