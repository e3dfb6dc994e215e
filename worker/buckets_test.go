package worker

import (
	"context"
	"math"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/ringtrain/ringtrain/allreduce"
	"github.com/ringtrain/ringtrain/model"
)

// TestCutBuckets: the buckets tile the slab from the top down, each at least the
// size asked for except the last, and break only between the units backward
// reports.
func TestCutBuckets(t *testing.T) {
	c := model.Config{Layers: 4, Heads: 4, Embd: 128, VocabSize: 67, MaxSeqLen: 64}
	g := model.NewParams(c)
	n := len(g.Slab)
	blockLo, blockHi := g.Blocks[0].Range()
	block := blockHi - blockLo
	cuts := map[int]bool{0: true, n: true, len(g.Wte) + len(g.Wpe): true, n - len(g.LnfW) - len(g.LnfB): true}
	for l := range g.Blocks {
		lo, _ := g.Blocks[l].Range()
		cuts[lo] = true
	}
	for _, c := range []struct{ maxElems, want int }{
		{1, 2 + len(g.Blocks)},     // every unit its own bucket
		{block, 1 + len(g.Blocks)}, // ln_f with the last block, then one per block, then the embeddings
		{2 * block, 3},
		{n, 1},
		{10 * n, 1},
	} {
		spans := cutBuckets(g, c.maxElems)
		if len(spans) != c.want {
			t.Errorf("maxElems %d: %d buckets %v, want %d", c.maxElems, len(spans), spans, c.want)
		}
		hi := n
		for i, s := range spans {
			if s.hi != hi || s.lo >= s.hi || !cuts[s.lo] {
				t.Fatalf("maxElems %d: bucket %d is %v after %d", c.maxElems, i, s, hi)
			}
			if i < len(spans)-1 && s.hi-s.lo < c.maxElems {
				t.Errorf("maxElems %d: bucket %d %v is smaller than asked", c.maxElems, i, s)
			}
			hi = s.lo
		}
		if hi != 0 {
			t.Errorf("maxElems %d: buckets end at %d, not 0", c.maxElems, hi)
		}
	}
}

// TestBucketRun: buckets start as backward reports their ranges, in layout order,
// and the sums are those of a plain all-reduce of the slab (up to summation order)
// and bit-identical on every rank; a rank that reports nothing (no streams) starts
// the same operations at flush.
func TestBucketRun(t *testing.T) {
	c := model.Config{Layers: 3, Heads: 2, Embd: 16, VocabSize: 11, MaxSeqLen: 8}
	const world = 3
	rings, _, err := allreduce.NewInmemRings(allreduce.Config{Generation: 1, SegmentBytes: 256}, world, 4)
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		for _, r := range rings {
			r.Close()
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	grads := make([]*model.Params, world)
	want := make([]float64, 0)
	for r := range grads {
		grads[r] = model.NewParams(c)
		for i := range grads[r].Slab {
			grads[r].Slab[i] = float32(math.Sin(float64(i*(r+3)))) / 7
		}
	}
	for i := range grads[0].Slab {
		var s float64
		for r := range grads {
			s += float64(grads[r].Slab[i])
		}
		want = append(want, s)
	}
	lo, hi := grads[0].Blocks[0].Range()
	spans := cutBuckets(grads[0], (hi-lo)/2)
	if len(spans) != c.Layers+1 {
		t.Fatalf("layout %v: want ln_f with the last block, one bucket per other block and the embeddings", spans)
	}
	var wg sync.WaitGroup
	started := make([][]int, world)
	for r := range world {
		wg.Go(func() {
			g := grads[r]
			b := newBucketRun(rings[r], g.Slab, spans)
			b.begin(ctx)
			if r != world-1 { // the last rank has no streams: it reports nothing
				n := len(g.Slab)
				b.ready(n-len(g.LnfW)-len(g.LnfB), n)
				started[r] = append(started[r], len(b.handles))
				for l := len(g.Blocks) - 1; l >= 0; l-- {
					b.ready(g.Blocks[l].Range())
					started[r] = append(started[r], len(b.handles))
				}
				b.ready(0, len(g.Wte)+len(g.Wpe))
				started[r] = append(started[r], len(b.handles))
			}
			b.flush()
			if _, err := b.wait(); err != nil {
				t.Errorf("rank %d: %v", r, err)
			}
		})
	}
	wg.Wait()
	for r := range world - 1 {
		// Nothing after ln_f alone; then one bucket per block and the embeddings.
		if got, want := started[r], []int{0, 1, 2, 3, 4}; !slices.Equal(got, want) {
			t.Errorf("rank %d: buckets started after each report %v, want %v", r, got, want)
		}
	}
	for i, v := range grads[0].Slab {
		if math.Abs(float64(v)-want[i]) > 1e-5 {
			t.Fatalf("value %d: %v, want %v", i, v, want[i])
		}
		for r := range grads {
			if math.Float32bits(grads[r].Slab[i]) != math.Float32bits(v) {
				t.Fatalf("rank %d differs from rank 0 at %d", r, i)
			}
		}
	}
}
