package model

import "math"

// The PPO loss (Schulman et al. 2017, with the value clipping of the OpenAI baselines
// and the per-token KL penalty of Ziegler et al. 2019) as pure functions of the
// rollouts: the trainer (package trainer, ppo.go) computes the model's outputs and
// feeds these the numbers; ForwardPolicy and BackwardPolicy carry them through the
// network.

// PPOCoefs are the coefficients of the PPO loss.
type PPOCoefs struct {
	ClipEps   float64 // policy ratio clipped to [1-ClipEps, 1+ClipEps]
	ValueClip float64 // value clipped to old value ± ValueClip
	VFCoef    float64 // weight of the value loss
	EntCoef   float64 // weight of the entropy bonus (subtracted)
}

// TokenRewards returns the per-token rewards of one response of n tokens: minus
// beta times the KL estimate logp - logpRef of each token (logp under the policy that
// sampled it, logpRef under the frozen reference), with score, the reward model's
// score of the whole response, added to the last token.
func TokenRewards(logp, logpRef []float64, score, beta float64) []float64 {
	r := make([]float64, len(logp))
	for i := range r {
		r[i] = -beta * (logp[i] - logpRef[i])
	}
	if len(r) > 0 {
		r[len(r)-1] += score
	}
	return r
}

// GAE returns the generalised advantage estimates and the returns of one trajectory
// of n actions with per-action rewards and value estimates (values[i] is the value of
// the state before action i; the state after the last action is terminal, value 0):
//
//	delta_i = r_i + gamma*V_{i+1} - V_i,  A_i = delta_i + gamma*lambda*A_{i+1},  R_i = A_i + V_i
func GAE(rewards, values []float64, gamma, lambda float64) (adv, ret []float64) {
	n := len(rewards)
	adv, ret = make([]float64, n), make([]float64, n)
	var next, nextV float64
	for i := n - 1; i >= 0; i-- {
		delta := rewards[i] + gamma*nextV - values[i]
		next = delta + gamma*lambda*next
		adv[i], ret[i] = next, next+values[i]
		nextV = values[i]
	}
	return adv, ret
}

// Whiten returns (x - mean) / sqrt(variance + 1e-8) of each x, with the mean and the
// population variance of the whole global batch given: the batch's statistics, not
// those of one rank's share.
func Whiten(x []float64, mean, variance float64) []float64 {
	out := make([]float64, len(x))
	inv := 1 / math.Sqrt(variance+1e-8)
	for i, v := range x {
		out[i] = (v - mean) * inv
	}
	return out
}

// PPOSums are the sums over a batch's tokens of the PPO loss's terms.
type PPOSums struct {
	Tokens  int     // tokens (actions)
	Policy  float64 // clipped surrogate loss
	Value   float64 // clipped value loss (with its 1/2)
	Entropy float64 // entropy of the policy
	Clipped int     // tokens whose ratio lies outside [1-ClipEps, 1+ClipEps]
	KL      float64 // logp - oldLogp: how far the update moved from the rollouts
}

// PPOTokens holds, per token (action), what the PPO loss reads: the current policy's
// log-probability, entropy and value, and the rollout's old log-probability, old
// value, (whitened) advantage and return.
type PPOTokens struct {
	Logp, Entropy, Value        []float64
	OldLogp, OldValue, Adv, Ret []float64
}

// PPOLoss returns the sums of the loss terms of the tokens and the derivatives of
// loss/total with respect to each token's log-probability, entropy and value, where
// loss is the sum over tokens of
//
//	max(-A*ratio, -A*clip(ratio, 1-eps, 1+eps))
//	+ VFCoef * 1/2 * max((V-R)^2, (oldV + clip(V-oldV, -vclip, vclip) - R)^2)
//	- EntCoef * entropy
//
// with ratio = exp(logp - oldLogp), and total the global batch's token count, so that
// the derivatives summed over ranks are those of the global mean. Where the two sides
// of a max are equal each carries half the gradient, as torch.maximum does.
func PPOLoss(c PPOCoefs, tk PPOTokens, total int) (s PPOSums, dlogp, dent, dvalue []float64) {
	n := len(tk.Logp)
	dlogp, dent, dvalue = make([]float64, n), make([]float64, n), make([]float64, n)
	inv := 1 / float64(total)
	for i := range n {
		a := tk.Adv[i]
		ratio := math.Exp(tk.Logp[i] - tk.OldLogp[i])
		cr := min(max(ratio, 1-c.ClipEps), 1+c.ClipEps)
		l1, l2 := -a*ratio, -a*cr
		// d l1/d logp = -a*ratio; d l2/d logp = -a*ratio inside the clip range, else 0.
		g1 := -a * ratio
		g2 := 0.0
		if ratio > 1-c.ClipEps && ratio < 1+c.ClipEps {
			g2 = g1
		}
		s.Policy += max(l1, l2)
		dlogp[i] = maxGrad(l1, l2, g1, g2) * inv
		if math.Abs(ratio-1) > c.ClipEps {
			s.Clipped++
		}
		v, ov, r := tk.Value[i], tk.OldValue[i], tk.Ret[i]
		d := v - ov
		vc := ov + min(max(d, -c.ValueClip), c.ValueClip)
		e1, e2 := (v-r)*(v-r), (vc-r)*(vc-r)
		h1 := 2 * (v - r)
		h2 := 0.0
		if d > -c.ValueClip && d < c.ValueClip {
			h2 = 2 * (vc - r)
		}
		s.Value += 0.5 * max(e1, e2)
		dvalue[i] = c.VFCoef * 0.5 * maxGrad(e1, e2, h1, h2) * inv
		s.Entropy += tk.Entropy[i]
		dent[i] = -c.EntCoef * inv
		s.KL += tk.Logp[i] - tk.OldLogp[i]
	}
	s.Tokens = n
	return s, dlogp, dent, dvalue
}

// maxGrad is the gradient of max(a, b) given those of a and b (ties split evenly).
func maxGrad(a, b, ga, gb float64) float64 {
	switch {
	case a > b:
		return ga
	case b > a:
		return gb
	}
	return (ga + gb) / 2
}

// Loss returns the PPO loss of the sums per token of total:
// (Policy + vf*Value - ent*Entropy) / total.
func (s PPOSums) Loss(c PPOCoefs, total int) float64 {
	return (s.Policy + c.VFCoef*s.Value - c.EntCoef*s.Entropy) / float64(total)
}
