package shard

import (
	"context"
	"errors"
	"fmt"
	"sync"
)

// DefaultCacheBytes is the default bound on the memory of a Loader's shard cache.
const DefaultCacheBytes = 1 << 30

// LoaderOptions tunes a Loader.
type LoaderOptions struct {
	// CacheBytes bounds the memory of cached shards (2 or 4 bytes a token); 0
	// means DefaultCacheBytes. Least recently used shards are dropped first. The
	// bound is soft: a shard in use by a call in progress stays in memory until
	// that call returns, and a shard larger than the bound is still loaded (and
	// dropped at the next load).
	CacheBytes int64
}

// Loader fills batches from a Dataset according to a StreamPlan, loading shards
// on demand and caching them. It is safe for concurrent use: several goroutines
// (one per stream a worker owns, say) may call Batch at once; a shard wanted by
// several calls is loaded once.
type Loader struct {
	ds       *Dataset
	plan     *StreamPlan
	maxBytes int64

	mu      sync.Mutex
	entries map[cacheKey]*cacheEntry
	bytes   int64  // tokens held by loaded entries
	clock   uint64 // last-use counter for LRU
}

type cacheKey struct {
	split Split
	shard int
}

type cacheEntry struct {
	ready   chan struct{} // closed once tok or err is set
	tok     Tokens
	err     error
	loaded  bool   // tok is set and counted in Loader.bytes; guarded by Loader.mu
	lastUse uint64 // guarded by Loader.mu
}

// NewLoader returns a loader for the train split of ds laid out by plan, and for
// its validation split (see Val). The plan must have been built from ds's train
// shard token counts (Manifest.TrainTokens), else ErrPlanMismatch.
func NewLoader(ds *Dataset, plan *StreamPlan, opts LoaderOptions) (*Loader, error) {
	if ds == nil || plan == nil {
		return nil, fmt.Errorf("%w: NewLoader needs a dataset and a plan", ErrBadOptions)
	}
	if opts.CacheBytes < 0 {
		return nil, fmt.Errorf("%w: CacheBytes=%d must be >= 0", ErrBadOptions, opts.CacheBytes)
	}
	if opts.CacheBytes == 0 {
		opts.CacheBytes = DefaultCacheBytes
	}
	want := ds.Manifest().TrainTokens()
	if len(want) != len(plan.shardTokens) {
		return nil, fmt.Errorf("%w: plan has %d train shards, dataset %s has %d", ErrPlanMismatch, len(plan.shardTokens), ds.Dir(), len(want))
	}
	for i, n := range want {
		if plan.shardTokens[i] != n {
			return nil, fmt.Errorf("%w: plan says train shard %d has %d tokens, dataset %s says %d", ErrPlanMismatch, i, plan.shardTokens[i], ds.Dir(), n)
		}
	}
	return &Loader{ds: ds, plan: plan, maxBytes: opts.CacheBytes, entries: map[cacheKey]*cacheEntry{}}, nil
}

// Plan returns the loader's stream plan.
func (l *Loader) Plan() *StreamPlan { return l.plan }

// Batch fills inputs and targets, each of length b*T laid out (b, T) row-major,
// with stream's micro-batch at job step step: targets are inputs shifted by one
// token. The buffers are the caller's; Batch writes every element and keeps no
// reference. The result is a pure function of (dataset, plan, stream, step).
// Batch blocks while shards load and returns ctx's error if ctx ends first; on
// any error the buffers' contents are unspecified.
func (l *Loader) Batch(ctx context.Context, stream int, step int64, inputs, targets []int32) error {
	p := l.plan
	if stream < 0 || stream >= p.m {
		return fmt.Errorf("%w: stream=%d not in [0, %d)", ErrBadOptions, stream, p.m)
	}
	if step < 0 {
		return fmt.Errorf("%w: step=%d must be >= 0", ErrBadOptions, step)
	}
	if err := checkBuffers(p.b, p.t, inputs, targets); err != nil {
		return err
	}
	return l.fill(ctx, SplitTrain, p.Windows(stream, step), p.t, inputs, targets)
}

func checkBuffers(b, T int, inputs, targets []int32) error {
	if len(inputs) != b*T || len(targets) != b*T {
		return fmt.Errorf("%w: inputs and targets must hold b*T = %d*%d = %d tokens, got %d and %d", ErrBadOptions, b, T, b*T, len(inputs), len(targets))
	}
	return nil
}

// fill copies the windows' tokens of split into the (b, T) buffers.
func (l *Loader) fill(ctx context.Context, split Split, windows []Window, T int, inputs, targets []int32) error {
	var tok Tokens
	cur := -1
	for _, w := range windows {
		if w.Shard != cur {
			var err error
			if tok, err = l.shard(ctx, split, w.Shard); err != nil {
				return err
			}
			cur = w.Shard
		}
		row := w.Row * T
		n := w.Len()
		// Positions q in [w.Pos, w.Pos+n) of the row: inputs take q < T, targets
		// take q >= 1 at q-1.
		if lo, hi := w.Pos, min(w.Pos+n, T); lo < hi {
			tok.CopyTo(inputs[row+lo:row+hi], int(w.Start))
		}
		if lo, hi := max(w.Pos, 1), w.Pos+n; lo < hi {
			tok.CopyTo(targets[row+lo-1:row+hi-1], int(w.Start)+lo-w.Pos)
		}
	}
	return nil
}

// shard returns a shard of split from the cache, loading it if needed.
func (l *Loader) shard(ctx context.Context, split Split, i int) (Tokens, error) {
	key := cacheKey{split, i}
	for {
		l.mu.Lock()
		l.clock++
		e, ok := l.entries[key]
		if ok {
			e.lastUse = l.clock
			l.mu.Unlock()
			select {
			case <-e.ready:
			case <-ctx.Done():
				return Tokens{}, ctx.Err()
			}
			if e.err == nil {
				return e.tok, nil
			}
			// The loading call failed. Its context may have ended while ours has
			// not: then try again ourselves.
			if isContextErr(e.err) && ctx.Err() == nil {
				continue
			}
			return Tokens{}, e.err
		}
		e = &cacheEntry{ready: make(chan struct{}), lastUse: l.clock}
		l.entries[key] = e
		l.mu.Unlock()

		tok, err := l.ds.LoadShard(ctx, split, i)

		l.mu.Lock()
		if err != nil {
			e.err = err
			delete(l.entries, key) // the next call tries again
		} else {
			e.tok = tok
			e.loaded = true
			l.bytes += tok.memBytes()
			l.evictLocked(key)
		}
		l.mu.Unlock()
		close(e.ready)
		return tok, err
	}
}

// evictLocked drops least recently used loaded shards other than keep until the
// cache fits its bound. l.mu must be held.
func (l *Loader) evictLocked(keep cacheKey) {
	for l.bytes > l.maxBytes {
		var victim cacheKey
		var oldest *cacheEntry
		for k, e := range l.entries {
			if k == keep || !e.loaded {
				continue
			}
			if oldest == nil || e.lastUse < oldest.lastUse {
				victim, oldest = k, e
			}
		}
		if oldest == nil {
			return
		}
		l.bytes -= oldest.tok.memBytes()
		delete(l.entries, victim)
	}
}

func isContextErr(err error) bool {
	return errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)
}

// CachedBytes returns the memory held by cached shards.
func (l *Loader) CachedBytes() int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.bytes
}

// Val returns an iterator over the validation split in batches of the plan's
// (b, T), at most maxBatches of them (0: all that fit); see ValPlan. The
// iterator shares the loader's cache.
func (l *Loader) Val(maxBatches int) (*ValIterator, error) {
	vp, err := NewValPlan(l.ds.Manifest().ValTokens(), l.plan.b, l.plan.t, maxBatches)
	if err != nil {
		return nil, err
	}
	return &ValIterator{l: l, plan: vp}, nil
}

// ValIterator reads validation batches. Batch may be called from several
// goroutines at once (to spread evaluation over workers or threads); Next and
// Reset keep a cursor and must be called from one goroutine at a time.
type ValIterator struct {
	l    *Loader
	plan *ValPlan
	next int
}

// Len returns the number of validation batches.
func (v *ValIterator) Len() int { return v.plan.Batches() }

// Batch fills inputs and targets (each b*T, row-major (b, T), caller-owned) with
// validation batch i in [0, Len()). Like Loader.Batch it blocks on loading and
// honours ctx.
func (v *ValIterator) Batch(ctx context.Context, i int, inputs, targets []int32) error {
	if i < 0 || i >= v.plan.Batches() {
		return fmt.Errorf("%w: val batch %d not in [0, %d)", ErrBadOptions, i, v.plan.Batches())
	}
	if err := checkBuffers(v.plan.b, v.plan.t, inputs, targets); err != nil {
		return err
	}
	return v.l.fill(ctx, SplitVal, v.plan.Windows(i), v.plan.t, inputs, targets)
}

// Next fills the buffers with the next batch and reports true, or reports false
// (and leaves them alone) when all Len() batches have been read.
func (v *ValIterator) Next(ctx context.Context, inputs, targets []int32) (bool, error) {
	if v.next >= v.plan.Batches() {
		return false, nil
	}
	if err := v.Batch(ctx, v.next, inputs, targets); err != nil {
		return false, err
	}
	v.next++
	return true, nil
}

// Reset makes Next start again from the first batch.
func (v *ValIterator) Reset() { v.next = 0 }
