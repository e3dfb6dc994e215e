// Package vec holds the vector loops that both the compute kernels (package tensor)
// and the ring all-reduce (package allreduce) run, so that the ring sums gradients at
// the kernels' speed without importing the engine.
//
// # Who calls it
//
// tensor's residual and gradient adds, and the ring's reduce-scatter, which adds every
// received segment into the rank's buffer.
//
// # Usage
//
//	vec.AddTo(dst, src) // dst[i] += src[i] for i < len(src)
//
// # Why the bits do not depend on the CPU
//
// Each element is one float32 addition whether it runs in AVX2 registers or in the
// scalar tail, so the result is the plain loop's bit for bit (NaN payloads aside when
// both operands are NaNs). The build tag purego, or a CPU without AVX2, selects the
// plain loop.
package vec
