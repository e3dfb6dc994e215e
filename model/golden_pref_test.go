package model

import (
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ringtrain/ringtrain/tensor"
)

// TestGoldenReward checks the reward model against the reward case of
// scripts/golden/gen_pref_golden.py: the tiny GPT-2 with a score head read at each
// row's last real token, two preference pairs computed as two micro-batches (one pair
// each, as two streams would), the Bradley-Terry gradient of each normalised by the
// global pair count; the rewards, the loss and every gradient (score.weight included)
// are compared.
func TestGoldenReward(t *testing.T) { onBackends(t, goldenReward) }

func goldenReward(t *testing.T, be tensor.Backend) {
	f := openGolden(t, "pref_reward.safetensors")
	lm := loadGoldenModel(t)
	cfg := lm.Config
	cfg.NumLabels = 1
	m, err := New(cfg, be)
	if err != nil {
		t.Fatal(err)
	}
	copy(m.Params.Slab, lm.Params.Slab)
	copy(m.Params.Score, goldenF32(t, f, "score.weight"))
	inputs, last32 := goldenI32(t, f, "inputs"), goldenI32(t, f, "last")
	const rows, pairs = 4, 2
	T := len(inputs) / rows
	last := make([]int, rows)
	for i, v := range last32 {
		last[i] = int(v)
	}
	m.ZeroGrad()
	var sum float64
	var rewards []float32
	for p := range pairs {
		r, err := m.ForwardReward(inputs[2*p*T:(2*p+2)*T], last[2*p:2*p+2], 2, T)
		if err != nil {
			t.Fatal(err)
		}
		rewards = append(rewards, r...)
		s, dr, _ := BradleyTerry(r, pairs)
		sum += s
		if err := m.BackwardReward(dr, nil); err != nil {
			t.Fatal(err)
		}
	}
	compare(t, "rewards", rewards, goldenF32(t, f, "rewards"), 1e-5, 1e-5)
	compare(t, "loss", []float32{float32(sum / pairs)}, goldenF32(t, f, "loss"), 1e-6, 1e-6)
	// The head's gradient enters every position's residual stream at a scale of
	// score.weight (~0.3), so float32 rounding is relative to each tensor's largest
	// gradient rather than to each element: the absolute tolerance is 1e-4 of it.
	want := goldenSlab(t, f, m.Config, "grad.")
	for _, ten := range m.Config.Tensors() {
		w := want[ten.Offset : ten.Offset+ten.Size]
		var peak float64
		for _, v := range w {
			peak = max(peak, math.Abs(float64(v)))
		}
		compare(t, "grad."+ten.Name, m.Grads.Slab[ten.Offset:ten.Offset+ten.Size], w, 1e-7+1e-4*peak, 1e-4)
	}
}

// TestGoldenDPO checks the DPO loss and every gradient against the dpo case of
// scripts/golden/gen_pref_golden.py: each pair's rows are one micro-batch, the
// policy's summed answer log-probabilities come from the per-position losses, and the
// gradient runs through BackwardRows with each row's scale the derivative of the
// global mean loss with respect to its summed loss.
func TestGoldenDPO(t *testing.T) {
	onBackends(t, func(t *testing.T, be tensor.Backend) { goldenDPO(t, be, "pref_dpo.safetensors", false) })
}

// TestGoldenDPONLL checks the DPO loss with the NLL term on the chosen answers
// (ChosenNLL, alpha times each chosen answer's mean per-token NLL) and every gradient
// against the dpo_nll case of scripts/golden/gen_pref_golden.py, computed as
// TestGoldenDPO's: the term's gradient joins the chosen row's scale.
func TestGoldenDPONLL(t *testing.T) {
	onBackends(t, func(t *testing.T, be tensor.Backend) { goldenDPO(t, be, "pref_dpo_nll.safetensors", true) })
}

func goldenDPO(t *testing.T, be tensor.Backend, file string, nll bool) {
	f := openGolden(t, file)
	m := loadGoldenModelOn(t, be)
	inputs, targets, mask := goldenI32(t, f, "inputs"), goldenI32(t, f, "targets"), goldenI32(t, f, "mask")
	ref32, beta := goldenF32(t, f, "ref_logp"), float64(goldenF32(t, f, "beta")[0])
	var alpha float64
	if nll {
		alpha = float64(goldenF32(t, f, "alpha")[0])
		if alpha <= 0 {
			t.Fatalf("%s: alpha %v, want > 0", file, alpha)
		}
	}
	const rows, pairs = 4, 2
	T := len(inputs) / rows
	masked := make([]int32, len(targets))
	for i, tg := range targets {
		masked[i] = -1
		if mask[i] == 1 {
			masked[i] = tg
		}
	}
	m.ZeroGrad()
	var sum float64
	var logps []float32
	for p := range pairs {
		lo, hi := 2*p*T, (2*p+2)*T
		if _, _, err := m.Forward(inputs[lo:hi], masked[lo:hi], 2, T, true); err != nil {
			t.Fatal(err)
		}
		logp := RowLogProbs(m.Losses(), masked[lo:hi], 2, T)
		ref := []float64{float64(ref32[2*p]), float64(ref32[2*p+1])}
		s, dlogp, _ := DPO(logp, ref, beta, pairs)
		if nll {
			s += ChosenNLL(logp, RowTargets(masked[lo:hi], 2, T), alpha, pairs, dlogp)
		}
		sum += s
		// A row's summed loss is minus its log-probability.
		scales := []float32{float32(-dlogp[0]), float32(-dlogp[1])}
		if err := m.BackwardRows(scales, nil); err != nil {
			t.Fatal(err)
		}
		logps = append(logps, float32(logp[0]), float32(logp[1]))
	}
	compare(t, "logp", logps, goldenF32(t, f, "logp"), 1e-4, 1e-5)
	compare(t, "loss", []float32{float32(sum / pairs)}, goldenF32(t, f, "loss"), 1e-6, 1e-5)
	compareGrads(t, m, goldenSlab(t, f, m.Config, "grad."))
}

// TestRewardModelHFRoundTrip exports a reward model and imports it back: the config
// names GPT2ForSequenceClassification with one label and the pad token, score.weight
// sits beside the transformer's tensors, and the weights come back bit for bit.
func TestRewardModelHFRoundTrip(t *testing.T) {
	c := Config{Layers: 1, Heads: 2, Embd: 8, MaxSeqLen: 8, VocabSize: 11, NumLabels: 1}
	m, err := New(c, nil)
	if err != nil {
		t.Fatal(err)
	}
	m.InitWeights(3)
	for i := range m.Params.Score {
		m.Params.Score[i] = float32(i) / 10
	}
	dir := filepath.Join(t.TempDir(), "rm")
	if err := ExportHF(dir, c, m.Params.Slab, WithEOT(10)); err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(filepath.Join(dir, "config.json"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"GPT2ForSequenceClassification"`, `"pad_token_id": 10`, `"LABEL_0"`} {
		if !strings.Contains(string(raw), want) {
			t.Errorf("config.json lacks %s:\n%s", want, raw)
		}
	}
	got, slab, err := ImportHF(dir)
	if err != nil {
		t.Fatal(err)
	}
	if got != c {
		t.Fatalf("imported config %+v, want %+v", got, c)
	}
	for i := range slab {
		if slab[i] != m.Params.Slab[i] {
			t.Fatalf("slab[%d] = %v, want %v", i, slab[i], m.Params.Slab[i])
		}
	}
}
