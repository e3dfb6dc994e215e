package tensor

// SumSquares returns Σ x[i]² in float64 (each square is exact in float64). x is cut
// into chunks of chunk elements, a partition that depends on len(x) and chunk alone;
// each chunk is summed on one goroutine in the lane order of sumSq8, and the chunk sums
// are added in order. Chunks run in parallel, so the result has the same bits whatever
// the number of threads, and the vector code gives the scalar code's bits. It allocates
// nothing once it has run on as many chunks.
//
// The gradient-norm clipping of the model calls it on the whole gradient slab.
func SumSquares(x []float32, chunk int) float64 {
	if chunk < 1 {
		panic("tensor: SumSquares chunk < 1")
	}
	n := ceilDiv(len(x), chunk)
	partial := sumSqScratch.get()
	if cap(*partial) < n {
		*partial = make([]float64, n)
	}
	k := sumSqPool.get()
	k.x, k.chunk, k.partial = x, chunk, (*partial)[:n]
	parallelRange(n, 1, k)
	var total float64
	for _, s := range k.partial {
		total += s
	}
	sumSqPool.put(k)
	sumSqScratch.put(partial)
	return total
}

type sumSq struct {
	x       []float32 // (N)
	chunk   int
	partial []float64 // (chunks) the sum of each chunk
}

var (
	sumSqPool    kernelPool[sumSq]
	sumSqScratch freeList[[]float64]
)

func (k *sumSq) do(lo, hi int) {
	for c := lo; c < hi; c++ {
		k.partial[c] = sumSq8(k.x[c*k.chunk : min((c+1)*k.chunk, len(k.x))])
	}
}

// sumSq8 returns Σ x² in float64 in the order of the vector code: eight running sums
// s_j of the x[8i+j]², combined as ((s0+s4)+(s2+s6))+((s1+s5)+(s3+s7)), then the
// squares past the last multiple of 8 in order.
func sumSq8(x []float32) float64 {
	n := len(x) &^ 7
	var t float64
	switch {
	case n == 0:
	case haveAVX2:
		t = sumSq8AVX2(&x[0], n)
	default:
		var s [8]float64
		for i := 0; i < n; i += 8 {
			c := (*[8]float32)(x[i:])
			for j := range s {
				s[j] += float64(c[j]) * float64(c[j])
			}
		}
		t = ((s[0] + s[4]) + (s[2] + s[6])) + ((s[1] + s[5]) + (s[3] + s[7]))
	}
	for _, v := range x[n:] {
		t += float64(v) * float64(v)
	}
	return t
}

// Scale sets x[i] *= c, element by element, split over goroutines.
func Scale(x []float32, c float32) {
	k := scalePool.get()
	k.x, k.c = x, c
	parallelRange(len(x), 1<<14, k)
	scalePool.put(k)
}

type scaleKernel struct {
	x []float32 // (N)
	c float32
}

var scalePool kernelPool[scaleKernel]

func (k *scaleKernel) do(lo, hi int) { scaleRow(k.x[lo:hi], k.c) }
