package tensor

import "math"

// expf returns e^x in float32 within about one unit in the last place, for the softmax,
// cross-entropy and GELU kernels: a fixed sequence of float32 operations (range
// reduction by ln 2 in two parts, a degree-6 polynomial, scaling by 2^n), so it is
// deterministic and several times faster than math.Exp in float64. Below -87.3 it
// returns 0 (no subnormals); above 88.7 it returns +Inf.
func expf(x float32) float32 {
	const (
		log2e = 1.44269504088896341
		ln2hi = 0.693359375 // ln 2 = ln2hi + ln2lo, ln2hi exact in 9 bits
		ln2lo = -2.12194440e-4
	)
	switch {
	case x != x: // NaN
		return x
	case x > 88.72283:
		return float32(math.Inf(1))
	case x < -87.33654:
		return 0
	}
	fn := float32(math.Floor(float64(x*log2e + 0.5)))
	r := x - fn*ln2hi - fn*ln2lo
	p := ((((((1.9875691500e-4*r+1.3981999507e-3)*r+8.3334519073e-3)*r+4.1665795894e-2)*r+1.6666665459e-1)*r+5.0000001201e-1)*r*r + r) + 1
	// 2^n as bits, in two factors so that n = 128 (x just below the overflow) works.
	n := int32(fn)
	h := n >> 1
	return p * math.Float32frombits(uint32(h+127)<<23) * math.Float32frombits(uint32(n-h+127)<<23)
}

// tanhf returns tanh(x) in float32 from expf: 1 - 2/(e^{2x}+1), with |x| >= 9 giving ±1
// (tanh(9) rounds to 1 in float32). Its absolute error is a few units of 2^-24.
func tanhf(x float32) float32 {
	switch {
	case x >= 9:
		return 1
	case x <= -9:
		return -1
	}
	return 1 - 2/(expf(2*x)+1)
}
