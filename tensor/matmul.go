package tensor

// MatmulForward implements Backend. The bias is added by the gemm's first write of out.
func (CPU) MatmulForward(out, inp, w, bias []float32, N, C, OC int) {
	GemmBias(false, true, N, OC, C, 1, inp, C, w, C, bias, out, OC)
}

// MatmulBackward implements Backend. dbias is split over columns, so that each element
// is summed over the rows in row order.
func (CPU) MatmulBackward(dinp, dw, dbias, dout, inp, w []float32, N, C, OC int) {
	if dinp != nil {
		Gemm(false, false, N, C, OC, 1, dout, OC, w, C, 1, dinp, C) // (N,OC)·(OC,C)
	}
	Gemm(true, false, OC, C, N, 1, dout, OC, inp, C, 1, dw, C) // (OC,N)·(N,C)
	if dbias == nil {
		return
	}
	k := biasGradPool.get()
	k.dbias, k.dout, k.N, k.OC = dbias, dout, N, OC
	parallelRange(OC, 64, k)
	biasGradPool.put(k)
}

type biasGrad struct {
	dbias, dout []float32 // (OC), (N,OC)
	N, OC       int
}

var biasGradPool kernelPool[biasGrad]

func (k *biasGrad) do(lo, hi int) {
	db := k.dbias[lo:hi]
	for r := range k.N {
		addTo(db, k.dout[r*k.OC+lo:r*k.OC+hi])
	}
}
