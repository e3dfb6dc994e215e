package worker

import (
	"slices"
	"testing"

	"github.com/ringtrain/ringtrain/model"
	"github.com/ringtrain/ringtrain/trainer"
)

// TestPackStateCarriesPPOBeta: the state a sync sends holds the weights, moments,
// both steps, the ppo KL coefficient and the tokens the ppo steps processed, and
// unpacking it restores every one bit for bit.
func TestPackStateCarriesPPOBeta(t *testing.T) {
	cfg := model.Config{Layers: 1, Heads: 2, Embd: 8, MaxSeqLen: 8, VocabSize: 10}
	newTrainer := func() *trainer.Trainer {
		m, err := model.New(cfg, nil)
		if err != nil {
			t.Fatal(err)
		}
		return &trainer.Trainer{Model: m, Opt: model.NewAdamW(cfg)}
	}
	src := newTrainer()
	src.Model.InitWeights(3)
	for i := range src.Opt.M {
		src.Opt.M[i], src.Opt.V[i] = float32(i)*1e-3, float32(i)*1e-6
	}
	src.Opt.Step, src.Step, src.PPOBeta, src.PPOTokens = 41, 37, 0.0731234567891, 1<<45+12345
	buf := packState(src)
	if len(buf) != stateLen(len(src.Model.Params.Slab)) {
		t.Fatalf("packed %d values, stateLen says %d", len(buf), stateLen(len(src.Model.Params.Slab)))
	}
	dst := newTrainer()
	unpackState(dst, buf)
	if !slices.Equal(dst.Model.Params.Slab, src.Model.Params.Slab) || !slices.Equal(dst.Opt.M, src.Opt.M) || !slices.Equal(dst.Opt.V, src.Opt.V) {
		t.Fatal("weights or moments differ after unpacking")
	}
	if dst.Opt.Step != 41 || dst.Step != 37 || dst.PPOBeta != src.PPOBeta || dst.PPOTokens != src.PPOTokens {
		t.Fatalf("steps %d, %d, beta %v and ppo tokens %d after unpacking, want 41, 37, %v and %d",
			dst.Opt.Step, dst.Step, dst.PPOBeta, dst.PPOTokens, src.PPOBeta, src.PPOTokens)
	}
}
