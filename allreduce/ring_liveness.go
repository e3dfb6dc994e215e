package allreduce

import (
	"context"
	"errors"
	"fmt"
	"math"
	"time"
)

// Liveness: three goroutines per Ring, started by NewRing and ended by Close or
// the ring's failure. heartbeat and heartbeatBack tell both neighbours that
// this rank is alive while no data flows their way, so a rank waiting in an
// operation for a slower neighbour does not time out; watchRight hears the
// right neighbour's heartbeats, so a right neighbour that dies, stops or is
// cut off fails the ring within the progress timeout whatever the ring is
// doing. A silent left neighbour is caught by the receive (recvFrame).

// heartbeat sends a heartbeat to the right neighbour whenever nothing has been
// sent for a quarter of the progress timeout, until the ring ends.
func (r *Ring) heartbeat() {
	defer r.wg.Done()
	every := max(r.timeout/4, time.Millisecond)
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		select {
		case <-r.ctx.Done():
			return
		case <-tick.C:
		}
		if monotonic()-time.Duration(r.lastSend.Load()) < every {
			continue
		}
		select {
		case r.sendLock <- struct{}{}:
		case <-r.ctx.Done():
			return
		}
		err := r.t.Send(r.ctx, Header{Kind: KindHeartbeat, Generation: r.gen, Seq: r.sent}, nil)
		r.lastSend.Store(int64(monotonic()))
		<-r.sendLock
		if err != nil {
			if !background(r.ctx, err) {
				r.fail(fmt.Errorf("allreduce: generation %d: heartbeat to right neighbour %s: %w", r.gen, r.peer(1), err))
			}
			return
		}
	}
}

// heartbeatBack sends a heartbeat to the left neighbour every quarter of the
// progress timeout, so that it knows this rank is alive even while no data
// flows its way.
func (r *Ring) heartbeatBack() {
	defer r.wg.Done()
	every := max(r.timeout/4, time.Millisecond)
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		if err := r.t.SendBack(r.ctx, Header{Kind: KindHeartbeat, Generation: r.gen}); err != nil {
			if !background(r.ctx, err) {
				r.fail(fmt.Errorf("allreduce: generation %d: heartbeat to left neighbour %s: %w", r.gen, r.peer(-1), err))
			}
			return
		}
		select {
		case <-r.ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// watchRight reads the right neighbour's heartbeats for the life of the ring.
// A right neighbour that goes away, or falls silent for the progress timeout
// once it has been heard from, fails the ring at once, whatever the ring is
// doing: so a rank blocked sending to a stopped neighbour, or one that is not
// reading from its left, still learns of failures promptly.
func (r *Ring) watchRight() {
	defer r.wg.Done()
	// The timer, not a deadline on RecvBack, fails the ring, so the timeout
	// is recorded before the transport closes under the other goroutines.
	silent := time.AfterFunc(time.Duration(math.MaxInt64), func() {
		r.fail(fmt.Errorf("allreduce: generation %d: %w", r.gen, r.timeoutRightErr))
	})
	defer silent.Stop()
	for {
		h, err := r.t.RecvBack(r.ctx)
		switch {
		case err != nil && background(r.ctx, err):
			return
		case err != nil:
			err = fmt.Errorf("heartbeat from right neighbour %s: %w", r.peer(1), err)
		case h.Generation != r.gen:
			err = fmt.Errorf("%w: heartbeat of generation %d from right neighbour %s", ErrStaleGeneration, h.Generation, r.peer(1))
		case h.Kind != KindHeartbeat:
			err = fmt.Errorf("%w: control frame of kind %s from right neighbour %s", ErrProtocol, h.Kind, r.peer(1))
		}
		if err != nil {
			r.fail(fmt.Errorf("allreduce: generation %d: %w", r.gen, err))
			return
		}
		if !silent.Reset(r.timeout) && r.ctx.Err() != nil {
			return
		}
	}
}

// background reports whether an error of a heartbeat goroutine is only the
// echo of something already being handled: the ring ending, or the transport
// closed under it (which happens only when an operation fails, and the
// operation reports that failure).
func background(ringCtx context.Context, err error) bool {
	return ringCtx.Err() != nil || errors.Is(err, ErrClosed)
}
