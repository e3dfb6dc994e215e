package model

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"runtime"
	"slices"

	"github.com/ringtrain/ringtrain/tensor"
)

// Sentinel errors of text generation.
var (
	// ErrBadOption reports GenerateOptions that cannot be honoured; the message names the
	// field and its value.
	ErrBadOption = errors.New("model: invalid generation option")
	// ErrStopGeneration is returned by a GenerateOptions.OnToken callback to end
	// generation early. Generate then returns the tokens so far and a nil error.
	ErrStopGeneration = errors.New("model: stop generation")
)

// prefillChunk is the most positions a Decoder pushes through the layers at once. It
// bounds the decoder's scratch memory while keeping prompt processing batched.
const prefillChunk = 64

// Decoder runs a GPT incrementally over a key/value cache: each new position attends to
// the keys and values cached for the positions before it, so decoding one token costs
// O(T) instead of the O(T²) of re-running Forward over the whole sequence. Each chunk of
// positions runs through the same blockForward as Forward, with the backend's
// AttentionDecodeForward over the cache in place of AttentionForward.
//
// A Decoder has its own cache and scratch buffers (on the model's backend), separate
// from the model's training activations: decoding does not disturb a Forward/Backward
// pair around it. It reads the weights of the last NewDecoder, Reset or Forward (on a
// backend that shares host memory, m.Params as it is on every call), and the cached keys
// and values were computed with the weights of the calls that filled them; call Reset
// after changing the weights.
//
// A Decoder is not safe for concurrent use, and it shares the model's backend, which is
// called from one goroutine at a time: do not run it concurrently with other methods of
// the same GPT, nor with anything that writes Params.Slab.
type Decoder struct {
	m    *GPT
	maxT int
	n    int       // positions held in the cache
	k, v []float32 // (L, maxT, C) keys and values of positions 0..n-1

	// scratch for one chunk of up to `chunk` positions, served to the blocks by views
	chunk        int
	res, res2    []float32 // (chunk, C) residual stream
	ln           []float32 // (chunk, C)
	mean, rstd   []float32 // (chunk)
	qkv          []float32 // (chunk, 3C)
	atty         []float32 // (chunk, C)
	proj         []float32 // (chunk, C)
	fch, fchGelu []float32 // (chunk, 4C)
	lastT        int       // rows of res filled by the last chunk

	lnf              []float32 // (C)
	lnfMean, lnfRstd []float32 // (1)
	logits           []float32 // (V)
	toks             []int32   // (chunk) the chunk's tokens on the backend
	hostLogits       []float32 // (V) logits on the host (logits itself on a host-shared backend)
}

// NewDecoder allocates an empty decoder for m: a cache of MaxSeqLen positions per layer
// and scratch for prefillChunk positions, on the model's backend.
func (m *GPT) NewDecoder() *Decoder {
	c := m.Config
	L, C, V, maxT := c.Layers, c.Embd, c.VocabSize, c.MaxSeqLen
	ch := min(maxT, prefillChunk)
	var bufs []any
	f := func(n int) []float32 {
		b := m.be.Alloc(n)
		bufs = append(bufs, b)
		return b
	}
	d := &Decoder{
		m: m, maxT: maxT,
		k: f(L * maxT * C), v: f(L * maxT * C),
		chunk: ch,
		res:   f(ch * C), res2: f(ch * C), ln: f(ch * C), mean: f(ch), rstd: f(ch),
		qkv: f(ch * 3 * C), atty: f(ch * C), proj: f(ch * C),
		fch: f(ch * 4 * C), fchGelu: f(ch * 4 * C),
		lnf: f(C), lnfMean: f(1), lnfRstd: f(1),
		logits: f(V),
		toks:   m.be.AllocInt32(ch),
	}
	d.hostLogits = tensor.HostBuffer(m.be, d.logits)
	if !m.be.HostShared() {
		runtime.AddCleanup(d, freeAll, deviceBufs{be: m.be, bufs: append(bufs, d.toks)})
	}
	m.uploadParams()
	return d
}

// Len returns the number of positions held in the cache; the next token goes to
// position Len().
func (d *Decoder) Len() int { return d.n }

// Cap returns the number of positions the cache can hold (the model's MaxSeqLen).
func (d *Decoder) Cap() int { return d.maxT }

// Reset empties the cache and takes the model's current weights. The buffers are kept.
func (d *Decoder) Reset() {
	d.n = 0
	d.m.uploadParams()
}

// Truncate keeps the first n positions of the cache and forgets the rest, so that
// decoding resumes at position n. n outside [0, Len()] is an error wrapping ErrShape.
func (d *Decoder) Truncate(n int) error {
	if n < 0 || n > d.n {
		return fmt.Errorf("%w: truncate to %d positions, cache holds %d", ErrShape, n, d.n)
	}
	d.n = n
	return nil
}

// Step appends one token at position Len() and returns the (V) logits for the next
// position. The slice is owned by the decoder and overwritten by the next Step or
// Prefill. A full cache or a token outside the vocabulary is an error wrapping ErrShape;
// the cache is then unchanged.
func (d *Decoder) Step(tok int32) ([]float32, error) {
	return d.Prefill(context.Background(), []int32{tok})
}

// Prefill appends tokens at positions Len()..Len()+len(tokens)-1, pushing them through
// the layers in batches of up to prefillChunk positions, and returns the (V) logits for
// the position after the last token (owned by the decoder, overwritten by the next call).
//
// An empty tokens, tokens that do not fit in the cache, or ids outside the vocabulary
// are errors wrapping ErrShape, and leave the cache unchanged. ctx is checked between
// chunks; when it is done Prefill returns its error wrapped, and the cache keeps the
// chunks already processed (Len tells how many positions).
func (d *Decoder) Prefill(ctx context.Context, tokens []int32) ([]float32, error) {
	V := d.m.Config.VocabSize
	if len(tokens) == 0 {
		return nil, fmt.Errorf("%w: no tokens to decode", ErrShape)
	}
	if d.n+len(tokens) > d.maxT {
		return nil, fmt.Errorf("%w: %d tokens after %d cached positions exceed max_seq_len %d", ErrShape, len(tokens), d.n, d.maxT)
	}
	for i, id := range tokens {
		if id < 0 || int(id) >= V {
			return nil, fmt.Errorf("%w: token %d at position %d outside vocabulary of %d", ErrShape, id, i, V)
		}
	}
	for lo := 0; lo < len(tokens); lo += d.chunk {
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("model: prefill at position %d: %w", d.n, err)
		}
		d.forwardChunk(tokens[lo:min(lo+d.chunk, len(tokens))])
	}
	d.head()
	be := d.m.be
	be.Download(d.hostLogits, d.logits)
	if err := be.Record().Wait(); err != nil {
		return nil, fmt.Errorf("model: decode on %s: %w", be.Device(), err)
	}
	return d.hostLogits, nil
}

// views returns the block activations of a chunk of T positions over the decoder's
// scratch, for every layer in turn. Generation keeps nothing for backward, so buffers
// are shared where blockForward has finished with one before it writes the other:
// ln_1 and ln_2 (and their statistics) share ln, mean and rstd, and the block's output
// res3 is res, its input.
func (d *Decoder) views(T int) blockActs {
	C := d.m.Config.Embd
	return blockActs{
		ln1: d.ln[:T*C], ln1Mean: d.mean[:T], ln1Rstd: d.rstd[:T],
		qkv: d.qkv[:T*3*C], atty: d.atty[:T*C],
		proj: d.proj[:T*C], res2: d.res2[:T*C],
		ln2: d.ln[:T*C], ln2Mean: d.mean[:T], ln2Rstd: d.rstd[:T],
		fch: d.fch[:T*4*C], fchGelu: d.fchGelu[:T*4*C],
		res3: d.res[:T*C],
	}
}

// forwardChunk runs tokens (T ≤ chunk, already validated) at positions n..n+T-1 through
// the layers, storing their keys and values in the cache, and leaves the final residual
// stream (T, C) in res.
func (d *Decoder) forwardChunk(tokens []int32) {
	c, be, p := d.m.Config, d.m.be, d.m.dev
	C, H, maxT := c.Embd, c.Heads, d.maxT
	T, pos0 := len(tokens), d.n

	a := d.views(T)
	res := d.res[:T*C] // (T, C)
	be.UploadInt32(d.toks[:T], tokens)
	be.EncoderForward(res, d.toks[:T], p.Wte, p.Wpe[pos0*C:], 1, T, C) // positions pos0..pos0+T-1
	for l := range p.Blocks {
		kv := [1]kvCache{{k: d.k[l*maxT*C : (l+1)*maxT*C], v: d.v[l*maxT*C : (l+1)*maxT*C], pos0: pos0}}
		blockForward(be, &p.Blocks[l], &a, res, 1, T, C, H, true, kv[:], nil)
	}
	d.n += T
	d.lastT = T
}

// head computes the logits of the last position of the last chunk: the final LayerNorm,
// then lnf · wteᵀ.
func (d *Decoder) head() {
	c, be, p := d.m.Config, d.m.be, d.m.dev
	C, V := c.Embd, c.VocabSize
	last := d.res[(d.lastT-1)*C : d.lastT*C] // (1, C)
	be.LayerNormForward(d.lnf, d.lnfMean, d.lnfRstd, last, p.LnfW, p.LnfB, 1, C)
	be.MatmulForward(d.logits, d.lnf, p.Wte, nil, 1, C, V)
}

// GenerateOptions controls Generate. The zero value is not valid: MaxTokens must be set.
type GenerateOptions struct {
	// MaxTokens is the most new tokens to return (>= 1).
	MaxTokens int
	// Temperature divides the logits before sampling; 0 selects greedy decoding (the
	// arg-max, lowest id on ties), which ignores TopK, TopP and Seed. Must be >= 0.
	Temperature float64
	// TopK keeps only the K most probable tokens; 0 (or >= the vocabulary) is off.
	TopK int
	// TopP keeps the smallest set of most probable tokens whose probability reaches TopP
	// of the mass left after TopK (nucleus sampling). 0 or 1 is off; must be in [0, 1].
	TopP float64
	// Seed seeds the sampler (a math/rand/v2 PCG): the same model, prompt, options and
	// seed give the same tokens.
	Seed uint64
	// StopAtEOT ends generation when EOT is sampled; EOT itself is not returned.
	StopAtEOT bool
	// EOT is the end-of-text token id, used when StopAtEOT is set.
	EOT int32
	// OnToken, if not nil, is called on Generate's goroutine with each new token as soon
	// as it is sampled (EOT excepted), before the next one is computed, e.g. to stream
	// text to a terminal. Returning ErrStopGeneration (or an error wrapping it) ends
	// generation normally; any other error ends it and is returned wrapped.
	OnToken func(tok int32) error
}

func (o GenerateOptions) validate(vocab int) error {
	switch {
	case o.MaxTokens < 1:
		return fmt.Errorf("%w: max_tokens=%d must be >= 1", ErrBadOption, o.MaxTokens)
	case !(o.Temperature >= 0) || math.IsInf(o.Temperature, 1):
		return fmt.Errorf("%w: temperature=%g must be finite and >= 0", ErrBadOption, o.Temperature)
	case o.TopK < 0:
		return fmt.Errorf("%w: top_k=%d must be >= 0", ErrBadOption, o.TopK)
	case !(o.TopP >= 0 && o.TopP <= 1):
		return fmt.Errorf("%w: top_p=%g must be in [0, 1]", ErrBadOption, o.TopP)
	case o.StopAtEOT && (o.EOT < 0 || int(o.EOT) >= vocab):
		return fmt.Errorf("%w: eot=%d outside vocabulary of %d", ErrBadOption, o.EOT, vocab)
	}
	return nil
}

// StopReason says why Generate stopped.
type StopReason int

const (
	// StopNone: generation ended with an error.
	StopNone StopReason = iota
	// StopMaxTokens: MaxTokens tokens were generated.
	StopMaxTokens
	// StopEOT: the EOT token was sampled.
	StopEOT
	// StopCallback: OnToken returned ErrStopGeneration.
	StopCallback
)

func (r StopReason) String() string {
	switch r {
	case StopMaxTokens:
		return "max_tokens"
	case StopEOT:
		return "eot"
	case StopCallback:
		return "callback"
	}
	return "none"
}

// Generation is the result of Generate.
type Generation struct {
	// Tokens are the new tokens, without the prompt and without EOT. Owned by the caller.
	Tokens []int32
	// PromptTruncated is the number of tokens cut from the left of a prompt longer than
	// MaxSeqLen (0 when the prompt fitted).
	PromptTruncated int
	// Slides counts how many times the context window was slid (see Generate).
	Slides int
	// Reason says why generation stopped.
	Reason StopReason
}

// Generate continues prompt with up to opts.MaxTokens new tokens, decoding one token at
// a time over a key/value cache. It blocks until done and calls opts.OnToken, if set, on
// the calling goroutine. It must not run concurrently with other methods of m (see
// Decoder); it leaves the training activations and gradients untouched.
//
// Context: the model has MaxSeqLen learned positions. A prompt longer than MaxSeqLen is
// cut from the left to its last MaxSeqLen-1 tokens (so that a new token fits without a
// slide), and PromptTruncated reports how many were dropped. When the cache is full,
// the window slides: the last MaxSeqLen/2 tokens (at least 1) are re-run from position 0
// and generation continues. Positions are absolute, so cached keys cannot be shifted and
// a slide must recompute them; keeping half the window spends one prefill of MaxSeqLen/2
// tokens per MaxSeqLen/2 new tokens, about one extra token's work per token, while
// keeping half the context. Keeping MaxSeqLen-1 tokens would cost a full prefill per
// token.
//
// Invalid options are errors wrapping ErrBadOption; an empty prompt or ids outside the
// vocabulary are errors wrapping ErrShape; both return a nil Generation. ctx is checked
// before each token (and between prompt chunks); when it is done, or when OnToken fails,
// Generate returns the tokens so far together with the wrapped error.
func (m *GPT) Generate(ctx context.Context, prompt []int32, opts GenerateOptions) (*Generation, error) {
	c := m.Config
	if err := opts.validate(c.VocabSize); err != nil {
		return nil, err
	}
	if len(prompt) == 0 {
		return nil, fmt.Errorf("%w: empty prompt", ErrShape)
	}
	for i, id := range prompt {
		if id < 0 || int(id) >= c.VocabSize {
			return nil, fmt.Errorf("%w: prompt token %d at position %d outside vocabulary of %d", ErrShape, id, i, c.VocabSize)
		}
	}
	maxT := c.MaxSeqLen
	g := &Generation{Tokens: make([]int32, 0, min(opts.MaxTokens, maxT))}
	if len(prompt) > maxT {
		keep := max(1, maxT-1)
		g.PromptTruncated = len(prompt) - keep
		prompt = prompt[len(prompt)-keep:]
	}
	window := make([]int32, 0, maxT+1) // tokens whose keys and values are cached, by position
	window = append(window, prompt...)

	d := m.NewDecoder()
	logits, err := d.Prefill(ctx, window)
	if err != nil {
		return g, fmt.Errorf("model: generate: prompt: %w", err)
	}
	s := newSampler(opts, c.VocabSize)
	for {
		if err := ctx.Err(); err != nil {
			return g, fmt.Errorf("model: generate after %d tokens: %w", len(g.Tokens), err)
		}
		tok := s.next(logits)
		if opts.StopAtEOT && tok == opts.EOT {
			g.Reason = StopEOT
			return g, nil
		}
		g.Tokens = append(g.Tokens, tok)
		if opts.OnToken != nil {
			if err := opts.OnToken(tok); err != nil {
				if errors.Is(err, ErrStopGeneration) {
					g.Reason = StopCallback
					return g, nil
				}
				return g, fmt.Errorf("model: generate: token callback: %w", err)
			}
		}
		if len(g.Tokens) == opts.MaxTokens {
			g.Reason = StopMaxTokens
			return g, nil
		}
		window = append(window, tok)
		if d.Len() < maxT {
			logits, err = d.Step(tok)
		} else {
			keep := max(1, maxT/2)
			window = window[:copy(window, window[len(window)-keep:])]
			d.Reset()
			g.Slides++
			logits, err = d.Prefill(ctx, window)
		}
		if err != nil {
			return g, fmt.Errorf("model: generate after %d tokens: %w", len(g.Tokens), err)
		}
	}
}

// sampler picks tokens from logits according to GenerateOptions. Its buffers are reused
// across tokens.
type sampler struct {
	temp  float64
	topK  int
	topP  float64
	rng   *rand.PCG
	probs []float64 // (V) unnormalised probabilities
	order []int32   // (V) token ids by falling probability, for top-k and top-p
}

func newSampler(o GenerateOptions, vocab int) *sampler {
	return &sampler{
		temp: o.Temperature, topK: o.TopK, topP: o.TopP,
		rng:   rand.NewPCG(o.Seed, 0x5851f42d4c957f2d),
		probs: make([]float64, vocab),
		order: make([]int32, vocab),
	}
}

// uniform returns a deviate in [0, 1) built from 53 bits of the PCG, a formula fixed here
// so that sampling does not change with the Go version.
func (s *sampler) uniform() float64 {
	return float64(s.rng.Uint64()>>11) / (1 << 53)
}

// argmax returns the index of the largest logit, the lowest one on ties.
func argmax(logits []float32) int32 {
	best := 0
	for i, l := range logits {
		if l > logits[best] {
			best = i
		}
	}
	return int32(best)
}

// next samples one token from logits (V).
func (s *sampler) next(logits []float32) int32 {
	best := argmax(logits)
	if s.temp == 0 {
		return best
	}
	V := len(logits)
	maxl := float64(logits[best])
	for i, l := range logits {
		s.probs[i] = math.Exp((float64(l) - maxl) / s.temp)
	}
	k := V
	if s.topK > 0 && s.topK < V {
		k = s.topK
	}
	nucleus := s.topP > 0 && s.topP < 1
	if k == V && !nucleus {
		var total float64
		for _, p := range s.probs {
			total += p
		}
		u := s.uniform() * total
		var cum float64
		for i, p := range s.probs {
			cum += p
			if u < cum {
				return int32(i)
			}
		}
		return best // only reached through rounding or non-finite logits
	}

	for i := range s.order {
		s.order[i] = int32(i)
	}
	probs := s.probs
	slices.SortFunc(s.order, func(a, b int32) int {
		if c := cmp.Compare(probs[b], probs[a]); c != 0 {
			return c
		}
		return cmp.Compare(a, b)
	})
	kept := s.order[:k]
	var total float64
	for _, id := range kept {
		total += probs[id]
	}
	if nucleus {
		limit := s.topP * total
		var cum float64
		for j, id := range kept {
			cum += probs[id]
			if cum >= limit {
				kept, total = kept[:j+1], cum
				break
			}
		}
	}
	u := s.uniform() * total
	var cum float64
	for _, id := range kept {
		cum += probs[id]
		if u < cum {
			return id
		}
	}
	return kept[0]
}
