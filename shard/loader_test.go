package shard

import (
	"context"
	"errors"
	"fmt"
	"os"
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

// referenceBatch builds a labelled dataset's batch straight from the definition:
// batch row i of local step k is row perm[k*b+i] of the stream's rows numbered
// shard-major, and row j of shard s is tokens [j*T, j*T+T+1).
func referenceBatch(p *Sampler, tokens []int64, m int, step int64) (in, tg []int32) {
	epoch, k := p.Epoch(step)
	b, T := p.MicroBatch(), p.SeqLen()
	rows := defRows(tokens, p.Streams(), T, m)
	perm := permOf(p, m, epoch)
	for i := range b {
		r := rows[perm[k*int64(b)+int64(i)]]
		for q := range int32(T) {
			first := int32(r.shard)*1000 + int32(r.row)*int32(T)
			in = append(in, first+q)
			tg = append(tg, first+q+1)
		}
	}
	return in, tg
}

func newLoader(t *testing.T, ds *Dataset, p *Sampler, opts LoaderOptions) *Loader {
	t.Helper()
	ld, err := NewLoader(ds, p, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ld.Close() })
	return ld
}

func TestLoaderBatchMatchesDefinition(t *testing.T) {
	tokens := []int64{50, 7, 0, 33, 61, 20, 45, 3, 90}
	ds := labelled(t, tokens, []int64{40})
	p, err := NewSampler(ds.Manifest().TrainTokens(), 99, 3, 2, 5)
	if err != nil {
		t.Fatal(err)
	}
	ld := newLoader(t, ds, p, LoaderOptions{})
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
			// Plain text: every position of the global batch is a target.
			if n, err := ld.TrainedTargets(t.Context(), step); err != nil || n != 3*2*5 {
				t.Fatalf("TrainedTargets(%d) = %d, %v; want M*b*T = 30", step, n, err)
			}
		}
	}
}

// checkDirect compares a loader's batches with the shards read whole by
// LoadShard (ReadShard), for every stream and step of two epochs.
func checkDirect(t *testing.T, ds *Dataset, p *Sampler) {
	t.Helper()
	ld := newLoader(t, ds, p, LoaderOptions{})
	var whole []Tokens
	for i := range ds.Shards(SplitTrain) {
		tok, err := ds.LoadShard(t.Context(), SplitTrain, i)
		if err != nil {
			t.Fatal(err)
		}
		whole = append(whole, tok)
	}
	b, T := p.MicroBatch(), p.SeqLen()
	in, tg := make([]int32, b*T), make([]int32, b*T)
	row := make([]int32, T+1)
	for m := range p.Streams() {
		for step := range 2 * p.StepsPerEpoch() {
			if err := ld.Batch(t.Context(), m, step, in, tg); err != nil {
				t.Fatal(err)
			}
			for _, w := range p.Windows(m, step) {
				whole[w.Shard].CopyTo(row, int(w.Start))
				r := w.Row * T
				if !slices.Equal(in[r:r+T], row[:T]) || !slices.Equal(tg[r:r+T], row[1:]) {
					t.Fatalf("stream %d step %d row %d: loader read %v / %v, shard %d holds %v at %d", m, step, w.Row, in[r:r+T], tg[r:r+T], w.Shard, row, w.Start)
				}
			}
		}
	}
}

func TestLoaderMatchesDirectRead(t *testing.T) {
	t.Run("llmc uint16 with manifest", func(t *testing.T) {
		dir, _ := prepared(t, 4)
		ds, err := Open(dir)
		if err != nil {
			t.Fatal(err)
		}
		p, err := NewSampler(ds.Manifest().TrainTokens(), 3, 2, 3, 7)
		if err != nil {
			t.Fatal(err)
		}
		checkDirect(t, ds, p)
	})
	t.Run("nanogpt headerless", func(t *testing.T) {
		dir := t.TempDir()
		toks := make([]int32, 3001)
		for i := range toks {
			toks[i] = int32((i*7919 + 13) % 65536)
		}
		writeRaw(t, filepath.Join(dir, "train.bin"), encode(t, FormatNanoGPT, toks))
		writeRaw(t, filepath.Join(dir, "val.bin"), encode(t, FormatNanoGPT, toks[:500]))
		ds, err := OpenWithOptions(dir, OpenOptions{Format: FormatNanoGPT})
		if err != nil {
			t.Fatal(err)
		}
		p, err := NewSampler(ds.Manifest().TrainTokens(), 8, 1, 4, 16)
		if err != nil {
			t.Fatal(err)
		}
		checkDirect(t, ds, p)
	})
}

func TestLoaderOpenFilesBound(t *testing.T) {
	tokens := []int64{100, 100, 100, 100, 100, 100}
	ds := labelled(t, tokens, nil)
	p, _ := NewSampler(tokens, 1, 2, 2, 8)
	ld := newLoader(t, ds, p, LoaderOptions{MaxOpenFiles: 2})
	in, tg := make([]int32, 16), make([]int32, 16)
	for step := range 4 * p.StepsPerEpoch() {
		for m := range 2 {
			if err := ld.Batch(t.Context(), m, step, in, tg); err != nil {
				t.Fatal(err)
			}
			if n := ld.OpenFiles(); n > 2 {
				t.Fatalf("%d files open, bound 2", n)
			}
			wi, wt := referenceBatch(p, tokens, m, step)
			if !slices.Equal(in, wi) || !slices.Equal(tg, wt) {
				t.Fatalf("stream %d step %d differs", m, step)
			}
		}
	}
	if err := ld.Close(); err != nil || ld.OpenFiles() != 0 {
		t.Fatalf("after Close: %v, %d files open", err, ld.OpenFiles())
	}
	// Still usable after Close, and shards are verified once only.
	if err := ld.Batch(t.Context(), 1, 5, in, tg); err != nil {
		t.Fatal(err)
	}
	if n := ld.verifies.Load(); n != int64(len(tokens)) {
		t.Fatalf("%d verifications for %d shards", n, len(tokens))
	}
}

func TestLoaderConcurrent(t *testing.T) {
	tokens := []int64{300, 280, 310, 290, 305, 299, 301, 288}
	val := []int64{200, 150}
	ds := labelled(t, tokens, val)
	p, _ := NewSampler(tokens, 5, 4, 3, 7)
	ld := newLoader(t, ds, p, LoaderOptions{MaxOpenFiles: 3})
	it, err := ld.Val(0)
	if err != nil {
		t.Fatal(err)
	}
	steps := 3 * p.StepsPerEpoch()
	var wg sync.WaitGroup
	errs := make(chan error, 20)
	for g := range 16 {
		wg.Go(func() {
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
		})
	}
	for range 4 {
		wg.Go(func() {
			in, tg := make([]int32, 21), make([]int32, 21)
			for range 5 {
				for i := range it.Len() {
					if err := it.Batch(context.Background(), i, in, tg); err != nil {
						errs <- err
						return
					}
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if n := ld.verifies.Load(); n != int64(len(tokens)+len(val)) {
		t.Fatalf("%d verifications for %d shards", n, len(tokens)+len(val))
	}
	if n := ld.OpenFiles(); n > 3 {
		t.Fatalf("%d files open after all calls, bound 3", n)
	}
}

func TestLoaderCorruptShard(t *testing.T) {
	for _, c := range []struct {
		name string
		at   func(size int) int
	}{
		{"body", func(size int) int { return size - 10 }},
		{"header", func(int) int { return 4 }}, // the version: only the checksum is checked first
	} {
		t.Run(c.name, func(t *testing.T) {
			tokens := []int64{100, 100}
			ds := labelled(t, tokens, nil)
			path := filepath.Join(ds.Dir(), ds.Manifest().Train[1].File)
			b, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			b[c.at(len(b))] ^= 0x01
			writeRaw(t, path, b)
			p, _ := NewSampler(tokens, 1, 2, 2, 8)
			ld := newLoader(t, ds, p, LoaderOptions{})
			in, tg := make([]int32, 16), make([]int32, 16)
			if err := ld.Batch(t.Context(), 0, 0, in, tg); err != nil {
				t.Fatalf("stream 0 does not read the corrupt shard: %v", err)
			}
			for range 2 { // a failure is not remembered as a pass
				wantErr(t, ld.Batch(t.Context(), 1, 0, in, tg), ErrChecksum, path)
			}
		})
	}
}

func TestLoaderBadToken(t *testing.T) {
	dir := t.TempDir()
	toks := make([]int32, 41)
	for i := range toks {
		toks[i] = int32(i)
	}
	toks[23] = 150
	name := "t_train_000000.bin"
	sum, err := WriteShardFile(filepath.Join(dir, name), FormatLLMC, toks)
	if err != nil {
		t.Fatal(err)
	}
	m := &Manifest{
		Version:   ManifestVersion,
		Tokenizer: TokenizerInfo{Name: "test", VocabSize: 100, SHA256: SHA256Hex([]byte("tok"))},
		Train:     []ShardInfo{{File: name, Tokens: 41, SHA256: sum, Format: FormatLLMC}},
	}
	if err := WriteManifest(dir, m); err != nil {
		t.Fatal(err)
	}
	ds, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	p, _ := NewSampler(ds.Manifest().TrainTokens(), 1, 1, 2, 4)
	ld := newLoader(t, ds, p, LoaderOptions{})
	in, tg := make([]int32, 8), make([]int32, 8)
	bad := 0
	for step := range p.StepsPerEpoch() {
		err := ld.Batch(t.Context(), 0, step, in, tg)
		touches := false
		for _, w := range p.Windows(0, step) {
			touches = touches || (w.Start <= 23 && 23 < w.End)
		}
		if touches {
			wantErr(t, err, ErrBadToken, filepath.Join(dir, name), "150", "position 23")
			bad++
		} else if err != nil {
			t.Fatalf("step %d: %v", step, err)
		}
	}
	if bad == 0 {
		t.Fatal("no step read the bad token")
	}
}

func TestLoaderErrors(t *testing.T) {
	tokens := []int64{100, 100}
	ds := labelled(t, tokens, nil)
	p, _ := NewSampler(tokens, 1, 2, 2, 8)
	ld := newLoader(t, ds, p, LoaderOptions{})
	in, tg := make([]int32, 16), make([]int32, 16)
	wantErr(t, ld.Batch(t.Context(), 2, 0, in, tg), ErrBadOptions, "stream=2")
	wantErr(t, ld.Batch(t.Context(), 0, -1, in, tg), ErrBadOptions, "step=-1")
	wantErr(t, ld.Batch(t.Context(), 0, 0, in[:3], tg), ErrBadOptions, "16")
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if err := ld.Batch(ctx, 0, 0, in, tg); !errors.Is(err, context.Canceled) {
		t.Fatalf("got %v", err)
	}
	// The cancelled call verified nothing for good: a live context succeeds.
	if err := ld.Batch(t.Context(), 0, 0, in, tg); err != nil {
		t.Fatal(err)
	}
	// A shard replaced after verification by a file of another size is refused.
	path := filepath.Join(ds.Dir(), ds.Manifest().Train[0].File)
	b, _ := os.ReadFile(path)
	ld.Close()
	writeRaw(t, path, b[:len(b)-4])
	wantErr(t, ld.Batch(t.Context(), 0, 0, in, tg), ErrTruncated, path)

	other, _ := NewSampler([]int64{100, 99}, 1, 2, 2, 8)
	_, err := NewLoader(ds, other, LoaderOptions{})
	wantErr(t, err, ErrSamplerMismatch, ds.Dir())
	three, _ := NewSampler([]int64{100, 100, 5}, 1, 2, 2, 8)
	_, err = NewLoader(ds, three, LoaderOptions{})
	wantErr(t, err, ErrSamplerMismatch)
	_, err = NewLoader(ds, p, LoaderOptions{MaxOpenFiles: -1})
	wantErr(t, err, ErrBadOptions, "MaxOpenFiles")
}

func TestValIterator(t *testing.T) {
	val := []int64{30, 0, 25}
	ds := labelled(t, []int64{100, 100}, val)
	p, _ := NewSampler(ds.Manifest().TrainTokens(), 1, 2, 2, 6)
	ld := newLoader(t, ds, p, LoaderOptions{})
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

// TestEvalTrainSplit reads the train split as evaluation batches: in manifest order,
// unshuffled, across shard boundaries, the tail that fills no batch left out.
func TestEvalTrainSplit(t *testing.T) {
	train := []int64{40, 35}
	ds := labelled(t, train, []int64{30})
	p, _ := NewSampler(ds.Manifest().TrainTokens(), 1, 2, 2, 6)
	ld := newLoader(t, ds, p, LoaderOptions{})
	var concat []int32
	for s, n := range train {
		for j := range n {
			concat = append(concat, int32(s)*1000+int32(j))
		}
	}
	it, err := ld.Eval(SplitTrain, 0)
	if err != nil {
		t.Fatal(err)
	}
	if it.Len() != (75-1)/12 {
		t.Fatalf("len %d, want %d", it.Len(), (75-1)/12)
	}
	in, tg := make([]int32, 12), make([]int32, 12)
	for i := range it.Len() {
		if err := it.Batch(t.Context(), i, in, tg); err != nil {
			t.Fatal(err)
		}
		for r := range 2 {
			start := i*12 + r*6
			if !slices.Equal(in[r*6:r*6+6], concat[start:start+6]) || !slices.Equal(tg[r*6:r*6+6], concat[start+1:start+7]) {
				t.Fatalf("batch %d row %d: inputs %v targets %v, want the train tokens from %d", i, r, in[r*6:r*6+6], tg[r*6:r*6+6], start)
			}
		}
	}
	if it, _ := ld.Eval(SplitTrain, 2); it.Len() != 2 {
		t.Fatalf("max batches: %d", it.Len())
	}
	val, err := ld.Eval(SplitVal, 0)
	if err != nil || val.Len() != (30-1)/12 {
		t.Fatalf("val split: len %d, err %v", val.Len(), err)
	}
	_, err = ld.Eval("test", 0)
	wantErr(t, err, ErrBadOptions, `"test"`)
}

func TestLoaderOnPreparedData(t *testing.T) {
	dir, tok := prepared(t, 4)
	ds, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	p, err := NewSampler(ds.Manifest().TrainTokens(), 3, 4, 2, 16)
	if err != nil {
		t.Fatal(err)
	}
	ld := newLoader(t, ds, p, LoaderOptions{})
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
