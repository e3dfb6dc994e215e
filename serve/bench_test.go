package serve

import (
	"context"
	"fmt"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ringtrain/ringtrain/chat"
	"github.com/ringtrain/ringtrain/model"
	"github.com/ringtrain/ringtrain/tokenizer"
)

// BenchmarkServeConcurrent sends 16 concurrent completion requests (64 tokens each,
// greedy) to a server over a 4-layer, 128-wide model with 256 positions, with the
// engine decoding 1, 4 or 16 requests per step, and reports generated tokens/s.
func BenchmarkServeConcurrent(b *testing.B) {
	tok, err := tokenizer.NewChar(TinyCorpus)
	if err != nil {
		b.Fatal(err)
	}
	cfg := model.Config{Layers: 4, Heads: 4, Embd: 128, MaxSeqLen: 256, VocabSize: tok.VocabSize()}
	g, err := model.New(cfg, nil)
	if err != nil {
		b.Fatal(err)
	}
	g.InitWeights(5)
	tmpl, _ := chat.Lookup(chat.Plain)
	m := &Model{Name: "bench", GPT: g, Tok: tok, Template: tmpl, Tuned: true}
	const clients, maxTokens = 16, 64
	for _, batch := range []int{1, 4, 16} {
		b.Run(fmt.Sprintf("batch=%d", batch), func(b *testing.B) {
			eng, err := NewEngine(m, batch, nil, nil)
			if err != nil {
				b.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan struct{})
			go func() { defer close(done); _ = eng.Run(ctx) }()
			ts := httptest.NewServer(NewServer(eng, Limits{}, nil, nil, nil))
			defer func() { ts.Close(); cancel(); <-done }()
			tokens := 0
			start := time.Now()
			for b.Loop() {
				var wg sync.WaitGroup
				var mu sync.Mutex
				for i := range clients {
					wg.Go(func() {
						body := fmt.Sprintf(`{"prompt":"Client %d says","max_tokens":%d}`, i, maxTokens)
						resp, err := ts.Client().Post(ts.URL+"/v1/completions", "application/json", strings.NewReader(body))
						if err != nil {
							b.Error(err)
							return
						}
						var c completionResponse
						err = jsonDecode(resp, &c)
						if err != nil || c.Usage == nil {
							b.Errorf("response: %v", err)
							return
						}
						mu.Lock()
						tokens += c.Usage.CompletionTokens
						mu.Unlock()
					})
				}
				wg.Wait()
			}
			b.ReportMetric(float64(tokens)/time.Since(start).Seconds(), "tokens/s")
		})
	}
}
