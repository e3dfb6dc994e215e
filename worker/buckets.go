package worker

import (
	"context"
	"time"

	"github.com/ringtrain/ringtrain/allreduce"
	"github.com/ringtrain/ringtrain/model"
)

// DefaultBucketBytes is the default Config.BucketBytes: as PyTorch DDP's first
// bucket, small enough that the reduction of the last layers starts well before
// backward reaches the first ones.
const DefaultBucketBytes = 1 << 20

// span is a range [lo, hi) of the gradient slab.
type span struct{ lo, hi int }

// cutBuckets cuts the gradient slab into the buckets a step reduces (the bucket
// layout), in the order model.GPT.Backward finishes them: the final LayerNorm, the
// blocks from the last to the first, then the embeddings. Each of these units lies
// just below the one before it in the slab, and consecutive units are merged until
// a bucket holds at least maxElems values. The layout depends only on the model's
// shape and maxElems, so every rank starts the same operations in the same order.
// Should the units not tile the slab, the whole slab is one bucket.
func cutBuckets(g *model.Params, maxElems int) []span {
	n := len(g.Slab)
	units := []span{{n - len(g.LnfW) - len(g.LnfB), n}}
	for l := len(g.Blocks) - 1; l >= 0; l-- {
		lo, hi := g.Blocks[l].Range()
		units = append(units, span{lo, hi})
	}
	units = append(units, span{0, len(g.Wte) + len(g.Wpe)})
	var out []span
	cur := span{n, n}
	for _, u := range units {
		if u.hi != cur.lo {
			return []span{{0, n}}
		}
		cur.lo = u.lo
		if cur.hi-cur.lo >= maxElems {
			out = append(out, cur)
			cur = span{cur.lo, cur.lo}
		}
	}
	if cur.lo != 0 {
		return []span{{0, n}}
	}
	if cur.hi > cur.lo {
		out = append(out, cur)
	}
	return out
}

// bucketRun reduces one step's gradient buckets as backward finishes them. ready
// is the callback for model.GPT.Backward (through trainer.Trainer.Gradients, which
// passes it to the last micro-batch only: its ranges are final once the last
// micro-batch has added into them). A bucket is started when all of it has been
// reported and every bucket before it in the layout has been started, so the
// operations on the ring are the same, in the same order, on every rank, whatever
// the timing. It is used from the training loop's goroutine only.
type bucketRun struct {
	ctx     context.Context
	ring    *allreduce.Ring
	grads   []float32
	ints    []int64 // exact mode: the fixed-point gradients reduced instead of grads
	spans   []span  // the bucket layout (cutBuckets)
	final   []int   // values of each bucket reported final
	next    int     // first bucket not started
	handles []*allreduce.Handle
}

func newBucketRun(ring *allreduce.Ring, grads []float32, spans []span) *bucketRun {
	return &bucketRun{ring: ring, grads: grads, spans: spans, final: make([]int, len(spans))}
}

// newExactBucketRun is newBucketRun for exact mode: the buckets are spans of the
// fixed-point gradients ints (trainer.Trainer.GradientsExact), reduced as integers.
func newExactBucketRun(ring *allreduce.Ring, ints []int64, spans []span) *bucketRun {
	return &bucketRun{ring: ring, ints: ints, spans: spans, final: make([]int, len(spans))}
}

// begin prepares a step whose operations ctx bounds.
func (b *bucketRun) begin(ctx context.Context) {
	b.ctx, b.next, b.handles = ctx, 0, b.handles[:0]
	clear(b.final)
}

// ready records that [lo, hi) is final and starts the buckets that have become
// complete.
func (b *bucketRun) ready(lo, hi int) {
	for i := b.next; i < len(b.spans); i++ {
		if o := min(hi, b.spans[i].hi) - max(lo, b.spans[i].lo); o > 0 {
			b.final[i] += o
		}
	}
	for b.next < len(b.spans) && b.final[b.next] >= b.spans[b.next].hi-b.spans[b.next].lo {
		b.start()
	}
}

func (b *bucketRun) start() {
	s := b.spans[b.next]
	if b.ints != nil {
		b.handles = append(b.handles, b.ring.StartInt64(b.ctx, b.ints[s.lo:s.hi]))
	} else {
		b.handles = append(b.handles, b.ring.Start(b.ctx, b.grads[s.lo:s.hi]))
	}
	b.next++
}

// flush starts every bucket not started yet: after backward, all are final (and a
// rank without streams reports none).
func (b *bucketRun) flush() {
	for b.next < len(b.spans) {
		b.start()
	}
}

// wait waits for every started bucket and returns the time the ring spent on them
// and the first error (a failure fails every later operation of the ring too).
func (b *bucketRun) wait() (busy time.Duration, err error) {
	for _, h := range b.handles {
		if e := h.Wait(); e != nil && err == nil {
			err = e
		}
		busy += h.Busy()
	}
	return busy, err
}
