package model_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/ringtrain/ringtrain/model"
)

// batchPrompts returns n prompts of lengths 1..40 (some longer than genTinyConfig's 32
// positions, so truncated) with an EOT id that some of them sample.
func batchPrompts(seed uint64, n, vocab int) [][]int32 {
	rng := rand.New(rand.NewPCG(seed, 3))
	out := make([][]int32, n)
	for i := range out {
		out[i] = genTokens(rng, 1+rng.IntN(40), vocab)
	}
	return out
}

// TestBatchMatchesGenerate runs the same prompts one at a time with Generate and
// together through GenerateBatch at several batch sizes, greedy and sampled, with
// per-row seeds, EOT stops and enough tokens to slide the window: every row must get
// exactly Generate's tokens, reason, truncation and slide count.
func TestBatchMatchesGenerate(t *testing.T) {
	m := genModel(t, genTinyConfig, 81)
	prompts := batchPrompts(81, 11, genTinyConfig.VocabSize)
	opts := make([]model.GenerateOptions, len(prompts))
	for i := range opts {
		opts[i] = model.GenerateOptions{MaxTokens: 5 + 7*i, StopAtEOT: i%3 == 0, EOT: 5}
	}
	sampled := make([]model.GenerateOptions, len(prompts))
	for i, o := range opts {
		o.Temperature, o.TopK, o.TopP, o.Seed = 0.9, 10*(i%3), []float64{0, 0.9}[i%2], uint64(100+i)
		sampled[i] = o
	}
	for _, tc := range []struct {
		name string
		opts []model.GenerateOptions
	}{{"greedy", opts}, {"sampled", sampled}} {
		want := make([]*model.Generation, len(prompts))
		for i, p := range prompts {
			g, err := m.Generate(context.Background(), p, tc.opts[i])
			if err != nil {
				t.Fatal(err)
			}
			want[i] = g
		}
		slides, eots := 0, 0
		for _, w := range want {
			slides += w.Slides
			if w.Reason == model.StopEOT {
				eots++
			}
		}
		if slides == 0 || eots == 0 {
			t.Fatalf("%s: %d slides, %d EOT stops; the test must cover both", tc.name, slides, eots)
		}
		for _, batch := range []int{1, 3, 8, 16} {
			got, err := m.GenerateBatch(context.Background(), prompts, tc.opts, batch)
			if err != nil {
				t.Fatal(err)
			}
			for i, r := range got {
				if r.Err != nil {
					t.Fatalf("%s batch %d row %d: %v", tc.name, batch, i, r.Err)
				}
				w := want[i]
				if !slices.Equal(r.Gen.Tokens, w.Tokens) || r.Gen.Reason != w.Reason ||
					r.Gen.Slides != w.Slides || r.Gen.PromptTruncated != w.PromptTruncated {
					t.Errorf("%s batch %d row %d: got %v (%v, %d slides, %d cut), want %v (%v, %d slides, %d cut)",
						tc.name, batch, i, r.Gen.Tokens, r.Gen.Reason, r.Gen.Slides, r.Gen.PromptTruncated,
						w.Tokens, w.Reason, w.Slides, w.PromptTruncated)
				}
			}
		}
	}
}

// TestBatchJoinLeave adds sequences between steps and checks that a row's callback
// stop, a failing callback and a cancelled context end that row alone.
func TestBatchJoinLeave(t *testing.T) {
	m := genModel(t, genTinyConfig, 82)
	bd, err := m.NewBatchDecoder(3)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	prompt := []int32{4, 5, 6}
	alone, err := m.Generate(ctx, prompt, model.GenerateOptions{MaxTokens: 12})
	if err != nil {
		t.Fatal(err)
	}

	var streamed []int32
	stopAt4 := model.GenerateOptions{MaxTokens: 12, OnToken: func(tok int32) error {
		if streamed = append(streamed, tok); len(streamed) == 4 {
			return errStopWrapped
		}
		return nil
	}}
	boom := errors.New("client went away")
	failing := model.GenerateOptions{MaxTokens: 12, OnToken: func(int32) error { return boom }}
	cctx, cancel := context.WithCancel(ctx)
	defer cancel()

	ids := map[string]int{}
	add := func(name string, ctx context.Context, o model.GenerateOptions) {
		id, err := bd.Add(ctx, prompt, o)
		if err != nil {
			t.Fatalf("add %s: %v", name, err)
		}
		ids[name] = id
	}
	add("stop", ctx, stopAt4)
	add("fail", ctx, failing)
	add("cancel", cctx, model.GenerateOptions{MaxTokens: 12})
	if _, err := bd.Add(ctx, prompt, model.GenerateOptions{MaxTokens: 1}); !errors.Is(err, model.ErrBatchFull) {
		t.Fatalf("add to a full batch: %v, want ErrBatchFull", err)
	}
	results := map[int]model.BatchResult{}
	collect := func() {
		for _, r := range bd.Step() {
			results[r.ID] = r
		}
	}
	collect() // every row samples a token; fail leaves
	if r, ok := results[ids["fail"]]; !ok || !errors.Is(r.Err, boom) || len(r.Gen.Tokens) != 1 {
		t.Fatalf("failing callback: %+v (present %v)", r, ok)
	}
	add("late", ctx, model.GenerateOptions{MaxTokens: 12})
	collect()
	cancel()
	for bd.Len() > 0 {
		collect()
	}
	if r := results[ids["stop"]]; r.Err != nil || r.Gen.Reason != model.StopCallback || !slices.Equal(r.Gen.Tokens, alone.Tokens[:4]) {
		t.Errorf("callback stop: %+v, want %v", r.Gen, alone.Tokens[:4])
	}
	if r := results[ids["cancel"]]; !errors.Is(r.Err, context.Canceled) || len(r.Gen.Tokens) != 2 || r.Gen.Reason != model.StopNone {
		t.Errorf("cancelled row: err %v, %+v, want context.Canceled after 2 tokens", r.Err, r.Gen)
	}
	if r := results[ids["late"]]; r.Err != nil || !slices.Equal(r.Gen.Tokens, alone.Tokens) {
		t.Errorf("late joiner: %v, %+v, want %v", r.Err, r.Gen, alone.Tokens)
	}
}

func TestBatchBadInput(t *testing.T) {
	m := genModel(t, genTinyConfig, 83)
	if _, err := m.NewBatchDecoder(0); !errors.Is(err, model.ErrBadOption) {
		t.Errorf("capacity 0: %v", err)
	}
	bd, err := m.NewBatchDecoder(2)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for _, tc := range []struct {
		prompt []int32
		opts   model.GenerateOptions
		want   error
	}{
		{[]int32{1}, model.GenerateOptions{}, model.ErrBadOption},
		{nil, model.GenerateOptions{MaxTokens: 1}, model.ErrShape},
		{[]int32{1, 99}, model.GenerateOptions{MaxTokens: 1}, model.ErrShape},
	} {
		if _, err := bd.Add(ctx, tc.prompt, tc.opts); !errors.Is(err, tc.want) {
			t.Errorf("Add(%v, %+v): %v, want %v", tc.prompt, tc.opts, err, tc.want)
		}
	}
	if bd.Len() != 0 || len(bd.Step()) != 0 {
		t.Fatal("rejected sequences joined the batch")
	}
	res, err := m.GenerateBatch(ctx, [][]int32{{1, 2}, nil}, []model.GenerateOptions{{MaxTokens: 3}}, 2)
	if err != nil || res[0].Err != nil || len(res[0].Gen.Tokens) != 3 || !errors.Is(res[1].Err, model.ErrShape) {
		t.Errorf("GenerateBatch with one empty prompt: %+v, %v", res, err)
	}
	if _, err := m.GenerateBatch(ctx, [][]int32{{1}, {2}}, make([]model.GenerateOptions, 3), 2); !errors.Is(err, model.ErrBadOption) {
		t.Errorf("3 options for 2 prompts: %v", err)
	}
}

// BenchmarkBatchDecode compares generating 16 sequences of 64 tokens one at a time
// (Generate) with generating them together (GenerateBatch) at batch sizes 4 and 16, on
// the 4-layer, 128-wide model of BenchmarkGenerate with a 1024-token vocabulary.
// Greedy; the reported tokens/s counts new tokens.
func BenchmarkBatchDecode(b *testing.B) {
	c := model.Config{Layers: 4, Heads: 4, Embd: 128, MaxSeqLen: 256, VocabSize: 1024}
	m := genModel(b, c, 92)
	rng := rand.New(rand.NewPCG(92, 7))
	prompts := make([][]int32, 16)
	for i := range prompts {
		prompts[i] = genTokens(rng, 8+i, c.VocabSize)
	}
	o := model.GenerateOptions{MaxTokens: 64}
	tokens := len(prompts) * o.MaxTokens
	report := func(b *testing.B, start time.Time) {
		b.ReportMetric(float64(tokens*b.N)/time.Since(start).Seconds(), "tokens/s")
	}
	b.Run("one-at-a-time", func(b *testing.B) {
		start := time.Now()
		for b.Loop() {
			for _, p := range prompts {
				if _, err := m.Generate(context.Background(), p, o); err != nil {
					b.Fatal(err)
				}
			}
		}
		report(b, start)
	})
	for _, batch := range []int{4, 16} {
		b.Run(fmt.Sprintf("batch=%d", batch), func(b *testing.B) {
			start := time.Now()
			for b.Loop() {
				if _, err := m.GenerateBatch(context.Background(), prompts, []model.GenerateOptions{o}, batch); err != nil {
					b.Fatal(err)
				}
			}
			report(b, start)
		})
	}
}
