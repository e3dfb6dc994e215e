package model

import "testing"

// TestStepAllocatesNothing checks that a training step (forward, backward, AdamW) makes
// no heap allocation once its buffers exist.
func TestStepAllocatesNothing(t *testing.T) {
	c := Config{Layers: 2, Heads: 2, Embd: 32, MaxSeqLen: 16, VocabSize: 41}
	m, err := New(c, nil)
	if err != nil {
		t.Fatal(err)
	}
	m.InitWeights(1)
	opt := NewAdamW(c)
	B, T := 3, 16
	in, tg := make([]int32, B*T), make([]int32, B*T)
	for i := range in {
		in[i], tg[i] = int32(i%c.VocabSize), int32((i+1)%c.VocabSize)
	}
	step := func() {
		m.ZeroGrad()
		if _, _, err := m.Forward(in, tg, B, T, true); err != nil {
			t.Fatal(err)
		}
		if err := m.Backward(1/float32(B*T), nil); err != nil {
			t.Fatal(err)
		}
		ClipGradNorm(m.Grads.Slab, 1)
		if err := opt.Update(c, DefaultAdamW(), 1e-3, m.Params.Slab, m.Grads.Slab); err != nil {
			t.Fatal(err)
		}
	}
	step() // allocates the activations
	if n := testing.AllocsPerRun(5, step); n != 0 {
		t.Fatalf("a training step allocates %v times, want 0", n)
	}
}
