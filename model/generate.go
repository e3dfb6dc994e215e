package model

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"sync"
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

// parallelAttentionWork is the amount of attention work (query rows × attended
// positions × channels) above which the heads of one layer run on separate goroutines.
// Below it, single-token decoding stays on the calling goroutine.
const parallelAttentionWork = 1 << 16

// Decoder runs a GPT incrementally over a key/value cache: each new position attends to
// the keys and values cached for the positions before it, so decoding one token costs
// O(T) instead of the O(T²) of re-running Forward over the whole sequence.
//
// A Decoder has its own cache and scratch buffers, separate from the model's training
// activations: decoding does not disturb a Forward/Backward pair around it. It reads
// m.Params on every call, but the cached keys and values were computed with the weights
// of the calls that filled them; call Reset after changing the weights.
//
// A Decoder is not safe for concurrent use, and it shares the model's backend, which is
// called from one goroutine at a time: do not run it concurrently with other methods of
// the same GPT, nor with anything that writes Params.Slab.
type Decoder struct {
	m    *GPT
	maxT int
	n    int       // positions held in the cache
	k, v []float32 // (L, maxT, C) keys and values of positions 0..n-1

	// scratch for one chunk of up to `chunk` positions
	chunk        int
	res, res2    []float32 // (chunk, C) residual stream
	ln           []float32 // (chunk, C)
	mean, rstd   []float32 // (chunk)
	qkv          []float32 // (chunk, 3C)
	atty         []float32 // (chunk, C)
	proj         []float32 // (chunk, C)
	fch, fchGelu []float32 // (chunk, 4C)
	scores       []float32 // (H, maxT) one attention row per head
	lastT        int       // rows of res filled by the last chunk

	lnf              []float32 // (C)
	lnfMean, lnfRstd []float32 // (1)
	logits           []float32 // (V)
}

// NewDecoder allocates an empty decoder for m: a cache of MaxSeqLen positions per layer
// and scratch for prefillChunk positions.
func (m *GPT) NewDecoder() *Decoder {
	c := m.Config
	L, C, H, V, maxT := c.Layers, c.Embd, c.Heads, c.VocabSize, c.MaxSeqLen
	ch := min(maxT, prefillChunk)
	f := func(n int) []float32 { return make([]float32, n) }
	return &Decoder{
		m: m, maxT: maxT,
		k: f(L * maxT * C), v: f(L * maxT * C),
		chunk: ch,
		res:   f(ch * C), res2: f(ch * C), ln: f(ch * C), mean: f(ch), rstd: f(ch),
		qkv: f(ch * 3 * C), atty: f(ch * C), proj: f(ch * C),
		fch: f(ch * 4 * C), fchGelu: f(ch * 4 * C),
		scores: f(H * maxT),
		lnf:    f(C), lnfMean: f(1), lnfRstd: f(1),
		logits: f(V),
	}
}

// Len returns the number of positions held in the cache; the next token goes to
// position Len().
func (d *Decoder) Len() int { return d.n }

// Cap returns the number of positions the cache can hold (the model's MaxSeqLen).
func (d *Decoder) Cap() int { return d.maxT }

// Reset empties the cache. The buffers are kept.
func (d *Decoder) Reset() { d.n = 0 }

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
	return d.logits, nil
}

// forwardChunk runs tokens (T ≤ chunk, already validated) at positions n..n+T-1 through
// the layers, storing their keys and values in the cache, and leaves the final residual
// stream (T, C) in res.
func (d *Decoder) forwardChunk(tokens []int32) {
	c, be, p := d.m.Config, d.m.be, d.m.Params
	L, C, H, maxT := c.Layers, c.Embd, c.Heads, d.maxT
	T, pos0 := len(tokens), d.n

	res, res2 := d.res[:T*C], d.res2[:T*C]
	ln, mean, rstd := d.ln[:T*C], d.mean[:T], d.rstd[:T]
	qkv, atty, proj := d.qkv[:T*3*C], d.atty[:T*C], d.proj[:T*C]
	fch, fchGelu := d.fch[:T*4*C], d.fchGelu[:T*4*C]

	for t, tok := range tokens {
		o := res[t*C : (t+1)*C]
		we := p.Wte[int(tok)*C : int(tok)*C+C]
		pe := p.Wpe[(pos0+t)*C : (pos0+t)*C+C]
		for i := range o {
			o[i] = we[i] + pe[i]
		}
	}
	for l := 0; l < L; l++ {
		w := &p.Blocks[l]
		kc := d.k[l*maxT*C : (l+1)*maxT*C] // (maxT, C)
		vc := d.v[l*maxT*C : (l+1)*maxT*C] // (maxT, C)

		be.LayerNormForward(ln, mean, rstd, res, w.Ln1W, w.Ln1B, T, C)
		be.MatmulForward(qkv, ln, w.QKVW, w.QKVB, T, C, 3*C)
		for t := 0; t < T; t++ {
			row := qkv[t*3*C : (t+1)*3*C]
			copy(kc[(pos0+t)*C:(pos0+t+1)*C], row[C:2*C])
			copy(vc[(pos0+t)*C:(pos0+t+1)*C], row[2*C:])
		}
		attendCached(atty, qkv, kc, vc, d.scores, T, pos0, C, H)
		be.MatmulForward(proj, atty, w.AttnProjW, w.AttnProjB, T, C, C)
		be.ResidualForward(res2, res, proj)
		be.LayerNormForward(ln, mean, rstd, res2, w.Ln2W, w.Ln2B, T, C)
		be.MatmulForward(fch, ln, w.FcW, w.FcB, T, C, 4*C)
		be.GeluForward(fchGelu, fch)
		be.MatmulForward(proj, fchGelu, w.FcProjW, w.FcProjB, T, 4*C, C)
		be.ResidualForward(res, res2, proj)
	}
	d.n += T
	d.lastT = T
}

// head computes the logits of the last position of the last chunk: the final LayerNorm,
// then lnf · wteᵀ.
func (d *Decoder) head() {
	c, be, p := d.m.Config, d.m.be, d.m.Params
	C, V := c.Embd, c.VocabSize
	last := d.res[(d.lastT-1)*C : d.lastT*C] // (1, C)
	be.LayerNormForward(d.lnf, d.lnfMean, d.lnfRstd, last, p.LnfW, p.LnfB, 1, C)
	be.MatmulForward(d.logits, d.lnf, p.Wte, nil, 1, C, V)
}

// attendCached is causal multi-head attention for T query rows at positions
// pos0..pos0+T-1 over cached keys and values, with scale 1/sqrt(C/H).
//
// out (T, C); qkv (T, 3C), of which only the queries are read; kc, vc (maxT, C) hold the
// keys and values of positions 0..pos0+T-1; scores (H, maxT) is scratch, one row per
// head. Each head writes only its own columns of out, so heads may run in parallel
// without changing any result.
func attendCached(out, qkv, kc, vc, scores []float32, T, pos0, C, H int) {
	hs := C / H
	scale := float32(1 / math.Sqrt(float64(hs)))
	maxT := len(scores) / H
	head := func(h int) {
		row := scores[h*maxT : (h+1)*maxT] // (maxT)
		for t := 0; t < T; t++ {
			q := qkv[t*3*C+h*hs : t*3*C+h*hs+hs]
			last := pos0 + t + 1
			maxv := float32(math.Inf(-1))
			for p := 0; p < last; p++ {
				s := dot(q, kc[p*C+h*hs:p*C+h*hs+hs]) * scale
				row[p] = s
				if s > maxv {
					maxv = s
				}
			}
			var sum float32
			for p := 0; p < last; p++ {
				e := float32(math.Exp(float64(row[p] - maxv)))
				row[p] = e
				sum += e
			}
			inv := 1 / sum
			o := out[t*C+h*hs : t*C+h*hs+hs]
			clear(o)
			for p := 0; p < last; p++ {
				a := row[p] * inv
				v := vc[p*C+h*hs : p*C+h*hs+hs]
				v = v[:len(o)]
				for i := range o {
					o[i] += a * v[i]
				}
			}
		}
	}
	if H == 1 || T*(pos0+T)*C < parallelAttentionWork {
		for h := 0; h < H; h++ {
			head(h)
		}
		return
	}
	var wg sync.WaitGroup
	for h := 1; h < H; h++ {
		wg.Go(func() { head(h) })
	}
	head(0)
	wg.Wait()
}

// dot returns the dot product of a and b (len(b) >= len(a)), summed in four interleaved
// partial sums so that the multiply-adds do not wait on each other.
func dot(a, b []float32) float32 {
	b = b[:len(a)]
	var s0, s1, s2, s3 float32
	i := 0
	for ; i+4 <= len(a); i += 4 {
		s0 += a[i] * b[i]
		s1 += a[i+1] * b[i+1]
		s2 += a[i+2] * b[i+2]
		s3 += a[i+3] * b[i+3]
	}
	for ; i < len(a); i++ {
		s0 += a[i] * b[i]
	}
	return (s0 + s1) + (s2 + s3)
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
