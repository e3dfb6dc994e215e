package worker

import (
	"context"
	"errors"
	"sync"
	"time"

	pb "github.com/ringtrain/ringtrain/proto/ringtrain/v1"
)

// planWatch is the worker's view of the coordinator's plans: Run's watcher
// goroutine sets each plan it receives, and the training loop waits on it for the
// next generation (next, waitNewer) and trains each generation under a context
// (scope) that the arrival of a newer plan cancels. Its methods are safe for
// concurrent use.
type planWatch struct {
	mu      sync.Mutex
	plan    *pb.Plan
	changed chan struct{} // closed and replaced when a plan arrives
	scopes  map[*genScope]struct{}
}

// genScope is the context of one generation being trained.
type genScope struct {
	gen    uint64
	cancel context.CancelCauseFunc
}

// errSuperseded is the cause of a generation's context when a newer plan arrives.
var errSuperseded = errors.New("worker: superseded by a newer plan")

func newPlanWatch() *planWatch {
	return &planWatch{changed: make(chan struct{}), scopes: map[*genScope]struct{}{}}
}

// set records p as the newest plan, wakes the waiters and cancels the scopes of
// older generations. The watcher delivers plans in generation order.
func (pw *planWatch) set(p *pb.Plan) {
	pw.mu.Lock()
	defer pw.mu.Unlock()
	pw.plan = p
	close(pw.changed)
	pw.changed = make(chan struct{})
	for s := range pw.scopes {
		if s.gen < p.GetGeneration() {
			s.cancel(errSuperseded)
			delete(pw.scopes, s)
		}
	}
}

// get returns the newest plan (nil before the first) and a channel closed when the
// next one arrives.
func (pw *planWatch) get() (*pb.Plan, <-chan struct{}) {
	pw.mu.Lock()
	defer pw.mu.Unlock()
	return pw.plan, pw.changed
}

// newer reports whether a plan newer than generation gen has arrived.
func (pw *planWatch) newer(gen uint64) bool {
	p, _ := pw.get()
	return p.GetGeneration() > gen
}

// next blocks until a plan newer than generation after is known, and returns it.
func (pw *planWatch) next(ctx context.Context, after uint64) (*pb.Plan, error) {
	for {
		p, ch := pw.get()
		if p != nil && p.GetGeneration() > after {
			return p, nil
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-ch:
		}
	}
}

// waitNewer waits up to d for a plan newer than gen and reports whether one came.
func (pw *planWatch) waitNewer(ctx context.Context, gen uint64, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	for {
		p, ch := pw.get()
		if p.GetGeneration() > gen {
			return true
		}
		select {
		case <-ctx.Done():
			return false
		case <-t.C:
			return false
		case <-ch:
		}
	}
}

// scope returns a context for training generation gen: it ends with ctx, or as soon
// as a newer plan arrives (cause errSuperseded).
func (pw *planWatch) scope(ctx context.Context, gen uint64) (context.Context, func()) {
	gctx, cancel := context.WithCancelCause(ctx)
	s := &genScope{gen: gen, cancel: cancel}
	pw.mu.Lock()
	if pw.plan.GetGeneration() > gen {
		cancel(errSuperseded)
	} else {
		pw.scopes[s] = struct{}{}
	}
	pw.mu.Unlock()
	return gctx, func() {
		pw.mu.Lock()
		delete(pw.scopes, s)
		pw.mu.Unlock()
		cancel(nil)
	}
}
