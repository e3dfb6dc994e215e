//go:build amd64 && !purego

package tensor

import "golang.org/x/sys/cpu"

// gemmKernelAVX512 is a kernelFunc for a (14,32) tile: 28 zmm accumulators, B loaded
// as two vectors per k, each A element broadcast from memory into its fused
// multiply-adds.
//
//go:noescape
func gemmKernelAVX512(kc int, a *float32, ars, aks int, b *float32, bks int, c *float32, ldc int, alpha float32, bias *float32)

// gemmKernelAVX512x8 is a kernelFunc for a (14,8) tile, the AVX-512 kernel's tail for a
// last column sliver of at most 8 columns.
//
//go:noescape
func gemmKernelAVX512x8(kc int, a *float32, ars, aks int, b *float32, bks int, c *float32, ldc int, alpha float32, bias *float32)

// gemmKernelAVX2 is a kernelFunc for a (6,16) tile: 12 ymm accumulators.
//
//go:noescape
func gemmKernelAVX2(kc int, a *float32, ars, aks int, b *float32, bks int, c *float32, ldc int, alpha float32, bias *float32)

// gemmKernelAVX2x8 is a kernelFunc for a (6,8) tile, the AVX2 kernel's tail for a last
// column sliver of at most 8 columns.
//
//go:noescape
func gemmKernelAVX2x8(kc int, a *float32, ars, aks int, b *float32, bks int, c *float32, ldc int, alpha float32, bias *float32)

func vectorKernels() []*gemmKernel {
	var ks []*gemmKernel
	if cpu.X86.HasAVX512F && cpu.X86.HasAVX512VL {
		ks = append(ks, &gemmKernel{name: "avx512", mr: 14, nr: 32, nc: 512, fn: gemmKernelAVX512,
			tail: &gemmKernel{name: "avx512x8", mr: 14, nr: 8, fn: gemmKernelAVX512x8}})
	}
	if cpu.X86.HasAVX2 && cpu.X86.HasFMA {
		ks = append(ks, &gemmKernel{name: "avx2", mr: 6, nr: 16, nc: 512, fn: gemmKernelAVX2,
			tail: &gemmKernel{name: "avx2x8", mr: 6, nr: 8, fn: gemmKernelAVX2x8}})
	}
	return ks
}
