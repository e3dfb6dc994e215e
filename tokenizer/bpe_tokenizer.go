package tokenizer

import "fmt"

// Limits of the bpe tokenizer's vocabulary size (spec "bpe:N"). The smallest has one
// merge; the largest keeps ids comfortably inside int32 and the tables in memory.
const (
	MinBPEVocab = 256 + 1 + 2
	MaxBPEVocab = 1 << 20
)

// maxBPEVocabBytes bounds the total length of all token strings of a bpe vocabulary.
// Merges can double a token's length, so a crafted merge list could otherwise ask for
// exponential memory; real vocabularies are far below this.
const maxBPEVocabBytes = 256 << 20

// BPE is a byte-level byte-pair-encoding tokenizer in the style of GPT-2: text is cut
// into chunks by GPT2SplitPattern, each chunk starts as its bytes (ids 0..255) and
// merges are applied lowest id first; merge i turns the adjacent pair Merges()[i] into
// id 256+i. After the merges come "<|endoftext|>" (VocabSize-2) and "<|mask|>"
// (VocabSize-1). Every byte string round-trips, invalid UTF-8 included.
//
// A *BPE is immutable apart from an internal, bounded cache of encoded chunks, and is
// safe for concurrent use.
type BPE struct {
	merges [][2]int32       // merge i makes id 256+i from merges[i]
	ranks  map[uint64]int32 // pairKey(a, b) -> id made by merging a, b
	vocab  []string         // bytes of every non-special id

	cache chunkCache
}

var _ Tokenizer = (*BPE)(nil)

// pairKey packs an ordered pair of ids; the packed order is the lexicographic order
// of (a, b) because ids are non-negative int32.
func pairKey(a, b int32) uint64 { return uint64(uint32(a))<<32 | uint64(uint32(b)) }

// newBPE builds the tokenizer from a merge list, checking that every merge refers only
// to ids that exist before it, that no pair is merged twice, and that the vocabulary
// fits the limits. The slice is retained.
func newBPE(merges [][2]int32) (*BPE, error) {
	if len(merges) < MinBPEVocab-258 || len(merges) > MaxBPEVocab-258 {
		return nil, fmt.Errorf("bpe: %d merges outside [%d, %d]", len(merges), MinBPEVocab-258, MaxBPEVocab-258)
	}
	n := 256 + len(merges)
	lengths := make([]int64, n)
	for i := range 256 {
		lengths[i] = 1
	}
	total := int64(256)
	ranks := make(map[uint64]int32, len(merges))
	for i, m := range merges {
		id := int32(256 + i)
		a, b := m[0], m[1]
		if a < 0 || a >= id || b < 0 || b >= id {
			return nil, fmt.Errorf("bpe: merge %d (%d, %d) refers to an id not below %d", i, a, b, id)
		}
		k := pairKey(a, b)
		if prev, dup := ranks[k]; dup {
			return nil, fmt.Errorf("bpe: merge %d repeats the pair (%d, %d) of merge %d", i, a, b, prev-256)
		}
		ranks[k] = id
		lengths[id] = lengths[a] + lengths[b]
		total += lengths[id]
		if total > maxBPEVocabBytes {
			return nil, fmt.Errorf("bpe: token strings exceed %d bytes in all (at merge %d)", maxBPEVocabBytes, i)
		}
	}
	vocab := make([]string, n)
	for i := range 256 {
		vocab[i] = string([]byte{byte(i)})
	}
	for i, m := range merges {
		vocab[256+i] = vocab[m[0]] + vocab[m[1]]
	}
	return &BPE{merges: merges, ranks: ranks, vocab: vocab}, nil
}

// Name returns "bpe".
func (t *BPE) Name() string { return "bpe" }

// VocabSize returns 256 + the number of merges + 2.
func (t *BPE) VocabSize() int { return len(t.vocab) + 2 }

// EOT returns VocabSize()-2.
func (t *BPE) EOT() int { return len(t.vocab) }

// Mask returns VocabSize()-1.
func (t *BPE) Mask() int { return len(t.vocab) + 1 }

// Merges returns a copy of the merge list: element i is the pair of ids merged into
// id 256+i.
func (t *BPE) Merges() [][2]int {
	out := make([][2]int, len(t.merges))
	for i, m := range t.merges {
		out[i] = [2]int{int(m[0]), int(m[1])}
	}
	return out
}

// Encode splits text into chunks and encodes each one. The slice belongs to the
// caller.
func (t *BPE) Encode(text string) []int {
	ids := make([]int, 0, len(text)/3+1)
	splitChunks(text, func(chunk string) { ids = t.appendChunk(ids, chunk) })
	return ids
}

// appendChunk appends the ids of one chunk, through the cache.
func (t *BPE) appendChunk(ids []int, chunk string) []int {
	if len(chunk) == 1 {
		return append(ids, int(chunk[0]))
	}
	return t.cache.appendIDs(ids, chunk, t.mergeChunk)
}

// mergeChunk applies the merges to the bytes of chunk and appends the result to ids.
//
// It gives the same result as the textbook loop (find the adjacent pair with the
// lowest merge id, merge all its occurrences left to right, repeat) in O(n log n) for a
// chunk of n bytes: a doubly linked list holds the current symbols and a min-heap holds
// candidate merges keyed by (merge id, position). Merging two symbols only creates
// pairs with higher merge ids than the one applied, so popping in key order applies
// every occurrence of the lowest pair left to right before any higher pair, exactly as
// the textbook loop does. Heap entries made stale by earlier merges are detected and
// dropped when popped.
func (t *BPE) mergeChunk(ids []int, chunk string) []int {
	n := len(chunk)
	sym := make([]int32, n)  // symbol starting at position i; -1 once merged away
	next := make([]int32, n) // position of the next live symbol, n at the end
	prev := make([]int32, n) // position of the previous live symbol, -1 at the start
	heap := make(mergeHeap, 0, n)
	for i := range n {
		sym[i] = int32(chunk[i])
		next[i] = int32(i + 1)
		prev[i] = int32(i - 1)
	}
	for i := 0; i+1 < n; i++ {
		if r, ok := t.ranks[pairKey(sym[i], sym[i+1])]; ok {
			heap = append(heap, mergeItem(r, int32(i)))
		}
	}
	heap.init()
	for len(heap) > 0 {
		item := heap.pop()
		r, i := int32(item>>32), int32(uint32(item))
		if sym[i] < 0 {
			continue // the left symbol was merged into its neighbour
		}
		j := next[i]
		if int(j) >= n {
			continue
		}
		m := t.merges[r-256]
		if sym[i] != m[0] || sym[j] != m[1] {
			continue // one of the symbols changed since the entry was pushed
		}
		sym[i] = r
		sym[j] = -1
		next[i] = next[j]
		if int(next[j]) < n {
			prev[next[j]] = i
		}
		if p := prev[i]; p >= 0 {
			if rr, ok := t.ranks[pairKey(sym[p], r)]; ok {
				heap.push(mergeItem(rr, p))
			}
		}
		if k := next[i]; int(k) < n {
			if rr, ok := t.ranks[pairKey(r, sym[k])]; ok {
				heap.push(mergeItem(rr, i))
			}
		}
	}
	for i := int32(0); int(i) < n; i = next[i] {
		ids = append(ids, int(sym[i]))
	}
	return ids
}

// Decode concatenates the bytes of ids; EOT and mask decode to their strings and ids
// outside [0, VocabSize) are skipped.
func (t *BPE) Decode(ids []int) string {
	buf := make([]byte, 0, 4*len(ids))
	n := len(t.vocab)
	for _, id := range ids {
		switch {
		case id >= 0 && id < n:
			buf = append(buf, t.vocab[id]...)
		case id == n:
			buf = append(buf, EndOfText...)
		case id == n+1:
			buf = append(buf, MaskText...)
		}
	}
	return string(buf)
}
