package tensor

import "math"

const layerNormEps = 1e-5

// LayerNormForward implements Backend.
func (CPU) LayerNormForward(out, mean, rstd, inp, w, b []float32, N, C int) {
	parallelFor(N, 8, func(lo, hi int) {
		for r := lo; r < hi; r++ {
			x := inp[r*C : r*C+C]
			var m float32
			for _, v := range x {
				m += v
			}
			m /= float32(C)
			var vr float32
			for _, v := range x {
				d := v - m
				vr += d * d
			}
			vr /= float32(C)
			s := float32(1 / math.Sqrt(float64(vr)+layerNormEps))
			o := out[r*C : r*C+C]
			for i, v := range x {
				o[i] = (v-m)*s*w[i] + b[i]
			}
			mean[r], rstd[r] = m, s
		}
	})
}

// LayerNormBackward implements Backend. dinp is computed per row in parallel; dw and db
// are split over columns so that each is summed over rows in row order.
func (CPU) LayerNormBackward(dinp, dw, db, dout, inp, w, mean, rstd []float32, N, C int) {
	parallelFor(N, 8, func(lo, hi int) {
		for r := lo; r < hi; r++ {
			x := inp[r*C : r*C+C]
			d := dout[r*C : r*C+C]
			m, s := mean[r], rstd[r]
			var dnormMean, dnormNormMean float32
			for i := range x {
				norm := (x[i] - m) * s
				dn := w[i] * d[i]
				dnormMean += dn
				dnormNormMean += dn * norm
			}
			dnormMean /= float32(C)
			dnormNormMean /= float32(C)
			di := dinp[r*C : r*C+C]
			for i := range x {
				norm := (x[i] - m) * s
				dn := w[i] * d[i]
				di[i] += (dn - dnormMean - norm*dnormNormMean) * s
			}
		}
	})
	parallelFor(C, 16, func(lo, hi int) {
		for r := 0; r < N; r++ {
			m, s := mean[r], rstd[r]
			x := inp[r*C+lo : r*C+hi]
			d := dout[r*C+lo : r*C+hi]
			dwr, dbr := dw[lo:hi], db[lo:hi]
			for i := range x {
				dwr[i] += (x[i] - m) * s * d[i]
				dbr[i] += d[i]
			}
		}
	})
}
