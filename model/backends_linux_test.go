//go:build linux

package model

import (
	"context"
	"math"
	"slices"
	"testing"

	"github.com/ringtrain/ringtrain/tensor"
)

// On Linux every backend-parametrised test also runs on the guarded backend, whose
// buffers fault when host code touches them outside a backend call: a model that passes
// there reaches its activations and device weights only through the op set.
func init() {
	testBackends = append(testBackends, testBackend{"guarded", func() (tensor.Backend, error) { return tensor.NewGuarded(), nil }})
}

// shortRun trains a small model for steps steps on be the way the trainer does (clip
// and AdamW on the host slabs, the canonical state) and returns the losses, the final
// weights and a greedy and a sampled generation from them.
func shortRun(t *testing.T, be tensor.Backend, steps int) (losses []float64, params []float32, greedy, sampled []int32) {
	t.Helper()
	c := Config{Layers: 2, Heads: 2, Embd: 32, MaxSeqLen: 16, VocabSize: 41}
	m, err := New(c, be)
	if err != nil {
		t.Fatal(err)
	}
	m.InitWeights(5)
	opt := NewAdamW(c)
	B, T := 3, 16
	in, tg := make([]int32, B*T), make([]int32, B*T)
	for i := range in {
		in[i], tg[i] = int32((i*7)%c.VocabSize), int32((i*13+1)%c.VocabSize)
	}
	tg[4] = -1 // an ignored position
	for s := range steps {
		m.ZeroGrad()
		// Alternate the objective and, once, the batch shape (reallocating the activations).
		b := B
		if s == steps/2 {
			b = 2
		}
		sum, n, err := m.Forward(in[:b*T], tg[:b*T], b, T, s%2 == 0)
		if err != nil {
			t.Fatal(err)
		}
		losses = append(losses, sum/float64(n))
		if err := m.Backward(float32(1/float64(n)), nil); err != nil {
			t.Fatal(err)
		}
		ClipGradNorm(m.Grads.Slab, 1)
		if err := opt.Update(c, DefaultAdamW(), 1e-2, m.Params.Slab, m.Grads.Slab); err != nil {
			t.Fatal(err)
		}
	}
	g, err := m.Generate(context.Background(), []int32{1, 2, 3}, GenerateOptions{MaxTokens: 20})
	if err != nil {
		t.Fatal(err)
	}
	res, err := m.GenerateBatch(context.Background(), [][]int32{{4, 5}, {6}}, []GenerateOptions{{MaxTokens: 20, Temperature: 0.8, Seed: 9}}, 2)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range res {
		if r.Err != nil {
			t.Fatal(r.Err)
		}
		sampled = append(sampled, r.Gen.Tokens...)
	}
	return losses, slices.Clone(m.Params.Slab), g.Tokens, sampled
}

// TestGuardedShortTrainingRun trains, evaluates and generates on the guarded backend and
// checks that every loss, weight and token is the CPU's, bit for bit.
func TestGuardedShortTrainingRun(t *testing.T) {
	const steps = 8
	wantLoss, wantParams, wantGreedy, wantSampled := shortRun(t, tensor.NewCPU(), steps)
	g := tensor.NewGuarded()
	loss, params, greedy, sampled := shortRun(t, g, steps)
	for i := range wantLoss {
		if math.Float64bits(loss[i]) != math.Float64bits(wantLoss[i]) {
			t.Fatalf("step %d: loss %v on the guarded backend, %v on the CPU", i, loss[i], wantLoss[i])
		}
	}
	for i := range wantParams {
		if math.Float32bits(params[i]) != math.Float32bits(wantParams[i]) {
			t.Fatalf("weight %d: %v on the guarded backend, %v on the CPU", i, params[i], wantParams[i])
		}
	}
	if !slices.Equal(greedy, wantGreedy) || !slices.Equal(sampled, wantSampled) {
		t.Fatalf("generation on the guarded backend %v / %v, on the CPU %v / %v", greedy, sampled, wantGreedy, wantSampled)
	}
	t.Logf("losses %.4f .. %.4f, %d tokens generated, %d guarded buffers live", loss[0], loss[steps-1], len(greedy)+len(sampled), g.Live())
}

// TestGuardedFreesActivations checks that a new batch shape returns the old activation
// buffers to the backend.
func TestGuardedFreesActivations(t *testing.T) {
	g := tensor.NewGuarded()
	c := Config{Layers: 1, Heads: 2, Embd: 16, MaxSeqLen: 8, VocabSize: 11}
	m, err := New(c, g)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := m.Forward(make([]int32, 8), nil, 1, 8, true); err != nil {
		t.Fatal(err)
	}
	live := g.Live()
	if _, _, err := m.Forward(make([]int32, 16), nil, 2, 8, true); err != nil {
		t.Fatal(err)
	}
	if g.Live() != live {
		t.Fatalf("%d guarded buffers live after a new batch shape, %d before", g.Live(), live)
	}
}
