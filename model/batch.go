package model

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"slices"

	"github.com/ringtrain/ringtrain/tensor"
)

// ErrBatchFull is returned by BatchDecoder.Add when every row of the batch is taken.
var ErrBatchFull = errors.New("model: batch is full")

// BatchDecoder generates several sequences together: each Step samples one token for
// every sequence and then pushes all of them through the layers as one batch of rows,
// so every weight matrix is read once per step for the whole batch instead of once per
// sequence. Each sequence has its own key/value cache (a Decoder) and its own sampler,
// sits at its own position, and stops on its own (EOT, MaxTokens, its OnToken callback,
// its context); new sequences may join between steps (continuous batching).
//
// A sequence's tokens do not depend on the batch it runs in: every op but attention
// treats the rows of a step alike (the gemm sums each element in the same order for any
// number of rows), attention runs per sequence over its own cache, and each sequence
// samples from its own PCG seeded with its own options. So a sequence generated in a
// batch gives, bit for bit, the tokens Generate gives it alone, greedy or sampled.
//
// A BatchDecoder is not safe for concurrent use and shares the model's backend (see
// Decoder): one goroutine owns it and calls Add and Step; the OnToken callbacks run on
// that goroutine.
type BatchDecoder struct {
	m        *GPT
	capacity int
	rows     []*batchRow // sequences in progress, in the order they joined
	spare    []*Decoder  // caches of finished sequences, reused by later ones
	nextID   int

	// scratch for one step of up to capacity rows, one position each
	res, res2, ln, mean, rstd []float32 // (B,C), (B,C), (B,C), (B), (B)
	qkv, atty, proj           []float32 // (B,3C), (B,C), (B,C)
	fch, fchGelu              []float32 // (B,4C)
	lnf, lnfMean, lnfRstd     []float32 // (B,C), (B), (B)
	logits                    []float32 // (B,V)
	toks                      []int32   // (B) the token each row appends, on the backend
	hostToks                  []int32   // (B) toks on the host (toks itself on a host-shared backend)
	hostLogits                []float32 // (B,V) logits on the host (logits itself on a host-shared backend)
	kv                        []kvCache // (B) one layer's caches
	stepping                  []*batchRow
}

// batchRow is one sequence of a batch.
type batchRow struct {
	id     int
	ctx    context.Context
	opts   GenerateOptions
	d      *Decoder
	s      *sampler
	window []int32   // tokens whose keys and values are cached, by position
	next   []float32 // (V) logits for the next token
	gen    *Generation
}

// BatchResult is a finished sequence of a BatchDecoder.
type BatchResult struct {
	// ID is the id Add returned.
	ID int
	// Gen is what the sequence generated, as Generate returns it.
	Gen *Generation
	// Err is nil when the sequence stopped normally (Gen.Reason says why), or the error
	// that ended it: its context's, a failed slide, a failing OnToken.
	Err error
}

// NewBatchDecoder returns an empty batch of up to capacity sequences. The step scratch
// is allocated here; each sequence's cache (L·MaxSeqLen·C keys and values) when it
// joins, and it is kept for the next one when it leaves.
func (m *GPT) NewBatchDecoder(capacity int) (*BatchDecoder, error) {
	if capacity < 1 {
		return nil, fmt.Errorf("%w: batch capacity %d must be >= 1", ErrBadOption, capacity)
	}
	c := m.Config
	B, C, V := capacity, c.Embd, c.VocabSize
	var bufs []any
	f := func(n int) []float32 {
		b := m.be.Alloc(n)
		bufs = append(bufs, b)
		return b
	}
	b := &BatchDecoder{
		m: m, capacity: capacity,
		res: f(B * C), res2: f(B * C), ln: f(B * C), mean: f(B), rstd: f(B),
		qkv: f(B * 3 * C), atty: f(B * C), proj: f(B * C),
		fch: f(B * 4 * C), fchGelu: f(B * 4 * C),
		lnf: f(B * C), lnfMean: f(B), lnfRstd: f(B),
		logits: f(B * V), toks: m.be.AllocInt32(B), kv: make([]kvCache, B),
	}
	b.hostToks, b.hostLogits = tensor.HostBufferInt32(m.be, b.toks), tensor.HostBuffer(m.be, b.logits)
	if !m.be.HostShared() {
		runtime.AddCleanup(b, freeAll, deviceBufs{be: m.be, bufs: append(bufs, b.toks)})
	}
	return b, nil
}

// Cap returns the most sequences the batch holds.
func (b *BatchDecoder) Cap() int { return b.capacity }

// Len returns the number of sequences in progress.
func (b *BatchDecoder) Len() int { return len(b.rows) }

// Add starts a sequence: it validates opts and prompt as Generate does, cuts a prompt
// longer than MaxSeqLen from the left as Generate does, and prefills the prompt into the
// sequence's cache (alone, in chunks), so that the next Step samples its first token.
// ctx belongs to the sequence: when it is done, the next Step ends the sequence with
// its error. Add returns the sequence's id, unique within this BatchDecoder.
//
// A full batch is ErrBatchFull; invalid options wrap ErrBadOption, an empty prompt or
// ids outside the vocabulary ErrShape; a prefill cut short by ctx returns its error.
// The sequence is not added on error.
func (b *BatchDecoder) Add(ctx context.Context, prompt []int32, opts GenerateOptions) (int, error) {
	c := b.m.Config
	if len(b.rows) == b.capacity {
		return 0, fmt.Errorf("%w: %d sequences", ErrBatchFull, b.capacity)
	}
	if err := opts.validate(c.VocabSize); err != nil {
		return 0, err
	}
	if len(prompt) == 0 {
		return 0, fmt.Errorf("%w: empty prompt", ErrShape)
	}
	for i, id := range prompt {
		if id < 0 || int(id) >= c.VocabSize {
			return 0, fmt.Errorf("%w: prompt token %d at position %d outside vocabulary of %d", ErrShape, id, i, c.VocabSize)
		}
	}
	maxT := c.MaxSeqLen
	r := &batchRow{
		ctx: ctx, opts: opts,
		s:      newSampler(opts, c.VocabSize),
		window: make([]int32, 0, maxT+1),
		next:   make([]float32, c.VocabSize),
		gen:    &Generation{Tokens: make([]int32, 0, min(opts.MaxTokens, maxT))},
	}
	if len(prompt) > maxT {
		keep := max(1, maxT-1)
		r.gen.PromptTruncated = len(prompt) - keep
		prompt = prompt[len(prompt)-keep:]
	}
	r.window = append(r.window, prompt...)
	if n := len(b.spare); n > 0 {
		r.d, b.spare = b.spare[n-1], b.spare[:n-1]
		r.d.Reset()
	} else {
		r.d = b.m.NewDecoder()
	}
	logits, err := r.d.Prefill(ctx, r.window)
	if err != nil {
		b.spare = append(b.spare, r.d)
		return 0, fmt.Errorf("model: batch: prompt: %w", err)
	}
	copy(r.next, logits)
	r.id = b.nextID
	b.nextID++
	b.rows = append(b.rows, r)
	return r.id, nil
}

// Step advances every sequence by one token: for each, in the order they joined, it
// checks the sequence's context, samples a token, and ends the sequence on EOT, on its
// OnToken callback (called here, on the caller's goroutine) or on MaxTokens, exactly as
// Generate does; then it pushes the new tokens of the sequences still going through the
// layers together. A sequence whose cache is full slides its window alone first (see
// Generate). Step returns the sequences that ended in this step, in the order they
// joined; they leave the batch. With no sequence in progress it does nothing.
func (b *BatchDecoder) Step() []BatchResult {
	var done []BatchResult
	keep := b.rows[:0]
	b.stepping = b.stepping[:0]
	maxT := b.m.Config.MaxSeqLen
	for _, r := range b.rows {
		res, finished := b.sample(r)
		if !finished && r.d.Len() >= maxT {
			// Slide: re-run the last half of the window from position 0, alone.
			kept := max(1, maxT/2)
			r.window = r.window[:copy(r.window, r.window[len(r.window)-kept:])]
			r.d.Reset()
			r.gen.Slides++
			logits, err := r.d.Prefill(r.ctx, r.window)
			if err != nil {
				res, finished = BatchResult{ID: r.id, Gen: r.gen, Err: fmt.Errorf("model: generate after %d tokens: %w", len(r.gen.Tokens), err)}, true
			} else {
				copy(r.next, logits)
			}
		} else if !finished {
			b.stepping = append(b.stepping, r)
		}
		if finished {
			done = append(done, res)
			b.spare = append(b.spare, r.d)
			continue
		}
		keep = append(keep, r)
	}
	clear(b.rows[len(keep):])
	b.rows = keep
	if len(b.stepping) > 0 {
		if err := b.forward(b.stepping); err != nil {
			// The backend failed: every sequence that stepped ends with its error.
			for _, r := range b.stepping {
				done = append(done, BatchResult{ID: r.id, Gen: r.gen, Err: fmt.Errorf("model: generate after %d tokens: %w", len(r.gen.Tokens), err)})
				b.spare = append(b.spare, r.d)
			}
			b.rows = slices.DeleteFunc(b.rows, func(r *batchRow) bool { return slices.Contains(b.stepping, r) })
		}
	}
	return done
}

// sample picks r's next token and appends it to r's generation and window, following
// Generate's loop; finished reports that r ended, and res is its result.
func (b *BatchDecoder) sample(r *batchRow) (res BatchResult, finished bool) {
	g := r.gen
	end := func(reason StopReason, err error) (BatchResult, bool) {
		g.Reason = reason
		return BatchResult{ID: r.id, Gen: g, Err: err}, true
	}
	if err := r.ctx.Err(); err != nil {
		return end(StopNone, fmt.Errorf("model: generate after %d tokens: %w", len(g.Tokens), err))
	}
	tok := r.s.next(r.next)
	if r.opts.StopAtEOT && tok == r.opts.EOT {
		return end(StopEOT, nil)
	}
	g.Tokens = append(g.Tokens, tok)
	if r.opts.OnToken != nil {
		if err := r.opts.OnToken(tok); err != nil {
			if errors.Is(err, ErrStopGeneration) {
				return end(StopCallback, nil)
			}
			return end(StopNone, fmt.Errorf("model: generate: token callback: %w", err))
		}
	}
	if len(g.Tokens) == r.opts.MaxTokens {
		return end(StopMaxTokens, nil)
	}
	r.window = append(r.window, tok)
	return BatchResult{}, false
}

// forward appends the last token of each row's window at the row's next position, all
// rows as one batch, and leaves each row's next logits in its next. A failed backend is
// its error (wrapping tensor.ErrDevice).
func (b *BatchDecoder) forward(rows []*batchRow) error {
	c, be, p := b.m.Config, b.m.be, b.m.dev
	C, H, V, maxT := c.Embd, c.Heads, c.VocabSize, c.MaxSeqLen
	B := len(rows)

	res := b.res[:B*C] // (B,C)
	for i, r := range rows {
		b.hostToks[i] = r.window[len(r.window)-1]
	}
	be.UploadInt32(b.toks[:B], b.hostToks[:B])
	for i, r := range rows {
		be.EncoderForward(res[i*C:(i+1)*C], b.toks[i:i+1], p.Wte, p.Wpe[r.d.n*C:], 1, 1, C)
	}
	a := blockActs{
		ln1: b.ln[:B*C], ln1Mean: b.mean[:B], ln1Rstd: b.rstd[:B],
		qkv: b.qkv[:B*3*C], atty: b.atty[:B*C],
		proj: b.proj[:B*C], res2: b.res2[:B*C],
		ln2: b.ln[:B*C], ln2Mean: b.mean[:B], ln2Rstd: b.rstd[:B],
		fch: b.fch[:B*4*C], fchGelu: b.fchGelu[:B*4*C],
		res3: res,
	}
	kv := b.kv[:B]
	for l := range p.Blocks {
		for i, r := range rows {
			kv[i] = kvCache{k: r.d.k[l*maxT*C : (l+1)*maxT*C], v: r.d.v[l*maxT*C : (l+1)*maxT*C], pos0: r.d.n}
		}
		blockForward(be, &p.Blocks[l], &a, res, B, 1, C, H, true, kv, nil)
	}
	clear(kv)
	be.LayerNormForward(b.lnf[:B*C], b.lnfMean[:B], b.lnfRstd[:B], res, p.LnfW, p.LnfB, B, C)
	be.MatmulForward(b.logits[:B*V], b.lnf[:B*C], p.Wte, nil, B, C, V)
	be.Download(b.hostLogits[:B*V], b.logits[:B*V])
	err := be.Record().Wait()
	for i, r := range rows {
		r.d.n++
		copy(r.next, b.hostLogits[i*V:(i+1)*V])
	}
	return err
}

// GenerateBatch generates a continuation of every prompt, up to batch sequences at a
// time: a prompt joins as soon as a row is free (continuous batching), in order. The
// results are in the order of prompts; opts[i] applies to prompts[i] (a single opts
// applies to all). A prompt that cannot start (bad options, empty) has its error in its
// result and does not stop the others. ctx applies to every sequence; when it is done,
// GenerateBatch stops starting sequences and returns with the error of ctx, the
// sequences in progress ending with it too.
func (m *GPT) GenerateBatch(ctx context.Context, prompts [][]int32, opts []GenerateOptions, batch int) ([]BatchResult, error) {
	if len(opts) != 1 && len(opts) != len(prompts) {
		return nil, fmt.Errorf("%w: %d options for %d prompts", ErrBadOption, len(opts), len(prompts))
	}
	bd, err := m.NewBatchDecoder(batch)
	if err != nil {
		return nil, err
	}
	out := make([]BatchResult, len(prompts))
	index := map[int]int{} // sequence id -> prompt index
	next := 0
	for next < len(prompts) || bd.Len() > 0 {
		for next < len(prompts) && bd.Len() < bd.Cap() && ctx.Err() == nil {
			o := opts[0]
			if len(opts) > 1 {
				o = opts[next]
			}
			id, err := bd.Add(ctx, prompts[next], o)
			if err != nil {
				out[next] = BatchResult{ID: -1, Err: err}
			} else {
				index[id] = next
			}
			next++
		}
		for _, r := range bd.Step() {
			out[index[r.ID]] = r
		}
		if ctx.Err() != nil && bd.Len() == 0 {
			return out, fmt.Errorf("model: generate batch: %w", ctx.Err())
		}
	}
	return out, nil
}
