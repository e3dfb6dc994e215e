package trainer

import (
	"fmt"
	"math"

	"github.com/ringtrain/ringtrain/shard"
)

// PPO is reinforcement learning from a reward model with proximal policy
// optimisation (ppo.go): the policy samples answers to the prompts of an SFT
// dataset, a frozen reward model scores them, and the policy (with a value head) is
// updated for ppo.epochs optimizer updates per batch of rollouts, penalised by beta
// times its KL divergence from the frozen init_from model.
const PPO Objective = "ppo"

// PPOSpec holds the ppo objective's settings (the job's ppo section). A zero field
// means its default (DefaultPPO), except ent_coef, whose default is 0.
type PPOSpec struct {
	// RewardModel is the reward model's checkpoint (num_labels 1; train --objective
	// reward). Required.
	RewardModel string `yaml:"reward_model" json:"reward_model"`
	// MaxNewTokens bounds a sampled answer (it also ends at the end-of-text, and where
	// the row of seq_len tokens is full).
	MaxNewTokens int `yaml:"max_new_tokens" json:"max_new_tokens"`
	// Epochs is the number of optimizer updates per batch of rollouts, each over the
	// whole global batch.
	Epochs int `yaml:"epochs" json:"epochs"`
	// Gamma and Lambda are GAE's discount and trace decay.
	Gamma  float64 `yaml:"gamma" json:"gamma"`
	Lambda float64 `yaml:"lambda" json:"lambda"`
	// ClipEps clips the probability ratio to [1-clip_eps, 1+clip_eps]; ValueClip the
	// value to the rollout's value ± value_clip.
	ClipEps   float64 `yaml:"clip_eps" json:"clip_eps"`
	ValueClip float64 `yaml:"value_clip" json:"value_clip"`
	// VFCoef weighs the value loss, EntCoef the entropy bonus.
	VFCoef  float64 `yaml:"vf_coef" json:"vf_coef"`
	EntCoef float64 `yaml:"ent_coef" json:"ent_coef"`
	// WhitenRewards standardises each step's reward-model scores over the global
	// batch of answers (mean 0, standard deviation 1) before the KL penalty is
	// added, so beta weighs the KL against a score of unit spread and the value
	// head's targets stay small whatever the reward model's scale. The step's
	// reported reward (ppo_reward) stays the raw scores' mean. Default false.
	WhitenRewards bool `yaml:"whiten_rewards" json:"whiten_rewards,omitempty"`
	// TargetKL, when set, makes the KL coefficient adaptive (the proportional
	// controller of Ziegler et al. 2019, klController): beta starts at the job's beta
	// and after every step moves toward the value that holds the mean KL per answer
	// at target_kl nats. 0 (the default) keeps beta fixed.
	TargetKL float64 `yaml:"target_kl" json:"target_kl,omitempty"`
	// KLHorizon is the controller's horizon in sampled answers: a step of B answers
	// changes beta by the factor 1 + e*B/kl_horizon, e the KL's relative error
	// clipped to ±0.2. Set only with target_kl; default DefaultKLHorizon; at least
	// the global batch (micro_batch*streams), so beta stays positive.
	KLHorizon int `yaml:"kl_horizon" json:"kl_horizon,omitempty"`
	// MinBeta and MaxBeta bound the adaptive KL coefficient: the controller never
	// moves it below min_beta or above max_beta, so a KL that stays under (or over)
	// its target cannot drive beta toward 0 (or without limit). Set only with
	// target_kl; 0 means the default, the job's beta divided (min) or multiplied
	// (max) by DefaultBetaRange; min_beta <= beta <= max_beta.
	MinBeta float64 `yaml:"min_beta" json:"min_beta,omitempty"`
	MaxBeta float64 `yaml:"max_beta" json:"max_beta,omitempty"`
}

// DefaultKLHorizon is the adaptive KL controller's horizon, in answers, of a job
// that sets target_kl and no kl_horizon (the value of Ziegler et al.).
const DefaultKLHorizon = 10000

// klErrClip bounds the adaptive KL controller's relative error.
const klErrClip = 0.2

// DefaultBetaRange is how far the adaptive KL coefficient may move from the job's
// beta when ppo.min_beta and ppo.max_beta are not set: a hundredfold either way.
// That leaves the controller two orders of magnitude to find the coefficient that
// holds the target (more than a run of a few hundred steps needs: at its fastest,
// ±20% a step, it takes 21 steps to fall a hundredfold) and keeps a KL that stays
// under its target from dissolving the penalty: a run that lowered beta 10% a step
// went from 0.1 to 0.0002 (docs/preferences.md), where the penalty no longer holds
// the policy near its reference should the KL start to grow.
const DefaultBetaRange = 100

// klController returns the KL coefficient of the step after one that sampled
// answers answers with coefficient beta and measured a mean KL per answer of kl:
// beta*(1 + e*answers/horizon), with e = (kl - target)/target clipped to ±0.2, and
// the result clamped to [lo, hi] (ppo.min_beta, ppo.max_beta). It is a function of
// numbers every rank holds alike (the global batch's KL), so every rank, of any
// world size, computes the same bits.
func klController(beta, kl, target float64, answers, horizon int, lo, hi float64) float64 {
	e := min(max(kl/target-1, -klErrClip), klErrClip)
	return min(max(beta*(1+e*float64(answers)/float64(horizon)), lo), hi)
}

// betaBounds returns the bounds of a ppo job's adaptive KL coefficient: ppo.min_beta
// and ppo.max_beta, or for either left 0 the job's beta (0: DefaultPPOBeta) divided
// or multiplied by DefaultBetaRange.
func (s Spec) betaBounds() (lo, hi float64) {
	beta := s.Beta
	if beta == 0 {
		beta = DefaultPPOBeta
	}
	lo, hi = beta/DefaultBetaRange, beta*DefaultBetaRange
	if s.PPO != nil && s.PPO.MinBeta != 0 {
		lo = s.PPO.MinBeta
	}
	if s.PPO != nil && s.PPO.MaxBeta != 0 {
		hi = s.PPO.MaxBeta
	}
	return lo, hi
}

// DefaultPPOBeta is the KL penalty coefficient (the job's beta) of a ppo job that
// sets none.
const DefaultPPOBeta = 0.05

// DefaultPPO returns the ppo settings a job gets for the fields it leaves zero.
func DefaultPPO() PPOSpec {
	return PPOSpec{MaxNewTokens: 32, Epochs: 4, Gamma: 1, Lambda: 0.95, ClipEps: 0.2, ValueClip: 0.2, VFCoef: 0.1}
}

// withDefaults fills the zero fields of p from DefaultPPO.
func (p PPOSpec) withDefaults() PPOSpec {
	d := DefaultPPO()
	if p.MaxNewTokens == 0 {
		p.MaxNewTokens = d.MaxNewTokens
	}
	if p.Epochs == 0 {
		p.Epochs = d.Epochs
	}
	if p.TargetKL > 0 && p.KLHorizon == 0 {
		p.KLHorizon = DefaultKLHorizon
	}
	for _, f := range []struct{ v, d *float64 }{
		{&p.Gamma, &d.Gamma}, {&p.Lambda, &d.Lambda}, {&p.ClipEps, &d.ClipEps}, {&p.ValueClip, &d.ValueClip}, {&p.VFCoef, &d.VFCoef},
	} {
		if *f.v == 0 {
			*f.v = *f.d
		}
	}
	return p
}

// validatePPO checks the ppo objective's fields, and that no other objective sets
// them. model.value_head is not one of them: a PPO policy is a language model with a
// head, which the other causal objectives (sft, evaluation) can run as it is.
func (s Spec) validatePPO() error {
	bad := func(field string, v any, why string) error {
		return fmt.Errorf("%w: %s=%v %s", ErrBadSpec, field, v, why)
	}
	if s.Objective != PPO {
		switch {
		case s.PPO != nil:
			return bad("ppo", "{...}", fmt.Sprintf("is set only for objective ppo, not %s", s.Objective))
		}
		return nil
	}
	if s.InitFrom == "" {
		return bad("init_from", s.InitFrom, "is required for objective ppo: the policy starts from it and it is the frozen reference of the KL penalty")
	}
	if s.PPO == nil || s.PPO.RewardModel == "" {
		return bad("ppo.reward_model", "", "is required for objective ppo: the checkpoint of a reward model (train --objective reward)")
	}
	p := s.PPO.withDefaults()
	for _, f := range []struct {
		name string
		v    float64
	}{{"ppo.gamma", p.Gamma}, {"ppo.lambda", p.Lambda}, {"ppo.clip_eps", p.ClipEps}, {"ppo.value_clip", p.ValueClip}, {"ppo.vf_coef", p.VFCoef}, {"ppo.ent_coef", p.EntCoef}, {"ppo.target_kl", p.TargetKL},
		{"ppo.min_beta", p.MinBeta}, {"ppo.max_beta", p.MaxBeta}} {
		if math.IsNaN(f.v) || math.IsInf(f.v, 0) || f.v < 0 {
			return bad(f.name, f.v, "must be a finite number >= 0")
		}
	}
	switch {
	case p.MaxNewTokens < 1:
		return bad("ppo.max_new_tokens", p.MaxNewTokens, "must be >= 1")
	case p.Epochs < 1:
		return bad("ppo.epochs", p.Epochs, "must be >= 1")
	case p.Gamma > 1:
		return bad("ppo.gamma", p.Gamma, "must be in (0, 1]")
	case p.Lambda > 1:
		return bad("ppo.lambda", p.Lambda, "must be in (0, 1]")
	case p.ClipEps >= 1:
		return bad("ppo.clip_eps", p.ClipEps, "must be in (0, 1)")
	case p.KLHorizon != 0 && p.TargetKL == 0:
		return bad("ppo.kl_horizon", p.KLHorizon, "is set only with ppo.target_kl (the adaptive KL coefficient)")
	case p.TargetKL > 0 && p.KLHorizon < s.GlobalBatch():
		return bad("ppo.kl_horizon", p.KLHorizon, fmt.Sprintf("must be at least the global batch of %d answers (micro_batch*streams), so a step changes beta by at most ±20%%", s.GlobalBatch()))
	case p.MinBeta != 0 && p.TargetKL == 0:
		return bad("ppo.min_beta", p.MinBeta, "is set only with ppo.target_kl (it bounds the adaptive KL coefficient)")
	case p.MaxBeta != 0 && p.TargetKL == 0:
		return bad("ppo.max_beta", p.MaxBeta, "is set only with ppo.target_kl (it bounds the adaptive KL coefficient)")
	}
	if p.TargetKL > 0 {
		lo, hi := s.betaBounds()
		beta := s.Beta
		if beta == 0 {
			beta = DefaultPPOBeta
		}
		switch {
		case lo > beta:
			return bad("ppo.min_beta", lo, fmt.Sprintf("must be at most beta=%v, the adaptive KL coefficient's start", beta))
		case hi < beta:
			return bad("ppo.max_beta", hi, fmt.Sprintf("must be at least beta=%v, the adaptive KL coefficient's start", beta))
		}
	}
	return nil
}

// resolvePPO completes a ppo job from its dataset: the prompts are an SFT dataset's
// rows (the tokens before each row's first trained target), seq_len its rows' T; the
// model gets a value head, ppo its defaults and beta DefaultPPOBeta when unset (and
// with target_kl, the bounds of beta theirs).
func resolvePPO(spec *Spec, ds *shard.Dataset) error {
	m := ds.Manifest()
	if m.SFT == nil || m.IsPreference() {
		return fmt.Errorf("%w: objective=ppo reads its prompts from an SFT dataset (ringtrain prepare --format sft or --synthetic TASK), and dataset %s is not one", ErrBadSpec, spec.Data)
	}
	if spec.SeqLen != m.SFT.RowTokens-1 {
		return fmt.Errorf("%w: seq_len=%d, but prompt dataset %s holds rows of %d tokens: seq_len must be %d (--seq %d)",
			ErrBadSpec, spec.SeqLen, spec.Data, m.SFT.RowTokens, m.SFT.RowTokens-1, m.SFT.RowTokens-1)
	}
	spec.Model.ValueHead = true
	if spec.PPO == nil {
		spec.PPO = &PPOSpec{}
	}
	p := spec.PPO.withDefaults()
	spec.PPO = &p
	if spec.Beta == 0 {
		spec.Beta = DefaultPPOBeta
	}
	if p.TargetKL > 0 {
		// The adaptive coefficient's bounds, defaults filled in, as the job records them.
		p.MinBeta, p.MaxBeta = spec.betaBounds()
	}
	return nil
}

// ppoEvalObjective is the objective a checkpoint trained with o is evaluated with: a
// ppo policy is a language model, measured as sft measures one on an SFT dataset
// (its loss and token accuracy on the reference answers); the others as they are.
func ppoEvalObjective(o Objective) Objective {
	if o == PPO {
		return SFT
	}
	return o
}
