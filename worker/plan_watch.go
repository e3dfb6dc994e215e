package worker

import (
	"context"
	"errors"
	"sync"
	"time"

	pb "github.com/ringtrain/ringtrain/proto/ringtrain/v1"
)

// planBox holds the newest plan the watcher delivered and the contexts of the
// generations being trained, which a newer plan cancels.
type planBox struct {
	mu      sync.Mutex
	plan    *pb.Plan
	changed chan struct{} // closed and replaced when a plan arrives
	scopes  map[*genScope]struct{}
}

type genScope struct {
	gen    uint64
	cancel context.CancelCauseFunc
}

// errSuperseded is the cause of a generation's context when a newer plan arrives.
var errSuperseded = errors.New("worker: superseded by a newer plan")

func newPlanBox() *planBox {
	return &planBox{changed: make(chan struct{}), scopes: map[*genScope]struct{}{}}
}

func (b *planBox) set(p *pb.Plan) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.plan = p
	close(b.changed)
	b.changed = make(chan struct{})
	for s := range b.scopes {
		if s.gen < p.GetGeneration() {
			s.cancel(errSuperseded)
			delete(b.scopes, s)
		}
	}
}

func (b *planBox) get() (*pb.Plan, <-chan struct{}) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.plan, b.changed
}

func (b *planBox) newer(gen uint64) bool {
	p, _ := b.get()
	return p.GetGeneration() > gen
}

// next blocks until a plan newer than generation after is known, and returns it.
func (b *planBox) next(ctx context.Context, after uint64) (*pb.Plan, error) {
	for {
		p, ch := b.get()
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
func (b *planBox) waitNewer(ctx context.Context, gen uint64, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	for {
		p, ch := b.get()
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
func (b *planBox) scope(ctx context.Context, gen uint64) (context.Context, func()) {
	gctx, cancel := context.WithCancelCause(ctx)
	s := &genScope{gen: gen, cancel: cancel}
	b.mu.Lock()
	if b.plan.GetGeneration() > gen {
		cancel(errSuperseded)
	} else {
		b.scopes[s] = struct{}{}
	}
	b.mu.Unlock()
	return gctx, func() {
		b.mu.Lock()
		delete(b.scopes, s)
		b.mu.Unlock()
		cancel(nil)
	}
}
