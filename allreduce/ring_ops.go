package allreduce

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"
)

// The operation queue: every operation gets the next sequence number and a
// goroutine that waits for the operation started before it, so operations run
// one at a time in the order they were started, and are numbered alike on
// every member.

// Handle is an operation started with Start.
type Handle struct {
	seq  uint64
	done chan struct{}
	err  error
	// began is when the operation stopped waiting for the ones before it (zero if
	// it never did), ended when it finished; both are read after done is closed.
	began, ended time.Time
}

// Wait blocks until the operation has finished and returns its error. The
// context given to Start bounds it. It may be called from any goroutine, any
// number of times.
func (h *Handle) Wait() error {
	<-h.done
	return h.err
}

// Done is closed when the operation has finished.
func (h *Handle) Done() <-chan struct{} { return h.done }

// Seq is the operation's sequence number in its generation.
func (h *Handle) Seq() uint64 { return h.seq }

// Busy returns how long the operation ran: from when the operations started
// before it had finished (operations run one at a time) to when it finished,
// so the Busy times of a ring's operations never overlap and add up to the time
// the ring was busy. It is zero for an operation that failed before it began.
// Call it once Done is closed.
func (h *Handle) Busy() time.Duration {
	if h.began.IsZero() {
		return 0
	}
	return h.ended.Sub(h.began)
}

// finish records the operation's outcome and wakes its waiters. It is called
// once, by the goroutine that ran the operation (or by start, when it never
// ran).
func (h *Handle) finish(err error) {
	h.err = err
	h.ended = time.Now()
	close(h.done)
}

// op is one operation: its kind, its sequence number in the generation, its
// buffer, and for a broadcast the root's rank. An integer all-reduce (i64)
// carries its []int64 buffer as buf viewed as twice as many float32 slots.
type op struct {
	kind Kind
	seq  uint64
	buf  []float32
	root int
	i64  bool
}

// elems is the number of elements of o's buffer (int64s for an integer
// all-reduce).
func (o op) elems() int {
	if o.i64 {
		return len(o.buf) / 2
	}
	return len(o.buf)
}

// AllReduce replaces buf, on every member, with the element-wise sum of all
// members' bufs. Every member ends with the same bits. It blocks until done,
// ctx ends, or the ring fails; on error buf's contents are unspecified.
func (r *Ring) AllReduce(ctx context.Context, buf []float32) error {
	return r.Start(ctx, buf).Wait()
}

// Start begins an all-reduce of buf, as AllReduce, and returns at once. The
// operation runs after the operations started before it; buf must not be
// touched until its Handle's Wait returns. ctx bounds the operation, including
// its wait for earlier ones.
func (r *Ring) Start(ctx context.Context, buf []float32) *Handle {
	return r.start(ctx, op{kind: KindAllReduce, buf: buf})
}

// AllReduceInt64 replaces buf, on every member, with the element-wise sum of
// all members' bufs, as integers. It blocks like AllReduce.
func (r *Ring) AllReduceInt64(ctx context.Context, buf []int64) error {
	return r.StartInt64(ctx, buf).Wait()
}

// StartInt64 begins an integer all-reduce of buf and returns at once, as
// Start. Integer addition is associative, so the sum's bits depend on nothing
// but the members' values: not on the world size, the order of the ring or
// the segment size. Payloads are 8 bytes an element and never compressed.
// The members must keep every partial sum inside the int64 range (a bound on
// each value, such as |v| <= MaxInt64/n for n contributions in all, does it);
// a sum that overflows fails the operation with ErrOverflow, never wraps
// silently.
func (r *Ring) StartInt64(ctx context.Context, buf []int64) *Handle {
	return r.start(ctx, op{kind: KindAllReduce, buf: i64AsF32(buf), i64: true})
}

// Broadcast copies root's buf into every other member's buf. All members pass
// buffers of the same length. Payloads are never compressed. It blocks like
// AllReduce.
func (r *Ring) Broadcast(ctx context.Context, root int, buf []float32) error {
	return r.start(ctx, op{kind: KindBroadcast, buf: buf, root: root}).Wait()
}

// Barrier returns once every member has called Barrier (as their operation
// with the same sequence number). It blocks like AllReduce.
func (r *Ring) Barrier(ctx context.Context) error {
	return r.start(ctx, op{kind: KindBarrier}).Wait()
}

// start queues o behind the last operation started and returns its Handle at
// once; a goroutine runs it and fails the ring if it fails. An unusable ring
// finishes the Handle at once with the reason.
func (r *Ring) start(ctx context.Context, o op) *Handle {
	h := &Handle{done: make(chan struct{})}
	r.mu.Lock()
	if err := r.unusable(); err != nil {
		r.mu.Unlock()
		h.finish(err)
		return h
	}
	o.seq = r.nextSeq
	h.seq = o.seq
	r.nextSeq++
	prev := r.last
	r.last = h
	r.running++
	r.wg.Add(1)
	r.mu.Unlock()
	go func() {
		defer r.wg.Done()
		err := r.run(ctx, prev, o, h)
		switch {
		case err != nil && ctx.Err() != nil:
			r.failLogged(err, slog.LevelInfo)
		case err != nil:
			r.fail(err)
		}
		r.mu.Lock()
		r.running--
		r.mu.Unlock()
		h.finish(err)
	}()
	return h
}

// run runs o once prev (the operation started before it) has finished, and
// records in h when it began.
func (r *Ring) run(ctx context.Context, prev *Handle, o op, h *Handle) error {
	if prev != nil {
		select {
		case <-prev.done:
		case <-ctx.Done():
			return r.opErr(o, fmt.Errorf("waiting for operation %d: %w", prev.seq, context.Cause(ctx)))
		case <-r.ctx.Done():
		}
	}
	h.began = time.Now()
	r.mu.Lock()
	err := r.unusable()
	r.mu.Unlock()
	if err != nil {
		return err
	}
	if o.kind == KindBroadcast && (o.root < 0 || o.root >= r.world) {
		return r.opErr(o, fmt.Errorf("%w: broadcast root %d is outside [0, %d)", ErrBadConfig, o.root, r.world))
	}
	if r.world == 1 {
		return nil
	}
	opCtx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	stop := context.AfterFunc(r.ctx, func() { cancel(context.Cause(r.ctx)) })
	defer stop()
	began := monotonic()
	r.log.Debug("operation start", "seq", o.seq, "kind", o.kind, "elements", o.elems())
	if o.kind == KindBroadcast {
		err = r.pipeline(opCtx, cancel, r.broadcastExchange(o))
	} else {
		err = r.pipeline(opCtx, cancel, r.allReduceExchange(o))
	}
	if err != nil {
		if errors.Is(err, ErrClosed) && r.ctx.Err() != nil {
			// The transport was closed under the operation because the ring
			// failed or was closed: report why.
			err = context.Cause(r.ctx)
		}
		return r.opErr(o, err)
	}
	r.log.Debug("operation done", "seq", o.seq, "kind", o.kind, "elements", o.elems(), "took", monotonic()-began)
	return nil
}

// opErr names the operation in an error of it.
func (r *Ring) opErr(o op, err error) error {
	return fmt.Errorf("allreduce: generation %d operation %d (%s of %d elements): %w", r.gen, o.seq, o.kind, o.elems(), err)
}
