package shard

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"sync"
	"testing"
)

// labelled writes a dataset whose token j of train shard s is s*1000+j (and of
// val shard s, 500000+s*1000+j), so every token says where it came from.
func labelled(t *testing.T, train, val []int64) *Dataset {
	t.Helper()
	dir := t.TempDir()
	m := &Manifest{
		Version:   ManifestVersion,
		Tokenizer: TokenizerInfo{Name: "test", VocabSize: 1 << 20, SHA256: SHA256Hex([]byte("tok"))},
		EOT:       0,
	}
	for _, sp := range []struct {
		name   string
		counts []int64
		base   int32
		dst    *[]ShardInfo
	}{{"train", train, 0, &m.Train}, {"val", val, 500000, &m.Val}} {
		for s, n := range sp.counts {
			toks := make([]int32, n)
			for j := range toks {
				toks[j] = sp.base + int32(s)*1000 + int32(j)
			}
			name := fmt.Sprintf("t_%s_%06d.bin", sp.name, s)
			sum, err := WriteShardFile(filepath.Join(dir, name), FormatLLMC32, toks)
			if err != nil {
				t.Fatal(err)
			}
			*sp.dst = append(*sp.dst, ShardInfo{File: name, Tokens: n, SHA256: sum, Format: FormatLLMC32})
		}
	}
	if err := WriteManifest(dir, m); err != nil {
		t.Fatal(err)
	}
	ds, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	return ds
}

// referenceBatch builds the batch straight from the definition: the stream's
// shards concatenated in ShardOrder, rows at k*b*T + i*T.
func referenceBatch(p *StreamPlan, tokens []int64, m int, step int64) (in, tg []int32) {
	epoch, k := p.Epoch(step)
	var concat []int32
	for _, s := range p.ShardOrder(m, epoch) {
		for j := range tokens[s] {
			concat = append(concat, int32(s)*1000+int32(j))
		}
	}
	b, T := p.MicroBatch(), p.SeqLen()
	for i := range b {
		start := int(k)*b*T + i*T
		in = append(in, concat[start:start+T]...)
		tg = append(tg, concat[start+1:start+T+1]...)
	}
	return in, tg
}

func TestLoaderBatchMatchesDefinition(t *testing.T) {
	tokens := []int64{50, 7, 0, 33, 61, 20, 45, 3, 90}
	ds := labelled(t, tokens, []int64{40})
	p, err := NewPlan(ds.Manifest().TrainTokens(), 99, 3, 2, 5)
	if err != nil {
		t.Fatal(err)
	}
	ld, err := NewLoader(ds, p, LoaderOptions{})
	if err != nil {
		t.Fatal(err)
	}
	in, tg := make([]int32, 10), make([]int32, 10)
	for m := range 3 {
		for step := range 3 * p.StepsPerEpoch() {
			if err := ld.Batch(t.Context(), m, step, in, tg); err != nil {
				t.Fatal(err)
			}
			wi, wt := referenceBatch(p, tokens, m, step)
			if !slices.Equal(in, wi) || !slices.Equal(tg, wt) {
				t.Fatalf("stream %d step %d:\n in %v\nwant %v\n tg %v\nwant %v", m, step, in, wi, tg, wt)
			}
		}
	}
}

func TestLoaderCacheBound(t *testing.T) {
	tokens := []int64{100, 100, 100, 100, 100, 100}
	ds := labelled(t, tokens, nil)
	p, _ := NewPlan(tokens, 1, 2, 2, 8)
	ld, _ := NewLoader(ds, p, LoaderOptions{CacheBytes: 900}) // two 400-byte shards
	in, tg := make([]int32, 16), make([]int32, 16)
	for step := range 4 * p.StepsPerEpoch() {
		for m := range 2 {
			if err := ld.Batch(t.Context(), m, step, in, tg); err != nil {
				t.Fatal(err)
			}
			if c := ld.CachedBytes(); c > 900 {
				t.Fatalf("cache holds %d bytes, bound 900", c)
			}
		}
	}
	// A bound below one shard still works, holding the last shard only.
	ld, _ = NewLoader(ds, p, LoaderOptions{CacheBytes: 1})
	if err := ld.Batch(t.Context(), 1, 5, in, tg); err != nil {
		t.Fatal(err)
	}
	if c := ld.CachedBytes(); c != 400 {
		t.Fatalf("cache holds %d bytes", c)
	}
}

func TestLoaderConcurrent(t *testing.T) {
	tokens := []int64{300, 280, 310, 290, 305, 299, 301, 288}
	ds := labelled(t, tokens, nil)
	p, _ := NewPlan(tokens, 5, 4, 3, 7)
	ld, _ := NewLoader(ds, p, LoaderOptions{CacheBytes: 2500})
	steps := 2 * p.StepsPerEpoch()
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for g := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			in, tg := make([]int32, 21), make([]int32, 21)
			m := g % 4
			for step := range steps {
				if err := ld.Batch(context.Background(), m, step, in, tg); err != nil {
					errs <- err
					return
				}
				wi, wt := referenceBatch(p, tokens, m, step)
				if !slices.Equal(in, wi) || !slices.Equal(tg, wt) {
					errs <- fmt.Errorf("stream %d step %d differs", m, step)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}

func TestLoaderErrors(t *testing.T) {
	tokens := []int64{100, 100}
	ds := labelled(t, tokens, nil)
	p, _ := NewPlan(tokens, 1, 2, 2, 8)
	ld, err := NewLoader(ds, p, LoaderOptions{})
	if err != nil {
		t.Fatal(err)
	}
	in, tg := make([]int32, 16), make([]int32, 16)
	wantErr(t, ld.Batch(t.Context(), 2, 0, in, tg), ErrBadOptions, "stream=2")
	wantErr(t, ld.Batch(t.Context(), 0, -1, in, tg), ErrBadOptions, "step=-1")
	wantErr(t, ld.Batch(t.Context(), 0, 0, in[:3], tg), ErrBadOptions, "16")
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if err := ld.Batch(ctx, 0, 0, in, tg); !errors.Is(err, context.Canceled) {
		t.Fatalf("got %v", err)
	}
	// The failed load is not cached: a live context succeeds.
	if err := ld.Batch(t.Context(), 0, 0, in, tg); err != nil {
		t.Fatal(err)
	}
	other, _ := NewPlan([]int64{100, 99}, 1, 2, 2, 8)
	_, err = NewLoader(ds, other, LoaderOptions{})
	wantErr(t, err, ErrPlanMismatch, ds.Dir())
	three, _ := NewPlan([]int64{100, 100, 5}, 1, 2, 2, 8)
	_, err = NewLoader(ds, three, LoaderOptions{})
	wantErr(t, err, ErrPlanMismatch)
}

func TestValIterator(t *testing.T) {
	val := []int64{30, 0, 25}
	ds := labelled(t, []int64{100, 100}, val)
	p, _ := NewPlan(ds.Manifest().TrainTokens(), 1, 2, 2, 6)
	ld, _ := NewLoader(ds, p, LoaderOptions{})
	var concat []int32
	for s, n := range val {
		for j := range n {
			concat = append(concat, 500000+int32(s)*1000+int32(j))
		}
	}
	it, err := ld.Val(0)
	if err != nil {
		t.Fatal(err)
	}
	if it.Len() != (55-1)/12 {
		t.Fatalf("len %d", it.Len())
	}
	in, tg := make([]int32, 12), make([]int32, 12)
	for pass := range 2 {
		n := 0
		for {
			ok, err := it.Next(t.Context(), in, tg)
			if err != nil {
				t.Fatal(err)
			}
			if !ok {
				break
			}
			for r := range 2 {
				start := n*12 + r*6
				if !slices.Equal(in[r*6:r*6+6], concat[start:start+6]) || !slices.Equal(tg[r*6:r*6+6], concat[start+1:start+7]) {
					t.Fatalf("pass %d batch %d row %d differs", pass, n, r)
				}
			}
			n++
		}
		if n != it.Len() {
			t.Fatalf("read %d batches", n)
		}
		it.Reset()
	}
	it, _ = ld.Val(2)
	if it.Len() != 2 {
		t.Fatalf("max batches: %d", it.Len())
	}
	wantErr(t, it.Batch(t.Context(), 2, in, tg), ErrBadOptions)
}

func TestLoaderOnPreparedData(t *testing.T) {
	dir, tok := prepared(t, 4)
	ds, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	p, err := NewPlan(ds.Manifest().TrainTokens(), 3, 4, 2, 16)
	if err != nil {
		t.Fatal(err)
	}
	ld, _ := NewLoader(ds, p, LoaderOptions{})
	in, tg := make([]int32, 32), make([]int32, 32)
	if err := ld.Batch(t.Context(), 3, 1, in, tg); err != nil {
		t.Fatal(err)
	}
	for i := range 31 {
		if i%16 != 15 && in[i+1] != tg[i] {
			t.Fatalf("targets are not inputs shifted by one at %d", i)
		}
		if int(in[i]) >= tok.VocabSize() {
			t.Fatal("token out of vocab")
		}
	}
}
