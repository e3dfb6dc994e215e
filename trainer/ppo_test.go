package trainer

import (
	"context"
	"errors"
	"math"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/ringtrain/ringtrain/model"
)

// promptRows is a BatchSource of SFT-like rows: a prompt of 3 tokens that depend on
// the stream, row and step, then one trained target, the rest untrained.
type promptRows struct{ b, T int }

func (p promptRows) Batch(_ context.Context, stream int, step int64, inputs, targets []int32) error {
	for r := range p.b {
		row, tg := inputs[r*p.T:(r+1)*p.T], targets[r*p.T:(r+1)*p.T]
		for i := range row {
			row[i], tg[i] = 0, -1
		}
		row[0], row[1], row[2] = 1, int32(2+stream), int32(5+r+int(step%3))
		tg[2] = 9
	}
	return nil
}

// ppoTestTrainer builds a ppo trainer on a tiny model with its own frozen reference
// and reward model: 2 streams of 2 prompts, rows of 12 tokens, 2 epochs.
func ppoTestTrainer(t *testing.T) *Trainer {
	t.Helper()
	lm := model.Config{Layers: 1, Heads: 2, Embd: 16, MaxSeqLen: 12, VocabSize: 12}
	spec := DefaultSpec()
	spec.Model = lm
	spec.Model.ValueHead = true
	spec.Objective, spec.SeqLen, spec.MicroBatch, spec.Streams, spec.Steps = PPO, 12, 2, 2, 3
	spec.InitFrom, spec.Beta, spec.LR, spec.MinLR = "sft", 0.1, 1e-2, 1e-3
	p := PPOSpec{RewardModel: "rm", MaxNewTokens: 5, Epochs: 2}.withDefaults()
	spec.PPO = &p
	m, err := model.New(spec.Model, nil)
	if err != nil {
		t.Fatal(err)
	}
	m.InitWeights(1)
	m.InitValue(1)
	ref, err := model.New(lm, nil)
	if err != nil {
		t.Fatal(err)
	}
	copy(ref.Params.Slab, m.Params.Slab)
	rmCfg := lm
	rmCfg.NumLabels = 1
	rm, err := model.New(rmCfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	rm.InitWeights(2)
	rm.InitScore(3)
	tr, err := New(spec, m, model.NewAdamW(spec.Model), promptRows{b: 2, T: 12}, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := tr.SetPPOModels(ref, rm, 11); err != nil {
		t.Fatal(err)
	}
	return tr
}

// TestPPORollbackRecomputesTheStep: the inner update of a ppo step changes the
// weights; Rollback restores the weights and the optimizer state of the step's start
// bit for bit, and computing the step again samples the same rollouts and gives the
// same gradients, loss and measures (what a worker relies on after a fault).
func TestPPORollbackRecomputesTheStep(t *testing.T) {
	tr := ppoTestTrainer(t)
	ctx := context.Background()
	streams := tr.Spec.AllStreams()
	w0 := slices.Clone(tr.Model.Params.Slab)
	loss1, err := tr.Gradients(ctx, 0, streams, nil)
	if err != nil {
		t.Fatal(err)
	}
	g1, st1 := slices.Clone(tr.Model.Grads.Slab), tr.PPO
	if slices.Equal(tr.Model.Params.Slab, w0) || tr.Opt.Step != 1 {
		t.Fatalf("the inner update left the weights as they were (optimizer step %d)", tr.Opt.Step)
	}
	if st1.Rows != 4 || st1.Tokens < 4 || st1.Entropy <= 0 {
		t.Fatalf("measures %+v: want 4 answers with tokens and entropy", st1)
	}
	tr.Rollback()
	if !slices.Equal(tr.Model.Params.Slab, w0) || tr.Opt.Step != 0 || slices.ContainsFunc(tr.Opt.M, func(v float32) bool { return v != 0 }) {
		t.Fatalf("Rollback did not restore the step's start (optimizer step %d)", tr.Opt.Step)
	}
	loss2, err := tr.Gradients(ctx, 0, streams, nil)
	if err != nil {
		t.Fatal(err)
	}
	if loss2 != loss1 || tr.PPO != st1 || !slices.Equal(tr.Model.Grads.Slab, g1) {
		t.Fatalf("recomputed step: loss %v vs %v, measures %+v vs %+v, gradients equal %v", loss2, loss1, tr.PPO, st1, slices.Equal(tr.Model.Grads.Slab, g1))
	}
	if _, _, err := tr.Apply(); err != nil {
		t.Fatal(err)
	}
	tr.Rollback() // after Apply the step is final: nothing to undo
	if slices.Equal(tr.Model.Params.Slab, w0) || tr.Step != 1 {
		t.Fatal("Rollback after Apply undid a finished step")
	}
}

// TestPPOSpecValidate names the bad field of ppo jobs and refuses ppo settings on
// other objectives.
func TestPPOSpecValidate(t *testing.T) {
	base := DefaultSpec()
	base.Model.VocabSize, base.Model.MaxSeqLen = 50, 64
	base.Objective, base.InitFrom = PPO, "sft"
	base.PPO = &PPOSpec{RewardModel: "rm"}
	if err := base.Validate(); err != nil {
		t.Fatalf("a valid ppo spec: %v", err)
	}
	adaptive := base
	adaptive.PPO = &PPOSpec{RewardModel: "rm", TargetKL: 6}
	if err := adaptive.Validate(); err != nil || adaptive.PPO.withDefaults().KLHorizon != DefaultKLHorizon {
		t.Fatalf("a valid ppo spec with target_kl: %v (horizon %d)", err, adaptive.PPO.withDefaults().KLHorizon)
	}
	for _, tc := range []struct {
		field string
		edit  func(s *Spec)
	}{
		{"init_from", func(s *Spec) { s.InitFrom = "" }},
		{"ppo.reward_model", func(s *Spec) { s.PPO = nil }},
		{"ppo.reward_model", func(s *Spec) { s.PPO = &PPOSpec{} }},
		{"ppo.clip_eps", func(s *Spec) { s.PPO = &PPOSpec{RewardModel: "rm", ClipEps: 1.5} }},
		{"ppo.gamma", func(s *Spec) { s.PPO = &PPOSpec{RewardModel: "rm", Gamma: -1} }},
		{"ppo.epochs", func(s *Spec) { s.PPO = &PPOSpec{RewardModel: "rm", Epochs: -2} }},
		{"ppo", func(s *Spec) { s.Objective, s.InitFrom = SFT, "" }},
		{"beta", func(s *Spec) { s.Objective, s.PPO, s.Beta = CausalLM, nil, 0.1 }},
		{"ppo.target_kl", func(s *Spec) { s.PPO = &PPOSpec{RewardModel: "rm", TargetKL: -1} }},
		{"ppo.kl_horizon", func(s *Spec) { s.PPO = &PPOSpec{RewardModel: "rm", KLHorizon: 100} }},
		{"ppo.kl_horizon", func(s *Spec) { s.PPO = &PPOSpec{RewardModel: "rm", TargetKL: 6, KLHorizon: s.GlobalBatch() - 1} }},
		{"ppo.min_beta", func(s *Spec) { s.PPO = &PPOSpec{RewardModel: "rm", MinBeta: 0.01} }},
		{"ppo.max_beta", func(s *Spec) { s.PPO = &PPOSpec{RewardModel: "rm", MaxBeta: 1} }},
		{"ppo.min_beta", func(s *Spec) { s.PPO = &PPOSpec{RewardModel: "rm", TargetKL: 6, MinBeta: -0.01} }},
		{"ppo.max_beta", func(s *Spec) { s.PPO = &PPOSpec{RewardModel: "rm", TargetKL: 6, MaxBeta: math.Inf(1)} }},
		{"ppo.min_beta", func(s *Spec) { s.PPO = &PPOSpec{RewardModel: "rm", TargetKL: 6, MinBeta: math.NaN()} }},
		// beta 0.1 must lie in [min_beta, max_beta]; beta 0 means DefaultPPOBeta.
		{"ppo.min_beta", func(s *Spec) { s.Beta, s.PPO = 0.1, &PPOSpec{RewardModel: "rm", TargetKL: 6, MinBeta: 0.2} }},
		{"ppo.max_beta", func(s *Spec) { s.Beta, s.PPO = 0.1, &PPOSpec{RewardModel: "rm", TargetKL: 6, MaxBeta: 0.05} }},
		{"ppo.min_beta", func(s *Spec) { s.PPO = &PPOSpec{RewardModel: "rm", TargetKL: 6, MinBeta: DefaultPPOBeta * 1.5} }},
		{"ppo.max_beta", func(s *Spec) { s.PPO = &PPOSpec{RewardModel: "rm", TargetKL: 6, MaxBeta: DefaultPPOBeta / 2} }},
		// A default bound beyond a bound that is set: min_beta above beta*100.
		{"ppo.max_beta", func(s *Spec) {
			s.Beta, s.PPO = 0.1, &PPOSpec{RewardModel: "rm", TargetKL: 6, MinBeta: 0.1, MaxBeta: 0.09}
		}},
	} {
		s := base
		tc.edit(&s)
		err := s.Validate()
		if !errors.Is(err, ErrBadSpec) || !strings.Contains(err.Error(), tc.field+"=") {
			t.Errorf("%s: got %v, want an ErrBadSpec naming %s", tc.field, err, tc.field)
		}
	}
}

// TestKLController: the adaptive KL coefficient moves by e*answers/horizon, e the
// relative KL error clipped to ±0.2, and stays put at the target.
func TestKLController(t *testing.T) {
	for _, tc := range []struct {
		kl, want float64
	}{
		{6, 0.1},                   // on target
		{6.6, 0.1 * (1 + 0.1*0.5)}, // 10% over: e = 0.1
		{5.4, 0.1 * (1 - 0.1*0.5)}, // 10% under
		{60, 0.1 * (1 + 0.2*0.5)},  // far over: e clipped to 0.2
		{0, 0.1 * (1 - 0.2*0.5)},   // no KL at all: e clipped to -0.2
		{-3, 0.1 * (1 - 0.2*0.5)},  // a negative estimate
	} {
		if got := klController(0.1, tc.kl, 6, 32, 64, 0, math.Inf(1)); math.Abs(got-tc.want) > 1e-15 {
			t.Errorf("kl %v: beta %v, want %v", tc.kl, got, tc.want)
		}
	}
	// The horizon is the global batch (the smallest kl_horizon validation allows): the
	// coefficient changes by at most ±20% a step and stays positive.
	if got := klController(0.1, 0, 6, 32, 32, 0, math.Inf(1)); math.Abs(got-0.08) > 1e-15 {
		t.Errorf("horizon = batch: beta %v, want 0.08", got)
	}
	// The bounds hold the coefficient: a KL under the target lowers it to min_beta
	// and no further, one over it raises it to max_beta; inside them it moves freely.
	const lo, hi = 0.001, 10
	for _, tc := range []struct {
		beta, kl, want float64
	}{
		{0.00105, 0, lo},          // 0.00105 * 0.8 = 0.00084: held at lo
		{lo, 0, lo},               // at the floor, the KL still under target: stays
		{lo, 60, lo * 1.2},        // leaves the floor as soon as the KL is over
		{9, 60, hi},               // 9 * 1.2 = 10.8: held at hi
		{hi, 60, hi},              // at the ceiling
		{hi, 0, hi * 0.8},         // and leaves it
		{0.1, 0, 0.1 * 0.8},       // inside: as without bounds
		{0.002, 5.4, 0.002 * 0.9}, // 10% under, e*B/horizon = -0.1
	} {
		if got := klController(tc.beta, tc.kl, 6, 32, 32, lo, hi); math.Abs(got-tc.want) > 1e-15*tc.want {
			t.Errorf("beta %v kl %v bounded to [%v, %v]: %v, want %v", tc.beta, tc.kl, lo, hi, got, tc.want)
		}
	}
	// A run whose KL stays under the target: beta falls 20% a step and stops at
	// min_beta, the job's beta / DefaultBetaRange by default, where the demonstration
	// that motivated the bound went on to 0.0002.
	spec := DefaultSpec()
	spec.Beta, spec.PPO = 0.1, &PPOSpec{RewardModel: "rm", TargetKL: 3}
	lo0, hi0 := spec.betaBounds()
	if lo0 != 0.1/DefaultBetaRange || hi0 != 0.1*DefaultBetaRange {
		t.Fatalf("default bounds [%v, %v], want beta/%d and beta*%d", lo0, hi0, DefaultBetaRange, DefaultBetaRange)
	}
	beta := spec.Beta
	for range 100 {
		beta = klController(beta, 0.5, 3, 32, 32, lo0, hi0)
	}
	if beta != lo0 {
		t.Errorf("after 100 steps under the target beta is %v, want min_beta %v", beta, lo0)
	}
	spec.PPO.MinBeta, spec.PPO.MaxBeta = 0.05, 0.2
	if lo, hi := spec.betaBounds(); lo != 0.05 || hi != 0.2 {
		t.Errorf("bounds set in the spec read [%v, %v], want [0.05, 0.2]", lo, hi)
	}
}

// TestPPOAdaptiveKL: with ppo.target_kl a step's rewards use the coefficient the
// earlier steps left, Apply moves it by the controller from the step's global KL, a
// step that is rolled back and recomputed moves it once, and without target_kl it
// stays the job's beta.
func TestPPOAdaptiveKL(t *testing.T) {
	ctx := context.Background()
	fixed := ppoTestTrainer(t)
	tr := ppoTestTrainer(t)
	tr.Spec.PPO.TargetKL, tr.Spec.PPO.KLHorizon = 1e-3, 4 // the tiny policy's KL is never on target
	for step := range int64(3) {
		for _, x := range []*Trainer{fixed, tr} {
			if _, err := x.Gradients(ctx, step, x.Spec.AllStreams(), nil); err != nil {
				t.Fatal(err)
			}
		}
		before := tr.PPOBeta
		if tr.PPO.Beta != before {
			t.Fatalf("step %d used beta %v, want the coefficient %v", step, tr.PPO.Beta, before)
		}
		lo, hi := tr.Spec.betaBounds()
		want := klController(before, tr.PPO.KL, 1e-3, 4, 4, lo, hi)
		if step == 1 { // a failed step: recomputed before it is applied
			tr.Rollback()
			if _, err := tr.Gradients(ctx, step, tr.Spec.AllStreams(), nil); err != nil {
				t.Fatal(err)
			}
			if tr.PPOBeta != before {
				t.Fatalf("step %d: an unapplied step changed beta to %v", step, tr.PPOBeta)
			}
		}
		for _, x := range []*Trainer{fixed, tr} {
			if _, _, err := x.Apply(); err != nil {
				t.Fatal(err)
			}
		}
		if tr.PPOBeta != want || tr.PPOBeta == before {
			t.Fatalf("step %d: beta %v after Apply, want %v (KL %v)", step, tr.PPOBeta, want, tr.PPO.KL)
		}
		if fixed.PPOBeta != 0.1 || fixed.PPO.Beta != 0.1 {
			t.Fatalf("step %d: without target_kl beta became %v (step used %v)", step, fixed.PPOBeta, fixed.PPO.Beta)
		}
	}
	rec := Record{}
	tr.PPO.Record(rec)
	if rec["ppo_beta"] != tr.PPO.Beta {
		t.Fatalf("record ppo_beta %v, want %v", rec["ppo_beta"], tr.PPO.Beta)
	}
}

// TestPPOAdaptiveKLBounded: a trainer's adaptive coefficient stops at ppo.min_beta
// and ppo.max_beta: Apply sets the controller's update clamped to them.
func TestPPOAdaptiveKLBounded(t *testing.T) {
	ctx := context.Background()
	tr := ppoTestTrainer(t)
	tr.Spec.PPO.TargetKL, tr.Spec.PPO.KLHorizon = 1e-3, 4 // beta moves by ±20% a step
	tr.Spec.PPO.MinBeta, tr.Spec.PPO.MaxBeta = 0.095, 0.105
	atBound := 0
	for step := range int64(3) {
		if _, err := tr.Gradients(ctx, step, tr.Spec.AllStreams(), nil); err != nil {
			t.Fatal(err)
		}
		before := tr.PPOBeta
		free := klController(before, tr.PPO.KL, 1e-3, 4, 4, 0, math.Inf(1))
		if _, _, err := tr.Apply(); err != nil {
			t.Fatal(err)
		}
		if want := min(max(free, 0.095), 0.105); tr.PPOBeta != want {
			t.Fatalf("step %d: beta %v after Apply, want %v (unbounded %v, KL %v)", step, tr.PPOBeta, want, free, tr.PPO.KL)
		}
		if free < 0.095 || free > 0.105 {
			atBound++
		}
	}
	if atBound == 0 {
		t.Fatal("no step reached a bound: the test checks nothing")
	}
}

// TestPPOAdaptiveKLResume: a run resumed from a checkpoint of an adaptive-KL ppo
// run continues bit for bit as the uninterrupted run, because the checkpoint
// records the coefficient; one restored without it (the job's beta) does not.
func TestPPOAdaptiveKLResume(t *testing.T) {
	ctx := context.Background()
	adaptive := func() *Trainer {
		tr := ppoTestTrainer(t)
		tr.Spec.PPO.TargetKL, tr.Spec.PPO.KLHorizon = 1e-3, 4
		return tr
	}
	step := func(tr *Trainer) {
		t.Helper()
		if _, err := tr.Gradients(ctx, tr.Step, tr.Spec.AllStreams(), nil); err != nil {
			t.Fatal(err)
		}
		if _, _, err := tr.Apply(); err != nil {
			t.Fatal(err)
		}
	}
	a := adaptive()
	step(a)
	step(a)
	beta := a.PPOBeta
	ck := &model.Checkpoint{Config: a.Spec.Model, Params: slices.Clone(a.Model.Params.Slab),
		Opt:     &model.AdamW{M: slices.Clone(a.Opt.M), V: slices.Clone(a.Opt.V), Step: a.Opt.Step},
		Trainer: model.TrainerState{Step: a.Step, PPOBeta: &beta}}
	b, c := adaptive(), adaptive()
	if err := resumeFrom(b, ck, nil, "ckpt"); err != nil {
		t.Fatal(err)
	}
	ck.Trainer.PPOBeta = nil
	if err := resumeFrom(c, ck, nil, "ckpt"); err != nil {
		t.Fatal(err)
	}
	if b.PPOBeta != beta || c.PPOBeta != 0.1 || beta == 0.1 {
		t.Fatalf("restored beta %v (checkpoint %v), without it %v", b.PPOBeta, beta, c.PPOBeta)
	}
	for range 2 {
		step(a)
		step(b)
		step(c)
	}
	if !slices.Equal(a.Model.Params.Slab, b.Model.Params.Slab) || a.PPOBeta != b.PPOBeta || a.PPO != b.PPO {
		t.Fatalf("the resumed run differs: beta %v vs %v", b.PPOBeta, a.PPOBeta)
	}
	if slices.Equal(a.Model.Params.Slab, c.Model.Params.Slab) {
		t.Fatal("a run resumed with the job's beta trained the same weights: the test does not exercise beta")
	}
	ck.Trainer.PPOBeta = new(float64)
	if err := resumeFrom(adaptive(), ck, nil, "ckpt"); err == nil || !strings.Contains(err.Error(), "ppo_beta") {
		t.Fatalf("a checkpoint with ppo_beta 0: got %v", err)
	}
}

// TestPPOMeasuresInTensorBoard: every measure a ppo step adds to its record is one
// of the TensorBoard scalars, under ppo/.
func TestPPOMeasuresInTensorBoard(t *testing.T) {
	rec := Record{}
	PPOStats{}.Record(rec)
	if len(rec) < 8 {
		t.Fatalf("PPOStats.Record wrote %d fields", len(rec))
	}
	for field := range rec {
		i := slices.IndexFunc(tensorBoardScalars, func(s struct{ field, tag string }) bool { return s.field == field })
		if i < 0 {
			t.Errorf("%s is not a TensorBoard scalar", field)
		} else if want := "ppo/" + strings.TrimPrefix(field, "ppo_"); tensorBoardScalars[i].tag != want {
			t.Errorf("%s has tag %s, want %s", field, tensorBoardScalars[i].tag, want)
		}
	}
}

// rankSums is the Reducer of n ranks in one process: each call blocks until every
// rank has made it, and gives each the sum of their buffers.
type rankSums struct {
	n       int
	mu      sync.Mutex
	cond    *sync.Cond
	arrived int
	round   int
	accI    []int64
	accF    []float32
	outI    []int64
	outF    []float32
}

func newRankSums(n int) *rankSums {
	r := &rankSums{n: n}
	r.cond = sync.NewCond(&r.mu)
	return r
}

func (r *rankSums) SumInt64(_ context.Context, buf []int64) error {
	sumRanks(r, &r.accI, &r.outI, buf)
	return nil
}

func (r *rankSums) SumFloat32(_ context.Context, buf []float32) error {
	sumRanks(r, &r.accF, &r.outF, buf)
	return nil
}

// sumRanks adds one rank's buf into *acc (the round's first rank allocates it),
// waits for every rank, and copies the round's sum, *out, back into buf.
func sumRanks[T int64 | float32](r *rankSums, acc, out *[]T, buf []T) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if *acc == nil {
		*acc = make([]T, len(buf))
	}
	for i, v := range buf {
		(*acc)[i] += v
	}
	r.wait()
	copy(buf, *out)
}

// wait counts the caller in and blocks, r.mu held, until every rank has arrived.
func (r *rankSums) wait() {
	round := r.round
	if r.arrived++; r.arrived == r.n {
		r.outI, r.outF, r.accI, r.accF = r.accI, r.accF, nil, nil
		r.arrived = 0
		r.round++
		r.cond.Broadcast()
		return
	}
	for r.round == round {
		r.cond.Wait()
	}
}

// TestPPOStepTokens: a ppo step processes the prompt and answer tokens of its
// rollouts, not prompts × seq_len: PPOStats counts them over the global batch, the
// same for 1 rank and for 2 ranks of a stream each (each rank's share its own
// streams'), Apply adds them to TokensSeen once (a step rolled back and recomputed
// too), and a checkpoint's tokens_seen restores the count.
func TestPPOStepTokens(t *testing.T) {
	ctx := context.Background()
	tr := ppoTestTrainer(t)
	streams := tr.Spec.AllStreams()
	if _, err := tr.Gradients(ctx, 0, streams, nil); err != nil {
		t.Fatal(err)
	}
	// Counted directly: promptRows' prompts are 3 tokens, and a row's answer is its
	// trained targets (the end-of-text included when sampled).
	var prompts, answers int64
	for _, ro := range tr.ppo.rolls {
		for r := range ro.acts {
			if len(ro.acts[r]) == 0 {
				continue
			}
			prompts += 3
			for _, tg := range ro.tg[r*tr.Spec.SeqLen : (r+1)*tr.Spec.SeqLen] {
				if tg >= 0 {
					answers++
				}
			}
		}
	}
	global := tr.PPO.PromptTokens + tr.PPO.Tokens
	if tr.PPO.PromptTokens != prompts || tr.PPO.Tokens != answers || prompts == 0 {
		t.Fatalf("step 0: %d prompt and %d answer tokens, counted %d and %d", tr.PPO.PromptTokens, tr.PPO.Tokens, prompts, answers)
	}
	if padded := int64(tr.Spec.GlobalBatch() * tr.Spec.SeqLen); global >= padded {
		t.Fatalf("step 0 processed %d tokens, not fewer than the %d of its padded rows", global, padded)
	}
	if got := tr.LocalStepTokens(len(streams)); got != global {
		t.Errorf("a single process's share %d, the global %d", got, global)
	}

	// Two ranks of one stream each, summing over a shared reducer.
	ranks := [2]*Trainer{ppoTestTrainer(t), ppoTestTrainer(t)}
	twoRankStep(t, ctx, ranks)
	for i, rt := range ranks {
		if rt.PPO.PromptTokens != tr.PPO.PromptTokens || rt.PPO.Tokens != tr.PPO.Tokens {
			t.Errorf("rank %d of 2: %d prompt and %d answer tokens, one rank %d and %d", i, rt.PPO.PromptTokens, rt.PPO.Tokens, tr.PPO.PromptTokens, tr.PPO.Tokens)
		}
	}
	if a, b := ranks[0].LocalStepTokens(1), ranks[1].LocalStepTokens(1); a+b != global || a == 0 || b == 0 {
		t.Errorf("the ranks' shares %d + %d, the global batch %d", a, b, global)
	}

	// Apply counts the step once; a rolled-back, recomputed step too.
	if _, _, err := tr.Apply(); err != nil {
		t.Fatal(err)
	}
	if tr.TokensSeen() != global {
		t.Fatalf("after step 0 TokensSeen = %d, want %d", tr.TokensSeen(), global)
	}
	for range 2 {
		if _, err := tr.Gradients(ctx, 1, streams, nil); err != nil {
			t.Fatal(err)
		}
		tr.Rollback()
	}
	if _, err := tr.Gradients(ctx, 1, streams, nil); err != nil {
		t.Fatal(err)
	}
	second := tr.PPO.PromptTokens + tr.PPO.Tokens
	if _, _, err := tr.Apply(); err != nil {
		t.Fatal(err)
	}
	if want := global + second; tr.TokensSeen() != want {
		t.Fatalf("after step 1 TokensSeen = %d, want %d + %d", tr.TokensSeen(), global, second)
	}
	ck := &model.Checkpoint{Config: tr.Spec.Model, Params: slices.Clone(tr.Model.Params.Slab),
		Opt:     &model.AdamW{M: slices.Clone(tr.Opt.M), V: slices.Clone(tr.Opt.V), Step: tr.Opt.Step},
		Trainer: model.TrainerState{Step: tr.Step, TokensSeen: tr.TokensSeen()}}
	back := ppoTestTrainer(t)
	if err := resumeFrom(back, ck, nil, "ckpt"); err != nil {
		t.Fatal(err)
	}
	if back.TokensSeen() != tr.TokensSeen() {
		t.Errorf("resumed TokensSeen = %d, the checkpoint's tokens_seen %d", back.TokensSeen(), tr.TokensSeen())
	}
	ck.Trainer.TokensSeen = -1
	if err := resumeFrom(ppoTestTrainer(t), ck, nil, "ckpt"); err == nil || !strings.Contains(err.Error(), "tokens_seen") {
		t.Errorf("a negative tokens_seen: %v, want an error naming it", err)
	}
}

// TestPPOWhitenRewards: with ppo.whiten_rewards the reward-model scores that enter
// a step's rewards are standardised over the global batch (mean 0, standard
// deviation 1), the same bits for 1 rank and for 2 ranks of a stream each, while
// the step reports the raw scores' mean; without it they are the raw scores.
func TestPPOWhitenRewards(t *testing.T) {
	ctx := context.Background()
	whitened := func() *Trainer {
		tr := ppoTestTrainer(t)
		tr.Spec.PPO.WhitenRewards = true
		return tr
	}
	// answered returns the raw and the reward scores of the answered rows of rolls.
	answered := func(rolls []*rollout) (raw, rew []float64) {
		for _, ro := range rolls {
			for r := range ro.acts {
				if len(ro.acts[r]) > 0 {
					raw, rew = append(raw, ro.score[r]), append(rew, ro.reward[r])
				}
			}
		}
		return raw, rew
	}
	moments := func(x []float64) (mean, std float64) {
		for _, v := range x {
			mean += v
		}
		mean /= float64(len(x))
		for _, v := range x {
			std += (v - mean) * (v - mean)
		}
		return mean, math.Sqrt(std / float64(len(x)))
	}

	plain := ppoTestTrainer(t)
	if _, err := plain.Gradients(ctx, 0, plain.Spec.AllStreams(), nil); err != nil {
		t.Fatal(err)
	}
	if raw, rew := answered(plain.ppo.rolls); !slices.Equal(raw, rew) {
		t.Fatalf("without whiten_rewards the rewards add %v, not the raw scores %v", rew, raw)
	}

	tr := whitened()
	if _, err := tr.Gradients(ctx, 0, tr.Spec.AllStreams(), nil); err != nil {
		t.Fatal(err)
	}
	raw, rew := answered(tr.ppo.rolls)
	rawMean, rawStd := moments(raw)
	if len(raw) != 4 || rawStd < 1e-3 {
		t.Fatalf("raw scores %v: want 4 that differ", raw)
	}
	if mean, std := moments(rew); math.Abs(mean) > 1e-9 || math.Abs(std-1) > 1e-3 {
		t.Fatalf("whitened scores %v: mean %g, std %g, want 0 and 1 (raw %v)", rew, mean, std, raw)
	}
	if math.Abs(tr.PPO.Score-rawMean) > 1e-12 || tr.PPO.Score != plain.PPO.Score {
		t.Errorf("reported score %v, want the raw mean %v (unwhitened run %v)", tr.PPO.Score, rawMean, plain.PPO.Score)
	}

	ranks := [2]*Trainer{whitened(), whitened()}
	twoRankStep(t, ctx, ranks)
	for i, rt := range ranks {
		one, two := tr.ppo.rolls[i], rt.ppo.rolls[0]
		if !slices.Equal(two.reward, one.reward) || !slices.Equal(slices.Concat(two.adv...), slices.Concat(one.adv...)) {
			t.Errorf("stream %d: 2 ranks' reward scores %v, advantages %v; 1 rank's %v, %v", i, two.reward, two.adv, one.reward, one.adv)
		}
		if rt.PPO != tr.PPO {
			t.Errorf("rank %d of 2 measures %+v, one rank %+v", i, rt.PPO, tr.PPO)
		}
	}
}

// twoRankStep computes step 0's gradients on two ranks over one in-process reducer,
// rank i computing stream i, and fails the test on either rank's error.
func twoRankStep(t *testing.T, ctx context.Context, ranks [2]*Trainer) {
	t.Helper()
	sums := newRankSums(2)
	var wg sync.WaitGroup
	errs := make([]error, 2)
	for i, rt := range ranks {
		rt.SetReducer(sums)
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = rt.Gradients(ctx, 0, []int{i}, nil)
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
}
