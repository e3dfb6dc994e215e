package shard

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
)

// defRow is a row by the definition: row j of shard s is tokens [j*T, j*T+T+1).
type defRow struct {
	shard int
	row   int64
}

// defRows enumerates stream m's rows from the definition alone: shards m, m+M,
// … ascending, each with floor((n-1)/T) rows (none below T+1 tokens).
func defRows(shardTokens []int64, M, T, m int) []defRow {
	var rows []defRow
	for s := m; s < len(shardTokens); s += M {
		n := shardTokens[s]
		if n < int64(T)+1 {
			continue
		}
		for j := range (n - 1) / int64(T) {
			rows = append(rows, defRow{s, j})
		}
	}
	return rows
}

// permOf returns the sampler's permutation of stream m's rows in epoch e as ints.
func permOf(p *Sampler, m int, epoch int64) []int64 {
	o := p.epochRows(m, epoch)
	out := make([]int64, p.StreamRows(m))
	for i := range out {
		out[i] = o.at(int64(i))
	}
	return out
}

// checkEpoch verifies the Sampler contract for every stream and local step of
// one epoch: the epoch's row order is a permutation of the stream's rows as the
// definition enumerates them, batch row i of local step k is row perm[k*b+i],
// every window is a whole row of an owned shard, no row is read twice in the
// epoch, and over the whole permutation every token of a shard's rows is an
// input exactly once and a target exactly once.
func checkEpoch(t *testing.T, p *Sampler, shardTokens []int64, epoch int64) {
	t.Helper()
	M, b, T := p.Streams(), p.MicroBatch(), p.SeqLen()
	spe := p.StepsPerEpoch()
	used := map[defRow]bool{}
	for m := range M {
		for _, s := range p.OwnedShards(m) {
			if s%M != m {
				t.Fatalf("stream %d owns shard %d", m, s)
			}
		}
		rows := defRows(shardTokens, M, T, m)
		if int64(len(rows)) != p.StreamRows(m) {
			t.Fatalf("stream %d: %d rows by the definition, sampler says %d", m, len(rows), p.StreamRows(m))
		}
		perm := permOf(p, m, epoch)
		if !slices.Equal(slices.Sorted(slices.Values(perm)), seq(int64(len(rows)))) {
			t.Fatalf("stream %d epoch %d: %v is not a permutation of 0..%d", m, epoch, perm, len(rows)-1)
		}
		// Token coverage over the whole permutation: per shard, inputs are
		// exactly [0, R_s*T) once each and targets [1, R_s*T] once each.
		inputs, targets := map[defRow]int{}, map[defRow]int{}
		for _, id := range perm {
			r := rows[id]
			for q := range int64(T) {
				inputs[defRow{r.shard, r.row*int64(T) + q}]++
				targets[defRow{r.shard, r.row*int64(T) + q + 1}]++
			}
		}
		for s := m; s < len(shardTokens); s += M {
			covered := shardRows(shardTokens[s], T, T) * int64(T)
			for j := range shardTokens[s] {
				in, tg := inputs[defRow{s, j}], targets[defRow{s, j}]
				if wantIn := j < covered; in != b2i(wantIn) {
					t.Fatalf("stream %d epoch %d: token %d of shard %d (%d tokens) is an input %d times", m, epoch, j, s, shardTokens[s], in)
				}
				if wantTg := j >= 1 && j <= covered; tg != b2i(wantTg) {
					t.Fatalf("stream %d epoch %d: token %d of shard %d (%d tokens) is a target %d times", m, epoch, j, s, shardTokens[s], tg)
				}
			}
		}
		for k := range spe {
			ws := p.Windows(m, epoch*spe+k)
			if len(ws) != b {
				t.Fatalf("stream %d step %d: %d windows for %d rows", m, k, len(ws), b)
			}
			for i, w := range ws {
				if w.Row != i || w.Pos != 0 || w.Len() != T+1 || w.Start%int64(T) != 0 {
					t.Fatalf("stream %d step %d: bad window %+v for row %d", m, k, w, i)
				}
				if w.Shard%M != m || w.Start < 0 || w.End > shardTokens[w.Shard] {
					t.Fatalf("stream %d step %d: window %+v outside stream's shards", m, k, w)
				}
				want := rows[perm[k*int64(b)+int64(i)]]
				got := defRow{w.Shard, w.Start / int64(T)}
				if got != want {
					t.Fatalf("stream %d step %d row %d: window %+v is row %v, want %v", m, k, i, w, got, want)
				}
				if used[got] {
					t.Fatalf("epoch %d: row %v is read twice", epoch, got)
				}
				used[got] = true
			}
		}
	}
	if want := int64(M) * spe * int64(b); int64(len(used)) != want {
		t.Fatalf("epoch %d: %d distinct rows read, want %d", epoch, len(used), want)
	}
}

func seq(n int64) []int64 {
	out := make([]int64, n)
	for i := range out {
		out[i] = int64(i)
	}
	return out
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

func TestSamplerProperty(t *testing.T) {
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
		p, err := NewSampler(tokens, jobSeed, M, b, T)
		if err != nil {
			if !errors.Is(err, ErrTooFewTokens) {
				t.Fatalf("iter %d: %v", iter, err)
			}
			// verify it really is too few
			minRows := -1
			for m := range M {
				if n := len(defRows(tokens, M, T, m)); minRows < 0 || n < minRows {
					minRows = n
				}
			}
			if minRows >= b {
				t.Fatalf("iter %d: %v but every stream has >= %d rows", iter, err, b)
			}
			continue
		}
		// steps per epoch is the minimum over streams of floor(R_m / b)
		tight := false
		for m := range M {
			n := p.StreamRows(m)
			if p.StepsPerEpoch()*int64(b) > n {
				t.Fatalf("iter %d: stream %d has %d rows, too few for %d steps", iter, m, n, p.StepsPerEpoch())
			}
			if (p.StepsPerEpoch()+1)*int64(b) > n {
				tight = true
			}
		}
		if !tight {
			t.Fatalf("iter %d: StepsPerEpoch %d is not the minimum", iter, p.StepsPerEpoch())
		}
		for e := range int64(3) {
			checkEpoch(t, p, tokens, e)
		}
		checked++
	}
	if checked < 100 {
		t.Fatalf("only %d samplers checked", checked)
	}
}

func TestSamplerDeterministic(t *testing.T) {
	tokens := []int64{100, 37, 250, 0, 81, 64, 99, 120, 13}
	a, err := NewSampler(tokens, 7, 3, 2, 8)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := NewSampler(slices.Clone(tokens), 7, 3, 2, 8)
	c, _ := NewSampler(tokens, 8, 3, 2, 8)
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
	tokens[0] = 1 // the sampler copied its input
	if !slices.Equal(a.Windows(0, 0), b.Windows(0, 0)) {
		t.Fatal("sampler aliases the caller's slice")
	}
	// Going back to an epoch that has left the cache gives the same rows.
	spe := a.StepsPerEpoch()
	first := a.Windows(1, 3)
	for e := range int64(5) {
		a.Windows(1, e*spe)
	}
	if got := a.Windows(1, 3); !slices.Equal(got, first) {
		t.Fatalf("epoch 0 recomputed: %v, first computed %v", got, first)
	}
}

// TestSamplerConcurrent reads windows of many (stream, step) pairs across epochs
// from many goroutines at once, so that row orders are computed, shared and
// evicted concurrently, and compares them with a sampler used from one goroutine.
func TestSamplerConcurrent(t *testing.T) {
	tokens := []int64{400, 370, 250, 310, 181, 264, 199, 320}
	shared, err := NewSampler(tokens, 11, 2, 3, 5)
	if err != nil {
		t.Fatal(err)
	}
	ref, _ := NewSampler(tokens, 11, 2, 3, 5)
	steps := 6 * shared.StepsPerEpoch()
	want := make([][][]Window, 2)
	for m := range 2 {
		for s := range steps {
			want[m] = append(want[m], ref.Windows(m, s))
		}
	}
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for g := range 16 {
		wg.Go(func() {
			r := rand.New(rand.NewPCG(uint64(g), 0))
			for range 2000 {
				m, s := r.IntN(2), r.Int64N(steps)
				if got := shared.Windows(m, s); !slices.Equal(got, want[m][s]) {
					errs <- fmt.Errorf("stream %d step %d: %v, want %v", m, s, got, want[m][s])
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}

// TestRowsScattered checks that a step's rows, and the rows of consecutive
// steps, are not neighbours in the text: for a uniformly random order the mean
// distance between the ids of consecutive rows is about R/3, and a distance of
// one (adjacent text) has probability about 2/R.
func TestRowsScattered(t *testing.T) {
	const R = 125000
	p, err := NewSampler([]int64{R*8 + 1}, 3, 1, 16, 8)
	if err != nil {
		t.Fatal(err)
	}
	if p.StreamRows(0) != R {
		t.Fatalf("%d rows, want %d", p.StreamRows(0), R)
	}
	var ids []int64 // row ids in the order they are read
	for step := range int64(500) {
		for _, w := range p.Windows(0, step) {
			ids = append(ids, w.Start/8)
		}
	}
	var sum float64
	adjacent := 0
	for i := 1; i < len(ids); i++ {
		d := ids[i] - ids[i-1]
		if d < 0 {
			d = -d
		}
		sum += float64(d)
		if d == 1 {
			adjacent++
		}
	}
	mean := sum / float64(len(ids)-1)
	t.Logf("mean distance between consecutive rows %.0f (R/3 = %d), %d adjacent of %d", mean, R/3, adjacent, len(ids)-1)
	if mean < R/4 || mean > R/2.5 {
		t.Errorf("mean distance between consecutive rows %.0f, want about R/3 = %d", mean, R/3)
	}
	if adjacent > 5 {
		t.Errorf("%d of %d consecutive rows are adjacent in the text", adjacent, len(ids)-1)
	}

	// With several shards a step mixes them: consecutive rows are in the same
	// shard about once in four for four equal shards.
	p, err = NewSampler([]int64{4001, 4001, 4001, 4001, 4001, 4001, 4001, 4001}, 3, 2, 10, 8)
	if err != nil {
		t.Fatal(err)
	}
	same, pairs := 0, 0
	for step := range p.StepsPerEpoch() {
		ws := p.Windows(1, step)
		for i := 1; i < len(ws); i++ {
			pairs++
			if ws[i].Shard == ws[i-1].Shard {
				same++
			}
		}
	}
	if frac := float64(same) / float64(pairs); frac < 0.15 || frac > 0.35 {
		t.Errorf("consecutive rows share a shard %.2f of the time, want about 0.25", frac)
	}
}

func TestRowOrderChangesPerEpoch(t *testing.T) {
	tokens := make([]int64, 64)
	for i := range tokens {
		tokens[i] = 1000
	}
	p, err := NewSampler(tokens, 1, 4, 1, 16)
	if err != nil {
		t.Fatal(err)
	}
	for m := range 4 {
		seen := map[string]int64{}
		for e := range int64(20) {
			key := fmt.Sprint(permOf(p, m, e))
			if prev, ok := seen[key]; ok {
				t.Fatalf("stream %d: epochs %d and %d have the same order", m, prev, e)
			}
			seen[key] = e
		}
		spe := p.StepsPerEpoch()
		if slices.Equal(p.Windows(m, 0), p.Windows(m, spe)) && slices.Equal(p.Windows(m, 1), p.Windows(m, spe+1)) {
			t.Fatalf("stream %d: epochs 0 and 1 start with the same rows", m)
		}
	}
	// Streams with the same shard sizes still read in different orders.
	if slices.Equal(permOf(p, 0, 0), permOf(p, 1, 0)) {
		t.Fatal("streams 0 and 1 have the same order")
	}
	// Epoch boundaries: step StepsPerEpoch is local step 0 of epoch 1.
	if e, k := p.Epoch(p.StepsPerEpoch()); e != 1 || k != 0 {
		t.Fatalf("Epoch(%d) = %d, %d", p.StepsPerEpoch(), e, k)
	}
	// 16 shards of floor(999/16) = 62 rows each.
	if spe := p.StepsPerEpoch(); spe != 16*62 {
		t.Fatalf("steps per epoch %d", spe)
	}
}

// TestRowOrderGolden pins the row orders and the windows they give: they must
// never change, or resumed jobs would read different data.
func TestRowOrderGolden(t *testing.T) {
	// Stream 0 owns shards 0 (4 rows) and 2 (4 rows); stream 1 owns shards 1
	// (4 rows) and 3 (8 rows).
	tokens := []int64{20, 20, 17, 33}
	p, err := NewSampler(tokens, 42, 2, 2, 4)
	if err != nil {
		t.Fatal(err)
	}
	got := fmt.Sprint(permOf(p, 0, 0), permOf(p, 0, 1), permOf(p, 1, 0), permOf(p, 1, 5))
	const want = "[5 4 2 1 0 3 6 7] [2 5 6 1 3 0 7 4] [1 5 9 10 2 0 3 4 8 7 11 6] [4 11 1 7 5 6 0 10 2 9 8 3]"
	if got != want {
		t.Fatalf("row orders changed:\n got %s\nwant %s", got, want)
	}
	gotW := fmt.Sprint(p.Windows(1, 1))
	const wantW = "[{0 0 3 20 25} {1 0 3 24 29}]" // ids 9 and 10: rows 5 and 6 of shard 3
	if gotW != wantW {
		t.Fatalf("windows changed:\n got %s\nwant %s", gotW, wantW)
	}
}

// TestFisherYatesWidth checks that the id width does not change the order, so
// a stream of 2^32 rows or more is shuffled like a smaller one.
func TestFisherYatesWidth(t *testing.T) {
	for _, n := range []int64{0, 1, 2, 7, 1000} {
		a := fisherYates[uint32](n, rand.NewPCG(5, 6))
		b := fisherYates[uint64](n, rand.NewPCG(5, 6))
		for i := range a {
			if uint64(a[i]) != b[i] {
				t.Fatalf("n=%d: uint32 and uint64 orders differ at %d", n, i)
			}
		}
	}
	if o := shuffleRows(10, rand.NewPCG(1, 1)); o.u32 == nil || o.u64 != nil {
		t.Fatal("a small stream's order is not held as uint32")
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

func TestNewSamplerErrors(t *testing.T) {
	_, err := NewSampler([]int64{100, 100}, 0, 3, 1, 4)
	wantErr(t, err, ErrTooFewShards, "2 train shards", "3 streams")
	_, err = NewSampler([]int64{100, 4}, 0, 2, 1, 4)
	wantErr(t, err, ErrTooFewTokens, "stream 1")
	_, err = NewSampler([]int64{100, 5}, 0, 2, 1, 4) // exactly T+1 tokens make a row
	if err != nil {
		t.Fatal(err)
	}
	// 16 tokens would hold 3 rows of 5 read as one sequence, but rows do not
	// span shards and each shard of 4 has none.
	_, err = NewSampler([]int64{4, 4, 4, 4}, 0, 1, 2, 4)
	wantErr(t, err, ErrTooFewTokens, "stream 0", "0 rows")
	for _, c := range [][3]int{{0, 1, 1}, {1, 0, 1}, {1, 1, 0}} {
		_, err = NewSampler([]int64{100}, 0, c[0], c[1], c[2])
		wantErr(t, err, ErrBadOptions)
	}
	_, err = NewSampler([]int64{100, -1}, 0, 1, 1, 1)
	wantErr(t, err, ErrBadOptions)
}

func TestValSampler(t *testing.T) {
	tokens := []int64{10, 0, 7, 30}
	v, err := NewValSampler(tokens, 2, 4, 0)
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
	if v, _ := NewValSampler(tokens, 2, 4, 3); v.Batches() != 3 {
		t.Fatalf("max batches not applied: %d", v.Batches())
	}
	if v, _ := NewValSampler(nil, 2, 4, 0); v.Batches() != 0 {
		t.Fatal("empty val split has batches")
	}
	if v, _ := NewValSampler([]int64{8}, 2, 4, 0); v.Batches() != 0 {
		t.Fatal("b*T tokens make a batch; b*T+1 are needed")
	}
	_, err = NewValSampler(tokens, 0, 4, 0)
	wantErr(t, err, ErrBadOptions)
}

// TestExampleValSamplerTail: a split of 7 example rows in batches of 3 is 2 whole
// batches and a tail of 1 row, the 7th; a cap below the whole batches, or at them,
// leaves no tail, and a cap above them keeps it.
func TestExampleValSamplerTail(t *testing.T) {
	const T = 4
	tokens := []int64{3 * (T + 1), 0, 4 * (T + 1)} // 7 rows; rows never span shards
	for _, c := range []struct{ max, batches, tail int }{{0, 2, 1}, {3, 2, 1}, {2, 2, 0}, {1, 1, 0}} {
		v, err := NewExampleValSampler(tokens, 3, T, c.max)
		if err != nil {
			t.Fatal(err)
		}
		if v.Batches() != c.batches || v.Tail() != c.tail {
			t.Fatalf("max %d: %d batches and a tail of %d, want %d and %d", c.max, v.Batches(), v.Tail(), c.batches, c.tail)
		}
		ws := v.TailWindows()
		if c.tail == 0 {
			if ws != nil {
				t.Fatalf("max %d: tail windows %+v without a tail", c.max, ws)
			}
			continue
		}
		// The 7th row: the last of shard 2, one window of T+1 tokens.
		if len(ws) != 1 || ws[0] != (Window{Row: 0, Pos: 0, Shard: 2, Start: 3 * (T + 1), End: 4 * (T + 1)}) {
			t.Fatalf("tail windows %+v", ws)
		}
	}
	if v, _ := NewExampleValSampler([]int64{2 * (T + 1)}, 3, T, 0); v.Batches() != 0 || v.Tail() != 2 {
		t.Fatalf("2 rows in batches of 3: %d batches, tail %d; want 0 and 2", v.Batches(), v.Tail())
	}
}
