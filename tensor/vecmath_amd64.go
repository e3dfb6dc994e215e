//go:build amd64 && !purego

package tensor

import "golang.org/x/sys/cpu"

// geluForwardAVX2 applies geluForwardScalar to n floats (a multiple of 8).
//
//go:noescape
func geluForwardAVX2(out, inp *float32, n int)

// geluBackwardAVX2 applies geluBackwardScalar to n floats (a multiple of 8).
//
//go:noescape
func geluBackwardAVX2(dinp, inp, dout *float32, n int)

// transpose8AVX2 sets dst[p·ld + r] = src[r·lds + p] for r < 8 and p < n, n a
// multiple of 8.
//
//go:noescape
func transpose8AVX2(dst *float32, ld int, src *float32, lds int, n int)

// addAVX2 sets out[i] = a[i] + b[i] for i < n, n a multiple of 8.
//
//go:noescape
func addAVX2(out, a, b *float32, n int)

// adamwAVX2 is adamw.do's update for n elements, n a multiple of 8.
//
//go:noescape
func adamwAVX2(p, grad, m, v *float32, n int, c *[8]float32)

// expShiftAVX2 sets dst[i] = expf(src[i] - shift) for i < n, n a multiple of 8.
//
//go:noescape
func expShiftAVX2(dst, src *float32, n int, shift float32)

// maxAVX2 returns the largest of n floats (n a positive multiple of 8).
//
//go:noescape
func maxAVX2(x *float32, n int) float32

// dot8AVX2 returns dot8 of n floats of a and b (n a multiple of 8).
//
//go:noescape
func dot8AVX2(a, b *float32, n int) float32

// sumSq8AVX2 returns sumSq8 of n floats (n a multiple of 8).
//
//go:noescape
func sumSq8AVX2(x *float32, n int) float64

// scaleAVX2 sets x[i] *= c for i < n, n a multiple of 8.
//
//go:noescape
func scaleAVX2(x *float32, n int, c float32)

// softmaxGradAVX2 sets ds[i] = p[i] * (ds[i] - d) * scale for i < n, n a multiple of 8.
//
//go:noescape
func softmaxGradAVX2(ds, p *float32, n int, d, scale float32)

// The LayerNorm row helpers of layernorm.go, for n a multiple of 8.

//go:noescape
func sum8AVX2(x *float32, n int) float32

//go:noescape
func sumSqDev8AVX2(x *float32, n int, m float32) float32

//go:noescape
func lnApplyAVX2(o, x, w, b *float32, n int, m, s float32)

//go:noescape
func lnBwdSumsAVX2(x, d, w *float32, n int, m, s float32) (dnormMean, dnormNormMean float32)

//go:noescape
func lnBwdApplyAVX2(di, x, d, w *float32, n int, m, s, dm, dnm float32)

var haveAVX2 = cpu.X86.HasAVX2

// lnVec reports whether rows of n floats go through the vector LayerNorm helpers.
func lnVec(n int) bool { return haveAVX2 && n > 0 && n%8 == 0 }

// expShiftVec sets dst[i] = expf(src[i] - shift) over the longest prefix it can in
// vector registers and returns its length.
func expShiftVec(dst, src []float32, shift float32) int {
	n := len(src) &^ 7
	if !haveAVX2 || n == 0 {
		return 0
	}
	_, _ = dst[n-1], src[n-1]
	expShiftAVX2(&dst[0], &src[0], n, shift)
	return n
}

// maxVec returns the largest element of the longest prefix of x it can do in vector
// registers, and the prefix's length (0: none, and m is meaningless).
func maxVec(x []float32) (m float32, n int) {
	n = len(x) &^ 7
	if !haveAVX2 || n == 0 {
		return 0, 0
	}
	return maxAVX2(&x[0], n), n
}

// scaleVec does x *= c over the longest prefix it can and returns its length.
func scaleVec(x []float32, c float32) int {
	n := len(x) &^ 7
	if !haveAVX2 || n == 0 {
		return 0
	}
	scaleAVX2(&x[0], n, c)
	return n
}

// softmaxGradVec does ds = p ⊙ (ds − d)·scale over the longest prefix it can and returns
// its length.
func softmaxGradVec(ds, p []float32, d, scale float32) int {
	n := len(ds) &^ 7
	if !haveAVX2 || n == 0 {
		return 0
	}
	_ = p[n-1]
	softmaxGradAVX2(&ds[0], &p[0], n, d, scale)
	return n
}

// adamwVec runs the AdamW update over the longest prefix it can in vector registers and
// returns its length.
func adamwVec(p, g, m, v []float32, c *[8]float32) int {
	n := len(p) &^ 7
	if !haveAVX2 || n == 0 {
		return 0
	}
	_, _, _, _ = p[n-1], g[n-1], m[n-1], v[n-1]
	adamwAVX2(&p[0], &g[0], &m[0], &v[0], n, c)
	return n
}

// addVec does out = a + b over the longest prefix it can and returns its length.
func addVec(out, a, b []float32) int {
	n := len(a) &^ 7
	if !haveAVX2 || n == 0 {
		return 0
	}
	_, _, _ = out[n-1], a[n-1], b[n-1]
	addAVX2(&out[0], &a[0], &b[0], n)
	return n
}

// transposeVec transposes the first rows&^7 rows and cols&^7 columns of the
// (rows,cols) matrix at src (stride lds) into dst (stride ld), as transposeInto, and
// returns the numbers of rows and columns it did.
func transposeVec(dst []float32, ld int, src []float32, lds, rows, cols int) (r, c int) {
	r, c = rows&^7, cols&^7
	if !haveAVX2 || r == 0 || c == 0 {
		return 0, 0
	}
	_, _ = dst[(c-1)*ld+r-1], src[(r-1)*lds+c-1]
	for i := 0; i < r; i += 8 {
		transpose8AVX2(&dst[i], ld, &src[i*lds], lds, c)
	}
	return r, c
}

// geluForwardVec computes the longest prefix of out = gelu(inp) it can in vector
// registers and returns its length; the caller does the rest with the scalar code.
func geluForwardVec(out, inp []float32) int {
	n := len(inp) &^ 7
	if !haveAVX2 || n == 0 {
		return 0
	}
	_, _ = out[n-1], inp[n-1]
	geluForwardAVX2(&out[0], &inp[0], n)
	return n
}

// geluBackwardVec is geluForwardVec for dinp += gelu'(inp)·dout.
func geluBackwardVec(dinp, inp, dout []float32) int {
	n := len(inp) &^ 7
	if !haveAVX2 || n == 0 {
		return 0
	}
	_, _, _ = dinp[n-1], inp[n-1], dout[n-1]
	geluBackwardAVX2(&dinp[0], &inp[0], &dout[0], n)
	return n
}
