package tensor

// MatmulForward implements Backend.
func (CPU) MatmulForward(out, inp, w, bias []float32, N, C, OC int) {
	Gemm(false, true, N, OC, C, 1, inp, C, w, C, 0, out, OC)
	if bias == nil {
		return
	}
	parallelFor(N, 16, func(lo, hi int) {
		for r := lo; r < hi; r++ {
			o := out[r*OC : r*OC+OC]
			for i := range o {
				o[i] += bias[i]
			}
		}
	})
}

// MatmulBackward implements Backend.
func (CPU) MatmulBackward(dinp, dw, dbias, dout, inp, w []float32, N, C, OC int) {
	if dinp != nil {
		Gemm(false, false, N, C, OC, 1, dout, OC, w, C, 1, dinp, C) // (N,OC)·(OC,C)
	}
	Gemm(true, false, OC, C, N, 1, dout, OC, inp, C, 1, dw, C) // (OC,N)·(N,C)
	if dbias == nil {
		return
	}
	parallelFor(OC, 64, func(lo, hi int) {
		db := dbias[lo:hi]
		for r := 0; r < N; r++ {
			for i, v := range dout[r*OC+lo : r*OC+hi] {
				db[i] += v
			}
		}
	})
}
