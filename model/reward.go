package model

import (
	"fmt"
	"math"
)

// rewardState is what ForwardReward keeps for BackwardReward.
type rewardState struct {
	last []int     // (B) the position read in each row
	lnf  []float32 // (B,C) the final LayerNorm's output at those positions
}

// ForwardReward runs a reward model (Config.NumLabels == 1) causally on inputs (B,T)
// and returns each row's reward: score.weight · h[b, last[b]], h the final LayerNorm's
// output and last[b] the position of the row's last real token (Hugging Face's
// GPT2ForSequenceClassification reads the token before the first padding). The LM head
// is not run. The returned slice (B) is the caller's. BackwardReward may follow.
//
// A model without a score head, bad ids or a last position outside [0,T) is an error
// wrapping ErrShape.
func (m *GPT) ForwardReward(inputs []int32, last []int, B, T int) ([]float32, error) {
	c := m.Config
	if c.NumLabels != 1 {
		return nil, fmt.Errorf("%w: ForwardReward needs a reward model (num_labels 1), this one has num_labels %d", ErrShape, c.NumLabels)
	}
	if len(last) != B {
		return nil, fmt.Errorf("%w: %d last positions for B=%d", ErrShape, len(last), B)
	}
	for b, t := range last {
		if t < 0 || t >= T {
			return nil, fmt.Errorf("%w: last position %d of row %d outside [0, %d)", ErrShape, t, b, T)
		}
	}
	m.noLogits = true
	_, _, err := m.forward(inputs, nil, nil, B, T, true)
	m.noLogits = false
	if err != nil {
		return nil, err
	}
	C := c.Embd
	a := m.acts
	if len(a.hostLnf) != B*T*C {
		a.hostLnf = make([]float32, B*T*C)
	}
	lnf := m.download(a.hostLnf, a.lnf)
	if lnf == nil {
		return nil, fmt.Errorf("model: forward on %s: %w", m.be.Device(), m.be.Err())
	}
	st := &rewardState{last: append([]int(nil), last...), lnf: make([]float32, B*C)}
	rewards := make([]float32, B)
	w := m.Params.Score
	for b, t := range last {
		h := st.lnf[b*C : (b+1)*C]
		copy(h, lnf[(b*T+t)*C:(b*T+t+1)*C])
		var r float64
		for i, v := range h {
			r += float64(w[i]) * float64(v)
		}
		rewards[b] = float32(r)
	}
	if m.dgrads != nil { // a frozen model (NewFrozen) has no backward
		m.reward = st
	}
	return rewards, nil
}

// InitScore draws a reward model's score head as InitWeights draws a weight (normal,
// std 0.02, from seed) and leaves every other parameter as it is: a reward model that
// starts from a language model's weights gets a fresh head. No-op without a head.
func (m *GPT) InitScore(seed uint64) {
	rng := newNormal(seed ^ 0x73636f7265) // "score": not the stream InitWeights uses
	for i := range m.Params.Score {
		m.Params.Score[i] = float32(rng.next() * 0.02)
	}
}

// BackwardReward adds into Grads the gradient of sum over b of dr[b] * reward[b] of the
// last ForwardReward: into the score head, then down through the final LayerNorm and
// every block. dr (B) is the loss's derivative with respect to each reward (for the
// Bradley-Terry loss of a global batch, see BradleyTerry). ready is as in Backward.
func (m *GPT) BackwardReward(dr []float32, ready func(lo, hi int)) error {
	st := m.reward
	if st == nil {
		return fmt.Errorf("%w: BackwardReward without a ForwardReward", ErrShape)
	}
	a := m.acts
	if len(dr) != a.B {
		return fmt.Errorf("%w: %d reward gradients for B=%d", ErrShape, len(dr), a.B)
	}
	m.reward = nil
	if ready == nil {
		ready = func(int, int) {}
	}
	C, T := m.Config.Embd, a.T
	// The score head's gradient, added to what the backend holds.
	ds := make([]float32, C)
	m.be.Download(ds, m.dgrads.Score)
	if err := m.be.Record().Wait(); err != nil {
		return fmt.Errorf("model: backward on %s: %w", m.be.Device(), err)
	}
	w := m.Params.Score
	dh := make([]float32, a.B*T*C) // (B,T,C) the gradient of the final LayerNorm's output
	for b, t := range st.last {
		h := st.lnf[b*C : (b+1)*C]
		g := dh[(b*T+t)*C : (b*T+t+1)*C]
		for i := range C {
			ds[i] += dr[b] * h[i]
			g[i] = dr[b] * w[i]
		}
	}
	m.be.Upload(m.dgrads.Score, ds)
	m.be.Upload(a.grads.dbuf, dh)
	return m.backwardFromHidden(ready)
}

// BradleyTerry returns the Bradley-Terry loss of preference pairs and its gradient:
// rewards holds the rows of n pairs, (2n), chosen at 2p and rejected at 2p+1; the loss
// sum is sum over pairs of -log sigmoid(r_c - r_r), and dr (2n) is the derivative of
// lossSum/total with respect to each reward, so that a global batch of total pairs,
// split over ranks, sums to the gradient of its mean loss. correct counts the pairs
// whose chosen reward is the higher.
func BradleyTerry(rewards []float32, total int) (lossSum float64, dr []float32, correct int) {
	dr = make([]float32, len(rewards))
	for p := 0; p+1 < len(rewards); p += 2 {
		d := float64(rewards[p]) - float64(rewards[p+1])
		lossSum += softplus(-d)
		// d/dd of -log sigmoid(d) is -sigmoid(-d).
		g := -sigmoid(-d) / float64(total)
		dr[p], dr[p+1] = float32(g), float32(-g)
		if d > 0 {
			correct++
		}
	}
	return lossSum, dr, correct
}

// DPO returns the DPO loss of preference pairs and its gradient with respect to each
// row's summed log-probability: logp and ref (2n) hold the summed log-probabilities of
// the answer tokens under the policy and the frozen reference, chosen at 2p and
// rejected at 2p+1. A pair's loss is -log sigmoid(beta*((pi_c-ref_c)-(pi_r-ref_r)));
// dlogp (2n) is the derivative of lossSum/total, and margins (n) the pairs' implicit
// reward margins beta*((pi_c-ref_c)-(pi_r-ref_r)).
func DPO(logp, ref []float64, beta float64, total int) (lossSum float64, dlogp []float64, margins []float64) {
	dlogp = make([]float64, len(logp))
	for p := 0; p+1 < len(logp); p += 2 {
		z := beta * ((logp[p] - ref[p]) - (logp[p+1] - ref[p+1]))
		lossSum += softplus(-z)
		g := -sigmoid(-z) * beta / float64(total)
		dlogp[p], dlogp[p+1] = g, -g
		margins = append(margins, z)
	}
	return lossSum, dlogp, margins
}

// ChosenNLL adds to DPO's loss the NLL term on the chosen answers: for each pair, alpha
// times its chosen answer's mean per-token NLL, -logp[2p]/tokens[2p] (logp the summed
// log-probability of the answer's tokens[2p] trained targets; an answer without any
// adds nothing). It returns the term's sum over the pairs and adds the derivative of
// that sum divided by total to dlogp (2n, as DPO returns it).
func ChosenNLL(logp []float64, tokens []int, alpha float64, total int, dlogp []float64) (lossSum float64) {
	for p := 0; p+1 < len(logp); p += 2 {
		if tokens[p] == 0 {
			continue
		}
		n := float64(tokens[p])
		lossSum += alpha * (-logp[p] / n)
		dlogp[p] -= alpha / (n * float64(total))
	}
	return lossSum
}

// RowTargets returns each row's number of trained targets (those not -1) of targets
// (B,T).
func RowTargets(targets []int32, B, T int) []int {
	out := make([]int, B)
	for b := range B {
		for _, tg := range targets[b*T : (b+1)*T] {
			if tg >= 0 {
				out[b]++
			}
		}
	}
	return out
}

// softplus is log(1+e^x), stable for large |x|.
func softplus(x float64) float64 {
	if x > 0 {
		return x + math.Log1p(math.Exp(-x))
	}
	return math.Log1p(math.Exp(x))
}

func sigmoid(x float64) float64 {
	if x >= 0 {
		return 1 / (1 + math.Exp(-x))
	}
	e := math.Exp(x)
	return e / (1 + e)
}

// RowLogProbs returns each row's summed log-probability of its targets from the
// per-position losses (B,T) of a Forward with targets: minus the sum of the losses at
// the positions whose target is not -1.
func RowLogProbs(losses []float32, targets []int32, B, T int) []float64 {
	out := make([]float64, B)
	for b := range B {
		for t := range T {
			if targets[b*T+t] >= 0 {
				out[b] -= float64(losses[b*T+t])
			}
		}
	}
	return out
}
