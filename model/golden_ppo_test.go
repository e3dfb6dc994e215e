package model

import (
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/ringtrain/ringtrain/safetensors"
	"github.com/ringtrain/ringtrain/tensor"
)

// TestGoldenPPO checks one PPO update on fixed rollouts against
// scripts/golden/gen_ppo_golden.py: the tiny GPT-2 with a value head, four rollout
// rows as two micro-batches (two streams), the per-token KL-penalised rewards, GAE,
// advantages whitened over both micro-batches (the global batch), the current
// log-probabilities, entropies and values, the clipped policy and value losses with
// the entropy bonus, and the gradient of every parameter, the value head's included.
func TestGoldenPPO(t *testing.T) { onBackends(t, goldenPPO) }

func goldenPPO(t *testing.T, be tensor.Backend) {
	f := openGolden(t, "ppo_update.safetensors")
	lm := loadGoldenModel(t)
	cfg := lm.Config
	cfg.ValueHead = true
	m, err := New(cfg, be)
	if err != nil {
		t.Fatal(err)
	}
	copy(m.Params.Slab, lm.Params.Slab)
	copy(m.Params.Value, goldenF32(t, f, "value.weight"))
	copy(m.Params.ValueB, goldenF32(t, f, "value.bias"))
	inputs, targets := goldenI32(t, f, "inputs"), goldenI32(t, f, "targets")
	oldLp, oldV, refLp := goldenF32(t, f, "old_logp"), goldenF32(t, f, "old_value"), goldenF32(t, f, "ref_logp")
	scores, k := goldenF32(t, f, "scores"), goldenF32(t, f, "coefs")
	beta, gamma, lambda := float64(k[0]), float64(k[1]), float64(k[2])
	c := PPOCoefs{ClipEps: float64(k[3]), ValueClip: float64(k[4]), VFCoef: float64(k[5]), EntCoef: float64(k[6])}
	const rows, micro = 4, 2
	T := len(inputs) / rows

	// Rollout numbers per row over its actions, as the trainer computes them.
	acts := make([][]int, rows)
	adv, ret := make([][]float64, rows), make([][]float64, rows)
	var sum, sum2 float64
	N := 0
	for r := range rows {
		var lp, ref, v []float64
		for pos := range T {
			if i := r*T + pos; targets[i] >= 0 {
				acts[r] = append(acts[r], pos)
				lp, ref, v = append(lp, float64(oldLp[i])), append(ref, float64(refLp[i])), append(v, float64(oldV[i]))
			}
		}
		adv[r], ret[r] = GAE(TokenRewards(lp, ref, float64(scores[r]), beta), v, gamma, lambda)
		for _, a := range adv[r] {
			sum, sum2, N = sum+a, sum2+a*a, N+1
		}
	}
	mean := sum / float64(N)
	gotAdv, gotRet := make([]float32, rows*T), make([]float32, rows*T)
	for r := range rows {
		adv[r] = Whiten(adv[r], mean, sum2/float64(N)-mean*mean)
		for j, pos := range acts[r] {
			gotAdv[r*T+pos], gotRet[r*T+pos] = float32(adv[r][j]), float32(ret[r][j])
		}
	}
	compare(t, "advantages", gotAdv, goldenF32(t, f, "advantages"), 1e-5, 1e-5)
	compare(t, "returns", gotRet, goldenF32(t, f, "returns"), 1e-5, 1e-5)

	m.ZeroGrad()
	var loss float64
	var gotLp, gotEnt, gotV []float32
	for mb := range rows / micro {
		lo, hi := mb*micro*T, (mb+1)*micro*T
		out, err := m.ForwardPolicy(inputs[lo:hi], targets[lo:hi], micro, T)
		if err != nil {
			t.Fatal(err)
		}
		gotLp, gotEnt, gotV = append(gotLp, out.LogProbs...), append(gotEnt, out.Entropy...), append(gotV, out.Values...)
		var tk PPOTokens
		for r := mb * micro; r < (mb+1)*micro; r++ {
			for j, pos := range acts[r] {
				i := (r-mb*micro)*T + pos
				tk.Logp, tk.Entropy, tk.Value = append(tk.Logp, float64(out.LogProbs[i])), append(tk.Entropy, float64(out.Entropy[i])), append(tk.Value, float64(out.Values[i]))
				tk.OldLogp, tk.OldValue = append(tk.OldLogp, float64(oldLp[lo+i])), append(tk.OldValue, float64(oldV[lo+i]))
				tk.Adv, tk.Ret = append(tk.Adv, adv[r][j]), append(tk.Ret, ret[r][j])
			}
		}
		s, dlogp, dent, dval := PPOLoss(c, tk, N)
		loss += s.Loss(c, N)
		gl, ge, gv := make([]float32, micro*T), make([]float32, micro*T), make([]float32, micro*T)
		n := 0
		for r := mb * micro; r < (mb+1)*micro; r++ {
			for _, pos := range acts[r] {
				i := (r-mb*micro)*T + pos
				gl[i], ge[i], gv[i] = float32(dlogp[n]), float32(dent[n]), float32(dval[n])
				n++
			}
		}
		if err := m.BackwardPolicy(gl, ge, gv, nil); err != nil {
			t.Fatal(err)
		}
	}
	compare(t, "logp", gotLp, goldenF32(t, f, "logp"), 1e-5, 1e-5)
	compare(t, "entropy", gotEnt, goldenF32(t, f, "entropy"), 1e-5, 1e-5)
	compare(t, "values", gotV, goldenF32(t, f, "values"), 1e-5, 1e-5)
	compare(t, "loss", []float32{float32(loss)}, goldenF32(t, f, "loss"), 1e-6, 1e-5)
	// As for the reward head: the value head's gradient enters every position's
	// residual stream, so rounding is relative to each tensor's largest gradient.
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

// TestValueHeadCheckpointAndExport checks that a model with a value head saves and
// loads as a checkpoint with its head, and exports as a plain GPT-2 language model
// with the head in the side file.
func TestValueHeadCheckpointAndExport(t *testing.T) {
	c := Config{Layers: 1, Heads: 2, Embd: 8, MaxSeqLen: 8, VocabSize: 11, ValueHead: true}
	m, err := New(c, nil)
	if err != nil {
		t.Fatal(err)
	}
	m.InitWeights(3)
	m.InitValue(4)
	m.Params.ValueB[0] = 0.25
	root := t.TempDir()
	eot := 10
	ckDir := filepath.Join(root, "ck")
	if err := SaveCheckpoint(ckDir, &Checkpoint{Config: c, Params: m.Params.Slab, EOT: &eot}); err != nil {
		t.Fatal(err)
	}
	ck, err := LoadCheckpoint(ckDir)
	if err != nil {
		t.Fatal(err)
	}
	if ck.Config != c || !slices.Equal(ck.Params, m.Params.Slab) {
		t.Fatalf("checkpoint round trip: config %+v, params equal %v", ck.Config, slices.Equal(ck.Params, m.Params.Slab))
	}
	exp := filepath.Join(root, "hf")
	if err := ExportHF(exp, c, m.Params.Slab, WithEOT(eot)); err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(filepath.Join(exp, "config.json"))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(raw), valueHeadKey) || !strings.Contains(string(raw), `"GPT2LMHeadModel"`) {
		t.Errorf("exported config.json is not a plain language model's:\n%s", raw)
	}
	lmCfg, lmParams, err := ImportHF(exp)
	if err != nil {
		t.Fatal(err)
	}
	lm, head := SplitValueHead(c, m.Params.Slab)
	if lmCfg != lm || !slices.Equal(lmParams, m.Params.Slab[:lm.NumParams()]) {
		t.Fatalf("export: imported config %+v, want %+v; weights equal %v", lmCfg, lm, slices.Equal(lmParams, m.Params.Slab[:lm.NumParams()]))
	}
	sf, err := safetensors.ReadFile(filepath.Join(exp, ValueHeadFile))
	if err != nil {
		t.Fatal(err)
	}
	var got []float32
	for _, name := range []string{ValueTensor, ValueBiasTensor} {
		v, err := sf.Float32(name)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, v...)
	}
	if !slices.Equal(got, head) {
		t.Errorf("%s holds %v, want %v", ValueHeadFile, got, head)
	}
}

// TestNewFrozen: a frozen model computes the forward passes of a trainable one with
// the same weights, bit for bit, holds no gradients, and refuses every backward.
func TestNewFrozen(t *testing.T) {
	c := Config{Layers: 1, Heads: 2, Embd: 8, MaxSeqLen: 8, VocabSize: 11, NumLabels: 1}
	m, err := New(c, nil)
	if err != nil {
		t.Fatal(err)
	}
	m.InitWeights(5)
	m.InitScore(6)
	f, err := NewFrozen(c, nil)
	if err != nil {
		t.Fatal(err)
	}
	copy(f.Params.Slab, m.Params.Slab)
	if f.Grads != nil {
		t.Fatal("a frozen model has a gradient slab")
	}
	inputs := []int32{1, 2, 3, 4, 5, 6, 7, 8}
	want, err := m.ForwardReward(inputs, []int{3, 2}, 2, 4)
	if err != nil {
		t.Fatal(err)
	}
	got, err := f.ForwardReward(inputs, []int{3, 2}, 2, 4)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got, want) {
		t.Fatalf("frozen rewards %v, trainable %v", got, want)
	}
	if err := f.BackwardReward([]float32{1, 1}, nil); err == nil {
		t.Error("BackwardReward on a frozen model succeeded")
	}
	lm := c
	lm.NumLabels = 0
	g, err := NewFrozen(lm, nil)
	if err != nil {
		t.Fatal(err)
	}
	g.ZeroGrad()
	if _, _, err := g.Forward(inputs, inputs, 2, 4, true); err != nil {
		t.Fatal(err)
	}
	if err := g.Backward(1, nil); err == nil {
		t.Error("Backward on a frozen model succeeded")
	}
}

// TestFrozenForwardBuffers: a frozen model of several layers, whose forward reuses
// one block's buffers for every layer and keeps no backward scratch, computes every
// forward of a trainable model with the same weights bit for bit (Forward with and
// without targets, ForwardPacked, ForwardReward, ForwardPolicy), and holds only the
// bytes FrozenActivationBytes gives: no logits for a reward model.
func TestFrozenForwardBuffers(t *testing.T) {
	const B, T = 2, 6
	lm := Config{Layers: 3, Heads: 2, Embd: 8, MaxSeqLen: 8, VocabSize: 11}
	inputs := []int32{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 0, 1}
	targets := []int32{2, 3, -1, 5, 6, 7, -1, 9, 10, 0, 1, 2}
	start := []int32{0, 0, 0, 3, 3, 3, 0, 0, 0, 0, 4, 4}
	pair := func(c Config) (m, f *GPT) {
		t.Helper()
		m, err := New(c, nil)
		if err != nil {
			t.Fatal(err)
		}
		m.InitWeights(5)
		m.InitScore(6)
		m.InitValue(7)
		if f, err = NewFrozen(c, nil); err != nil {
			t.Fatal(err)
		}
		copy(f.Params.Slab, m.Params.Slab)
		return m, f
	}
	same := func(what string, got, want []float32) {
		t.Helper()
		if len(got) != len(want) || len(got) == 0 {
			t.Fatalf("%s: %d values from the frozen model, %d from the trainable one", what, len(got), len(want))
		}
		for i := range got {
			if math.Float32bits(got[i]) != math.Float32bits(want[i]) {
				t.Fatalf("%s %d: frozen %v, trainable %v", what, i, got[i], want[i])
			}
		}
	}
	held := func(what string, f *GPT, logits bool) {
		t.Helper()
		want, _ := f.Config.FrozenActivationBytes(B, T, logits)
		train, _ := f.Config.ActivationBytes(B, T)
		if got := allocatedBytes(f.acts); got != want || got >= train {
			t.Errorf("%s: the frozen model holds %d bytes of activations, want %d (a trainable one: %d)", what, got, want, train)
		}
	}

	// forward runs fw on the trainable model and then on the frozen one.
	forward := func(m, f *GPT, fw func(*GPT) error) {
		t.Helper()
		for _, g := range []*GPT{m, f} {
			if err := fw(g); err != nil {
				t.Fatal(err)
			}
		}
	}

	m, f := pair(lm)
	ls, n, err := m.Forward(inputs, targets, B, T, true)
	if err != nil {
		t.Fatal(err)
	}
	fls, fn, err := f.Forward(inputs, targets, B, T, true)
	if err != nil {
		t.Fatal(err)
	}
	if fls != ls || fn != n {
		t.Fatalf("Forward: frozen loss sum %v over %d targets, trainable %v over %d", fls, fn, ls, n)
	}
	same("Forward losses", f.Losses(), m.Losses())
	held("Forward", f, true)
	forward(m, f, func(g *GPT) error { _, _, err := g.Forward(inputs, nil, B, T, true); return err })
	same("Forward logits", f.Logits(), m.Logits())
	forward(m, f, func(g *GPT) error { _, _, err := g.ForwardPacked(inputs, targets, start, B, T); return err })
	same("ForwardPacked losses", f.Losses(), m.Losses())

	rc := lm
	rc.NumLabels = 1
	m, f = pair(rc)
	last := []int{4, 2}
	want, err := m.ForwardReward(inputs, last, B, T)
	if err != nil {
		t.Fatal(err)
	}
	got, err := f.ForwardReward(inputs, last, B, T)
	if err != nil {
		t.Fatal(err)
	}
	same("ForwardReward", got, want)
	held("ForwardReward", f, false)
	// A forward that needs the logits after one that did not gets them.
	forward(m, f, func(g *GPT) error { _, _, err := g.Forward(inputs, targets, B, T, true); return err })
	same("Forward after ForwardReward", f.Losses(), m.Losses())
	held("Forward after ForwardReward", f, true)

	vc := lm
	vc.ValueHead = true
	m, f = pair(vc)
	po, err := m.ForwardPolicy(inputs, targets, B, T)
	if err != nil {
		t.Fatal(err)
	}
	fo, err := f.ForwardPolicy(inputs, targets, B, T)
	if err != nil {
		t.Fatal(err)
	}
	same("ForwardPolicy log-probabilities", fo.LogProbs, po.LogProbs)
	same("ForwardPolicy entropies", fo.Entropy, po.Entropy)
	same("ForwardPolicy values", fo.Values, po.Values)
	held("ForwardPolicy", f, true)
}
