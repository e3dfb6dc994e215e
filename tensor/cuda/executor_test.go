//go:build cuda

package cuda

import (
	"sync"
	"testing"

	"golang.org/x/sys/unix"
)

// TestExecutorOneThreadInOrder checks that work from many goroutines runs on one OS
// thread, in the order each goroutine queued it.
func TestExecutorOneThreadInOrder(t *testing.T) {
	e := newExecutor()
	defer e.Close()
	var tid int
	e.Do(func() { tid = unix.Gettid() })
	var wg sync.WaitGroup
	seen := make([][]int, 4)
	for g := range seen {
		wg.Go(func() {
			for i := range 50 {
				e.Do(func() {
					if unix.Gettid() != tid {
						t.Errorf("work ran on thread %d, not %d", unix.Gettid(), tid)
					}
					seen[g] = append(seen[g], i)
				})
			}
		})
	}
	wg.Wait()
	done := make(chan struct{})
	e.Go(func() { close(done) })
	<-done
	for g, s := range seen {
		for i, v := range s {
			if v != i {
				t.Fatalf("goroutine %d's work ran out of order: %v", g, s)
			}
		}
	}
}
