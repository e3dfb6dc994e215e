package tokenizer

import (
	"container/heap"
	"fmt"
	"slices"
)

// TrainBPE learns a bpe tokenizer of vocabSize ids (256 bytes, vocabSize-258 merges,
// EOT, mask) from corpus.
//
// Training follows the usual byte-level recipe: cut the corpus into chunks with
// GPT2SplitPattern, then repeatedly merge the most frequent adjacent pair of ids
// (counted over all chunks, overlapping occurrences included) into a new id. Ties go to
// the lexicographically smallest (first id, second id) pair, so the result is a pure
// function of (corpus, vocabSize): training twice gives identical merges.
//
// The cost is one regex pass over the corpus plus, per merge, work proportional to the
// distinct chunks that contain the merged pair (see trainMerges). A vocabSize outside
// [MinBPEVocab, MaxBPEVocab] is an error wrapping ErrBadSpec; a corpus that runs out
// of adjacent pairs before the requested number of merges is an error wrapping
// ErrBadCorpus that names the largest vocabulary the corpus allows ("bpe:N").
func TrainBPE(corpus string, vocabSize int) (*BPE, error) {
	if vocabSize < MinBPEVocab || vocabSize > MaxBPEVocab {
		return nil, fmt.Errorf("%w: bpe vocabulary size %d outside [%d, %d]",
			ErrBadSpec, vocabSize, MinBPEVocab, MaxBPEVocab)
	}
	merges, err := trainMerges(corpus, vocabSize-258)
	if err != nil {
		return nil, err
	}
	t, err := newBPE(merges)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadCorpus, err)
	}
	return t, nil
}

// trainChunk is one distinct chunk of the corpus during training.
type trainChunk struct {
	ids    []int32 // current symbols
	weight int64   // occurrences of the chunk in the corpus
	seen   int     // last merge that visited the chunk, plus one
}

// trainMerges computes numMerges merges incrementally. The state is:
//
//   - the distinct chunks with their multiplicities (a corpus of a million bytes has
//     only some tens of thousands of distinct chunks);
//   - count: the weighted count of every adjacent pair present;
//   - where: for every pair, the chunks that may contain it. Lists are only appended
//     to, so they may name chunks that no longer hold the pair; those are skipped;
//   - a max-heap of (count, pair) entries. A pair's count changes only through a
//     merge, which pushes a fresh entry; entries whose count no longer matches are
//     stale and are dropped when popped.
//
// A merge of (a, b) into x visits only the chunks in where[(a, b)] and, in each, only
// updates the counts of pairs next to an occurrence: the pairs touching a merged a or b
// lose their weight and the pairs touching a new x gain it. Every new pair contains x.
func trainMerges(corpus string, numMerges int) ([][2]int32, error) {
	multiplicity := make(map[string]int64)
	splitChunks(corpus, func(c string) {
		if len(c) > 1 { // a one-byte chunk holds no pair
			multiplicity[c]++
		}
	})
	keys := make([]string, 0, len(multiplicity))
	for k := range multiplicity {
		keys = append(keys, k)
	}
	slices.Sort(keys) // a fixed chunk order makes the whole computation reproducible

	chunks := make([]trainChunk, len(keys))
	count := make(map[uint64]int64)
	where := make(map[uint64][]int32)
	for ci, k := range keys {
		ids := make([]int32, len(k))
		for i := 0; i < len(k); i++ {
			ids[i] = int32(k[i])
		}
		w := multiplicity[k]
		chunks[ci] = trainChunk{ids: ids, weight: w}
		for i := 0; i+1 < len(ids); i++ {
			p := pairKey(ids[i], ids[i+1])
			count[p] += w
			addWhere(where, p, int32(ci))
		}
	}
	h := make(pairHeap, 0, len(count))
	for p, c := range count {
		h = append(h, pairEntry{count: c, pair: p})
	}
	heap.Init(&h)

	merges := make([][2]int32, 0, numMerges)
	before := make(map[uint64]int64) // count of each pair touched by this merge, before it
	touch := func(p uint64) {
		if _, ok := before[p]; !ok {
			before[p] = count[p]
		}
	}
	var occ []int // positions of merged pairs in one chunk (reused)
	for m := range numMerges {
		best, ok := popBest(&h, count)
		if !ok {
			return nil, fmt.Errorf("%w: %s", ErrBadCorpus, tooFewMerges(m, numMerges))
		}
		a, b := int32(best>>32), int32(uint32(best))
		x := int32(256 + m)
		merges = append(merges, [2]int32{a, b})
		clear(before)
		for _, ci := range where[best] {
			ch := &chunks[ci]
			if ch.seen == m+1 {
				continue
			}
			ch.seen = m + 1
			ids := ch.ids
			// Occurrences, left to right, without overlap.
			occ = occ[:0]
			for i := 0; i+1 < len(ids); i++ {
				if ids[i] == a && ids[i+1] == b {
					occ = append(occ, i)
					i++
				}
			}
			if len(occ) == 0 {
				continue
			}
			// Remove the pairs that touch an occurrence: positions i-1, i, i+1.
			last := -1
			for _, i := range occ {
				for k := max(i-1, last+1); k <= i+1 && k+1 < len(ids); k++ {
					p := pairKey(ids[k], ids[k+1])
					touch(p)
					count[p] -= ch.weight
					last = k
				}
			}
			// Merge in place.
			w, o := 0, 0
			for r := 0; r < len(ids); {
				if o < len(occ) && occ[o] == r {
					ids[w] = x
					w++
					r += 2
					o++
					continue
				}
				ids[w] = ids[r]
				w++
				r++
			}
			ids = ids[:w]
			ch.ids = ids
			// Add the pairs that touch a new x.
			last = -1
			for j := range ids {
				if ids[j] != x {
					continue
				}
				for k := max(j-1, last+1); k <= j && k+1 < len(ids); k++ {
					p := pairKey(ids[k], ids[k+1])
					touch(p)
					count[p] += ch.weight
					addWhere(where, p, ci)
					last = k
				}
			}
		}
		delete(where, best)
		for p, c0 := range before {
			c := count[p]
			if c == 0 {
				delete(count, p)
				delete(where, p)
				continue
			}
			if c != c0 {
				heap.Push(&h, pairEntry{count: c, pair: p})
			}
		}
	}
	return merges, nil
}

// tooFewMerges says that a corpus yielded only have of the want merges asked for,
// and names the largest bpe vocabulary that corpus can build (258 + have ids), or the
// tokenizers to use instead when it can build none.
func tooFewMerges(have, want int) string {
	msg := fmt.Sprintf("corpus yields only %d bpe merges, %d requested", have, want)
	if largest := 258 + have; largest >= MinBPEVocab {
		return fmt.Sprintf("%s: the largest bpe vocabulary it can build is bpe:%d", msg, largest)
	}
	return msg + ": it is too small for bpe; use char or byte"
}

// addWhere records that chunk ci holds pair p, once per run of calls for the same
// chunk (chunks are processed one at a time, so checking the last entry suffices).
func addWhere(where map[uint64][]int32, p uint64, ci int32) {
	l := where[p]
	if len(l) > 0 && l[len(l)-1] == ci {
		return
	}
	where[p] = append(l, ci)
}

// popBest pops heap entries until one matches the current count of its pair and
// returns that pair; false means no pair is left.
func popBest(h *pairHeap, count map[uint64]int64) (uint64, bool) {
	for h.Len() > 0 {
		e := heap.Pop(h).(pairEntry)
		if c, ok := count[e.pair]; ok && c == e.count {
			return e.pair, true
		}
	}
	return 0, false
}

// pairEntry is a candidate merge: a pair and its count when the entry was pushed.
type pairEntry struct {
	count int64
	pair  uint64
}

// pairHeap orders entries by count, highest first, then by pair, smallest first.
type pairHeap []pairEntry

func (h pairHeap) Len() int { return len(h) }
func (h pairHeap) Less(i, j int) bool {
	if h[i].count != h[j].count {
		return h[i].count > h[j].count
	}
	return h[i].pair < h[j].pair
}
func (h pairHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *pairHeap) Push(x any)   { *h = append(*h, x.(pairEntry)) }
func (h *pairHeap) Pop() any {
	old := *h
	e := old[len(old)-1]
	*h = old[:len(old)-1]
	return e
}
