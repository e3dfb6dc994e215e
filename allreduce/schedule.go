package allreduce

import (
	"fmt"
	"sort"
)

// schedule is the ring all-reduce of n elements over world ranks, seen from
// one rank. It is pure: it says which elements move where at each step and
// touches no data.
//
// The buffer is cut into world*segs blocks of near-equal length (the first
// n%(world*segs) one element longer), segs being the fewest segments per chunk
// that keep every block within the segment size; and at least one, so that
// even an empty buffer exchanges one message per step, which makes a barrier.
// Block b is segment b/world of chunk b%world: the chunks interleave, so that
// the segments a rank works on at any moment (segment k of every step, give or
// take the pipeline lag) lie close together in the buffer and stay in cache
// between being sent, received into and forwarded.
//
// There are 2(world-1) steps. At step s rank r sends chunk (r-s) mod world to
// its right neighbour and receives chunk (r-s-1) mod world from its left one.
// At the first world-1 steps (reduce-scatter) it adds what it receives into its
// buffer; at the last world-1 (all-gather) it overwrites its buffer with it.
// So what a rank sends at step s+1 is what it received at step s, chunk c is
// summed in the fixed order c, c+1, ..., c+world-1 (mod world) starting from
// rank c's own values, and after the reduce-scatter rank (c-1) mod world holds
// the reduced chunk c, which the all-gather copies to every other rank.
type schedule struct {
	world, rank int
	n           int // elements in the buffer
	segs        int // segments per chunk
	lag         int // segments by which a step trails the step before it
}

// pipelineLag is how many segments a step runs behind the step before it.
// It must cover a hop's latency (a segment's transfer and reduction) so that
// senders rarely wait, and stays small so that what is forwarded is still in
// cache.
const pipelineLag = 4

// newSchedule returns the schedule of rank of world for n elements with
// segments of at most segElems elements. It needs world >= 1, 0 <= rank < world,
// n >= 0 and segElems >= 1.
func newSchedule(world, rank, n, segElems int) schedule {
	segs := max(1, (n+world*segElems-1)/(world*segElems))
	return schedule{world: world, rank: rank, n: n, segs: segs, lag: min(pipelineLag, segs)}
}

// steps is the number of steps, 2(world-1).
func (s schedule) steps() int { return 2 * (s.world - 1) }

// items is the number of messages a rank sends (and receives) in the operation.
func (s schedule) items() int { return s.steps() * s.segs }

// reduces reports whether step is a reduce-scatter step.
func (s schedule) reduces(step int) bool { return step < s.world-1 }

func (s schedule) mod(x int) int { return ((x % s.world) + s.world) % s.world }

// sendChunk is the chunk this rank sends at step.
func (s schedule) sendChunk(step int) int { return s.mod(s.rank - step) }

// recvChunk is the chunk this rank receives at step.
func (s schedule) recvChunk(step int) int { return s.mod(s.rank - step - 1) }

// owner is the rank that holds chunk c fully reduced after the reduce-scatter.
func (s schedule) owner(c int) int { return s.mod(c - 1) }

// segment returns the element range [lo, hi) of segment k of chunk c.
func (s schedule) segment(c, k int) (lo, hi int) {
	b, blocks := k*s.world+c, s.world*s.segs
	return chunkLo(s.n, blocks, b), chunkLo(s.n, blocks, b+1)
}

// chunkOf returns the chunk element i belongs to.
func (s schedule) chunkOf(i int) int {
	blocks := s.world * s.segs
	base, rem := s.n/blocks, s.n%blocks
	var b int
	if long := rem * (base + 1); i < long {
		b = i / (base + 1)
	} else {
		b = rem + (i-long)/base
	}
	return b % s.world
}

// chunkLo is where part c of n elements cut into parts near-equal parts
// begins; the first n%parts parts are one element longer. chunkLo(n, parts,
// parts) == n.
func chunkLo(n, parts, c int) int {
	base, rem := n/parts, n%parts
	return c*base + min(c, rem)
}

// reduceOrder lists the ranks whose values make up chunk c, in the order they
// are added: rank c's value first, then c+1's added to it, and so on.
func (s schedule) reduceOrder(c int) []int {
	order := make([]int, s.world)
	for i := range order {
		order[i] = s.mod(c + i)
	}
	return order
}

// Messages go out, and come in, in one order that every rank shares. Segment
// k of step s is message slot k + s*lag, and messages are ordered by slot,
// then by step. So each step runs lag segments behind the one before it: what
// a rank received at step s is sent on at step s+1 about lag segments later,
// while it is still in cache, instead of after the whole step; and a W-rank
// ring streams. Every message's dependencies (below) have earlier slots, so no
// rank can wait for a message that waits for it.

// slotsBefore counts the messages whose slot is below v.
func (s schedule) slotsBefore(v int) int {
	n := 0
	for st := range s.steps() {
		n += min(max(v-st*s.lag, 0), s.segs)
	}
	return n
}

// index is the position of (step, seg) in the message order.
func (s schedule) index(step, seg int) int {
	v := seg + step*s.lag
	n := s.slotsBefore(v)
	for st := range step {
		if k := v - st*s.lag; k >= 0 && k < s.segs {
			n++
		}
	}
	return n
}

// item is the (step, segment) of message i of the order, 0 <= i < items().
func (s schedule) item(i int) (step, seg int) {
	last := s.segs + (s.steps()-1)*s.lag
	v := sort.Search(last, func(v int) bool { return s.slotsBefore(v+1) > i })
	r := i - s.slotsBefore(v)
	for st := range s.steps() {
		if k := v - st*s.lag; k >= 0 && k < s.segs {
			if r == 0 {
				return st, k
			}
			r--
		}
	}
	panic(fmt.Sprintf("allreduce: message %d is outside a schedule of %d", i, s.items()))
}

// sendAfterRecv is the index of the received message that must have been
// reduced before message i can be sent (what is sent at step s+1 was received
// at step s), or -1 when it can go at once. It grows with i, so a sender that
// has waited for it has waited for every earlier one too.
func (s schedule) sendAfterRecv(i int) int {
	step, seg := s.item(i)
	if step == 0 {
		return -1
	}
	return s.index(step-1, seg)
}

// recvAfterSend is the index of the sent message that must have left before
// received message i may be written into the buffer, or -1. An all-gather
// message at step t overwrites the chunk sent at step t-(world-1); it cannot
// arrive earlier on an honest ring, and waiting keeps a faulty one from
// changing data still being sent. It grows with i.
func (s schedule) recvAfterSend(i int) int {
	step, seg := s.item(i)
	if step < s.world-1 {
		return -1
	}
	return s.index(step-(s.world-1), seg)
}

// broadcastSegs is the number of segments a broadcast of n elements is cut
// into (at least one).
func broadcastSegs(n, segElems int) int { return max(1, (n+segElems-1)/segElems) }
