package shard

import (
	"bufio"
	"container/list"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
)

// DefaultMaxOpenFiles is the default bound on the shard files a Loader keeps open.
const DefaultMaxOpenFiles = 256

// LoaderOptions tunes a Loader.
type LoaderOptions struct {
	// MaxOpenFiles bounds the shard files kept open between calls; 0 means
	// DefaultMaxOpenFiles. Least recently used files are closed first. The bound
	// is soft: a file in use by a call in progress stays open until that call
	// is done with it.
	MaxOpenFiles int
}

// Loader fills batches from a Dataset according to a Sampler. It reads each
// row straight from its shard file (one positioned read of T+1 tokens), keeping
// recently used files open, and holds no tokens in memory between calls. Before
// a shard's first use it verifies the whole file once: its structure against its
// header, its token count against the manifest, and its sha256 against the
// manifest's, reading the file in chunks; callers that want the same shard
// meanwhile wait for that verification. Token ids are checked against the
// vocabulary as rows are read. Errors name the file, as ReadShard's do.
//
// A Loader is safe for concurrent use: several goroutines (one per stream a
// worker owns, say) may call Batch at once.
type Loader struct {
	ds       *Dataset
	sampler  *Sampler
	maxOpen  int
	train    []*shardFile
	val      []*shardFile
	verifies atomic.Int64 // verifications started, success or not

	mu  sync.Mutex
	lru list.List // open shardFiles, most recently used at the front; guarded by mu

	// The sidecars of an SFT dataset, loaded on first use; guarded by scMu.
	scMu    sync.Mutex
	scTrain *sidecars
	scVal   *sidecars
}

// shardFile is the loader's state for one shard.
type shardFile struct {
	path   string
	info   ShardInfo
	header int64 // bytes before the first token
	width  int64 // bytes per token
	limit  int64 // largest valid token id

	verified atomic.Bool // set once the file passed verifyShard; size is then set
	size     int64       // the verified file size

	// Guarded by Loader.mu.
	attempt   *verifyAttempt // verification in progress, or nil
	f         *os.File       // nil when closed
	refs      int            // calls using f
	elem      *list.Element  // f's entry in Loader.lru
	closeIdle bool           // close f when refs drops to 0 (Loader.Close)
}

// verifyAttempt is one verification of a shard, shared by the calls that wait on it.
type verifyAttempt struct {
	done chan struct{} // closed once err is set
	err  error
}

// NewLoader returns a loader for the train split of ds, read as sampler says,
// and for its validation split (see Val). The sampler must have been built from
// ds's train shard token counts (Manifest.TrainTokens), else
// ErrSamplerMismatch. NewLoader opens no file.
func NewLoader(ds *Dataset, sampler *Sampler, opts LoaderOptions) (*Loader, error) {
	if ds == nil || sampler == nil {
		return nil, fmt.Errorf("%w: NewLoader needs a dataset and a sampler", ErrBadOptions)
	}
	if opts.MaxOpenFiles < 0 {
		return nil, fmt.Errorf("%w: MaxOpenFiles=%d must be >= 0", ErrBadOptions, opts.MaxOpenFiles)
	}
	if opts.MaxOpenFiles == 0 {
		opts.MaxOpenFiles = DefaultMaxOpenFiles
	}
	want := ds.Manifest().TrainTokens()
	if len(want) != len(sampler.shardTokens) {
		return nil, fmt.Errorf("%w: sampler has %d train shards, dataset %s has %d", ErrSamplerMismatch, len(sampler.shardTokens), ds.Dir(), len(want))
	}
	for i, n := range want {
		if sampler.shardTokens[i] != n {
			return nil, fmt.Errorf("%w: sampler says train shard %d has %d tokens, dataset %s says %d", ErrSamplerMismatch, i, sampler.shardTokens[i], ds.Dir(), n)
		}
	}
	if sft := ds.Manifest().SFT; sft != nil && sft.Format == FormatPreference {
		if sampler.stride != sampler.t+1 || sampler.t+1 != 2*sft.RowTokens {
			return nil, fmt.Errorf("%w: dataset %s holds preference pairs of two rows of %d tokens (seq_len %d); the sampler needs NewPairSampler with T = %d",
				ErrSamplerMismatch, ds.Dir(), sft.RowTokens, sft.RowTokens-1, sft.RowTokens-1)
		}
	} else if sft != nil && (sampler.stride != sampler.t+1 || sampler.t+1 != sft.RowTokens) {
		return nil, fmt.Errorf("%w: dataset %s holds examples of %d tokens (seq_len %d); the sampler needs NewExampleSampler with T = %d, it has T = %d",
			ErrSamplerMismatch, ds.Dir(), sft.RowTokens, sft.RowTokens-1, sft.RowTokens-1, sampler.t)
	} else if sft == nil && sampler.stride != sampler.t {
		return nil, fmt.Errorf("%w: dataset %s is plain text; an example sampler reads only SFT datasets", ErrSamplerMismatch, ds.Dir())
	}
	l := &Loader{ds: ds, sampler: sampler, maxOpen: opts.MaxOpenFiles}
	for _, split := range []struct {
		infos []ShardInfo
		dst   *[]*shardFile
	}{{ds.Shards(SplitTrain), &l.train}, {ds.Shards(SplitVal), &l.val}} {
		for _, info := range split.infos {
			if !info.Format.valid() {
				return nil, fmt.Errorf("%w: %s: format=%q", ErrBadOptions, filepath.Join(ds.Dir(), info.File), info.Format)
			}
			limit := info.Format.maxID()
			if ds.vocabSize > 0 && int64(ds.vocabSize)-1 < limit {
				limit = int64(ds.vocabSize) - 1
			}
			*split.dst = append(*split.dst, &shardFile{
				path:   filepath.Join(ds.Dir(), info.File),
				info:   info,
				header: info.Format.headerSize(),
				width:  int64(info.Format.Width()),
				limit:  limit,
			})
		}
	}
	return l, nil
}

// Sampler returns the loader's sampler.
func (l *Loader) Sampler() *Sampler { return l.sampler }

// Batch fills inputs and targets, each of length b*T laid out (b, T) row-major,
// with stream's micro-batch at job step step: targets are inputs shifted by one
// token. The buffers are the caller's; Batch writes every element and keeps no
// reference. The result is a pure function of (dataset, sampler, stream, step).
// Batch blocks while shards are verified and returns ctx's error if ctx ends
// first; on any error the buffers' contents are unspecified.
func (l *Loader) Batch(ctx context.Context, stream int, step int64, inputs, targets []int32) error {
	p := l.sampler
	if stream < 0 || stream >= p.m {
		return fmt.Errorf("%w: stream=%d not in [0, %d)", ErrBadOptions, stream, p.m)
	}
	if step < 0 {
		return fmt.Errorf("%w: step=%d must be >= 0", ErrBadOptions, step)
	}
	if err := checkBuffers(p.b, p.t, inputs, targets); err != nil {
		return err
	}
	return l.fill(ctx, SplitTrain, p.Windows(stream, step), p.t, inputs, targets, nil)
}

// Packed reports whether the dataset's rows pack several examples each (see
// SFTInfo.Packed): training then needs each position's example start (BatchPacked).
func (l *Loader) Packed() bool {
	sft := l.ds.Manifest().SFT
	return sft != nil && sft.Packed
}

// BatchPacked is Batch on a packed dataset that also fills start (b*T, row-major (b,
// T), caller-owned) with each input position's example start, its offset in the row of
// its example's first token (see model.GPT.ForwardPacked). On a dataset that is not
// packed it is an error wrapping ErrBadOptions.
func (l *Loader) BatchPacked(ctx context.Context, stream int, step int64, inputs, targets, start []int32) error {
	p := l.sampler
	if !l.Packed() {
		return fmt.Errorf("%w: dataset %s is not packed (prepare --format sft --pack)", ErrBadOptions, l.ds.Dir())
	}
	if len(start) != p.b*p.t {
		return fmt.Errorf("%w: start must hold b*T = %d tokens, got %d", ErrBadOptions, p.b*p.t, len(start))
	}
	if stream < 0 || stream >= p.m {
		return fmt.Errorf("%w: stream=%d not in [0, %d)", ErrBadOptions, stream, p.m)
	}
	if step < 0 {
		return fmt.Errorf("%w: step=%d must be >= 0", ErrBadOptions, step)
	}
	if err := checkBuffers(p.b, p.t, inputs, targets); err != nil {
		return err
	}
	return l.fill(ctx, SplitTrain, p.Windows(stream, step), p.t, inputs, targets, start)
}

// TrainedTargets returns the number of trained targets in the global batch of step:
// the rows of every stream at step, summed from the row counts of an SFT dataset (see
// SFTInfo), without reading any token. For a plain dataset every position is a target:
// M*b*T. The first call on an SFT dataset loads and verifies the sidecars of the train
// split (see Batch); errors name the file.
func (l *Loader) TrainedTargets(ctx context.Context, step int64) (int64, error) {
	p := l.sampler
	if step < 0 {
		return 0, fmt.Errorf("%w: step=%d must be >= 0", ErrBadOptions, step)
	}
	sft := l.ds.Manifest().SFT
	if sft == nil {
		return int64(p.m) * int64(p.b) * int64(p.t), nil
	}
	sc, err := l.sidecars(ctx, SplitTrain)
	if err != nil {
		return 0, err
	}
	var n int64
	for m := range p.m {
		for _, w := range p.Windows(m, step) {
			if sft.Format == FormatPreference {
				// A pair window is two rows.
				j := w.Start / int64(sft.RowTokens)
				n += int64(sc.rows[w.Shard][j]) + int64(sc.rows[w.Shard][j+1])
				continue
			}
			n += int64(sc.rows[w.Shard][w.Start/int64(p.stride)])
		}
	}
	return n, nil
}

// sidecars returns the loaded sidecars of split of an SFT dataset, loading and
// verifying them on first use (a failed load is tried again by the next call).
func (l *Loader) sidecars(ctx context.Context, split Split) (*sidecars, error) {
	l.scMu.Lock()
	defer l.scMu.Unlock()
	dst := &l.scTrain
	if split == SplitVal {
		dst = &l.scVal
	}
	if *dst != nil {
		return *dst, nil
	}
	sc, err := loadSidecars(ctx, l.ds.Dir(), l.ds.Manifest().SFT.RowTokens, l.ds.Shards(split))
	if err != nil {
		return nil, err
	}
	*dst = sc
	return sc, nil
}

func checkBuffers(b, T int, inputs, targets []int32) error {
	if len(inputs) != b*T || len(targets) != b*T {
		return fmt.Errorf("%w: inputs and targets must hold b*T = %d*%d = %d tokens, got %d and %d", ErrBadOptions, b, T, b*T, len(inputs), len(targets))
	}
	return nil
}

// fill reads the windows' tokens from the shards of split into the (b, T) buffers. For
// an SFT dataset a target that its mask does not train is -1 (ignored by the loss).
// start, when not nil, gets each input position's example start from the segments of
// a packed dataset.
func (l *Loader) fill(ctx context.Context, split Split, windows []Window, T int, inputs, targets, start []int32) error {
	shards := l.train
	if split == SplitVal {
		shards = l.val
	}
	var masks [][]byte
	var starts [][]uint16
	if l.ds.Manifest().SFT != nil {
		sc, err := l.sidecars(ctx, split)
		if err != nil {
			return err
		}
		masks, starts = sc.masks, sc.starts
	}
	if start != nil && starts == nil {
		return fmt.Errorf("%w: dataset %s has no segments to fill example starts from", ErrBadOptions, l.ds.Dir())
	}
	var buf []byte
	for _, w := range windows {
		if w.Shard < 0 || w.Shard >= len(shards) {
			return fmt.Errorf("%w: shard %d of %d", ErrBadOptions, w.Shard, len(shards))
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		sf := shards[w.Shard]
		if err := l.verify(ctx, sf); err != nil {
			return err
		}
		n := int64(w.Len())
		if need := int(n * sf.width); cap(buf) < need {
			buf = make([]byte, need, max(need, (T+1)*4))
		}
		b := buf[:n*sf.width]
		if err := l.readAt(sf, b, sf.header+w.Start*sf.width); err != nil {
			return err
		}
		row := w.Row * T
		for q := range int(n) {
			var v int64
			if sf.width == 2 {
				v = int64(binary.LittleEndian.Uint16(b[2*q:]))
			} else {
				v = int64(binary.LittleEndian.Uint32(b[4*q:]))
			}
			if v > sf.limit {
				return sf.badToken(v, w.Start+int64(q), l.ds.vocabSize)
			}
			// Position pos of the row is input pos (pos < T) and target pos-1
			// (pos >= 1).
			pos := w.Pos + q
			if pos < T {
				inputs[row+pos] = int32(v)
				if start != nil {
					start[row+pos] = int32(starts[w.Shard][w.Start+int64(q)])
				}
			}
			if pos >= 1 {
				targets[row+pos-1] = int32(v)
				if masks != nil && masks[w.Shard][w.Start+int64(q)] == 0 {
					targets[row+pos-1] = -1
				}
			}
		}
	}
	return nil
}

func (sf *shardFile) badToken(v, at int64, vocabSize int) error {
	if vocabSize > 0 {
		return fmt.Errorf("%w: %s: token %d at position %d is >= vocabulary size %d", ErrBadToken, sf.path, v, at, vocabSize)
	}
	return fmt.Errorf("%w: %s: token %d at position %d is >= %d", ErrBadToken, sf.path, v, at, sf.limit+1)
}

// verify makes sure sf passed verifyShard, running it if no call has yet and
// waiting if one is running. A failed verification is not remembered: the next
// call tries again.
func (l *Loader) verify(ctx context.Context, sf *shardFile) error {
	for {
		if sf.verified.Load() {
			return nil
		}
		l.mu.Lock()
		if sf.verified.Load() {
			l.mu.Unlock()
			return nil
		}
		a := sf.attempt
		if a == nil {
			a = &verifyAttempt{done: make(chan struct{})}
			sf.attempt = a
			l.mu.Unlock()
			l.verifies.Add(1)
			size, err := verifyShard(ctx, sf.path, sf.info)
			l.mu.Lock()
			if err == nil {
				sf.size = size
				sf.verified.Store(true)
			}
			sf.attempt = nil
			a.err = err
			l.mu.Unlock()
			close(a.done)
			return err
		}
		l.mu.Unlock()
		select {
		case <-a.done:
		case <-ctx.Done():
			return ctx.Err()
		}
		if a.err == nil {
			return nil
		}
		// The verifying call's context may have ended while ours has not: then
		// try again ourselves.
		if isContextErr(a.err) && ctx.Err() == nil {
			continue
		}
		return a.err
	}
}

func isContextErr(err error) bool {
	return errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)
}

// verifyShard checks the shard file at path against info: with a sha256 in info,
// the hash of the whole file (ErrChecksum), computed in chunks and checked first
// so that any corruption reports as a checksum mismatch; then the header and the
// file size (ErrTruncated, ErrBadMagic), and the token count (ErrBadManifest). It
// returns the file's size. Token ids are not checked here.
func verifyShard(ctx context.Context, path string, info ShardInfo) (int64, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	f, err := os.Open(path)
	if err != nil {
		return 0, fmt.Errorf("shard: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return 0, fmt.Errorf("shard: %w", err)
	}
	size := st.Size()
	if info.SHA256 != "" {
		h := sha256.New()
		buf := make([]byte, 1<<20)
		var done int64
		for {
			if err := ctx.Err(); err != nil {
				return 0, err
			}
			n, err := f.Read(buf)
			h.Write(buf[:n])
			done += int64(n)
			if err == io.EOF {
				break
			}
			if err != nil {
				return 0, fmt.Errorf("shard: %s: %w", path, err)
			}
		}
		if got := hex.EncodeToString(h.Sum(nil)); got != info.SHA256 {
			return 0, fmt.Errorf("%w: %s: sha256 is %s, manifest says %s", ErrChecksum, path, got, info.SHA256)
		}
		if done != size {
			return 0, fmt.Errorf("%w: %s: file changed size while being verified (%d bytes, then %d)", ErrTruncated, path, size, done)
		}
	}
	_, count, err := readHeaderFrom(bufio.NewReader(io.NewSectionReader(f, 0, size)), path, size, info.Format)
	if err != nil {
		return 0, err
	}
	if count != info.Tokens {
		return 0, fmt.Errorf("%w: %s: manifest says %d tokens, file holds %d", ErrBadManifest, path, info.Tokens, count)
	}
	return size, nil
}

// readAt reads len(b) bytes at off of sf's file, opening it if needed.
func (l *Loader) readAt(sf *shardFile, b []byte, off int64) error {
	f, err := l.acquire(sf)
	if err != nil {
		return err
	}
	_, err = f.ReadAt(b, off)
	l.release(sf)
	if err != nil {
		return errEOFToTruncated(sf.path, err)
	}
	return nil
}

// acquire returns sf's open file, opening it if needed, and counts the caller
// as a user until release.
func (l *Loader) acquire(sf *shardFile) (*os.File, error) {
	l.mu.Lock()
	if sf.f != nil {
		sf.refs++
		l.lru.MoveToFront(sf.elem)
		l.mu.Unlock()
		return sf.f, nil
	}
	l.mu.Unlock()

	f, err := os.Open(sf.path)
	if err != nil {
		return nil, fmt.Errorf("shard: %w", err)
	}
	// The file was verified by path; if it has since been replaced by one of
	// another size, refuse it rather than read other data.
	if st, err := f.Stat(); err != nil || st.Size() != sf.size {
		f.Close()
		if err != nil {
			return nil, fmt.Errorf("shard: %w", err)
		}
		return nil, fmt.Errorf("%w: %s: %d bytes, %d when verified", ErrTruncated, sf.path, st.Size(), sf.size)
	}

	l.mu.Lock()
	defer l.mu.Unlock()
	if sf.f != nil { // another call opened it meanwhile
		f.Close()
		l.lru.MoveToFront(sf.elem)
	} else {
		sf.f = f
		sf.closeIdle = false
		sf.elem = l.lru.PushFront(sf)
	}
	sf.refs++
	l.closeLRULocked()
	return sf.f, nil
}

// release ends a use of sf's file begun by acquire.
func (l *Loader) release(sf *shardFile) {
	l.mu.Lock()
	defer l.mu.Unlock()
	sf.refs--
	if sf.refs == 0 && sf.closeIdle {
		l.closeLocked(sf)
	}
	l.closeLRULocked()
}

// closeLRULocked closes least recently used idle files while more than the
// bound are open. l.mu must be held.
func (l *Loader) closeLRULocked() {
	for e := l.lru.Back(); e != nil && l.lru.Len() > l.maxOpen; {
		prev := e.Prev()
		if sf := e.Value.(*shardFile); sf.refs == 0 {
			l.closeLocked(sf)
		}
		e = prev
	}
}

// closeLocked closes sf's file, which no call uses. l.mu must be held.
func (l *Loader) closeLocked(sf *shardFile) {
	l.lru.Remove(sf.elem)
	sf.f.Close() // read-only: nothing to flush, nothing to report
	sf.f, sf.elem, sf.closeIdle = nil, nil, false
}

// OpenFiles returns the number of shard files the loader holds open.
func (l *Loader) OpenFiles() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.lru.Len()
}

// Close closes the shard files the loader holds open; a file in use by a call
// in progress is closed when that call is done with it. The loader stays
// usable: later calls open files again (verification is not repeated).
func (l *Loader) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	for e := l.lru.Front(); e != nil; {
		next := e.Next()
		if sf := e.Value.(*shardFile); sf.refs == 0 {
			l.closeLocked(sf)
		} else {
			sf.closeIdle = true
		}
		e = next
	}
	return nil
}

// Val returns an iterator over the validation split in batches of the sampler's
// (b, T), at most maxBatches of them (0: all that fit); see ValSampler. The
// iterator reads through the loader, sharing its open files and verifications.
func (l *Loader) Val(maxBatches int) (*ValIterator, error) {
	return l.Eval(SplitVal, maxBatches)
}

// Eval returns an iterator over split in evaluation batches of the sampler's (b, T),
// at most maxBatches of them (0: all that fit). For SplitVal it is Val; for
// SplitTrain the train shards are read the same way, in manifest order and without
// shuffling (see ValSampler), to measure a model on the data it was trained on.
func (l *Loader) Eval(split Split, maxBatches int) (*ValIterator, error) {
	var tokens []int64
	switch split {
	case SplitVal:
		tokens = l.ds.Manifest().ValTokens()
	case SplitTrain:
		tokens = l.ds.Manifest().TrainTokens()
	default:
		return nil, fmt.Errorf("%w: split %q: want %q or %q", ErrBadOptions, split, SplitTrain, SplitVal)
	}
	newVal := NewValSampler
	if l.ds.Manifest().SFT != nil {
		newVal = NewExampleValSampler
	}
	vs, err := newVal(tokens, l.sampler.b, l.sampler.t, maxBatches)
	if err != nil {
		return nil, err
	}
	return &ValIterator{l: l, split: split, sampler: vs}, nil
}

// ValIterator reads evaluation batches of one split (the validation split unless
// made by Eval for another). Batch may be called from several goroutines at once
// (to spread evaluation over workers or threads); Next and Reset keep a cursor and
// must be called from one goroutine at a time.
type ValIterator struct {
	l       *Loader
	split   Split
	sampler *ValSampler
	next    int
}

// Len returns the number of validation batches.
func (v *ValIterator) Len() int { return v.sampler.Batches() }

// Batch fills inputs and targets (each b*T, row-major (b, T), caller-owned) with
// validation batch i in [0, Len()). Like Loader.Batch it blocks while shards
// are verified and honours ctx.
func (v *ValIterator) Batch(ctx context.Context, i int, inputs, targets []int32) error {
	if i < 0 || i >= v.sampler.Batches() {
		return fmt.Errorf("%w: val batch %d not in [0, %d)", ErrBadOptions, i, v.sampler.Batches())
	}
	if err := checkBuffers(v.sampler.b, v.sampler.t, inputs, targets); err != nil {
		return err
	}
	return v.l.fill(ctx, v.split, v.sampler.Windows(i), v.sampler.t, inputs, targets, nil)
}

// Tail returns the number of rows after the last whole batch (see ValSampler.Tail):
// 0 when the split is a whole number of batches or the iterator was capped at its
// whole batches.
func (v *ValIterator) Tail() int { return v.sampler.Tail() }

// BatchTail fills rows 0 to Tail()-1 of inputs and targets (each b*T, row-major
// (b, T), caller-owned) with the rows after the last whole batch, and leaves the
// other rows alone. Without a tail it is an error.
func (v *ValIterator) BatchTail(ctx context.Context, inputs, targets []int32) error {
	if v.sampler.Tail() == 0 {
		return fmt.Errorf("%w: the %s split has no rows after its %d whole batches", ErrBadOptions, v.split, v.sampler.Batches())
	}
	if err := checkBuffers(v.sampler.b, v.sampler.t, inputs, targets); err != nil {
		return err
	}
	return v.l.fill(ctx, v.split, v.sampler.TailWindows(), v.sampler.t, inputs, targets, nil)
}

// BatchTailPacked is BatchTail on a packed dataset that also fills rows 0 to
// Tail()-1 of start (b*T, caller-owned) with each input position's example start, as
// BatchPacked does.
func (v *ValIterator) BatchTailPacked(ctx context.Context, inputs, targets, start []int32) error {
	if !v.l.Packed() {
		return fmt.Errorf("%w: dataset %s is not packed (prepare --format sft --pack)", ErrBadOptions, v.l.ds.Dir())
	}
	if v.sampler.Tail() == 0 {
		return fmt.Errorf("%w: the %s split has no rows after its %d whole batches", ErrBadOptions, v.split, v.sampler.Batches())
	}
	if len(start) != v.sampler.b*v.sampler.t {
		return fmt.Errorf("%w: start must hold b*T = %d tokens, got %d", ErrBadOptions, v.sampler.b*v.sampler.t, len(start))
	}
	if err := checkBuffers(v.sampler.b, v.sampler.t, inputs, targets); err != nil {
		return err
	}
	return v.l.fill(ctx, v.split, v.sampler.TailWindows(), v.sampler.t, inputs, targets, start)
}

// Packed reports whether the batches are packed rows (see Loader.Packed).
func (v *ValIterator) Packed() bool { return v.l.Packed() }

// BatchPacked is Batch on a packed dataset that also fills start (b*T, caller-owned)
// with each input position's example start, as Loader.BatchPacked does.
func (v *ValIterator) BatchPacked(ctx context.Context, i int, inputs, targets, start []int32) error {
	if !v.l.Packed() {
		return fmt.Errorf("%w: dataset %s is not packed (prepare --format sft --pack)", ErrBadOptions, v.l.ds.Dir())
	}
	if i < 0 || i >= v.sampler.Batches() {
		return fmt.Errorf("%w: val batch %d not in [0, %d)", ErrBadOptions, i, v.sampler.Batches())
	}
	if len(start) != v.sampler.b*v.sampler.t {
		return fmt.Errorf("%w: start must hold b*T = %d tokens, got %d", ErrBadOptions, v.sampler.b*v.sampler.t, len(start))
	}
	if err := checkBuffers(v.sampler.b, v.sampler.t, inputs, targets); err != nil {
		return err
	}
	return v.l.fill(ctx, v.split, v.sampler.Windows(i), v.sampler.t, inputs, targets, start)
}

// Next fills the buffers with the next batch and reports true, or reports false
// (and leaves them alone) when all Len() batches have been read.
func (v *ValIterator) Next(ctx context.Context, inputs, targets []int32) (bool, error) {
	if v.next >= v.sampler.Batches() {
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
