package tensor

import (
	"sync"
	"time"
)

// MeasurePeak estimates the machine's float32 multiply-add peak as Gemm can use it: the
// active micro-kernel runs in a tight loop on packed panels that stay in L1, on threads
// goroutines at once, for about d. It returns the GFLOP/s of all goroutines together
// (two FLOPs per multiply-add). It blocks for d and allocates a few small buffers.
func MeasurePeak(threads int, d time.Duration) float64 {
	kern := activeKernel
	const kc = 128
	threads = max(1, threads)
	flops := make([]float64, threads)
	start := time.Now()
	deadline := start.Add(d)
	var wg sync.WaitGroup
	for w := range threads {
		wg.Go(func() {
			a := make([]float32, kern.mr*kc)
			b := make([]float32, kc*kern.nr)
			c := make([]float32, kern.mr*kern.nr)
			for i := range a {
				a[i] = float32(i%7) * 0.01
			}
			for i := range b {
				b[i] = float32(i%5) * 0.01
			}
			calls := 0
			for time.Now().Before(deadline) {
				for range 256 {
					kern.fn(kc, &a[0], 1, kern.mr, &b[0], kern.nr, &c[0], kern.nr, 1, &zeroRow[0])
				}
				calls += 256
			}
			flops[w] = 2 * float64(calls) * float64(kern.mr*kern.nr*kc)
		})
	}
	wg.Wait()
	var total float64
	for _, f := range flops {
		total += f
	}
	return total / time.Since(start).Seconds() / 1e9
}
