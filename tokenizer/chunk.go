package tokenizer

import (
	"sync"
	"sync/atomic"
)

// Encoding machinery shared by the bpe and gpt2 tokenizers, which both encode text one
// pre-tokenization chunk at a time.

// Bounds of a chunk cache: only chunks up to cacheMaxChunk bytes are cached, and at
// most cacheMaxEntries of them; once full, the cache stops growing.
const (
	cacheMaxChunk   = 256
	cacheMaxEntries = 1 << 17
)

// chunkCache remembers the ids of chunks already encoded. Natural text repeats a small
// set of words, so most chunks are found here. It is safe for concurrent use; what it
// holds never changes the result, only the time taken.
type chunkCache struct {
	m    sync.Map // chunk string -> []int, never modified once stored
	size atomic.Int64
}

// appendIDs appends the ids of chunk to ids, from the cache or else from encode (which
// must append the chunk's ids to its first argument and return the result).
func (c *chunkCache) appendIDs(ids []int, chunk string, encode func(ids []int, chunk string) []int) []int {
	if len(chunk) > cacheMaxChunk {
		return encode(ids, chunk)
	}
	if v, ok := c.m.Load(chunk); ok {
		return append(ids, v.([]int)...)
	}
	start := len(ids)
	ids = encode(ids, chunk)
	if c.size.Load() < cacheMaxEntries {
		if _, loaded := c.m.LoadOrStore(chunk, append([]int(nil), ids[start:]...)); !loaded {
			c.size.Add(1)
		}
	}
	return ids
}

// mergeItem packs a heap key: merge id in the high half, position in the low half, so
// that integer order is (merge id, position) order.
func mergeItem(rank, pos int32) uint64 { return uint64(uint32(rank))<<32 | uint64(uint32(pos)) }

// mergeHeap is a binary min-heap of packed merge items.
type mergeHeap []uint64

func (h mergeHeap) init() {
	for i := len(h)/2 - 1; i >= 0; i-- {
		h.down(i)
	}
}

func (h *mergeHeap) push(x uint64) {
	*h = append(*h, x)
	s := *h
	for i := len(s) - 1; i > 0; {
		p := (i - 1) / 2
		if s[p] <= s[i] {
			break
		}
		s[p], s[i] = s[i], s[p]
		i = p
	}
}

func (h *mergeHeap) pop() uint64 {
	s := *h
	top := s[0]
	last := len(s) - 1
	s[0] = s[last]
	*h = s[:last]
	h.down(0)
	return top
}

func (h mergeHeap) down(i int) {
	n := len(h)
	for {
		l := 2*i + 1
		if l >= n {
			return
		}
		m := l
		if r := l + 1; r < n && h[r] < h[l] {
			m = r
		}
		if h[i] <= h[m] {
			return
		}
		h[i], h[m] = h[m], h[i]
		i = m
	}
}
