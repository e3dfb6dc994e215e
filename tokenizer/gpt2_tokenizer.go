package tokenizer

import (
	"fmt"
	"sync"

	tiktoken_loader "github.com/pkoukk/tiktoken-go-loader"
)

// GPT-2's encoding (tiktoken's "gpt2", whose ranks are those of "r50k_base").
const (
	GPT2VocabSize = 50257
	GPT2EOT       = 50256
)

// gpt2RanksFile is the name under which tiktoken-go-loader embeds GPT-2's ranks.
const gpt2RanksFile = "r50k_base.tiktoken"

// GPT2 is GPT-2's own tokenizer: ids are identical to those of tiktoken's "gpt2"
// encoding (r50k_base) for every valid UTF-8 text, "<|endoftext|>" being ordinary text
// to Encode. The ranks are the ones tiktoken-go-loader embeds in the binary; nothing is
// fetched over the network.
//
// Encoding follows tiktoken exactly: cut text with GPT2SplitPattern; a chunk that is a
// token is that token; otherwise start from its bytes and repeatedly merge the
// adjacent pair whose concatenation has the lowest rank (the leftmost on a tie) until
// no adjacent pair is a token. Unlike a scan per merge, the heap used here stays
// O(n log n) on very long chunks.
//
// Text that is not valid UTF-8 still round-trips: each byte outside a valid UTF-8
// sequence is a chunk of its own, encoded as GPT-2's single-byte token.
//
// There is no mask token (Mask returns -1). A *GPT2 is immutable apart from an
// internal, bounded cache of encoded chunks, and is safe for concurrent use.
type GPT2 struct {
	ranks map[string]int // token bytes -> id (its rank)
	vocab []string       // bytes of every id below GPT2EOT
	cache chunkCache
}

var _ Tokenizer = (*GPT2)(nil)

var (
	gpt2Once sync.Once
	gpt2Tok  *GPT2
	gpt2Err  error
)

// NewGPT2 returns the GPT-2 tokenizer. The first call parses the embedded ranks (some
// tens of milliseconds); later calls return the same instance. It is safe to call
// concurrently.
func NewGPT2() (*GPT2, error) {
	gpt2Once.Do(func() { gpt2Tok, gpt2Err = loadGPT2() })
	return gpt2Tok, gpt2Err
}

func loadGPT2() (*GPT2, error) {
	ranks, err := tiktoken_loader.NewOfflineLoader().LoadTiktokenBpe(gpt2RanksFile)
	if err != nil {
		return nil, fmt.Errorf("gpt2 tokenizer: load %s: %w", gpt2RanksFile, err)
	}
	if len(ranks) != GPT2EOT {
		return nil, fmt.Errorf("gpt2 tokenizer: %s has %d ranks, want %d", gpt2RanksFile, len(ranks), GPT2EOT)
	}
	t := &GPT2{ranks: ranks, vocab: make([]string, GPT2EOT)}
	for tok, id := range ranks {
		if id < 0 || id >= GPT2EOT || t.vocab[id] != "" || tok == "" {
			return nil, fmt.Errorf("gpt2 tokenizer: %s rank %d is out of range or repeated", gpt2RanksFile, id)
		}
		t.vocab[id] = tok
	}
	for b := range 256 {
		if _, ok := ranks[string([]byte{byte(b)})]; !ok {
			return nil, fmt.Errorf("gpt2 tokenizer: %s lacks byte 0x%02x", gpt2RanksFile, b)
		}
	}
	return t, nil
}

// Name returns "gpt2".
func (t *GPT2) Name() string { return "gpt2" }

// VocabSize returns GPT2VocabSize (50257).
func (t *GPT2) VocabSize() int { return GPT2VocabSize }

// EOT returns GPT2EOT (50256).
func (t *GPT2) EOT() int { return GPT2EOT }

// Mask returns -1: GPT-2 has no mask token.
func (t *GPT2) Mask() int { return -1 }

// Encode returns GPT-2's ids for text, treating special-token strings as ordinary
// text. The slice belongs to the caller.
func (t *GPT2) Encode(text string) []int {
	ids := make([]int, 0, len(text)/3+1)
	splitChunks(text, func(chunk string) {
		if id, ok := t.ranks[chunk]; ok {
			ids = append(ids, id)
			return
		}
		ids = t.cache.appendIDs(ids, chunk, t.mergeChunk)
	})
	return ids
}

// mergeChunk appends the ids of a chunk of at least two bytes. Symbols are byte spans
// [i, next[i]) of the chunk kept in a linked list; the heap holds candidate merges keyed
// by (rank of the concatenated spans, position), so the lowest rank, leftmost first, is
// merged at every step, as in tiktoken. Entries made stale by earlier merges no longer
// match the rank of the current spans and are dropped when popped.
func (t *GPT2) mergeChunk(ids []int, chunk string) []int {
	n := len(chunk)
	next := make([]int32, n) // end of the span starting at i (= start of the next); -1 once merged away
	prev := make([]int32, n) // start of the previous span, -1 at the start
	heap := make(mergeHeap, 0, n)
	for i := range n {
		next[i] = int32(i + 1)
		prev[i] = int32(i - 1)
	}
	for i := 0; i+1 < n; i++ {
		if r, ok := t.ranks[chunk[i:i+2]]; ok {
			heap = append(heap, mergeItem(int32(r), int32(i)))
		}
	}
	heap.init()
	for len(heap) > 0 {
		item := heap.pop()
		r, i := int(item>>32), int32(uint32(item))
		j := next[i]
		if j < 0 || int(j) >= n {
			continue // i was merged away, or is the last span
		}
		k := next[j]
		if got, ok := t.ranks[chunk[i:k]]; !ok || got != r {
			continue // a span changed since the entry was pushed
		}
		next[i] = k
		next[j] = -1
		if int(k) < n {
			prev[k] = i
		}
		if p := prev[i]; p >= 0 {
			if rr, ok := t.ranks[chunk[p:k]]; ok {
				heap.push(mergeItem(int32(rr), p))
			}
		}
		if int(k) < n {
			if rr, ok := t.ranks[chunk[i:next[k]]]; ok {
				heap.push(mergeItem(int32(rr), i))
			}
		}
	}
	for i := int32(0); int(i) < n; i = next[i] {
		ids = append(ids, t.ranks[chunk[i:next[i]]])
	}
	return ids
}

// Decode concatenates the bytes of ids; EOT decodes to "<|endoftext|>" and ids outside
// [0, GPT2VocabSize) are skipped.
func (t *GPT2) Decode(ids []int) string {
	buf := make([]byte, 0, 4*len(ids))
	for _, id := range ids {
		switch {
		case id >= 0 && id < GPT2EOT:
			buf = append(buf, t.vocab[id]...)
		case id == GPT2EOT:
			buf = append(buf, EndOfText...)
		}
	}
	return string(buf)
}
