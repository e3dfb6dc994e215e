package tensor

import (
	"runtime"
	"sync"
	"sync/atomic"
	"time"
)

// job is work that several goroutines can take part in, cut into pieces that are
// claimed one at a time (see pieces). Which goroutine runs which piece must not change
// the result.
type job interface {
	// help claims and computes pieces until none is left, as a helper.
	help()
	// release drops the helper's reference to the job; the last one recycles it.
	release()
}

// pieces is the bookkeeping of a job's pieces, shared by the caller and the helpers.
// The caller waits only for pieces that were claimed, never for helpers that arrive
// late: a helper that finds nothing left to claim just releases its reference, and the
// job is recycled when the last reference goes, so a helper slow to be scheduled on a
// busy machine never delays a kernel.
type pieces struct {
	total    int64
	next     atomic.Int64  // next piece to claim
	done     atomic.Int64  // pieces finished
	refs     atomic.Int32  // the caller and each helper enlisted
	finished chan struct{} // a helper that finishes the last piece says so here
}

func (p *pieces) reset(total int) {
	p.total = int64(total)
	p.next.Store(0)
	p.done.Store(0)
	if p.finished == nil {
		p.finished = make(chan struct{}, 1)
	}
}

// claim returns the next unclaimed piece, or -1 when none is left.
func (p *pieces) claim() int {
	if i := p.next.Add(1) - 1; i < p.total {
		return int(i)
	}
	return -1
}

// finish records a finished piece. The caller passes caller=true and learns whether
// it finished the last piece; a helper that finishes the last one wakes the caller.
func (p *pieces) finish(caller bool) (last bool) {
	if p.done.Add(1) != p.total {
		return false
	}
	if !caller {
		p.finished <- struct{}{}
	}
	return true
}

// runJob runs j on the calling goroutine and up to n helpers and returns when all of
// its pieces are done. work is the caller's share: it claims pieces until none is left
// and reports whether it finished the last one. The caller's reference is released
// at the end.
func runJob(j job, p *pieces, n int, work func() bool) {
	p.refs.Store(int32(1 + n))
	if n > 0 {
		if sent := helpers.enlist(j, n); sent < n {
			p.refs.Add(int32(sent - n))
		}
	}
	if !work() {
		<-p.finished
	}
	j.release()
}

// helpers is the package's set of long-lived helper goroutines. A kernel that splits its
// work offers the job to up to GOMAXPROCS-1 helpers and works on it itself. Handing a
// job over allocates nothing, which is why the helpers live for the life of the process
// instead of being started per call. After a job a helper polls for the next one for a
// short while before it blocks: the kernels of a training step follow each other
// closely, and waking a blocked thread costs tens of microseconds or more.
//
// The helpers' goroutines run (*helperPool).loop; leak checkers should ignore it.
var helpers = &helperPool{work: make(chan job, 64)}

// helperSpin is how long an idle helper polls for work before it blocks: long enough to
// catch the next kernel of a step, short enough to waste little CPU on a machine
// shared with other work.
const helperSpin = 20 * time.Microsecond

type helperPool struct {
	work    chan job
	mu      sync.Mutex
	started int
}

// enlist offers j to at most n helpers and returns how many offers it queued, starting
// helpers up to GOMAXPROCS-1 first. It never blocks.
func (p *helperPool) enlist(j job, n int) int {
	p.grow(n)
	for i := range n {
		select {
		case p.work <- j:
		default:
			return i
		}
	}
	return n
}

// grow starts helpers until at least min(n, GOMAXPROCS-1) run.
func (p *helperPool) grow(n int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for p.started < min(n, runtime.GOMAXPROCS(0)-1) {
		p.started++
		go p.loop()
	}
}

func (p *helperPool) loop() {
	for {
		j := p.next()
		j.help()
		j.release()
	}
}

// next returns the next job offered, polling for up to helperSpin before blocking.
func (p *helperPool) next() job {
	start := time.Now()
	for i := 0; ; i++ {
		select {
		case j := <-p.work:
			return j
		default:
		}
		if i%16 == 15 {
			if time.Since(start) > helperSpin {
				return <-p.work
			}
			runtime.Gosched()
		}
	}
}

// scratch is a free list of float32 buffers that kernels borrow for the length of a
// call, so that a training step allocates nothing once every buffer exists.
var scratch struct {
	sync.Mutex
	free [][]float32
}

// getScratch returns a buffer of at least n floats (contents undefined).
func getScratch(n int) []float32 {
	scratch.Lock()
	for i := len(scratch.free) - 1; i >= 0; i-- {
		if b := scratch.free[i]; cap(b) >= n {
			scratch.free = append(scratch.free[:i], scratch.free[i+1:]...)
			scratch.Unlock()
			return b[:n]
		}
	}
	scratch.Unlock()
	return make([]float32, n)
}

// putScratch gives a buffer from getScratch back.
func putScratch(b []float32) {
	scratch.Lock()
	scratch.free = append(scratch.free, b[:cap(b)])
	scratch.Unlock()
}
