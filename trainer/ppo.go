package trainer

import (
	"bytes"
	"context"
	"fmt"
	"math"
	"slices"

	"github.com/ringtrain/ringtrain/model"
)

// The ppo objective: one step of the job is one PPO iteration.
//
//  1. Rollouts. Each rank samples, for every stream it owns, an answer to each of the
//     stream's micro_batch prompts (the tokens of an SFT row before its first trained
//     target) with the policy as it is at the start of the step: batched KV-cache
//     sampling (model.GenerateBatch) at temperature 1, up to ppo.max_new_tokens
//     tokens, ending at the end-of-text. The sampler of (step, stream, row) is seeded
//     from the job seed and those three numbers alone, so a step recomputed after a
//     fault, on any rank of any world size, samples the same answers.
//  2. Scores. The policy's log-probabilities and values, the frozen reference's
//     log-probabilities and the reward model's score of each answer. With
//     ppo.whiten_rewards the scores are standardised over the global batch (mean 0,
//     standard deviation 1; their count, sum and sum of squares gathered as in 3,
//     rewardScores). A token's reward is -beta*(logp - logp_ref) (beta: t.PPOBeta),
//     the answer's score added to the last token; GAE (gamma, lambda) gives
//     advantages and returns. With
//     ppo.target_kl the step's global KL gives the next step's beta (klController),
//     which Apply makes current.
//  3. Whitening over the global batch. The advantages are whitened with the mean and
//     variance of every answer token of the step, over all ranks. Each stream's
//     token count, sum and sum of squares (with the scores and KL the metrics
//     report) are gathered, not summed: one small int64 all-reduce in which every
//     stream's float64 values sit in the stream's own slots (streamSums), after
//     which every rank adds them up in stream order. So the statistics, and
//     everything after them, are the same bits whatever the world size.
//  4. ppo.epochs optimizer updates over the whole global batch: the clipped policy
//     loss, the clipped value loss (times vf_coef) and the entropy bonus (times
//     ent_coef), a mean over the global batch's answer tokens. The gradients of every
//     update but the last are summed over the ranks here (Reducer) and applied at once
//     (clipped, AdamW at the step's learning rate); the last update's gradients are
//     the step's gradients, summed and applied by the caller as for every objective.
//
// A step that fails after an inner update has changed the weights must be undone
// before it is recomputed or the state is shared: Rollback restores the weights and
// optimizer state the step started from (a copy taken when the step starts).

// Reducer sums small vectors over the ranks of a data-parallel job, in place. Every
// rank calls the same sums in the same order. A single process sums over itself
// (nothing to do). It is called from the trainer's goroutine and blocks.
type Reducer interface {
	SumInt64(ctx context.Context, buf []int64) error
	SumFloat32(ctx context.Context, buf []float32) error
}

// SetReducer gives a ppo trainer the sums over the ranks of its job (a worker's ring);
// without one it sums over itself, a single process owning every stream.
func (t *Trainer) SetReducer(r Reducer) { t.reducer = r }

// PPOStats are the measures of a ppo step over the global batch (every rank holds
// the same numbers).
type PPOStats struct {
	Rows   int64 // answers sampled
	Tokens int64 // answer tokens (actions), the end-of-text included
	// PromptTokens is the number of prompt tokens of the rows answered: with
	// Tokens, the tokens the step processed (the rows' padding is not counted).
	PromptTokens int64
	// Score is the mean reward-model score of an answer; KL the mean over answers of
	// the summed per-token estimate logp - logp_ref (the sampling policy's KL from
	// the reference); Length the mean answer length in tokens.
	Score, KL, Length float64
	// Beta is the KL coefficient the step's rewards used.
	Beta float64
	// Entropy is the mean entropy per token, ClipFrac the share of tokens whose ratio
	// was clipped, ValueLoss and PolicyLoss the mean losses per token, all averaged
	// over the step's ppo epochs.
	Entropy, ClipFrac, ValueLoss, PolicyLoss float64
}

// Record adds the stats to a metrics record (ppo_* fields).
func (s PPOStats) Record(rec Record) {
	rec["ppo_reward"], rec["ppo_kl"], rec["ppo_entropy"] = s.Score, s.KL, s.Entropy
	rec["ppo_clip_frac"], rec["ppo_value_loss"], rec["ppo_policy_loss"] = s.ClipFrac, s.ValueLoss, s.PolicyLoss
	rec["ppo_response_len"], rec["ppo_beta"] = s.Length, s.Beta
}

// streamSums returns, for k quantities, their sums over all the job's streams,
// added in stream order: local[i] holds the k values of this rank's stream
// streams[i]. Each rank writes its streams' values, as float64 bits, into the
// streams' own slots of a zeroed vector; the int64 all-reduce gathers them (every
// slot has one writer, so the sum is that writer's bits), and every rank adds them
// up in the same order. So the totals are the same bits whatever the world size, and
// no value is rounded or bounded on the way.
func (t *Trainer) streamSums(ctx context.Context, streams []int, local [][]float64, k int) ([]float64, error) {
	buf := make([]int64, t.Spec.Streams*k)
	for i, stream := range streams {
		for j, v := range local[i] {
			buf[stream*k+j] = int64(math.Float64bits(v))
		}
	}
	if err := t.sumInt64(ctx, buf); err != nil {
		return nil, err
	}
	out := make([]float64, k)
	for i := range t.Spec.Streams {
		for j := range k {
			out[j] += math.Float64frombits(uint64(buf[i*k+j]))
		}
	}
	return out, nil
}

// rollout is one stream's batch of sampled answers.
type rollout struct {
	in, tg []int32   // (b,T) prompt and answer tokens, the answer's tokens the targets
	acts   [][]int   // (b) each row's action positions (input positions with a target)
	score  []float64 // (b) reward-model scores
	// reward is (b) the score each answer's rewards add: the reward model's score,
	// or with ppo.whiten_rewards that score standardised over the global batch.
	reward []float64
	kl     []float64 // (b) summed logp - logp_ref
	refLp  [][]float64
	oldLp  [][]float64
	oldV   [][]float64
	adv    [][]float64
	ret    [][]float64
}

// ppoState is a ppo trainer's frozen models, rollouts and undo copy.
type ppoState struct {
	ref, rm  *model.GPT
	eot      int32
	rolls    []*rollout
	backup   []float32 // params, then M, then V of the step's start
	backStep int64     // optimizer step count of the backup
	dirty    bool      // an inner update has changed the weights since the backup
	nextBeta float64   // the KL coefficient after the step being computed (Apply sets it)
	// localTokens is the prompt and answer tokens of the rollouts of this rank's
	// streams in the step computed last (Trainer.LocalStepTokens).
	localTokens int64
}

// loadPPO loads the reference (init_from, as a language model) and the reward model.
func (t *Trainer) loadPPO() error {
	st := t.ppo
	if st.ref != nil {
		return nil
	}
	s := t.Spec
	ck, err := model.LoadCheckpoint(s.InitFrom)
	if err != nil {
		return fmt.Errorf("ppo reference: %w", err)
	}
	lm, _ := model.SplitValueHead(s.Model, nil)
	refCfg, _ := model.SplitValueHead(ck.Config, ck.Params)
	if err := checkModel("init_from", s.InitFrom, refCfg, lm); err != nil {
		return err
	}
	ref, err := model.NewFrozen(lm, t.Model.Backend())
	if err != nil {
		return fmt.Errorf("ppo reference: %w", err)
	}
	copy(ref.Params.Slab, ck.Params[:lm.NumParams()])
	if ck.EOT == nil {
		return fmt.Errorf("%w: init_from %s records no end-of-text token: ppo needs it to end answers", ErrBadSpec, s.InitFrom)
	}
	rck, err := model.LoadCheckpoint(s.PPO.RewardModel)
	if err != nil {
		return fmt.Errorf("ppo reward model: %w", err)
	}
	if rck.Config.NumLabels != 1 {
		return fmt.Errorf("%w: ppo.reward_model %s is not a reward model (num_labels %d; train one with --objective reward)", ErrBadSpec, s.PPO.RewardModel, rck.Config.NumLabels)
	}
	if !bytes.Equal(rck.Tokenizer, ck.Tokenizer) {
		return fmt.Errorf("%w: ppo.reward_model %s and init_from %s have different tokenizers", ErrBadSpec, s.PPO.RewardModel, s.InitFrom)
	}
	if rck.Config.VocabSize != s.Model.VocabSize || rck.Config.MaxSeqLen < s.SeqLen {
		return fmt.Errorf("%w: ppo.reward_model %s (vocab %d, %d positions) cannot score rows of %d tokens of vocabulary %d",
			ErrBadSpec, s.PPO.RewardModel, rck.Config.VocabSize, rck.Config.MaxSeqLen, s.SeqLen, s.Model.VocabSize)
	}
	rm, err := model.NewFrozen(rck.Config, t.Model.Backend())
	if err != nil {
		return fmt.Errorf("ppo reward model: %w", err)
	}
	copy(rm.Params.Slab, rck.Params)
	st.ref, st.rm, st.eot = ref, rm, int32(*ck.EOT)
	return nil
}

// initValueHead gives a ppo policy that starts from a language model its value
// head: the reward model's score head when the widths match (the value function
// starts as the reward model's, as InstructGPT's does; the bias is 0), else one
// drawn fresh (model.GPT.InitValue).
func initValueHead(tr *Trainer) error {
	tr.Model.InitValue(tr.Spec.Seed)
	ck, err := model.LoadCheckpoint(tr.Spec.PPO.RewardModel)
	if err != nil {
		return fmt.Errorf("ppo reward model: %w", err)
	}
	if ck.Config.NumLabels == 1 && ck.Config.Embd == tr.Spec.Model.Embd {
		score := model.ViewParams(ck.Config, ck.Params).Score
		copy(tr.Model.Params.Value, score)
	}
	return nil
}

// SetPPOModels gives a ppo trainer its frozen reference and reward model and the
// end-of-text id instead of loading them from the spec (tests).
func (t *Trainer) SetPPOModels(ref, rm *model.GPT, eot int32) error {
	if t.ppo == nil {
		return fmt.Errorf("%w: objective %s has no PPO models", ErrBadSpec, t.Spec.Objective)
	}
	if rm.Config.NumLabels != 1 || ref.Config.ValueHead {
		return fmt.Errorf("%w: the reference must be a language model and the reward model have num_labels 1", ErrBadSpec)
	}
	t.ppo.ref, t.ppo.rm, t.ppo.eot = ref, rm, eot
	return nil
}

// rowSeed is the sampler seed of row r of stream's micro-batch at step: a function
// of the job seed and the three numbers alone.
func rowSeed(seed uint64, step int64, stream, r int) uint64 {
	x := seed ^ 0x70706f // "ppo"
	for _, v := range []uint64{uint64(step), uint64(stream), uint64(r)} {
		x = splitmix(x ^ v)
	}
	return x
}

func splitmix(x uint64) uint64 {
	x += 0x9e3779b97f4a7c15
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9
	x = (x ^ (x >> 27)) * 0x94d049bb133111eb
	return x ^ (x >> 31)
}

// sumInt64 sums buf over the ranks (nothing in a single process).
func (t *Trainer) sumInt64(ctx context.Context, buf []int64) error {
	if t.reducer == nil {
		return nil
	}
	return t.reducer.SumInt64(ctx, buf)
}

// Rollback undoes the inner updates of a ppo step that did not finish: the weights
// and optimizer state return to those the step started from. A worker calls it when
// a step fails, before the state is recomputed or shared; a no-op for the other
// objectives and for a step that changed nothing.
func (t *Trainer) Rollback() {
	st := t.ppo
	if st == nil || !st.dirty {
		return
	}
	n := len(t.Model.Params.Slab)
	copy(t.Model.Params.Slab, st.backup[:n])
	copy(t.Opt.M, st.backup[n:2*n])
	copy(t.Opt.V, st.backup[2*n:])
	t.Opt.Step = st.backStep
	st.dirty = false
}

// ppoApplied marks the step's weights as final (Apply), counts the step's tokens
// into PPOTokens, and makes the KL coefficient the adaptive controller computed from
// the step's KL the next step's.
// A step that is not applied (it failed, and is recomputed) leaves beta as it was.
func (t *Trainer) ppoApplied() {
	if t.ppo != nil {
		t.ppo.dirty = false
		t.PPOTokens += t.PPO.PromptTokens + t.PPO.Tokens
		if t.ppo.nextBeta > 0 { // 0: no step computed one (or it underflowed)
			t.PPOBeta, t.ppo.nextBeta = t.ppo.nextBeta, 0
		}
	}
}

// ppoGradients is Gradients for the ppo objective (see the top of this file): it
// samples and scores the rollouts of streams, applies every inner update, and leaves
// the last update's gradients (this rank's share) in the model. It returns this
// rank's share of the last update's mean loss and sets t.PPO. With acc (exact mode,
// GradientsExact) each stream's gradients go into acc in fixed point, the inner
// updates sum acc over the ranks as integers, and it also returns the loss share in
// fixed point; the model's gradients are then scratch.
func (t *Trainer) ppoGradients(ctx context.Context, step int64, streams []int, ready func(lo, hi int), acc []int64) (float64, int64, error) {
	st := t.ppo
	if st.dirty {
		t.Rollback()
	}
	if err := t.loadPPO(); err != nil {
		return 0, 0, err
	}
	s := t.Spec
	p := *s.PPO
	if p.Epochs > 1 {
		n := len(t.Model.Params.Slab)
		if len(st.backup) != 3*n {
			st.backup = make([]float32, 3*n)
		}
		copy(st.backup, t.Model.Params.Slab)
		copy(st.backup[n:], t.Opt.M)
		copy(st.backup[2*n:], t.Opt.V)
		st.backStep = t.Opt.Step
	}
	st.rolls = st.rolls[:0]
	st.localTokens = 0
	// Rollouts, their rewards and advantages, and the sums that whiten the
	// advantages and report the step.
	for _, stream := range streams {
		if err := ctx.Err(); err != nil {
			return 0, 0, err
		}
		ro, err := t.rollout(ctx, step, stream)
		if err != nil {
			return 0, 0, fmt.Errorf("step %d stream %d: %w", step, stream, err)
		}
		st.rolls = append(st.rolls, ro)
	}
	if err := t.rewardScores(ctx, streams, p.WhitenRewards); err != nil {
		return 0, 0, fmt.Errorf("step %d: ppo score sums: %w", step, err)
	}
	local := make([][]float64, len(streams))
	for i, ro := range st.rolls {
		ro.advantages(t.PPOBeta, p.Gamma, p.Lambda)
		v := make([]float64, ppoSumLen)
		for r := range ro.acts {
			if len(ro.acts[r]) == 0 {
				continue
			}
			v[sumRows]++
			v[sumPrompt] += float64(ro.acts[r][0] + 1) // the first action reads the prompt's last token
			v[sumScore] += ro.score[r]
			v[sumKL] += ro.kl[r]
			for _, a := range ro.adv[r] {
				v[sumTokens]++
				v[sumAdv] += a
				v[sumAdv2] += a * a
			}
		}
		local[i] = v
		st.localTokens += int64(v[sumPrompt] + v[sumTokens])
	}
	sums, err := t.streamSums(ctx, streams, local, ppoSumLen)
	if err != nil {
		return 0, 0, fmt.Errorf("step %d: ppo sums: %w", step, err)
	}
	N := int(sums[sumTokens])
	t.PPO = PPOStats{Rows: int64(sums[sumRows]), Tokens: int64(N), PromptTokens: int64(sums[sumPrompt])}
	if N == 0 {
		return 0, 0, fmt.Errorf("step %d: no prompt of the global batch leaves room for an answer in rows of seq_len %d", step, s.SeqLen)
	}
	mean := sums[sumAdv] / float64(N)
	variance := max(sums[sumAdv2]/float64(N)-mean*mean, 0)
	for _, ro := range st.rolls {
		for r := range ro.adv {
			ro.adv[r] = model.Whiten(ro.adv[r], mean, variance)
		}
	}
	t.PPO.Score = sums[sumScore] / sums[sumRows]
	t.PPO.KL = sums[sumKL] / sums[sumRows]
	t.PPO.Length = float64(N) / sums[sumRows]
	t.PPO.Beta = t.PPOBeta
	st.nextBeta = t.PPOBeta
	if p.TargetKL > 0 {
		lo, hi := s.betaBounds()
		st.nextBeta = klController(t.PPOBeta, t.PPO.KL, p.TargetKL, s.GlobalBatch(), p.KLHorizon, lo, hi)
	}

	coefs := model.PPOCoefs{ClipEps: p.ClipEps, ValueClip: p.ValueClip, VFCoef: p.VFCoef, EntCoef: p.EntCoef}
	epochSums := make([][]float64, len(streams)) // per stream, summed over the epochs
	for i := range epochSums {
		epochSums[i] = make([]float64, ppoEpochSumLen)
	}
	var total []float64 // the epoch sums over all streams, once the last epoch's are in
	sumEpochs := func() error {
		var err error
		total, err = t.streamSums(ctx, streams, epochSums, ppoEpochSumLen)
		return err
	}
	var lossSum float64
	var lossFixed int64
	limit := exactLimit(s.Streams)
	for e := range p.Epochs {
		last := e == p.Epochs-1
		t.Model.ZeroGrad()
		lossSum, lossFixed = 0, 0
		if acc != nil && len(st.rolls) == 0 {
			clear(acc)
		}
		for i, ro := range st.rolls {
			if err := ctx.Err(); err != nil {
				return 0, 0, err
			}
			final := last && i == len(st.rolls)-1
			var cb func(lo, hi int)
			if final {
				cb = ready
			}
			var sink *exactSink
			if acc != nil {
				// Exact mode: each stream's gradient on its own, into acc in fixed
				// point (as GradientsExact does for the other objectives).
				if i > 0 {
					t.Model.ZeroGrad()
				}
				sink = &exactSink{acc: acc, g: t.Model.Grads.Slab, add: i > 0, limit: limit, ready: cb, step: step, stream: streams[i], streams: s.Streams}
				cb = sink.take
			}
			var before func() error // the last micro-batch sums the measures before its backward
			if final {
				before = sumEpochs
			}
			ls, err := t.ppoMicroBatch(ro, coefs, N, epochSums[i], before, cb)
			if err == nil && sink != nil {
				err = sink.done()
			}
			if err != nil {
				return 0, 0, fmt.Errorf("step %d epoch %d: %w", step, e, err)
			}
			lossSum += ls
			if acc != nil {
				q := math.Ldexp(ls, ExactLossBits)
				if !(math.Abs(q) <= limit) {
					return 0, 0, fmt.Errorf("%w: step %d stream %d: loss %g", ErrExactRange, step, streams[i], ls)
				}
				lossFixed += int64(math.RoundToEven(q))
			}
		}
		if len(st.rolls) == 0 && last {
			// A rank without streams still sums the epoch's measures with the others.
			if err := sumEpochs(); err != nil {
				return 0, 0, fmt.Errorf("step %d: ppo sums: %w", step, err)
			}
		}
		if last {
			break
		}
		if err := t.innerUpdate(ctx, step, acc); err != nil {
			return 0, 0, fmt.Errorf("step %d epoch %d: %w", step, e, err)
		}
	}
	den := float64(N) * float64(p.Epochs)
	t.PPO.Entropy = total[esEntropy] / den
	t.PPO.ClipFrac = total[esClipped] / den
	t.PPO.ValueLoss = total[esValue] / den
	t.PPO.PolicyLoss = total[esPolicy] / den
	return lossSum, lossFixed, nil
}

// exactSink converts one stream's gradient ranges, as backward hands them over, to
// fixed point in acc (stored for the first stream, added for the others) and passes
// each range on to ready (the last stream of the last epoch).
type exactSink struct {
	acc     []int64
	g       []float32
	add     bool
	limit   float64
	ready   func(lo, hi int)
	step    int64
	stream  int
	streams int
	taken   int
	err     error
}

func (k *exactSink) take(lo, hi int) {
	k.taken += hi - lo
	if k.err != nil {
		return
	}
	if j, ok := toFixed(k.acc[lo:hi], k.g[lo:hi], ExactGradBits, k.limit, k.add); !ok {
		k.err = fmt.Errorf("%w: step %d stream %d: gradient value %g at index %d is outside ±%g",
			ErrExactRange, k.step, k.stream, k.g[lo+j], lo+j, ExactGradLimit(k.streams))
		return
	}
	if k.ready != nil {
		k.ready(lo, hi)
	}
}

func (k *exactSink) done() error {
	if k.err != nil {
		return k.err
	}
	if k.taken != len(k.acc) {
		return fmt.Errorf("trainer: exact mode: backward reported %d of %d gradient values final", k.taken, len(k.acc))
	}
	return nil
}

// The step sums of the rollouts and of the epochs (streamSums).
const (
	sumTokens = iota
	sumPrompt
	sumRows
	sumAdv
	sumAdv2
	sumScore
	sumKL
	ppoSumLen
)

const (
	esClipped = iota
	esEntropy
	esValue
	esPolicy
	ppoEpochSumLen
)

// ppoMicroBatch runs the PPO loss of one stream's rollouts forward and backward at
// the current weights, normalised by the global batch's N tokens, adding its
// measures to es (the stream's, ppoEpochSumLen). before, when set (the last
// micro-batch of the last epoch), runs between the loss and the backward, whose
// ready then hands the gradients on.
func (t *Trainer) ppoMicroBatch(ro *rollout, c model.PPOCoefs, N int, es []float64, before func() error, ready func(lo, hi int)) (float64, error) {
	b, T := t.Spec.MicroBatch, t.Spec.SeqLen
	out, err := t.Model.ForwardPolicy(ro.in, ro.tg, b, T)
	if err != nil {
		return 0, err
	}
	var tk model.PPOTokens
	for r, acts := range ro.acts {
		for _, pos := range acts {
			i := r*T + pos
			tk.Logp = append(tk.Logp, float64(out.LogProbs[i]))
			tk.Entropy = append(tk.Entropy, float64(out.Entropy[i]))
			tk.Value = append(tk.Value, float64(out.Values[i]))
		}
		tk.OldLogp = append(tk.OldLogp, ro.oldLp[r]...)
		tk.OldValue = append(tk.OldValue, ro.oldV[r]...)
		tk.Adv = append(tk.Adv, ro.adv[r]...)
		tk.Ret = append(tk.Ret, ro.ret[r]...)
	}
	sums, dlogp, dent, dval := model.PPOLoss(c, tk, N)
	es[esClipped] += float64(sums.Clipped)
	es[esEntropy] += sums.Entropy
	es[esValue] += sums.Value
	es[esPolicy] += sums.Policy
	if before != nil {
		if err := before(); err != nil {
			return 0, fmt.Errorf("ppo sums: %w", err)
		}
	}
	gl, ge, gv := make([]float32, b*T), make([]float32, b*T), make([]float32, b*T)
	k := 0
	for r, acts := range ro.acts {
		for _, pos := range acts {
			i := r*T + pos
			gl[i], ge[i], gv[i] = float32(dlogp[k]), float32(dent[k]), float32(dval[k])
			k++
		}
	}
	if err := t.Model.BackwardPolicy(gl, ge, gv, ready); err != nil {
		return 0, err
	}
	return sums.Loss(c, N), nil
}

// innerUpdate sums the gradients over the ranks and applies them: clipped, one AdamW
// update at the learning rate of the trainer's step (which does not advance). In
// exact mode the sum is acc's, as integers, converted to the gradients once.
func (t *Trainer) innerUpdate(ctx context.Context, step int64, acc []int64) error {
	switch {
	case acc != nil:
		if err := t.sumInt64(ctx, acc); err != nil {
			return fmt.Errorf("gradient all-reduce: %w", err)
		}
		t.ExactGrads(acc)
	case t.reducer != nil:
		if err := t.reducer.SumFloat32(ctx, t.Model.Grads.Slab); err != nil {
			return fmt.Errorf("gradient all-reduce: %w", err)
		}
	}
	s := t.Spec
	norm := model.ClipGradNorm(t.Model.Grads.Slab, s.GradClip)
	if math.IsNaN(norm) || math.IsInf(norm, 0) {
		return fmt.Errorf("gradient norm is %v: training diverged", norm)
	}
	t.ppo.dirty = true
	lr := LearningRate(step, s.WarmupSteps, s.Steps, s.LR, s.MinLR)
	return t.Opt.Update(s.Model, s.AdamW, lr, t.Model.Params.Slab, t.Model.Grads.Slab)
}

// rollout samples and scores the answers of stream's micro-batch at step with the
// current weights.
func (t *Trainer) rollout(ctx context.Context, step int64, stream int) (*rollout, error) {
	s, st := t.Spec, t.ppo
	b, T := s.MicroBatch, s.SeqLen
	if err := t.data.Batch(ctx, stream, step, t.inputs, t.targets); err != nil {
		return nil, err
	}
	ro := &rollout{in: make([]int32, b*T), tg: make([]int32, b*T), acts: make([][]int, b),
		score: make([]float64, b), kl: make([]float64, b),
		refLp: make([][]float64, b), oldLp: make([][]float64, b), oldV: make([][]float64, b), adv: make([][]float64, b), ret: make([][]float64, b)}
	// Prompts: each row's tokens up to its first trained target.
	prompts := make([][]int32, 0, b)
	rows := make([]int, 0, b)
	var opts []model.GenerateOptions
	for r := range b {
		p := -1
		for tt := range T {
			if t.targets[r*T+tt] >= 0 {
				p = tt + 1
				break
			}
		}
		maxNew := min(s.PPO.MaxNewTokens, T-p)
		if p < 1 || maxNew < 1 {
			continue // no prompt, or no room for an answer: the row sits out
		}
		prompts = append(prompts, append([]int32(nil), t.inputs[r*T:r*T+p]...))
		rows = append(rows, r)
		opts = append(opts, model.GenerateOptions{MaxTokens: maxNew, Temperature: 1, Seed: rowSeed(s.Seed, step, stream, r), StopAtEOT: true, EOT: st.eot})
	}
	var gens []model.BatchResult
	if len(prompts) > 0 {
		var err error
		if gens, err = t.Model.GenerateBatch(ctx, prompts, opts, len(prompts)); err != nil {
			return nil, err
		}
	}
	// Rows: prompt, answer and (when sampled) the end-of-text, the answer's tokens
	// the targets; the reward model reads the prompt and answer without it.
	rmIn := make([]int32, b*T)
	last := make([]int, b)
	for i := range ro.in {
		ro.in[i], ro.tg[i], rmIn[i] = st.eot, -1, st.eot
	}
	for k, r := range rows {
		g := gens[k]
		if g.Err != nil {
			return nil, fmt.Errorf("sampling row %d: %w", r, g.Err)
		}
		seq := append(append([]int32(nil), prompts[k]...), g.Gen.Tokens...)
		copy(rmIn[r*T:], seq)
		last[r] = len(seq) - 1
		if g.Gen.Reason == model.StopEOT {
			seq = append(seq, st.eot)
		}
		P := len(prompts[k])
		copy(ro.in[r*T:], seq[:len(seq)-1])
		for pos := P - 1; pos < len(seq)-1; pos++ {
			ro.tg[r*T+pos] = seq[pos+1]
			ro.acts[r] = append(ro.acts[r], pos)
		}
	}
	out, err := t.Model.ForwardPolicy(ro.in, ro.tg, b, T)
	if err != nil {
		return nil, fmt.Errorf("policy: %w", err)
	}
	if _, _, err := st.ref.Forward(ro.in, ro.tg, b, T, true); err != nil {
		return nil, fmt.Errorf("ppo reference: %w", err)
	}
	refLoss := st.ref.Losses()
	scores, err := st.rm.ForwardReward(rmIn, last, b, T)
	if err != nil {
		return nil, fmt.Errorf("ppo reward model: %w", err)
	}
	for r, acts := range ro.acts {
		if len(acts) == 0 {
			continue
		}
		lp, lpRef, v := make([]float64, len(acts)), make([]float64, len(acts)), make([]float64, len(acts))
		for j, pos := range acts {
			i := r*T + pos
			lp[j], lpRef[j], v[j] = float64(out.LogProbs[i]), -float64(refLoss[i]), float64(out.Values[i])
			ro.kl[r] += lp[j] - lpRef[j]
		}
		ro.score[r] = float64(scores[r])
		ro.oldLp[r], ro.refLp[r], ro.oldV[r] = lp, lpRef, v
	}
	return ro, nil
}

// rewardScoreEps is added to the variance of the global batch's reward-model scores
// that ppo.whiten_rewards divides by, so a batch of equal scores stays finite.
const rewardScoreEps = 1e-8

// The step sums of the reward-model scores (rewardScores).
const (
	scoreRows = iota
	scoreSum
	scoreSum2
	scoreSumLen
)

// rewardScores sets the score each rollout's rewards add: the reward model's own,
// or with whiten the score standardised, (score - mean) / sqrt(variance + 1e-8),
// with the mean and variance of every answer of the step over all ranks, gathered
// as the advantages' are (streamSums), so the same bits for any world size.
func (t *Trainer) rewardScores(ctx context.Context, streams []int, whiten bool) error {
	rolls := t.ppo.rolls
	for _, ro := range rolls {
		ro.reward = slices.Clone(ro.score)
	}
	if !whiten {
		return nil
	}
	local := make([][]float64, len(streams))
	for i, ro := range rolls {
		v := make([]float64, scoreSumLen)
		for r, s := range ro.score {
			if len(ro.acts[r]) == 0 {
				continue
			}
			v[scoreRows]++
			v[scoreSum] += s
			v[scoreSum2] += s * s
		}
		local[i] = v
	}
	sums, err := t.streamSums(ctx, streams, local, scoreSumLen)
	if err != nil {
		return err
	}
	if sums[scoreRows] == 0 {
		return nil
	}
	mean := sums[scoreSum] / sums[scoreRows]
	variance := max(sums[scoreSum2]/sums[scoreRows]-mean*mean, 0)
	inv := 1 / math.Sqrt(variance+rewardScoreEps)
	for _, ro := range rolls {
		for r, s := range ro.score {
			ro.reward[r] = (s - mean) * inv
		}
	}
	return nil
}

// advantages computes the rollout's per-token rewards, -beta*(logp - logp_ref) with
// the row's reward score added to its last token, and from them GAE's advantages
// and returns.
func (ro *rollout) advantages(beta, gamma, lambda float64) {
	for r, acts := range ro.acts {
		if len(acts) == 0 {
			continue
		}
		rew := model.TokenRewards(ro.oldLp[r], ro.refLp[r], ro.reward[r], beta)
		ro.adv[r], ro.ret[r] = model.GAE(rew, ro.oldV[r], gamma, lambda)
	}
}
