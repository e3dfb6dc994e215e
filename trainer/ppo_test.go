package trainer

import (
	"context"
	"errors"
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
	} {
		s := base
		tc.edit(&s)
		err := s.Validate()
		if !errors.Is(err, ErrBadSpec) || !strings.Contains(err.Error(), tc.field+"=") {
			t.Errorf("%s: got %v, want an ErrBadSpec naming %s", tc.field, err, tc.field)
		}
	}
}
