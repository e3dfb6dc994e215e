//go:build !amd64 || purego

package tensor

// vectorKernels returns no kernels: this build has only the portable one.
func vectorKernels() []*gemmKernel { return nil }
