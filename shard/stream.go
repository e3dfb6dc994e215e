package shard

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"sort"
)

// Window is a run of tokens that makes up part of one row of a (b, T) batch. Row
// i of a batch is T+1 consecutive tokens of its stream: inputs are the first T,
// targets the last T. A row may span shard boundaries, so it is made of one or
// more Windows, in order; together they cover positions 0..T of the row.
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

// StreamPlan maps (stream, step) to the tokens of that stream's micro-batch. It
// is a pure function of the train shards' token counts, the seed, the number of
// streams M, the micro-batch b and the sequence length T: it does no I/O, keeps
// no cursor, and is immutable and safe for concurrent use.
//
// Stream m owns shards m, m+M, m+2M, … . In epoch e it visits them in an order
// shuffled from (seed, e, m) and reads their concatenation in that order: at
// local step k the rows i = 0..b-1 are the tokens [k*b*T + i*T, k*b*T + i*T + T + 1)
// of the concatenation. Consecutive rows share one token (the last target of a
// row is the first input of the next), as in llm.c, so every token of a stream's
// epoch is an input exactly once and a target exactly once.
//
// StepsPerEpoch is the minimum over streams of floor((tokens_m - 1) / (b*T)), so
// every stream has data at every step; the tail of each stream's epoch beyond
// that (at least the last token, more for streams with more tokens) is dropped
// in that epoch. Job step s is local step s % StepsPerEpoch of epoch
// s / StepsPerEpoch. Since shuffled orders differ between epochs, a dropped
// tail is usually different tokens in the next epoch.
//
// The shuffle is a Fisher–Yates shuffle driven by math/rand/v2's PCG generator
// (PCG-DXSM, a fixed algorithm whose output for a given seed is specified and
// does not change between Go versions), seeded explicitly with (seed, a
// SplitMix64 mix of stream and epoch); bounded draws use this package's own
// rejection sampling, so no library algorithm that might change is involved.
type StreamPlan struct {
	shardTokens   []int64
	seed          uint64
	m, b, t       int
	owned         [][]int // owned[m]: shards of stream m, ascending
	streamTokens  []int64
	stepsPerEpoch int64
}

// NewPlan builds the plan for the given train shard token counts (in manifest
// order; see Manifest.TrainTokens), job seed, M streams, micro-batch b and
// sequence length T. It fails with ErrTooFewShards if there are fewer shards than
// streams, with ErrTooFewTokens if some stream holds fewer than b*T+1 tokens, and
// with ErrBadOptions for non-positive M, b, T or a negative token count.
// shardTokens is copied.
func NewPlan(shardTokens []int64, seed uint64, M, b, T int) (*StreamPlan, error) {
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
	p := &StreamPlan{
		shardTokens:  slices.Clone(shardTokens),
		seed:         seed,
		m:            M,
		b:            b,
		t:            T,
		owned:        make([][]int, M),
		streamTokens: make([]int64, M),
	}
	for s, n := range shardTokens {
		if n < 0 {
			return nil, fmt.Errorf("%w: shard %d has %d tokens", ErrBadOptions, s, n)
		}
		p.owned[s%M] = append(p.owned[s%M], s)
		p.streamTokens[s%M] += n
	}
	bt := int64(b) * int64(T)
	p.stepsPerEpoch = -1
	for m, n := range p.streamTokens {
		steps := (n - 1) / bt
		if n < 1 || steps < 1 {
			return nil, fmt.Errorf("%w: stream %d has %d tokens in %d shards, one step needs b*T+1 = %d", ErrTooFewTokens, m, n, len(p.owned[m]), bt+1)
		}
		if p.stepsPerEpoch < 0 || steps < p.stepsPerEpoch {
			p.stepsPerEpoch = steps
		}
	}
	return p, nil
}

// Streams returns M.
func (p *StreamPlan) Streams() int { return p.m }

// MicroBatch returns b, the rows per stream per step.
func (p *StreamPlan) MicroBatch() int { return p.b }

// SeqLen returns T.
func (p *StreamPlan) SeqLen() int { return p.t }

// Seed returns the job seed the plan was built with.
func (p *StreamPlan) Seed() uint64 { return p.seed }

// ShardTokens returns a copy of the shard token counts the plan was built from.
func (p *StreamPlan) ShardTokens() []int64 { return slices.Clone(p.shardTokens) }

// StepsPerEpoch returns the number of steps in an epoch (>= 1).
func (p *StreamPlan) StepsPerEpoch() int64 { return p.stepsPerEpoch }

// StreamTokens returns the tokens owned by stream m.
func (p *StreamPlan) StreamTokens(m int) int64 { return p.streamTokens[m] }

// OwnedShards returns the shards of stream m in ascending order; the caller owns
// the slice.
func (p *StreamPlan) OwnedShards(m int) []int { return slices.Clone(p.owned[m]) }

// Epoch splits a job step into its epoch and the local step within the epoch.
func (p *StreamPlan) Epoch(step int64) (epoch, local int64) {
	return step / p.stepsPerEpoch, step % p.stepsPerEpoch
}

// ShardOrder returns the order in which stream m visits its shards in epoch e;
// the caller owns the slice. It panics if m is not in [0, M), like a slice index.
func (p *StreamPlan) ShardOrder(m int, epoch int64) []int {
	order := slices.Clone(p.owned[m])
	r := rand.NewPCG(p.seed, streamKey(m, epoch))
	for i := len(order) - 1; i > 0; i-- {
		j := uniform(r, uint64(i)+1)
		order[i], order[j] = order[j], order[i]
	}
	return order
}

// Windows returns the windows that make up the b rows of stream m at job step
// step, ordered by row and then position; the caller owns the slice. It panics
// if m is not in [0, M) or step < 0 (Loader.Batch checks both and returns an
// error instead).
func (p *StreamPlan) Windows(m int, step int64) []Window {
	if m < 0 || m >= p.m || step < 0 {
		panic(fmt.Sprintf("shard: Windows(stream=%d, step=%d) out of range (M=%d)", m, step, p.m))
	}
	epoch, k := p.Epoch(step)
	order := p.ShardOrder(m, epoch)
	off := prefixOffsets(order, p.shardTokens)
	base := k * int64(p.b) * int64(p.t)
	return seqWindows(nil, order, off, base, p.b, p.t)
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
// position base + i*T of the concatenation of the shards in order (off from
// prefixOffsets). The caller guarantees base + b*T + 1 <= off[len(order)].
func seqWindows(dst []Window, order []int, off []int64, base int64, b, T int) []Window {
	for i := range b {
		start := base + int64(i)*int64(T)
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

// ValPlan maps a validation batch index to its windows: the validation shards
// are read in manifest order as one sequence, and batch i is rows of T+1 tokens
// starting at i*b*T + r*T, like a train stream's local step i. Batches do not
// overlap (except for the one shared token between consecutive rows), are the
// same on every call, and the tail that does not fill a batch is not evaluated.
// A ValPlan is pure, immutable and safe for concurrent use.
type ValPlan struct {
	order   []int
	off     []int64
	b, t    int
	batches int
}

// NewValPlan builds the validation plan for the given val shard token counts (see
// Manifest.ValTokens), micro-batch b and sequence length T. maxBatches > 0 caps
// the number of batches; 0 means all that fit. A split too small for one batch
// (or empty) gives a plan with zero batches, not an error.
func NewValPlan(valTokens []int64, b, T, maxBatches int) (*ValPlan, error) {
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
	v := &ValPlan{order: order, off: prefixOffsets(order, valTokens), b: b, t: T}
	if total := v.off[len(order)]; total > 1 {
		n := (total - 1) / (int64(b) * int64(T))
		if maxBatches > 0 && n > int64(maxBatches) {
			n = int64(maxBatches)
		}
		v.batches = int(n)
	}
	return v, nil
}

// Batches returns the number of validation batches.
func (v *ValPlan) Batches() int { return v.batches }

// Windows returns the windows of validation batch i, ordered by row and then
// position; the caller owns the slice. It panics if i is not in [0, Batches()).
func (v *ValPlan) Windows(i int) []Window {
	if i < 0 || i >= v.batches {
		panic(fmt.Sprintf("shard: val batch %d out of range [0, %d)", i, v.batches))
	}
	return seqWindows(nil, v.order, v.off, int64(i)*int64(v.b)*int64(v.t), v.b, v.t)
}
