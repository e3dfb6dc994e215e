// Package tensor holds ringtrain's compute kernels: matrix multiplication and the
// per-layer forward and backward operations of a GPT (embedding, LayerNorm, linear,
// attention, GELU, residual, softmax cross-entropy), written against the Backend
// interface so that model code does not depend on where the kernels run.
//
// The model package is the only caller on the training path; benchmarks and tests call
// the kernels directly.
//
// # Determinism
//
// Every kernel gives the same bits whatever the number of threads. Work is split over
// goroutines only along dimensions whose outputs are independent (rows, heads, output
// columns); every reduction runs over a fixed range in a fixed order inside one
// goroutine. Replicas on different machines, resumed runs and recomputed steps depend on
// this.
//
// # Reference kernels
//
// The naive versions of the optimised kernels (NaiveGemm) stay in the package as the
// reference the tests compare against.
//
// Usage:
//
//	var be tensor.Backend = tensor.NewCPU()
//	be.MatmulForward(out, inp, w, bias, N, C, OC) // out (N,OC) = inp (N,C) · wᵀ + bias
package tensor
