package vec

// AddTo sets dst[i] += src[i] for i < len(src) on the calling goroutine, using vector
// registers where the CPU has them; dst must be at least as long as src, and its
// elements past len(src) are left as they are. Every element is a single float32
// addition, so the result has the same bits as the plain loop's for all inputs except
// when both operands of an addition are NaNs, whose payloads may then be taken from
// either side. It allocates nothing.
func AddTo(dst, src []float32) {
	dst = dst[:len(src)]
	for i := addToVec(dst, src); i < len(src); i++ {
		dst[i] += src[i]
	}
}
