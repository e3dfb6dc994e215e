package model

import (
	"fmt"
	"testing"
)

// trainStep builds a model of shape c with a batch of (B,T) tokens and returns one full
// training step: zero the gradients, forward, backward, clip, AdamW.
func trainStep(tb testing.TB, c Config, B, T int) func() {
	tb.Helper()
	m, err := New(c, nil)
	if err != nil {
		tb.Fatal(err)
	}
	m.InitWeights(1)
	opt := NewAdamW(c)
	in, tg := make([]int32, B*T), make([]int32, B*T)
	for i := range in {
		in[i], tg[i] = int32(i%c.VocabSize), int32((i+1)%c.VocabSize)
	}
	return func() {
		m.ZeroGrad()
		if _, _, err := m.Forward(in, tg, B, T, true); err != nil {
			tb.Fatal(err)
		}
		if err := m.Backward(1/float32(B*T), nil); err != nil {
			tb.Fatal(err)
		}
		ClipGradNorm(m.Grads.Slab, 1)
		if err := opt.Update(c, DefaultAdamW(), 1e-3, m.Params.Slab, m.Grads.Slab); err != nil {
			tb.Fatal(err)
		}
	}
}

// TestStepAllocatesNothing checks that a training step (forward, backward, clip, AdamW)
// makes no heap allocation once its buffers exist.
func TestStepAllocatesNothing(t *testing.T) {
	step := trainStep(t, Config{Layers: 2, Heads: 2, Embd: 32, MaxSeqLen: 16, VocabSize: 41}, 3, 16)
	step() // allocates the activations
	if n := testing.AllocsPerRun(5, step); n != 0 {
		t.Fatalf("a training step allocates %v times, want 0", n)
	}
}

// BenchmarkTrainStep times one full training step (forward, backward, clip, AdamW) and
// reports its allocations, which are 0 once the first steps have allocated the
// activations and the kernels' free lists have grown to what the step uses at once:
// the tiny recipe's shape and nanoGPT shakespeare-char's.
func BenchmarkTrainStep(b *testing.B) {
	for _, s := range []struct {
		name string
		c    Config
		B, T int
	}{
		{"tiny", Config{Layers: 4, Heads: 4, Embd: 128, MaxSeqLen: 64, VocabSize: 67}, 12, 64},
		{"nanogpt", Config{Layers: 6, Heads: 6, Embd: 384, MaxSeqLen: 256, VocabSize: 65}, 8, 256},
	} {
		b.Run(fmt.Sprintf("%s_B%d_T%d", s.name, s.B, s.T), func(b *testing.B) {
			step := trainStep(b, s.c, s.B, s.T)
			for range 3 {
				step()
			}
			b.ReportAllocs()
			for b.Loop() {
				step()
			}
			b.ReportMetric(float64(b.N*s.B*s.T)/b.Elapsed().Seconds(), "tokens/s")
		})
	}
}
