package trainer

import (
	"context"
	"fmt"
	"math"

	"github.com/ringtrain/ringtrain/model"
)

// BatchSource yields training data. The data of (stream, step) must be a pure function
// of the job (seed, dataset, stream, step), so that a recomputed step reads exactly the
// same tokens on any rank.
type BatchSource interface {
	// Batch fills inputs and targets, each (b,T) and owned by the caller, with the
	// micro-batch of stream at step. For the causal objective targets are the inputs
	// shifted by one; the masked objective ignores them and builds its own.
	Batch(ctx context.Context, stream int, step int64, inputs, targets []int32) error
}

// Trainer runs the optimisation of one model replica: the gradient of the micro-batches
// of the streams it owns, and the optimizer update. The single-process trainer owns all
// streams; a distributed worker owns its share and all-reduces the gradient between
// Gradients and Apply. A Trainer is used from one goroutine.
type Trainer struct {
	Spec  Spec
	Model *model.GPT
	Opt   *model.AdamW
	// Step is the number of optimizer updates applied, i.e. the next step to compute.
	Step int64

	data            BatchSource
	counter         TargetCounter // the sft objective's loss denominators
	maskID          int32
	inputs, targets []int32      // (b,T) micro-batch buffers
	exactAcc        []int64      // StepGradients' fixed-point sum in exact mode
	packed          PackedSource // data, when its rows pack several examples; else nil
	start           []int32      // (b,T) example starts of a packed micro-batch
	pref            *prefBuffers // the reward and dpo objectives' buffers; nil otherwise
	ppo             *ppoState    // the ppo objective's models and rollouts; nil otherwise
	reducer         Reducer      // sums over the ranks (ppo); nil in a single process

	// Pref holds the preference measures (reward and dpo) of the pairs the last
	// Gradients, GradientsExact or StepGradients computed: this rank's share of the
	// step, which a worker sums over the ring as it sums the loss.
	Pref PrefStats
	// PrefFixed is Pref in fixed point, each stream converted on its own: what
	// GradientsExact leaves for the exact step summary.
	PrefFixed PrefFixed
	// PPO holds the measures of the last ppo step, over the global batch.
	PPO PPOStats
	// PPOBeta is the ppo objective's KL coefficient for the next step: the job's
	// beta, or with ppo.target_kl what the adaptive controller made of it. It is
	// trained state: checkpoints (model.TrainerState.PPOBeta) and a worker's state
	// sync carry it with the weights. 0 for the other objectives.
	PPOBeta float64
	// PPOTokens is the number of tokens the applied steps of a ppo job processed:
	// the prompt and answer tokens of their rollouts over the global batch (see
	// TokensSeen). Trained state, as PPOBeta: checkpoints (tokens_seen) and a
	// worker's state sync carry it. 0 for the other objectives.
	PPOTokens int64
}

// TokensSeen returns the number of tokens the steps applied so far processed over
// the global batch: Step × Spec.TokensPerStep for the objectives whose step has a
// fixed shape, and for ppo the prompt and answer tokens its rollouts held
// (PPOTokens; the padding after an answer is not counted). metrics.jsonl's tokens
// and tokens/s, the progress output, a checkpoint's tokens_seen and the progress a
// worker reports count these.
func (t *Trainer) TokensSeen() int64 {
	if t.ppo != nil {
		return t.PPOTokens
	}
	return t.Step * t.Spec.TokensPerStep()
}

// LocalStepTokens returns the tokens of the last step that this trainer computed
// for its streams (the streams passed to Gradients, n of them): n × StreamTokens, or
// for ppo the prompt and answer tokens of those streams' rollouts. A worker counts
// them as the tokens it computed gradients for.
func (t *Trainer) LocalStepTokens(n int) int64 {
	if t.ppo != nil {
		return t.ppo.localTokens
	}
	return int64(n) * t.Spec.StreamTokens()
}

// New builds a Trainer. maskID is the mask token of the masked objective (ignored for
// the causal one). The model and optimizer state are used in place.
func New(spec Spec, m *model.GPT, opt *model.AdamW, data BatchSource, maskID int32) (*Trainer, error) {
	if err := spec.Validate(); err != nil {
		return nil, err
	}
	if m.Config != spec.Model {
		return nil, fmt.Errorf("%w: model shape %+v differs from the spec's %+v", ErrBadSpec, m.Config, spec.Model)
	}
	if spec.Objective == MaskedLM && (maskID < 0 || int(maskID) >= spec.Model.VocabSize) {
		return nil, fmt.Errorf("%w: masked objective needs a mask token inside the vocabulary, got id %d", ErrBadSpec, maskID)
	}
	counter, _ := data.(TargetCounter)
	if spec.Objective == SFT && counter == nil {
		return nil, fmt.Errorf("%w: objective sft needs a data source that counts the trained targets of a step (an SFT dataset's loader)", ErrBadSpec)
	}
	packed := packedSource(data)
	if packed != nil && spec.Objective != SFT {
		return nil, fmt.Errorf("%w: objective %s cannot train packed rows (objective sft does)", ErrBadSpec, spec.Objective)
	}
	n := spec.MicroBatch * spec.SeqLen
	t := &Trainer{Spec: spec, Model: m, Opt: opt, data: data, counter: counter, maskID: maskID,
		inputs: make([]int32, n), targets: make([]int32, n), packed: packed, start: make([]int32, n)}
	if isPreference(spec.Objective) {
		if packed != nil {
			return nil, fmt.Errorf("%w: objective %s cannot train packed rows", ErrBadSpec, spec.Objective)
		}
		t.pref = newPrefBuffers(spec)
	}
	if spec.Objective == PPO {
		t.ppo = &ppoState{}
		t.PPOBeta = spec.Beta
	}
	return t, nil
}

// GlobalTargets returns the number of target tokens in the global batch of step: the
// denominator of the mean loss. Every rank computes the same number without exchanging
// data: every position for causal, the positions masking chooses (a function of the
// seed) for masked, and for sft the trained targets the dataset's row counts give (see
// TargetCounter). The sft counts are loaded when the job is prepared; should reading
// them fail here it returns 0, and Gradients of the same step reports the error.
func (t *Trainer) GlobalTargets(step int64) int {
	s := t.Spec
	switch s.Objective {
	case CausalLM:
		return s.Streams * s.MicroBatch * s.SeqLen
	case Reward, DPO:
		return s.Streams * s.MicroBatch // pairs
	case PPO:
		return 1 // Gradients returns the mean loss (ppo.go)
	case SFT:
		n, err := t.counter.TrainedTargets(context.Background(), step)
		if err != nil {
			return 0
		}
		return int(n)
	}
	n := 0
	for m := 0; m < s.Streams; m++ {
		for r := 0; r < s.MicroBatch; r++ {
			n += countMasked(s.SeqLen, s.MaskRate, s.Model.VocabSize, maskRNG(s.Seed, maskTrain, m, step, r))
		}
	}
	return n
}

// MeanLoss returns the mean loss of step's global batch from the sum of its token
// losses over all streams. A masked step may choose no position: its loss (and
// gradient) is zero, not NaN, which neither metrics.jsonl nor a checkpoint can hold.
func (t *Trainer) MeanLoss(step int64, lossSum float64) float64 {
	if n := t.GlobalTargets(step); n > 0 {
		return lossSum / float64(n)
	}
	return 0
}

// Gradients zeroes the gradients and adds those of the given streams' micro-batches at
// step, each scaled by 1/GlobalTargets(step), so that the sum over all streams (over
// all ranks) is the gradient of the global mean loss. It returns the sum of the token
// losses of these micro-batches. ready is passed to the backward pass of the last
// micro-batch (see model.GPT.Backward). For the reward and dpo objectives it sets
// t.Pref to the measures of these micro-batches' pairs.
func (t *Trainer) Gradients(ctx context.Context, step int64, streams []int, ready func(lo, hi int)) (lossSum float64, err error) {
	s := t.Spec
	t.Model.ZeroGrad()
	t.Pref = PrefStats{}
	if t.pref != nil {
		return t.preferenceGradients(ctx, step, streams, ready)
	}
	if t.ppo != nil {
		lossSum, _, err := t.ppoGradients(ctx, step, streams, ready, nil)
		return lossSum, err
	}
	total := t.GlobalTargets(step)
	if s.Objective == SFT {
		n, err := t.counter.TrainedTargets(ctx, step)
		if err != nil {
			return 0, fmt.Errorf("step %d: %w", step, err)
		}
		total = int(n)
	}
	scale := float32(0)
	if total > 0 {
		scale = float32(1 / float64(total))
	}
	for i, stream := range streams {
		if err := ctx.Err(); err != nil {
			return 0, err
		}
		var err error
		if t.packed != nil {
			err = t.packed.BatchPacked(ctx, stream, step, t.inputs, t.targets, t.start)
		} else {
			err = t.data.Batch(ctx, stream, step, t.inputs, t.targets)
		}
		if err != nil {
			return 0, fmt.Errorf("step %d stream %d: %w", step, stream, err)
		}
		causal := true
		if s.Objective == MaskedLM {
			causal = false
			T := s.SeqLen
			for r := 0; r < s.MicroBatch; r++ {
				MaskRow(t.inputs[r*T:(r+1)*T], t.targets[r*T:(r+1)*T], s.MaskRate, t.maskID, s.Model.VocabSize, maskRNG(s.Seed, maskTrain, stream, step, r))
			}
		}
		var sum float64
		if t.packed != nil {
			sum, _, err = t.Model.ForwardPacked(t.inputs, t.targets, t.start, s.MicroBatch, s.SeqLen)
		} else {
			sum, _, err = t.Model.Forward(t.inputs, t.targets, s.MicroBatch, s.SeqLen, causal)
		}
		if err != nil {
			return 0, fmt.Errorf("step %d stream %d: %w", step, stream, err)
		}
		lossSum += sum
		var cb func(lo, hi int)
		if i == len(streams)-1 {
			cb = ready
		}
		if err := t.Model.Backward(scale, cb); err != nil {
			return 0, err
		}
	}
	return lossSum, nil
}

// Apply clips the (already summed) gradients, applies one AdamW update at the learning
// rate of t.Step and advances t.Step. It returns the gradient norm before clipping and
// the learning rate used.
func (t *Trainer) Apply() (gradNorm, lr float64, err error) {
	s := t.Spec
	gradNorm = model.ClipGradNorm(t.Model.Grads.Slab, s.GradClip)
	if math.IsNaN(gradNorm) || math.IsInf(gradNorm, 0) {
		return gradNorm, 0, fmt.Errorf("step %d: gradient norm is %v: training diverged", t.Step, gradNorm)
	}
	lr = LearningRate(t.Step, s.WarmupSteps, s.Steps, s.LR, s.MinLR)
	if err := t.Opt.Update(s.Model, s.AdamW, lr, t.Model.Params.Slab, t.Model.Grads.Slab); err != nil {
		return gradNorm, lr, err
	}
	t.Step++
	t.ppoApplied()
	return gradNorm, lr, nil
}

// AllStreams returns [0, 1, ..., streams-1]: what a single process owns.
func (s Spec) AllStreams() []int {
	out := make([]int, s.Streams)
	for i := range out {
		out[i] = i
	}
	return out
}
