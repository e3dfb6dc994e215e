package metrics

import "github.com/prometheus/client_golang/prometheus"

// PPOValues are the measures of one step of the ppo objective over the global batch
// (trainer.PPOStats).
type PPOValues struct {
	Reward, KL, Entropy, ClipFrac, ValueLoss, PolicyLoss, ResponseLen, Beta float64
}

func newPPOGauges(labels prometheus.Labels) *prometheus.GaugeVec {
	return prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "ringtrain_ppo",
		Help: "Measures of the last PPO step over the global batch: reward (mean reward-model score of an answer), " +
			"kl (mean summed logp - logp_ref of an answer), entropy (per token), clip_frac (share of tokens whose " +
			"ratio was clipped), value_loss and policy_loss (per token), response_len (tokens), beta (the KL coefficient the step used).",
		ConstLabels: labels}, []string{"measure"})
}

// SetPPO records the measures of the last PPO step.
func (w *Worker) SetPPO(v PPOValues) {
	if w == nil {
		return
	}
	for _, m := range []struct {
		name string
		v    float64
	}{{"reward", v.Reward}, {"kl", v.KL}, {"entropy", v.Entropy}, {"clip_frac", v.ClipFrac},
		{"value_loss", v.ValueLoss}, {"policy_loss", v.PolicyLoss}, {"response_len", v.ResponseLen}, {"beta", v.Beta}} {
		w.ppo.WithLabelValues(m.name).Set(m.v)
	}
}
