package tensor

import "math"

var geluScale = float32(math.Sqrt(2 / math.Pi))

const elemGrain = 4096

// GeluForward implements Backend (the tanh approximation, GPT-2's "gelu_new").
func (CPU) GeluForward(out, inp []float32) {
	parallelFor(len(inp), elemGrain, func(lo, hi int) {
		for i := lo; i < hi; i++ {
			x := inp[i]
			u := geluScale * (x + 0.044715*x*x*x)
			out[i] = 0.5 * x * (1 + float32(math.Tanh(float64(u))))
		}
	})
}

// GeluBackward implements Backend.
func (CPU) GeluBackward(dinp, inp, dout []float32) {
	parallelFor(len(inp), elemGrain, func(lo, hi int) {
		for i := lo; i < hi; i++ {
			x := inp[i]
			u := geluScale * (x + 0.044715*x*x*x)
			th := float32(math.Tanh(float64(u)))
			sech2 := 1 - th*th
			g := 0.5*(1+th) + 0.5*x*sech2*geluScale*(1+3*0.044715*x*x)
			dinp[i] += g * dout[i]
		}
	})
}

// ResidualForward implements Backend.
func (CPU) ResidualForward(out, a, b []float32) {
	parallelFor(len(out), elemGrain, func(lo, hi int) {
		o, x, y := out[lo:hi], a[lo:hi], b[lo:hi]
		for i := range o {
			o[i] = x[i] + y[i]
		}
	})
}

// Accumulate implements Backend.
func (CPU) Accumulate(dst, src []float32) {
	parallelFor(len(dst), elemGrain, func(lo, hi int) {
		d, s := dst[lo:hi], src[lo:hi]
		for i := range d {
			d[i] += s[i]
		}
	})
}
