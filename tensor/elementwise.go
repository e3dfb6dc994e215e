package tensor

import (
	"math"

	"github.com/ringtrain/ringtrain/internal/vec"
)

var geluScale = float32(math.Sqrt(2 / math.Pi))

// elemGrain is the smallest piece of an element-wise kernel worth a goroutine.
const elemGrain = 4096

// addTo sets dst[i] += src[i] for i < len(src), with vec.AddTo (the loop the ring's
// sums share).
func addTo(dst, src []float32) { vec.AddTo(dst, src) }

// GeluForward implements Backend.
func (CPU) GeluForward(out, inp []float32) {
	k := geluFwdPool.get()
	k.out, k.inp = out, inp
	parallelRange(len(inp), elemGrain, k)
	geluFwdPool.put(k)
}

type geluFwd struct{ out, inp []float32 }

var geluFwdPool kernelPool[geluFwd]

func (k *geluFwd) do(lo, hi int) {
	o, x := k.out[lo:hi], k.inp[lo:hi]
	for i := geluForwardVec(o, x); i < len(x); i++ {
		o[i] = geluForwardScalar(x[i])
	}
}

// GeluBackward implements Backend.
func (CPU) GeluBackward(dinp, inp, dout []float32) {
	k := geluBwdPool.get()
	k.dinp, k.inp, k.dout = dinp, inp, dout
	parallelRange(len(inp), elemGrain, k)
	geluBwdPool.put(k)
}

type geluBwd struct{ dinp, inp, dout []float32 }

var geluBwdPool kernelPool[geluBwd]

func (k *geluBwd) do(lo, hi int) {
	di, x, d := k.dinp[lo:hi], k.inp[lo:hi], k.dout[lo:hi]
	for i := geluBackwardVec(di, x, d); i < len(x); i++ {
		di[i] += geluBackwardScalar(x[i]) * d[i]
	}
}

// geluForwardScalar is GPT-2's GELU, 0.5·x·(1 + tanh(sqrt(2/π)·(x + 0.044715·x³))), in
// float32 with tanhf. The vector code performs the same operations in the same order.
func geluForwardScalar(x float32) float32 {
	u := geluScale * (x + 0.044715*x*x*x)
	return 0.5 * x * (1 + tanhf(u))
}

// geluBackwardScalar is the derivative of geluForwardScalar's formula.
func geluBackwardScalar(x float32) float32 {
	u := geluScale * (x + 0.044715*x*x*x)
	th := tanhf(u)
	sech2 := 1 - th*th
	return 0.5*(1+th) + 0.5*x*sech2*geluScale*(1+3*0.044715*x*x)
}

// NaiveGeluForward is the reference for CPU.GeluForward, with float64 math.Tanh.
func NaiveGeluForward(out, inp []float32) {
	for i, x := range inp {
		u := geluScale * (x + 0.044715*x*x*x)
		out[i] = 0.5 * x * (1 + float32(math.Tanh(float64(u))))
	}
}

// NaiveGeluBackward is the reference for CPU.GeluBackward.
func NaiveGeluBackward(dinp, inp, dout []float32) {
	for i, x := range inp {
		u := geluScale * (x + 0.044715*x*x*x)
		th := float32(math.Tanh(float64(u)))
		sech2 := 1 - th*th
		g := 0.5*(1+th) + 0.5*x*sech2*geluScale*(1+3*0.044715*x*x)
		dinp[i] += g * dout[i]
	}
}

// ResidualForward implements Backend.
func (CPU) ResidualForward(out, a, b []float32) {
	k := residualPool.get()
	k.out, k.a, k.b = out, a, b
	parallelRange(len(out), elemGrain, k)
	residualPool.put(k)
}

type residual struct{ out, a, b []float32 }

var residualPool kernelPool[residual]

func (k *residual) do(lo, hi int) {
	o, x, y := k.out[lo:hi], k.a[lo:hi], k.b[lo:hi]
	for i := addVec(o, x, y); i < len(o); i++ {
		o[i] = x[i] + y[i]
	}
}

// Accumulate implements Backend.
func (CPU) Accumulate(dst, src []float32) {
	k := accumulatePool.get()
	k.dst, k.src = dst, src
	parallelRange(len(dst), elemGrain, k)
	accumulatePool.put(k)
}

type accumulate struct{ dst, src []float32 }

var accumulatePool kernelPool[accumulate]

func (k *accumulate) do(lo, hi int) { addTo(k.dst[lo:hi], k.src[lo:hi]) }
