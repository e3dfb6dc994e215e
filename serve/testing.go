package serve

import (
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/ringtrain/ringtrain/model"
	"github.com/ringtrain/ringtrain/tokenizer"
)

// TinyCorpus is the alphabet of TinyCheckpoint's character tokenizer: printable ASCII
// and the newline. Every text made of it encodes and decodes exactly.
var TinyCorpus = func() string {
	var b strings.Builder
	for c := byte(' '); c <= '~'; c++ {
		b.WriteByte(c)
	}
	b.WriteByte('\n')
	return b.String()
}()

// TinyCheckpoint saves a small random GPT (2 layers, 32 wide, 64 positions) with a
// character tokenizer over TinyCorpus to the new directory dir, recording template as
// its chat template ("" for none), for tests of generation, chat and serving. The
// weights are scaled up from GPT-2's initialisation so that greedy decoding depends on
// the whole context instead of repeating one token.
func TinyCheckpoint(t testing.TB, dir, template string) {
	t.Helper()
	tok, err := tokenizer.NewChar(TinyCorpus)
	if err != nil {
		t.Fatal(err)
	}
	cfg := model.Config{Layers: 2, Heads: 2, Embd: 32, MaxSeqLen: 64, VocabSize: tok.VocabSize()}
	m, err := model.New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	m.InitWeights(7)
	rng := rand.New(rand.NewPCG(7, 1))
	for _, tn := range cfg.Tensors() {
		p := m.Params.Slab[tn.Offset : tn.Offset+tn.Size]
		f := float32(10)
		if len(tn.Shape) == 1 {
			f = 1
		}
		for i := range p {
			p[i] = p[i]*f + float32(0.1*rng.NormFloat64())
		}
	}
	raw, err := tokenizer.Marshal(tok)
	if err != nil {
		t.Fatal(err)
	}
	eot := tok.EOT()
	ck := &model.Checkpoint{
		Config: cfg, Params: m.Params.Slab, Tokenizer: raw, EOT: &eot,
		Trainer: model.TrainerState{Step: 1, ChatTemplate: template},
	}
	if err := model.SaveCheckpoint(dir, ck); err != nil {
		t.Fatal(err)
	}
}
