package tensor

import (
	"runtime"
	"sync"
)

// parallelFor runs fn over [0, n) split into contiguous ranges of at least grain items,
// one goroutine per range, at most GOMAXPROCS ranges. It returns when every call has
// returned. Callers only split work whose results are independent of the split.
func parallelFor(n, grain int, fn func(lo, hi int)) {
	if n <= 0 {
		return
	}
	if grain < 1 {
		grain = 1
	}
	workers := runtime.GOMAXPROCS(0)
	if maxW := (n + grain - 1) / grain; workers > maxW {
		workers = maxW
	}
	if workers <= 1 {
		fn(0, n)
		return
	}
	var wg sync.WaitGroup
	per := (n + workers - 1) / workers
	for lo := 0; lo < n; lo += per {
		hi := min(lo+per, n)
		if hi == n {
			fn(lo, hi) // the calling goroutine takes the last range
			break
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			fn(lo, hi)
		}()
	}
	wg.Wait()
}
