package trainer

import (
	"context"
	"errors"
	"math"
	"slices"
	"strings"
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
		if got := klController(0.1, tc.kl, 6, 32, 64); math.Abs(got-tc.want) > 1e-15 {
			t.Errorf("kl %v: beta %v, want %v", tc.kl, got, tc.want)
		}
	}
	// The horizon is the global batch (the smallest kl_horizon validation allows): the
	// coefficient changes by at most ±20% a step and stays positive.
	if got := klController(0.1, 0, 6, 32, 32); math.Abs(got-0.08) > 1e-15 {
		t.Errorf("horizon = batch: beta %v, want 0.08", got)
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
		want := klController(before, tr.PPO.KL, 1e-3, 4, 4)
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
