package shard

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"sort"
	"sync"
)

// Window is a run of tokens that makes up part of one row of a (b, T) batch. Row
// i of a batch is T+1 consecutive tokens of one shard or, for validation, of the
// split read as one sequence: inputs are the first T, targets the last T. A train
// row lies in one shard and is one Window; a validation row may span shard
// boundaries and is then made of several Windows, in order, that together cover
// positions 0..T of the row.
type Window struct {
	// Row is the batch row, 0..b-1.
	Row int
	// Pos is the position within the row's T+1 tokens of the window's first token.
	Pos int
	// Shard is the index of the shard in its split, in manifest order.
	Shard int
	// Start and End bound the window's tokens within the shard: [Start, End).
	Start, End int64
}

// Len returns the number of tokens in the window.
func (w Window) Len() int { return int(w.End - w.Start) }

// Sampler decides which rows of the train shards make up each stream's
// micro-batch at each step (PyTorch calls what picks a batch's indices a
// sampler): it maps (stream, step) to the windows of that micro-batch. It is a
// pure function of the train shards' token counts, the seed, the number of
// streams M, the micro-batch b and the sequence length T: it does no I/O and
// keeps no cursor. It is safe for concurrent use; its only mutable state is a
// cache of row orders (below), which never changes a result.
//
// Rows. Stream m owns shards m, m+M, m+2M, … . Shard s holds
// R_s = floor((tokens_s - 1) / T) rows (none if it has fewer than T+1 tokens):
// row j is the tokens [j*T, j*T + T + 1) of the shard, so consecutive rows of a
// shard share one token (the last target of row j is the first input of row j+1)
// and a row never spans two shards; the tail of a shard that does not fill a row
// is never read. The stream's R_m rows are numbered shard-major: ascending shard,
// then ascending row.
//
// Order. In epoch e the stream visits its rows in an order drawn from (seed, m,
// e): a permutation perm of 0..R_m-1. Local step k takes rows perm[k*b : (k+1)*b],
// batch row i being row perm[k*b+i]. Within an epoch every row is read at most
// once, so every token of a shard's rows is an input exactly once and a target
// exactly once, up to the rows dropped at the end of the epoch (next paragraph).
// The shuffle is there because sequential batches of contiguous text train
// measurably worse than batches of windows scattered over the corpus.
//
// Epochs. StepsPerEpoch is the minimum over streams of floor(R_m / b), so every
// stream has data at every step; rows perm[StepsPerEpoch*b:] of a stream are not
// read in that epoch (they are other rows in the next one). Job step s is local
// step s % StepsPerEpoch of epoch s / StepsPerEpoch.
//
// The permutation is a Fisher–Yates shuffle of the row ids driven by
// math/rand/v2's PCG generator (PCG-DXSM, a fixed algorithm whose output for a
// given seed is specified and does not change between Go versions), seeded
// explicitly with (seed, a SplitMix64 mix of stream and epoch); bounded draws
// use this package's own rejection sampling, so no library algorithm that might
// change is involved.
//
// Memory. A stream's permutation for an epoch is computed when a step of that
// epoch is first asked for and cached; the two most recently used epochs of
// each stream are kept. A permutation takes 4 bytes a row (8 for a stream of
// 2^32 rows or more): 10B tokens at T = 1024 are about 9.8M rows, 40 MB per
// epoch, 80 MB when two epochs are cached.
type Sampler struct {
	shardTokens   []int64
	seed          uint64
	m, b, t       int
	stride        int       // tokens between row starts: T (overlapping text rows) or T+1 (example rows)
	owned         [][]int   // owned[m]: shards of stream m, ascending
	rowOff        [][]int64 // rowOff[m][j]: rows of owned[m][:j]; len(owned[m])+1 long
	streamTokens  []int64
	stepsPerEpoch int64

	cache []epochCache // cache[m]: recent row orders of stream m
}

// epochCache holds the row orders of a stream's most recently used epochs.
type epochCache struct {
	mu     sync.Mutex
	recent [2]*epochOrder // recent[0] is the most recently used; nil if unused
}

// epochOrder is the row order of one (stream, epoch), computed once.
type epochOrder struct {
	epoch int64
	once  sync.Once
	order rowOrder
}

// rowOrder is a permutation of a stream's row ids, held as uint32 when every id
// fits and as uint64 otherwise. Exactly one of the slices is set (both are nil
// for a stream without rows, which NewSampler rejects).
type rowOrder struct {
	u32 []uint32
	u64 []uint64
}

// at returns element i of the permutation.
func (o rowOrder) at(i int64) int64 {
	if o.u64 != nil {
		return int64(o.u64[i])
	}
	return int64(o.u32[i])
}

// NewSampler builds the sampler for the given train shard token counts (in
// manifest order; see Manifest.TrainTokens), job seed, M streams, micro-batch b
// and sequence length T. It fails with ErrTooFewShards if there are fewer shards than
// streams, with ErrTooFewTokens if some stream holds fewer than b rows of T+1
// tokens (counting each shard's rows separately), and with ErrBadOptions for
// non-positive M, b, T or a negative token count. shardTokens is copied.
func NewSampler(shardTokens []int64, seed uint64, M, b, T int) (*Sampler, error) {
	return newSampler(shardTokens, seed, M, b, T, T)
}

// NewExampleSampler is NewSampler for a dataset of whole examples (an SFT dataset, see
// SFTInfo): row j of a shard is the tokens [j*(T+1), (j+1)*(T+1)), rows do not share a
// token, and a shard of n tokens holds floor(n/(T+1)) rows. Order, epochs and streams
// are as for NewSampler: in every epoch each stream visits its examples in an order
// drawn from (seed, stream, epoch).
func NewExampleSampler(shardTokens []int64, seed uint64, M, b, T int) (*Sampler, error) {
	return newSampler(shardTokens, seed, M, b, T, T+1)
}

func newSampler(shardTokens []int64, seed uint64, M, b, T, stride int) (*Sampler, error) {
	switch {
	case M < 1:
		return nil, fmt.Errorf("%w: streams=%d must be >= 1", ErrBadOptions, M)
	case b < 1:
		return nil, fmt.Errorf("%w: micro_batch=%d must be >= 1", ErrBadOptions, b)
	case T < 1:
		return nil, fmt.Errorf("%w: seq_len=%d must be >= 1", ErrBadOptions, T)
	case len(shardTokens) < M:
		return nil, fmt.Errorf("%w: %d train shards for %d streams; each stream needs at least one shard (prepare with more shards or use fewer streams)", ErrTooFewShards, len(shardTokens), M)
	}
	p := &Sampler{
		shardTokens:  slices.Clone(shardTokens),
		seed:         seed,
		m:            M,
		b:            b,
		t:            T,
		stride:       stride,
		owned:        make([][]int, M),
		rowOff:       make([][]int64, M),
		streamTokens: make([]int64, M),
		cache:        make([]epochCache, M),
	}
	for m := range M {
		p.rowOff[m] = []int64{0}
	}
	for s, n := range shardTokens {
		if n < 0 {
			return nil, fmt.Errorf("%w: shard %d has %d tokens", ErrBadOptions, s, n)
		}
		m := s % M
		p.owned[m] = append(p.owned[m], s)
		p.streamTokens[m] += n
		p.rowOff[m] = append(p.rowOff[m], p.rowOff[m][len(p.rowOff[m])-1]+shardRows(n, T, stride))
	}
	p.stepsPerEpoch = -1
	for m := range M {
		rows := p.StreamRows(m)
		if rows > math.MaxInt {
			return nil, fmt.Errorf("%w: stream %d has %d rows, more than this platform can index", ErrBadOptions, m, rows)
		}
		steps := rows / int64(b)
		if steps < 1 {
			return nil, fmt.Errorf("%w: stream %d has %d tokens in %d shards, which make %d rows of T+1 = %d tokens (a row does not span shards); one step needs b = %d rows",
				ErrTooFewTokens, m, p.streamTokens[m], len(p.owned[m]), rows, T+1, b)
		}
		if p.stepsPerEpoch < 0 || steps < p.stepsPerEpoch {
			p.stepsPerEpoch = steps
		}
	}
	return p, nil
}

// shardRows returns the rows of T+1 tokens, starting every stride tokens, that a
// shard of n tokens holds.
func shardRows(n int64, T, stride int) int64 {
	if n < int64(T)+1 {
		return 0
	}
	return (n-int64(T)-1)/int64(stride) + 1
}

// Streams returns M.
func (p *Sampler) Streams() int { return p.m }

// MicroBatch returns b, the rows per stream per step.
func (p *Sampler) MicroBatch() int { return p.b }

// SeqLen returns T.
func (p *Sampler) SeqLen() int { return p.t }

// Seed returns the job seed the sampler was built with.
func (p *Sampler) Seed() uint64 { return p.seed }

// ShardTokens returns a copy of the shard token counts the sampler was built
// from.
func (p *Sampler) ShardTokens() []int64 { return slices.Clone(p.shardTokens) }

// StepsPerEpoch returns the number of steps in an epoch (>= 1).
func (p *Sampler) StepsPerEpoch() int64 { return p.stepsPerEpoch }

// StreamTokens returns the tokens owned by stream m.
func (p *Sampler) StreamTokens(m int) int64 { return p.streamTokens[m] }

// StreamRows returns R_m, the rows of T+1 tokens in stream m's shards.
func (p *Sampler) StreamRows(m int) int64 { return p.rowOff[m][len(p.rowOff[m])-1] }

// OwnedShards returns the shards of stream m in ascending order; the caller owns
// the slice.
func (p *Sampler) OwnedShards(m int) []int { return slices.Clone(p.owned[m]) }

// Epoch splits a job step into its epoch and the local step within the epoch.
func (p *Sampler) Epoch(step int64) (epoch, local int64) {
	return step / p.stepsPerEpoch, step % p.stepsPerEpoch
}

// Windows returns the windows of the b rows of stream m at job step step, one per
// row and in row order (Pos 0, End = Start + T + 1); the caller owns the slice.
// It panics if m is not in [0, M) or step < 0 (Loader.Batch checks both and
// returns an error instead). The first call for an epoch of a stream computes
// that epoch's row order (see Sampler); calls for the same stream and epoch
// wait for it.
func (p *Sampler) Windows(m int, step int64) []Window {
	if m < 0 || m >= p.m || step < 0 {
		panic(fmt.Sprintf("shard: Windows(stream=%d, step=%d) out of range (M=%d)", m, step, p.m))
	}
	epoch, k := p.Epoch(step)
	order := p.epochRows(m, epoch)
	T, stride := int64(p.t), int64(p.stride)
	ws := make([]Window, p.b)
	for i := range ws {
		s, j := p.locateRow(m, order.at(k*int64(p.b)+int64(i)))
		ws[i] = Window{Row: i, Pos: 0, Shard: s, Start: j * stride, End: j*stride + T + 1}
	}
	return ws
}

// locateRow maps row id of stream m to its shard and its row within the shard.
func (p *Sampler) locateRow(m int, id int64) (shard int, row int64) {
	off := p.rowOff[m]
	// The first owned shard whose rows end after id; shards without rows have
	// off[j] == off[j+1] and are skipped.
	j := sort.Search(len(off)-1, func(j int) bool { return off[j+1] > id })
	return p.owned[m][j], id - off[j]
}

// epochRows returns the permutation of stream m's rows in epoch e, from the
// cache or computed now. The result must not be modified.
func (p *Sampler) epochRows(m int, epoch int64) rowOrder {
	c := &p.cache[m]
	c.mu.Lock()
	e := c.recent[0]
	switch {
	case e != nil && e.epoch == epoch:
	case c.recent[1] != nil && c.recent[1].epoch == epoch:
		e = c.recent[1]
		c.recent[0], c.recent[1] = e, c.recent[0]
	default:
		e = &epochOrder{epoch: epoch}
		c.recent[0], c.recent[1] = e, c.recent[0]
	}
	c.mu.Unlock()
	// An entry pushed out of the cache while being computed is still finished
	// and used by those holding it.
	e.once.Do(func() {
		e.order = shuffleRows(p.StreamRows(m), rand.NewPCG(p.seed, streamKey(m, epoch)))
	})
	return e.order
}

// shuffleRows returns a uniformly random permutation of 0..n-1 drawn from r by a
// Fisher–Yates shuffle, as uint32 ids if they all fit.
func shuffleRows(n int64, r *rand.PCG) rowOrder {
	if n <= 1<<32 {
		return rowOrder{u32: fisherYates[uint32](n, r)}
	}
	return rowOrder{u64: fisherYates[uint64](n, r)}
}

// fisherYates returns 0..n-1 shuffled with draws from r. The draws, and so the
// permutation, depend only on n and r, not on the element type.
func fisherYates[E uint32 | uint64](n int64, r *rand.PCG) []E {
	ids := make([]E, n)
	for i := range ids {
		ids[i] = E(i)
	}
	for i := n - 1; i > 0; i-- {
		j := uniform(r, uint64(i)+1)
		ids[i], ids[j] = ids[j], ids[i]
	}
	return ids
}

// prefixOffsets returns off with off[j] = tokens of order[:j], len(order)+1 long.
func prefixOffsets(order []int, shardTokens []int64) []int64 {
	off := make([]int64, len(order)+1)
	for j, s := range order {
		off[j+1] = off[j] + shardTokens[s]
	}
	return off
}

// seqWindows appends the windows of b rows of T+1 tokens, row i starting at
// position base + i*stride of the concatenation of the shards in order (off from
// prefixOffsets). The caller guarantees base + (b-1)*stride + T + 1 <= off[len(order)].
func seqWindows(dst []Window, order []int, off []int64, base int64, b, T, stride int) []Window {
	for i := range b {
		start := base + int64(i)*int64(stride)
		end := start + int64(T) + 1
		j := sort.Search(len(order), func(j int) bool { return off[j+1] > start })
		for pos := start; pos < end; j++ {
			if off[j+1] <= pos {
				continue // an empty shard
			}
			hi := min(end, off[j+1])
			dst = append(dst, Window{Row: i, Pos: int(pos - start), Shard: order[j], Start: pos - off[j], End: hi - off[j]})
			pos = hi
		}
	}
	return dst
}

// streamKey derives the second PCG seed word from (stream, epoch). For a fixed
// stream it is a bijection of epoch, so no two epochs share a generator.
func streamKey(m int, epoch int64) uint64 {
	return mix64(mix64(uint64(m)) + uint64(epoch))
}

// mix64 is the SplitMix64 finaliser, a bijection on uint64.
func mix64(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}

// uniform returns a uniform value in [0, n), n > 0, by rejection: draws below
// 2^64 mod n are discarded so every residue is equally likely.
func uniform(r *rand.PCG, n uint64) uint64 {
	threshold := -n % n // 2^64 mod n
	for {
		if x := r.Uint64(); x >= threshold {
			return x % n
		}
	}
}

// ValSampler decides the rows of each validation batch: it maps a validation
// batch index to its windows. The validation shards are read in manifest order
// as one sequence, and row r of batch i is the T+1 tokens starting at
// i*b*T + r*T of that sequence (a row may span shards).
// Unlike train rows, validation rows are read in order, not shuffled: every
// batch is evaluated, so the order does not matter, and the first maxBatches
// are the same whatever the job. Batches do not overlap (except for the one
// shared token between consecutive rows) and are the same on every call; the
// rows after the last whole batch are the tail (Tail, TailWindows), which an
// evaluation reads as one partial batch. A ValSampler is pure, immutable and safe
// for concurrent use.
type ValSampler struct {
	order   []int
	off     []int64
	b, t    int
	stride  int // tokens between row starts: T, or T+1 for example rows
	batches int
	tail    int // rows after the last whole batch (Tail)
}

// NewValSampler builds the validation sampler for the given val shard token
// counts (see Manifest.ValTokens), micro-batch b and sequence length T. maxBatches > 0 caps
// the number of batches; 0 means all that fit. A split too small for one batch
// (or empty) gives a sampler with zero batches, not an error.
func NewValSampler(valTokens []int64, b, T, maxBatches int) (*ValSampler, error) {
	return newValSampler(valTokens, b, T, T, maxBatches)
}

// NewExampleValSampler is NewValSampler for a dataset of whole examples (see
// NewExampleSampler): row r of batch i is example i*b + r of the split, in order, the
// T+1 tokens starting at (i*b + r)*(T+1); with every shard a whole number of rows, no
// row spans shards.
func NewExampleValSampler(valTokens []int64, b, T, maxBatches int) (*ValSampler, error) {
	return newValSampler(valTokens, b, T, T+1, maxBatches)
}

func newValSampler(valTokens []int64, b, T, stride, maxBatches int) (*ValSampler, error) {
	switch {
	case b < 1:
		return nil, fmt.Errorf("%w: micro_batch=%d must be >= 1", ErrBadOptions, b)
	case T < 1:
		return nil, fmt.Errorf("%w: seq_len=%d must be >= 1", ErrBadOptions, T)
	case maxBatches < 0:
		return nil, fmt.Errorf("%w: max_batches=%d must be >= 0", ErrBadOptions, maxBatches)
	}
	order := make([]int, len(valTokens))
	for i, n := range valTokens {
		if n < 0 {
			return nil, fmt.Errorf("%w: val shard %d has %d tokens", ErrBadOptions, i, n)
		}
		order[i] = i
	}
	v := &ValSampler{order: order, off: prefixOffsets(order, valTokens), b: b, t: T, stride: stride}
	if total := v.off[len(order)]; total > int64(T) {
		rows := shardRows(total, T, stride)
		n := rows / int64(b)
		if maxBatches > 0 && n >= int64(maxBatches) {
			n = int64(maxBatches)
		} else {
			v.tail = int(rows - n*int64(b))
		}
		v.batches = int(n)
	}
	return v, nil
}

// Batches returns the number of validation batches.
func (v *ValSampler) Batches() int { return v.batches }

// Tail returns the number of rows of the split after the last whole batch (fewer
// than b): the partial batch a caller that measures every row evaluates last
// (TailWindows). It counts as one batch against maxBatches: a sampler capped at its
// whole batches has no tail.
func (v *ValSampler) Tail() int { return v.tail }

// TailWindows returns the windows of the Tail() rows after the last whole batch, as
// rows 0 to Tail()-1 of a batch, ordered by row and then position; the caller owns
// the slice. Without a tail it returns nil.
func (v *ValSampler) TailWindows() []Window {
	if v.tail == 0 {
		return nil
	}
	return seqWindows(nil, v.order, v.off, int64(v.batches)*int64(v.b)*int64(v.stride), v.tail, v.t, v.stride)
}

// Windows returns the windows of validation batch i, ordered by row and then
// position; the caller owns the slice. It panics if i is not in [0, Batches()).
func (v *ValSampler) Windows(i int) []Window {
	if i < 0 || i >= v.batches {
		panic(fmt.Sprintf("shard: val batch %d out of range [0, %d)", i, v.batches))
	}
	return seqWindows(nil, v.order, v.off, int64(i)*int64(v.b)*int64(v.stride), v.b, v.t, v.stride)
}
