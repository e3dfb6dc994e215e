package main

import (
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/ringtrain/ringtrain/trainer"
)

// registerPPO binds the ppo objective's flags (the job's ppo section) to f.ppo, and
// --prompts to the job's data: a ppo job's dataset is its prompts.
func (f *specFlags) registerPPO(fl *pflag.FlagSet) {
	p := &f.ppo
	fl.StringVar(&f.spec.Data, "prompts", "", "ppo: prompt dataset (an SFT dataset; each row's prompt is sampled, its answer ignored); the same as --data")
	fl.StringVar(&p.RewardModel, "reward-model", "", "ppo: reward model checkpoint (train --objective reward)")
	fl.IntVar(&p.MaxNewTokens, "max-new-tokens", 0, "ppo: most tokens sampled per answer (0: 32)")
	fl.IntVar(&p.Epochs, "ppo-epochs", 0, "ppo: optimizer updates per batch of rollouts, each over the whole batch (0: 4)")
	fl.Float64Var(&p.Gamma, "gamma", 0, "ppo: GAE discount (0: 1)")
	fl.Float64Var(&p.Lambda, "lam", 0, "ppo: GAE lambda (0: 0.95)")
	fl.Float64Var(&p.ClipEps, "clip-eps", 0, "ppo: policy ratio clip (0: 0.2)")
	fl.Float64Var(&p.ValueClip, "value-clip", 0, "ppo: value clip around the rollout's value (0: 0.2)")
	fl.Float64Var(&p.VFCoef, "vf-coef", 0, "ppo: value loss weight (0: 0.1)")
	fl.Float64Var(&p.EntCoef, "ent-coef", 0, "ppo: entropy bonus weight")
	fl.BoolVar(&p.WhitenRewards, "whiten-rewards", false, "ppo: standardise each step's reward-model scores over the global batch (mean 0, std 1) before the KL penalty")
	fl.Float64Var(&p.TargetKL, "target-kl", 0, "ppo: target KL per answer (nats) of an adaptive KL coefficient starting at --beta (0: beta fixed)")
	fl.IntVar(&p.KLHorizon, "kl-horizon", 0, "ppo: the adaptive KL controller's horizon in answers (0: 10000; at least --batch times the streams)")
	fl.Float64Var(&p.MinBeta, "min-beta", 0, "ppo: the adaptive KL coefficient's lower bound (0: --beta / 100; at most --beta)")
	fl.Float64Var(&p.MaxBeta, "max-beta", 0, "ppo: the adaptive KL coefficient's upper bound (0: --beta * 100; at least --beta)")
}

// ppoFlagNames are the flags of the job's ppo section.
var ppoFlagNames = []string{"reward-model", "max-new-tokens", "ppo-epochs", "gamma", "lam", "clip-eps", "value-clip", "vf-coef", "ent-coef", "whiten-rewards", "target-kl", "kl-horizon", "min-beta", "max-beta"}

// applyPPO sets the ppo fields whose flags were given over spec's ppo section (from
// --config or empty), creating it when a ppo job has none.
func (f *specFlags) applyPPO(cmd *cobra.Command, spec *trainer.Spec) {
	if !anyChanged(cmd, ppoFlagNames...) && (spec.Objective != trainer.PPO || spec.PPO != nil) {
		return
	}
	p := trainer.PPOSpec{}
	if spec.PPO != nil {
		p = *spec.PPO
	}
	set := func(name string, apply func()) {
		if cmd.Flags().Changed(name) {
			apply()
		}
	}
	set("reward-model", func() { p.RewardModel = f.ppo.RewardModel })
	set("max-new-tokens", func() { p.MaxNewTokens = f.ppo.MaxNewTokens })
	set("ppo-epochs", func() { p.Epochs = f.ppo.Epochs })
	set("gamma", func() { p.Gamma = f.ppo.Gamma })
	set("lam", func() { p.Lambda = f.ppo.Lambda })
	set("clip-eps", func() { p.ClipEps = f.ppo.ClipEps })
	set("value-clip", func() { p.ValueClip = f.ppo.ValueClip })
	set("vf-coef", func() { p.VFCoef = f.ppo.VFCoef })
	set("ent-coef", func() { p.EntCoef = f.ppo.EntCoef })
	set("whiten-rewards", func() { p.WhitenRewards = f.ppo.WhitenRewards })
	set("target-kl", func() { p.TargetKL = f.ppo.TargetKL })
	set("kl-horizon", func() { p.KLHorizon = f.ppo.KLHorizon })
	set("min-beta", func() { p.MinBeta = f.ppo.MinBeta })
	set("max-beta", func() { p.MaxBeta = f.ppo.MaxBeta })
	spec.PPO = &p
}
