package tensor

import "math"

const layerNormEps = 1e-5

// LayerNormForward implements Backend.
func (CPU) LayerNormForward(out, mean, rstd, inp, w, b []float32, N, C int) {
	k := lnFwdPool.get()
	k.out, k.mean, k.rstd, k.inp, k.w, k.b, k.C = out, mean, rstd, inp, w, b, C
	parallelRange(N, 8, k)
	lnFwdPool.put(k)
}

type lnFwd struct {
	out, mean, rstd, inp, w, b []float32 // (N,C), (N), (N), (N,C), (C), (C)
	C                          int
}

var lnFwdPool kernelPool[lnFwd]

func (k *lnFwd) do(lo, hi int) {
	C := k.C
	w, b := k.w[:C], k.b[:C]
	vec := lnVec(C)
	for r := lo; r < hi; r++ {
		x, o := k.inp[r*C:r*C+C], k.out[r*C:r*C+C]
		var m, vr float32
		if vec {
			m = sum8AVX2(&x[0], C) / float32(C)
			vr = sumSqDev8AVX2(&x[0], C, m) / float32(C)
		} else {
			m = sum8(x) / float32(C)
			vr = sumSqDev8(x, m) / float32(C)
		}
		s := float32(1 / math.Sqrt(float64(vr)+layerNormEps))
		if vec {
			lnApplyAVX2(&o[0], &x[0], &w[0], &b[0], C, m, s)
		} else {
			for i, v := range x {
				o[i] = (v-m)*s*w[i] + b[i]
			}
		}
		k.mean[r], k.rstd[r] = m, s
	}
}

// sum8 returns Σ x in the order of the vector code: eight running sums s_j of the
// x[8i+j], combined as ((s0+s4)+(s2+s6))+((s1+s5)+(s3+s7)), then the elements past the
// last multiple of 8 in order. Row reductions of LayerNorm use this order whether or
// not they run in vector registers, so both give the same bits.
func sum8(x []float32) float32 {
	return sum8Of(x, func(v float32) float32 { return v })
}

// sumSqDev8 returns Σ (x-m)² in sum8's order.
func sumSqDev8(x []float32, m float32) float32 {
	return sum8Of(x, func(v float32) float32 { d := v - m; return d * d })
}

func sum8Of(x []float32, f func(float32) float32) float32 {
	var s [8]float32
	n := len(x) &^ 7
	for i := 0; i < n; i += 8 {
		c := (*[8]float32)(x[i:])
		for j := range s {
			s[j] += f(c[j])
		}
	}
	t := ((s[0] + s[4]) + (s[2] + s[6])) + ((s[1] + s[5]) + (s[3] + s[7]))
	for _, v := range x[n:] {
		t += f(v)
	}
	return t
}

// LayerNormBackward implements Backend. dinp is computed per row in parallel; dw and db
// are split over columns so that each is summed over rows in row order.
func (CPU) LayerNormBackward(dinp, dw, db, dout, inp, w, mean, rstd []float32, N, C int) {
	k := lnBwdPool.get()
	k.dinp, k.dw, k.db, k.dout, k.inp, k.w, k.mean, k.rstd, k.N, k.C = dinp, dw, db, dout, inp, w, mean, rstd, N, C
	parallelRange(N, 8, (*lnBwdRows)(k))
	parallelRange(C, 16, (*lnBwdCols)(k))
	lnBwdPool.put(k)
}

type lnBwd struct {
	dinp, dw, db, dout, inp, w, mean, rstd []float32 // (N,C), (C), (C), (N,C), (N,C), (C), (N), (N)
	N, C                                   int
}

// lnBwdRows computes dinp row by row; lnBwdCols computes dw and db column by column.
type (
	lnBwdRows lnBwd
	lnBwdCols lnBwd
)

var lnBwdPool kernelPool[lnBwd]

func (k *lnBwdRows) do(lo, hi int) {
	C := k.C
	w := k.w[:C]
	vec := lnVec(C)
	for r := lo; r < hi; r++ {
		x, d, di := k.inp[r*C:r*C+C], k.dout[r*C:r*C+C], k.dinp[r*C:r*C+C]
		m, s := k.mean[r], k.rstd[r]
		var dnormMean, dnormNormMean float32
		if vec {
			dnormMean, dnormNormMean = lnBwdSumsAVX2(&x[0], &d[0], &w[0], C, m, s)
		} else {
			dnormMean, dnormNormMean = lnBwdSums(x, d, w, m, s)
		}
		dnormMean /= float32(C)
		dnormNormMean /= float32(C)
		if vec {
			lnBwdApplyAVX2(&di[0], &x[0], &d[0], &w[0], C, m, s, dnormMean, dnormNormMean)
			continue
		}
		for i := range x {
			norm := (x[i] - m) * s
			dn := w[i] * d[i]
			di[i] += (dn - dnormMean - norm*dnormNormMean) * s
		}
	}
}

// lnBwdSums returns Σ dn and Σ dn·norm over a row in sum8's order, where dn = w·d and
// norm = (x-m)·s.
func lnBwdSums(x, d, w []float32, m, s float32) (sumDn, sumDnNorm float32) {
	var a, b [8]float32
	n := len(x) &^ 7
	for i := 0; i < n; i += 8 {
		for j := range 8 {
			norm := (x[i+j] - m) * s
			dn := w[i+j] * d[i+j]
			a[j] += dn
			b[j] += dn * norm
		}
	}
	sumDn = ((a[0] + a[4]) + (a[2] + a[6])) + ((a[1] + a[5]) + (a[3] + a[7]))
	sumDnNorm = ((b[0] + b[4]) + (b[2] + b[6])) + ((b[1] + b[5]) + (b[3] + b[7]))
	for i := n; i < len(x); i++ {
		norm := (x[i] - m) * s
		dn := w[i] * d[i]
		sumDn += dn
		sumDnNorm += dn * norm
	}
	return sumDn, sumDnNorm
}

func (k *lnBwdCols) do(lo, hi int) {
	C := k.C
	dwr, dbr := k.dw[lo:hi], k.db[lo:hi]
	for r := range k.N {
		m, s := k.mean[r], k.rstd[r]
		x := k.inp[r*C+lo : r*C+hi]
		d := k.dout[r*C+lo : r*C+hi]
		for i := range x {
			dwr[i] += (x[i] - m) * s * d[i]
			dbr[i] += d[i]
		}
	}
}
