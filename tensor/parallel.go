package tensor

import (
	"runtime"
	"sync"
)

// ranger is a kernel's work over the indices [0, n): do(lo, hi) handles [lo, hi). The
// pieces must be independent (each writes its own outputs, and every reduction stays
// inside one piece), so that how [0, n) is cut never changes a bit of the result.
type ranger interface {
	do(lo, hi int)
}

// parallelRange runs r over [0, n) in pieces of at least grain indices, claimed by the
// calling goroutine and up to GOMAXPROCS-1 helpers. It returns when all are done and
// allocates nothing. Kernels keep their arguments in a struct from a kernelPool and
// pass it as r.
func parallelRange(n, grain int, r ranger) {
	if n <= 0 {
		return
	}
	grain = max(grain, 1)
	workers := min(runtime.GOMAXPROCS(0), ceilDiv(n, grain))
	if workers <= 1 {
		r.do(0, n)
		return
	}
	j := rangeJobs.get()
	j.r, j.n = r, n
	// A few pieces per goroutine, so that a goroutine slowed by other load on the
	// machine leaves its share to the others.
	j.piece = max(grain, ceilDiv(n, 4*workers))
	j.reset(ceilDiv(n, j.piece))
	runJob(j, &j.pieces, workers-1, func() bool { return j.work(true) })
}

// rangeJob is one parallelRange call; it implements job.
type rangeJob struct {
	pieces
	r        ranger
	n, piece int
}

var rangeJobs freeList[rangeJob]

func (j *rangeJob) help() { j.work(false) }

func (j *rangeJob) work(caller bool) (last bool) {
	for {
		i := j.claim()
		if i < 0 {
			return last
		}
		lo := i * j.piece
		j.r.do(lo, min(lo+j.piece, j.n))
		last = j.finish(caller)
	}
}

func (j *rangeJob) release() {
	if j.refs.Add(-1) == 0 {
		j.r = nil
		rangeJobs.put(j)
	}
}

// freeList recycles values of one type for the life of the process: unlike a
// sync.Pool, it never lets them go, so that after the first uses nothing is allocated.
// It holds as many values as were ever in use at once.
type freeList[T any] struct {
	mu   sync.Mutex
	free []*T
}

func (l *freeList[T]) get() *T {
	l.mu.Lock()
	defer l.mu.Unlock()
	if n := len(l.free); n > 0 {
		v := l.free[n-1]
		l.free = l.free[:n-1]
		return v
	}
	return new(T)
}

func (l *freeList[T]) put(v *T) {
	l.mu.Lock()
	l.free = append(l.free, v)
	l.mu.Unlock()
}

// kernelPool recycles the argument structs of one kernel, so that handing them to
// parallelRange allocates nothing in the steady state.
type kernelPool[T any] struct{ l freeList[T] }

func (p *kernelPool[T]) get() *T { return p.l.get() }

// put clears v (dropping its references to the caller's slices) and recycles it.
func (p *kernelPool[T]) put(v *T) {
	var zero T
	*v = zero
	p.l.put(v)
}
