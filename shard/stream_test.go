package shard

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
)

// checkEpoch verifies the StreamPlan contract for every stream and local step of
// one epoch: row i of local step k is positions [k*b*T + i*T, +T+1) of the
// concatenation of the stream's shards in ShardOrder, windows lie inside owned
// shards, and so every input token of the epoch is distinct (exactly once).
func checkEpoch(t *testing.T, p *StreamPlan, shardTokens []int64, epoch int64) {
	t.Helper()
	M, b, T := p.Streams(), p.MicroBatch(), p.SeqLen()
	spe := p.StepsPerEpoch()
	type tokenID struct {
		shard int
		idx   int64
	}
	seen := map[tokenID]bool{}
	for m := range M {
		order := p.ShardOrder(m, epoch)
		owned := p.OwnedShards(m)
		if !slices.Equal(slices.Sorted(slices.Values(order)), owned) {
			t.Fatalf("stream %d epoch %d: order %v is not a permutation of %v", m, epoch, order, owned)
		}
		for _, s := range owned {
			if s%M != m {
				t.Fatalf("stream %d owns shard %d", m, s)
			}
		}
		// concatenation position of the start of each shard
		start := map[int]int64{}
		var total int64
		for _, s := range order {
			start[s] = total
			total += shardTokens[s]
		}
		if total != p.StreamTokens(m) {
			t.Fatalf("stream %d: %d tokens, plan says %d", m, total, p.StreamTokens(m))
		}
		for k := range spe {
			ws := p.Windows(m, epoch*spe+k)
			next := make([]int, b) // next expected Pos per row
			for _, w := range ws {
				if w.Row < 0 || w.Row >= b || w.Pos != next[w.Row] || w.Len() < 1 {
					t.Fatalf("stream %d step %d: bad window %+v (want pos %d)", m, k, w, next[w.Row])
				}
				if w.Shard%M != m || w.Start < 0 || w.End > shardTokens[w.Shard] {
					t.Fatalf("stream %d step %d: window %+v outside stream's shards", m, k, w)
				}
				want := k*int64(b)*int64(T) + int64(w.Row)*int64(T) + int64(w.Pos)
				if got := start[w.Shard] + w.Start; got != want {
					t.Fatalf("stream %d step %d row %d: window %+v at concat position %d, want %d", m, k, w.Row, w, got, want)
				}
				for j := w.Start; j < w.End; j++ {
					if pos := w.Pos + int(j-w.Start); pos < T {
						id := tokenID{w.Shard, j}
						if seen[id] {
							t.Fatalf("epoch %d: token %v is an input twice", epoch, id)
						}
						seen[id] = true
					}
				}
				next[w.Row] += w.Len()
			}
			for i, n := range next {
				if n != T+1 {
					t.Fatalf("stream %d step %d: row %d has %d tokens, want %d", m, k, i, n, T+1)
				}
			}
		}
	}
	if want := int64(M) * spe * int64(b) * int64(T); int64(len(seen)) != want {
		t.Fatalf("epoch %d: %d distinct input tokens, want %d", epoch, len(seen), want)
	}
}

func TestPlanProperty(t *testing.T) {
	seed := uint64(20240520)
	t.Logf("property seed %d", seed)
	r := rand.New(rand.NewPCG(seed, 1))
	checked := 0
	for iter := 0; iter < 400; iter++ {
		M := 1 + r.IntN(6)
		S := M + r.IntN(3*M+5)
		b := 1 + r.IntN(4)
		T := 1 + r.IntN(16)
		tokens := make([]int64, S)
		for i := range tokens {
			if r.IntN(8) > 0 {
				tokens[i] = int64(r.IntN(300))
			}
		}
		jobSeed := r.Uint64()
		p, err := NewPlan(tokens, jobSeed, M, b, T)
		if err != nil {
			if !errors.Is(err, ErrTooFewTokens) {
				t.Fatalf("iter %d: %v", iter, err)
			}
			// verify it really is too few
			per := make([]int64, M)
			for i, n := range tokens {
				per[i%M] += n
			}
			if slices.Min(per) >= int64(b*T)+1 {
				t.Fatalf("iter %d: %v but every stream has >= %d tokens: %v", iter, err, b*T+1, per)
			}
			continue
		}
		// steps per epoch is the minimum over streams, and some stream is tight
		tight := false
		for m := range M {
			n := p.StreamTokens(m)
			if p.StepsPerEpoch()*int64(b*T)+1 > n {
				t.Fatalf("iter %d: stream %d has %d tokens, too few for %d steps", iter, m, n, p.StepsPerEpoch())
			}
			if (p.StepsPerEpoch()+1)*int64(b*T)+1 > n {
				tight = true
			}
		}
		if !tight {
			t.Fatalf("iter %d: StepsPerEpoch %d is not the minimum", iter, p.StepsPerEpoch())
		}
		for e := range int64(2) {
			checkEpoch(t, p, tokens, e)
		}
		checked++
	}
	if checked < 100 {
		t.Fatalf("only %d plans checked", checked)
	}
}

func TestPlanDeterministic(t *testing.T) {
	tokens := []int64{100, 37, 250, 0, 81, 64, 99, 120, 13}
	a, err := NewPlan(tokens, 7, 3, 2, 8)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := NewPlan(slices.Clone(tokens), 7, 3, 2, 8)
	c, _ := NewPlan(tokens, 8, 3, 2, 8)
	differ := false
	for m := range 3 {
		for s := range int64(40) {
			wa, wb := a.Windows(m, s), b.Windows(m, s)
			if !slices.Equal(wa, wb) || !slices.Equal(wa, a.Windows(m, s)) {
				t.Fatalf("stream %d step %d: not deterministic", m, s)
			}
			if !slices.Equal(wa, c.Windows(m, s)) {
				differ = true
			}
		}
	}
	if !differ {
		t.Fatal("a different seed gave the same data")
	}
	tokens[0] = 1 // the plan copied its input
	if !slices.Equal(a.Windows(0, 0), b.Windows(0, 0)) {
		t.Fatal("plan aliases the caller's slice")
	}
}

func TestShardOrderChangesPerEpoch(t *testing.T) {
	tokens := make([]int64, 64)
	for i := range tokens {
		tokens[i] = 1000
	}
	p, err := NewPlan(tokens, 1, 4, 1, 16)
	if err != nil {
		t.Fatal(err)
	}
	for m := range 4 {
		seen := map[string]int64{}
		for e := range int64(20) {
			key := fmt.Sprint(p.ShardOrder(m, e))
			if prev, ok := seen[key]; ok {
				t.Fatalf("stream %d: epochs %d and %d have the same order %s", m, prev, e, key)
			}
			seen[key] = e
		}
	}
	// Epoch boundaries: step StepsPerEpoch is local step 0 of epoch 1.
	if e, k := p.Epoch(p.StepsPerEpoch()); e != 1 || k != 0 {
		t.Fatalf("Epoch(%d) = %d, %d", p.StepsPerEpoch(), e, k)
	}
	if spe := p.StepsPerEpoch(); spe != (16*1000-1)/16 {
		t.Fatalf("steps per epoch %d", spe)
	}
}

// TestShardOrderGolden pins the shuffle: these orders must never change, or
// resumed jobs would read different data.
func TestShardOrderGolden(t *testing.T) {
	tokens := make([]int64, 20)
	for i := range tokens {
		tokens[i] = 10
	}
	p, err := NewPlan(tokens, 42, 2, 1, 4)
	if err != nil {
		t.Fatal(err)
	}
	got := fmt.Sprint(p.ShardOrder(0, 0), p.ShardOrder(0, 1), p.ShardOrder(1, 0), p.ShardOrder(1, 7))
	const want = "[16 12 2 0 10 18 4 14 8 6] [16 4 6 18 2 10 14 12 8 0] [13 3 1 19 7 5 9 11 15 17] [11 17 3 15 13 19 5 1 9 7]"
	if got != want {
		t.Fatalf("shard orders changed:\n got %s\nwant %s", got, want)
	}
}

func TestUniformIsUnbiased(t *testing.T) {
	r := rand.NewPCG(3, 4)
	counts := make([]int, 6)
	const n = 60000
	for range n {
		counts[uniform(r, 6)]++
	}
	for i, c := range counts {
		if c < n/6-600 || c > n/6+600 {
			t.Fatalf("value %d drawn %d times of %d", i, c, n)
		}
	}
}

func TestNewPlanErrors(t *testing.T) {
	_, err := NewPlan([]int64{100, 100}, 0, 3, 1, 4)
	wantErr(t, err, ErrTooFewShards, "2 train shards", "3 streams")
	_, err = NewPlan([]int64{100, 4}, 0, 2, 1, 4)
	wantErr(t, err, ErrTooFewTokens, "stream 1")
	_, err = NewPlan([]int64{100, 5}, 0, 2, 1, 4) // exactly b*T+1 is enough
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range [][3]int{{0, 1, 1}, {1, 0, 1}, {1, 1, 0}} {
		_, err = NewPlan([]int64{100}, 0, c[0], c[1], c[2])
		wantErr(t, err, ErrBadOptions)
	}
	_, err = NewPlan([]int64{100, -1}, 0, 1, 1, 1)
	wantErr(t, err, ErrBadOptions)
}

func TestValPlan(t *testing.T) {
	tokens := []int64{10, 0, 7, 30}
	v, err := NewValPlan(tokens, 2, 4, 0)
	if err != nil {
		t.Fatal(err)
	}
	if v.Batches() != (47-1)/8 {
		t.Fatalf("batches %d", v.Batches())
	}
	start := []int64{0, 10, 10, 17}
	for i := range v.Batches() {
		for _, w := range v.Windows(i) {
			want := int64(i*8 + w.Row*4 + w.Pos)
			if got := start[w.Shard] + w.Start; got != want {
				t.Fatalf("batch %d window %+v at %d want %d", i, w, got, want)
			}
		}
	}
	if v, _ := NewValPlan(tokens, 2, 4, 3); v.Batches() != 3 {
		t.Fatalf("max batches not applied: %d", v.Batches())
	}
	if v, _ := NewValPlan(nil, 2, 4, 0); v.Batches() != 0 {
		t.Fatal("empty val split has batches")
	}
	if v, _ := NewValPlan([]int64{8}, 2, 4, 0); v.Batches() != 0 {
		t.Fatal("b*T tokens make a batch; b*T+1 are needed")
	}
	_, err = NewValPlan(tokens, 0, 4, 0)
	wantErr(t, err, ErrBadOptions)
}
