package model_test

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/ringtrain/ringtrain/model"
)

var genTinyConfig = model.Config{Layers: 2, Heads: 2, Embd: 16, MaxSeqLen: 32, VocabSize: 37}

// genModel builds a model of shape c with GPT-2 initialisation, then perturbs every 1-D
// tensor (LayerNorm weights and biases, linear biases) and scales up the 2-D weights
// (the embeddings by 10, the attention inputs by 20, the other matrices by 30) so that
// the logits are far from uniform and depend on the whole context: greedy decoding of
// the default initialisation mostly repeats one token, which would hide errors in the
// context handling.
func genModel(t testing.TB, c model.Config, seed uint64) *model.GPT {
	t.Helper()
	m, err := model.New(c, nil)
	if err != nil {
		t.Fatal(err)
	}
	m.InitWeights(seed)
	rng := rand.New(rand.NewPCG(seed, 1))
	for _, tn := range c.Tensors() {
		p := m.Params.Slab[tn.Offset : tn.Offset+tn.Size]
		if len(tn.Shape) == 1 {
			for i := range p {
				p[i] += float32(0.2 * rng.NormFloat64())
			}
			continue
		}
		f := float32(30)
		switch {
		case tn.Name == "wte.weight" || tn.Name == "wpe.weight":
			f = 10
		case strings.HasSuffix(tn.Name, "attn.c_attn.weight"):
			f = 20
		}
		for i := range p {
			p[i] *= f
		}
	}
	return m
}

func genTokens(rng *rand.Rand, n, vocab int) []int32 {
	out := make([]int32, n)
	for i := range out {
		out[i] = int32(rng.IntN(vocab))
	}
	return out
}

// fullLogits runs Forward over seq (B=1, causal) and returns a copy of the (T, V) logits.
func fullLogits(t testing.TB, m *model.GPT, seq []int32) []float32 {
	t.Helper()
	if _, _, err := m.Forward(seq, nil, 1, len(seq), true); err != nil {
		t.Fatal(err)
	}
	return slices.Clone(m.Logits())
}

// closeRel checks got against want elementwise within rtol of the largest |want| and
// returns the largest difference relative to that.
func closeRel(t *testing.T, what string, got, want []float32, rtol float64) float64 {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d values, want %d", what, len(got), len(want))
	}
	var scale float64
	for _, w := range want {
		scale = max(scale, math.Abs(float64(w)))
	}
	var worst float64
	for i := range want {
		d := math.Abs(float64(got[i]) - float64(want[i]))
		if d > rtol*scale {
			t.Fatalf("%s[%d] = %g, want %g (|diff| %g > %g)", what, i, got[i], want[i], d, rtol*scale)
		}
		worst = max(worst, d/scale)
	}
	return worst
}

func refArgmax(row []float32) int32 {
	best := 0
	for i, v := range row {
		if v > row[best] {
			best = i
		}
	}
	return int32(best)
}

func TestGenerateDecoderStepMatchesForward(t *testing.T) {
	c := genTinyConfig
	V := c.VocabSize
	for _, seed := range []uint64{1, 2, 3} {
		m := genModel(t, c, seed)
		seq := genTokens(rand.New(rand.NewPCG(seed, 7)), c.MaxSeqLen, V)
		want := fullLogits(t, m, seq)
		d := m.NewDecoder()
		var worst float64
		for pos, tok := range seq {
			got, err := d.Step(tok)
			if err != nil {
				t.Fatal(err)
			}
			worst = max(worst, closeRel(t, fmt.Sprintf("seed %d pos %d logits", seed, pos), got, want[pos*V:(pos+1)*V], 1e-5))
		}
		t.Logf("seed %d: largest relative difference %.2g", seed, worst)
		if d.Len() != c.MaxSeqLen {
			t.Fatalf("Len = %d, want %d", d.Len(), c.MaxSeqLen)
		}
		if _, err := d.Step(0); !errors.Is(err, model.ErrShape) {
			t.Fatalf("Step on a full cache: err = %v, want ErrShape", err)
		}
	}
}

func TestGenerateDecoderPrefillMatchesForward(t *testing.T) {
	// MaxSeqLen 100 makes a 90-token prompt span two prefill chunks.
	c := genTinyConfig
	c.MaxSeqLen = 100
	V := c.VocabSize
	m := genModel(t, c, 4)
	seq := genTokens(rand.New(rand.NewPCG(4, 7)), 90, V)
	want := fullLogits(t, m, seq)
	ctx := context.Background()

	d := m.NewDecoder()
	got, err := d.Prefill(ctx, seq)
	if err != nil {
		t.Fatal(err)
	}
	closeRel(t, "prefill(90) logits", got, want[89*V:], 1e-5)

	// A prefix by prefill, the rest by steps.
	d.Reset()
	if _, err := d.Prefill(ctx, seq[:70]); err != nil {
		t.Fatal(err)
	}
	for pos := 70; pos < 90; pos++ {
		got, err := d.Step(seq[pos])
		if err != nil {
			t.Fatal(err)
		}
		closeRel(t, fmt.Sprintf("pos %d logits", pos), got, want[pos*V:(pos+1)*V], 1e-5)
	}

	// Truncate, then continue with different tokens: the same as a fresh run.
	if err := d.Truncate(50); err != nil {
		t.Fatal(err)
	}
	alt := slices.Concat(seq[:50], genTokens(rand.New(rand.NewPCG(5, 7)), 10, V))
	wantAlt := fullLogits(t, m, alt)
	got, err = d.Prefill(ctx, alt[50:])
	if err != nil {
		t.Fatal(err)
	}
	closeRel(t, "after truncate logits", got, wantAlt[59*V:], 1e-5)
	if err := d.Truncate(61); !errors.Is(err, model.ErrShape) {
		t.Fatalf("Truncate past Len: err = %v, want ErrShape", err)
	}
	if _, err := d.Prefill(ctx, []int32{int32(V)}); !errors.Is(err, model.ErrShape) {
		t.Fatalf("Prefill with id %d: err = %v, want ErrShape", V, err)
	}
	if d.Len() != 60 {
		t.Fatalf("a failed Prefill changed Len to %d", d.Len())
	}
}

// refGreedy is greedy decoding by full Forward over the window, with Generate's
// window-slide rule; ties within tol of the best logit accept either token.
func checkGreedyAgainstForward(t *testing.T, m *model.GPT, prompt, got []int32) {
	t.Helper()
	maxT, V := m.Config.MaxSeqLen, m.Config.VocabSize
	window := slices.Clone(prompt)
	if len(window) > maxT {
		window = window[len(window)-(maxT-1):]
	}
	for i, tok := range got {
		logits := fullLogits(t, m, window)
		row := logits[(len(window)-1)*V:]
		want := refArgmax(row)
		if tok != want && float64(row[want]-row[tok]) > 1e-5*math.Abs(float64(row[want])) {
			t.Fatalf("token %d = %d (logit %g), full forward's argmax is %d (logit %g)", i, tok, row[tok], want, row[want])
		}
		window = append(window, tok)
		if len(window) > maxT {
			window = slices.Clone(window[len(window)-maxT/2:])
		}
	}
}

func TestGenerateGreedyMatchesForward(t *testing.T) {
	c := genTinyConfig
	m := genModel(t, c, 11)
	rng := rand.New(rand.NewPCG(11, 7))
	// 5+20 stays inside the window; 20+60 slides twice.
	for _, tc := range []struct{ prompt, n, slides int }{{5, 20, 0}, {20, 60, 3}} {
		prompt := genTokens(rng, tc.prompt, c.VocabSize)
		g, err := m.Generate(context.Background(), prompt, model.GenerateOptions{MaxTokens: tc.n})
		if err != nil {
			t.Fatal(err)
		}
		if len(g.Tokens) != tc.n || g.Reason != model.StopMaxTokens || g.PromptTruncated != 0 {
			t.Fatalf("prompt %d: got %d tokens, reason %v, truncated %d", tc.prompt, len(g.Tokens), g.Reason, g.PromptTruncated)
		}
		if g.Slides != tc.slides {
			t.Errorf("prompt %d, %d tokens: %d slides, want %d", tc.prompt, tc.n, g.Slides, tc.slides)
		}
		checkGreedyAgainstForward(t, m, prompt, g.Tokens)
	}
}

func TestGenerateSampling(t *testing.T) {
	m := genModel(t, genTinyConfig, 21)
	prompt := []int32{3, 1, 4, 1, 5}
	gen := func(o model.GenerateOptions) []int32 {
		t.Helper()
		o.MaxTokens = 40
		g, err := m.Generate(context.Background(), prompt, o)
		if err != nil {
			t.Fatal(err)
		}
		return g.Tokens
	}
	greedy := gen(model.GenerateOptions{})
	a := gen(model.GenerateOptions{Temperature: 1, Seed: 1})
	b := gen(model.GenerateOptions{Temperature: 1, Seed: 1})
	other := gen(model.GenerateOptions{Temperature: 1, Seed: 2})
	if !slices.Equal(a, b) {
		t.Errorf("same seed, different tokens:\n%v\n%v", a, b)
	}
	if slices.Equal(a, other) {
		t.Errorf("seeds 1 and 2 gave the same 40 tokens %v", a)
	}
	if slices.Equal(a, greedy) {
		t.Errorf("sampling at temperature 1 gave the greedy tokens %v", a)
	}
	if got := gen(model.GenerateOptions{Temperature: 1, TopK: 1, Seed: 3}); !slices.Equal(got, greedy) {
		t.Errorf("top_k=1 = %v, want greedy %v", got, greedy)
	}
	if got := gen(model.GenerateOptions{Temperature: 1.5, TopP: 1e-9, Seed: 4}); !slices.Equal(got, greedy) {
		t.Errorf("top_p=1e-9 = %v, want greedy %v", got, greedy)
	}
}

// TestGenerateSamplingDistribution draws the first token with many seeds and compares
// the frequencies with the distribution that temperature, top-k and top-p define on the
// full Forward's logits.
func TestGenerateSamplingDistribution(t *testing.T) {
	c := genTinyConfig
	V := c.VocabSize
	m := genModel(t, c, 25)
	prompt := []int32{2, 7, 1, 8}
	logits := fullLogits(t, m, prompt)
	row := logits[(len(prompt)-1)*V:]
	const draws = 2000
	for _, o := range []model.GenerateOptions{
		{Temperature: 1},
		{Temperature: 3},
		{Temperature: 4, TopK: 5},
		{Temperature: 4, TopP: 0.7},
		{Temperature: 6, TopK: 12, TopP: 0.8},
	} {
		want := refDistribution(row, o)
		count := make([]int, V)
		for seed := range uint64(draws) {
			o.Seed, o.MaxTokens = seed, 1
			g, err := m.Generate(context.Background(), prompt, o)
			if err != nil {
				t.Fatal(err)
			}
			count[g.Tokens[0]]++
		}
		for id, p := range want {
			f := float64(count[id]) / draws
			if sigma := math.Sqrt(p * (1 - p) / draws); math.Abs(f-p) > 5*sigma+1e-3 {
				t.Errorf("%+v: token %d drawn %.4f of the time, want %.4f", o, id, f, p)
			}
		}
	}
}

// refDistribution is the sampling distribution of o over row: softmax(row/T) restricted
// to the TopK most probable tokens, then to the smallest prefix reaching TopP of their
// mass, renormalised.
func refDistribution(row []float32, o model.GenerateOptions) []float64 {
	V := len(row)
	order := make([]int, V)
	for j := range order {
		order[j] = j
	}
	slices.SortStableFunc(order, func(a, b int) int {
		switch {
		case row[a] > row[b]:
			return -1
		case row[a] < row[b]:
			return 1
		}
		return 0
	})
	k := V
	if o.TopK > 0 && o.TopK < V {
		k = o.TopK
	}
	p := make([]float64, V)
	var total float64
	for _, id := range order[:k] {
		p[id] = math.Exp((float64(row[id]) - float64(row[order[0]])) / o.Temperature)
		total += p[id]
	}
	if o.TopP > 0 && o.TopP < 1 {
		var cum float64
		for j, id := range order[:k] {
			cum += p[id]
			if cum >= o.TopP*total {
				for _, drop := range order[j+1 : k] {
					p[drop] = 0
				}
				total = cum
				break
			}
		}
	}
	for i := range p {
		p[i] /= total
	}
	return p
}

// TestGenerateTopKTopPSupport checks that every sampled token lies in the set top-k and
// top-p allow, recomputed from the full Forward's logits.
func TestGenerateTopKTopPSupport(t *testing.T) {
	c := genTinyConfig
	V := c.VocabSize
	m := genModel(t, c, 31)
	prompt := []int32{7, 8, 9}
	for _, o := range []model.GenerateOptions{
		{Temperature: 2, TopK: 3, Seed: 5},
		{Temperature: 1, TopP: 0.5, Seed: 6},
		{Temperature: 3, TopK: 10, TopP: 0.6, Seed: 7},
	} {
		o.MaxTokens = 25
		g, err := m.Generate(context.Background(), prompt, o)
		if err != nil {
			t.Fatal(err)
		}
		seq := slices.Clone(prompt)
		for i, tok := range g.Tokens {
			logits := fullLogits(t, m, seq)
			row := logits[(len(seq)-1)*V:]
			order := make([]int, V)
			for j := range order {
				order[j] = j
			}
			slices.SortStableFunc(order, func(a, b int) int {
				switch {
				case row[a] > row[b]:
					return -1
				case row[a] < row[b]:
					return 1
				}
				return 0
			})
			k := V
			if o.TopK > 0 {
				k = o.TopK
			}
			allowed := order[:k]
			if o.TopP > 0 && o.TopP < 1 {
				p := make([]float64, k)
				var total float64
				for j, id := range allowed {
					p[j] = math.Exp((float64(row[id]) - float64(row[order[0]])) / o.Temperature)
					total += p[j]
				}
				var cum float64
				for j := range allowed {
					cum += p[j]
					if cum >= o.TopP*total*(1-1e-6) { // slack for logits that differ in the last bits
						allowed = allowed[:j+1]
						break
					}
				}
			}
			if !slices.Contains(allowed, int(tok)) {
				t.Fatalf("%+v: token %d = %d outside the allowed set %v", o, i, tok, allowed)
			}
			seq = append(seq, tok)
		}
	}
}

func TestGeneratePromptTruncation(t *testing.T) {
	c := genTinyConfig
	m := genModel(t, c, 41)
	long := genTokens(rand.New(rand.NewPCG(41, 7)), 40, c.VocabSize)
	o := model.GenerateOptions{MaxTokens: 30, Temperature: 0.8, Seed: 9}
	g, err := m.Generate(context.Background(), long, o)
	if err != nil {
		t.Fatal(err)
	}
	if want := 40 - (c.MaxSeqLen - 1); g.PromptTruncated != want {
		t.Fatalf("PromptTruncated = %d, want %d", g.PromptTruncated, want)
	}
	if len(g.Tokens) != 30 || g.Slides == 0 {
		t.Fatalf("got %d tokens and %d slides, want 30 tokens past the window", len(g.Tokens), g.Slides)
	}
	cut, err := m.Generate(context.Background(), long[g.PromptTruncated:], o)
	if err != nil {
		t.Fatal(err)
	}
	if cut.PromptTruncated != 0 || !slices.Equal(cut.Tokens, g.Tokens) {
		t.Fatalf("the pre-cut prompt gave %v (truncated %d), want %v", cut.Tokens, cut.PromptTruncated, g.Tokens)
	}
	// A prompt of exactly MaxSeqLen fits: nothing is cut, the first new token slides.
	g, err = m.Generate(context.Background(), long[:c.MaxSeqLen], model.GenerateOptions{MaxTokens: 3})
	if err != nil {
		t.Fatal(err)
	}
	if g.PromptTruncated != 0 || g.Slides != 1 {
		t.Fatalf("prompt of max_seq_len: truncated %d, slides %d; want 0, 1", g.PromptTruncated, g.Slides)
	}
	checkGreedyAgainstForward(t, m, long[:c.MaxSeqLen], g.Tokens)
}

func TestGenerateStopAtEOT(t *testing.T) {
	m := genModel(t, genTinyConfig, 51)
	prompt := []int32{1, 2, 3}
	full, err := m.Generate(context.Background(), prompt, model.GenerateOptions{MaxTokens: 20})
	if err != nil {
		t.Fatal(err)
	}
	// The last token that does not occur before its own position.
	j := 0
	for i, tok := range full.Tokens {
		if !slices.Contains(full.Tokens[:i], tok) {
			j = i
		}
	}
	eot := full.Tokens[j]
	g, err := m.Generate(context.Background(), prompt, model.GenerateOptions{MaxTokens: 20, StopAtEOT: true, EOT: eot})
	if err != nil {
		t.Fatal(err)
	}
	if g.Reason != model.StopEOT || !slices.Equal(g.Tokens, full.Tokens[:j]) {
		t.Fatalf("EOT %d: got %v (reason %v), want %v (eot)", eot, g.Tokens, g.Reason, full.Tokens[:j])
	}
}

func TestGenerateCallbackAndCancel(t *testing.T) {
	m := genModel(t, genTinyConfig, 61)
	prompt := []int32{4, 5, 6}
	var streamed []int32
	g, err := m.Generate(context.Background(), prompt, model.GenerateOptions{
		MaxTokens: 20,
		OnToken: func(tok int32) error {
			streamed = append(streamed, tok)
			if len(streamed) == 4 {
				return errStopWrapped
			}
			return nil
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	if g.Reason != model.StopCallback || !slices.Equal(streamed, g.Tokens) || len(g.Tokens) != 4 {
		t.Fatalf("stop by callback: tokens %v, streamed %v, reason %v", g.Tokens, streamed, g.Reason)
	}

	boom := errors.New("terminal closed")
	g, err = m.Generate(context.Background(), prompt, model.GenerateOptions{
		MaxTokens: 20,
		OnToken:   func(int32) error { return boom },
	})
	if !errors.Is(err, boom) || g == nil || len(g.Tokens) != 1 {
		t.Fatalf("failing callback: err = %v, generation %+v", err, g)
	}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	n := 0
	g, err = m.Generate(ctx, prompt, model.GenerateOptions{
		MaxTokens: 20,
		OnToken: func(int32) error {
			if n++; n == 3 {
				cancel()
			}
			return nil
		},
	})
	if !errors.Is(err, context.Canceled) || g == nil || len(g.Tokens) != 3 || g.Reason != model.StopNone {
		t.Fatalf("cancel after 3 tokens: err = %v, generation %+v", err, g)
	}
	if _, err := m.Generate(ctx, prompt, model.GenerateOptions{MaxTokens: 5}); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled context: err = %v", err)
	}
}

// errStopWrapped wraps ErrStopGeneration, which must stop generation as cleanly as the
// sentinel itself.
var errStopWrapped = fmt.Errorf("user pressed q: %w", model.ErrStopGeneration)

func TestGenerateBadOptions(t *testing.T) {
	m := genModel(t, genTinyConfig, 71)
	ok := []int32{1, 2}
	for _, tc := range []struct {
		name   string
		prompt []int32
		o      model.GenerateOptions
		want   error
	}{
		{"max_tokens 0", ok, model.GenerateOptions{}, model.ErrBadOption},
		{"negative temperature", ok, model.GenerateOptions{MaxTokens: 1, Temperature: -0.1}, model.ErrBadOption},
		{"NaN temperature", ok, model.GenerateOptions{MaxTokens: 1, Temperature: math.NaN()}, model.ErrBadOption},
		{"infinite temperature", ok, model.GenerateOptions{MaxTokens: 1, Temperature: math.Inf(1)}, model.ErrBadOption},
		{"negative top_k", ok, model.GenerateOptions{MaxTokens: 1, TopK: -1}, model.ErrBadOption},
		{"top_p above 1", ok, model.GenerateOptions{MaxTokens: 1, TopP: 1.5}, model.ErrBadOption},
		{"negative top_p", ok, model.GenerateOptions{MaxTokens: 1, TopP: -0.1}, model.ErrBadOption},
		{"NaN top_p", ok, model.GenerateOptions{MaxTokens: 1, TopP: math.NaN()}, model.ErrBadOption},
		{"eot outside vocabulary", ok, model.GenerateOptions{MaxTokens: 1, StopAtEOT: true, EOT: 37}, model.ErrBadOption},
		{"empty prompt", nil, model.GenerateOptions{MaxTokens: 1}, model.ErrShape},
		{"token id = vocab", []int32{1, 37}, model.GenerateOptions{MaxTokens: 1}, model.ErrShape},
		{"negative token id", []int32{-1}, model.GenerateOptions{MaxTokens: 1}, model.ErrShape},
	} {
		g, err := m.Generate(context.Background(), tc.prompt, tc.o)
		if !errors.Is(err, tc.want) || g != nil {
			t.Errorf("%s: err = %v, generation %v; want %v and nil", tc.name, err, g, tc.want)
		}
	}
}

// TestGenerateLeavesTrainingAlone runs Generate between Forward and Backward and checks
// that the loss, logits and gradients are those of an undisturbed step.
func TestGenerateLeavesTrainingAlone(t *testing.T) {
	c := genTinyConfig
	rng := rand.New(rand.NewPCG(81, 7))
	B, T := 2, 8
	inputs := genTokens(rng, B*T, c.VocabSize)
	targets := genTokens(rng, B*T, c.VocabSize)
	step := func(generate bool) (float64, []float32, []float32) {
		m := genModel(t, c, 81)
		loss, _, err := m.Forward(inputs, targets, B, T, true)
		if err != nil {
			t.Fatal(err)
		}
		if generate {
			if _, err := m.Generate(context.Background(), inputs[:5], model.GenerateOptions{MaxTokens: 40, Temperature: 1}); err != nil {
				t.Fatal(err)
			}
		}
		if err := m.Backward(1/float32(B*T), nil); err != nil {
			t.Fatal(err)
		}
		return loss, slices.Clone(m.Losses()), slices.Clone(m.Grads.Slab)
	}
	loss0, losses0, grads0 := step(false)
	loss1, losses1, grads1 := step(true)
	if loss0 != loss1 || !slices.Equal(losses0, losses1) || !slices.Equal(grads0, grads1) {
		t.Fatalf("Generate between Forward and Backward changed the step (loss %g vs %g)", loss0, loss1)
	}
}

// BenchmarkGenerate measures decoding cost per token at early and late positions of a
// 4-layer, 128-wide model with 256 positions. With the cache only the attention term
// grows with position, linearly, so step/pos=240 costs a small multiple of step/pos=16;
// recompute/pos=240 is what the same token costs by re-running Forward without a cache.
func BenchmarkGenerate(b *testing.B) {
	c := model.Config{Layers: 4, Heads: 4, Embd: 128, MaxSeqLen: 256, VocabSize: 256}
	m := genModel(b, c, 91)
	seq := genTokens(rand.New(rand.NewPCG(91, 7)), c.MaxSeqLen, c.VocabSize)
	for _, pos := range []int{16, 240} {
		b.Run(fmt.Sprintf("step/pos=%d", pos), func(b *testing.B) {
			d := m.NewDecoder()
			if _, err := d.Prefill(context.Background(), seq[:pos]); err != nil {
				b.Fatal(err)
			}
			for b.Loop() {
				if err := d.Truncate(pos); err != nil {
					b.Fatal(err)
				}
				if _, err := d.Step(seq[pos]); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
	b.Run("recompute/pos=240", func(b *testing.B) {
		for b.Loop() {
			if _, _, err := m.Forward(seq[:241], nil, 1, 241, true); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("generate/240tokens", func(b *testing.B) {
		o := model.GenerateOptions{MaxTokens: 240, Temperature: 1, TopK: 40, TopP: 0.95}
		for b.Loop() {
			if _, err := m.Generate(context.Background(), seq[:16], o); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*o.MaxTokens), "ns/token")
	})
}
