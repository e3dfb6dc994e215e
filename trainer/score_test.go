package trainer

import (
	"math"
	"testing"

	"github.com/ringtrain/ringtrain/chat"
	"github.com/ringtrain/ringtrain/model"
	"github.com/ringtrain/ringtrain/tokenizer"
)

// TestScoreReadsWhereTrainingReads checks that Score gives an example the reward the
// reward objective gives it in a padded training row (read at the answer's last
// token; the padding after it is invisible to causal attention), and that a language
// model is refused.
func TestScoreReadsWhereTrainingReads(t *testing.T) {
	tok := tokenizer.NewByte()
	c := model.Config{Layers: 1, Heads: 2, Embd: 16, MaxSeqLen: 64, VocabSize: tok.VocabSize(), NumLabels: 1}
	m, err := model.New(c, nil)
	if err != nil {
		t.Fatal(err)
	}
	m.InitWeights(5)
	m.InitScore(6)
	tmpl, err := chat.Lookup(chat.Plain)
	if err != nil {
		t.Fatal(err)
	}
	ex := chat.Example{Messages: []chat.Message{{Role: chat.RoleUser, Content: "What is 2+2?"}, {Role: chat.RoleAssistant, Content: "4"}}}
	got, err := Score(t.Context(), m, tok, tmpl, []chat.Example{ex})
	if err != nil {
		t.Fatal(err)
	}
	// The training row: the example padded with EOT to T=64; targets trained on the
	// answer and its EOT.
	segs, _ := tmpl.Segments(ex)
	ids, train := chat.Encode(tok, segs)
	const T = 64
	in, tg := make([]int32, T), make([]int32, T)
	for i := range T {
		in[i], tg[i] = int32(tok.EOT()), -1
		if i < len(ids) {
			in[i] = int32(ids[i])
		}
		if i+1 < len(ids) && train[i+1] {
			tg[i] = int32(ids[i+1])
		}
	}
	last := make([]int, 1)
	lastTokens(tg, 1, T, last)
	want, err := m.ForwardReward(in, last, 1, T)
	if err != nil {
		t.Fatal(err)
	}
	if math.Abs(float64(got[0]-want[0])) > 1e-5 {
		t.Fatalf("Score = %v, the training row's reward = %v (read at %d)", got[0], want[0], last[0])
	}
	lm, _ := model.New(model.Config{Layers: 1, Heads: 2, Embd: 16, MaxSeqLen: 64, VocabSize: tok.VocabSize()}, nil)
	if _, err := Score(t.Context(), lm, tok, tmpl, []chat.Example{ex}); err == nil {
		t.Fatal("Score accepted a language model")
	}
}
