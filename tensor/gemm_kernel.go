package tensor

import (
	"fmt"
	"os"
	"unsafe"
)

// kernelFunc is a gemm micro-kernel. It computes the (mr,nr) tile
//
//	C(i,j) = alpha·acc(i,j) + C(i,j)   (bias == nil)
//	C(i,j) = alpha·acc(i,j) + bias[j]  (bias != nil; C is not read)
//
// where acc(i,j) = Σ_{p<kc} A(i,p)·B(p,j), summed in order of p with one fused
// multiply-add per term, starting from zero. A(i,p) is the float32 at a + (i·ars +
// p·aks) elements, so A may be a packed sliver (ars 1, aks mr) or a block of the caller's
// matrix read in place. B(p,j) is at b + p·bks + j: a packed sliver (bks nr) or the
// caller's matrix. C(i,j) is at c + i·ldc + j. Each sum alpha·acc + x is one fused
// multiply-add (bias rows of zeros make the first write of C plain alpha·acc). kc >= 1.
// The kernel reads and writes nothing else.
type kernelFunc func(kc int, a *float32, ars, aks int, b *float32, bks int, c *float32, ldc int, alpha float32, bias *float32)

// gemmKernel describes a micro-kernel and the blocking that suits it.
type gemmKernel struct {
	name string
	mr   int // rows of a C tile
	nr   int // columns of a C tile (the vector dimension)
	nc   int // most columns of C per task, a multiple of nr: one packed B panel is (gemmKC, nc)
	fn   kernelFunc
	// tail, if not nil, is a narrower kernel with the same mr and arithmetic for a last
	// column sliver of at most tail.nr columns. It reads B and the bias with the stride
	// of the full kernel's slivers.
	tail *gemmKernel
}

// gemmKC is the most terms of the k sum one kernel call adds up. It is the same for
// every kernel, and the split of k into blocks depends on k alone (kBlock), so the
// vector kernels round every C element identically: a machine with AVX-512 and one with
// only AVX2 compute the same bits.
const gemmKC = 256

// kBlock returns the length of the blocks k is summed in: k is split into
// ceil(k/gemmKC) blocks of kBlock(k) terms (the last may be shorter), summed in order.
func kBlock(k int) int {
	nb := (k + gemmKC - 1) / gemmKC
	return (k + nb - 1) / nb
}

// genericKernel is the portable micro-kernel, for CPUs without a vector kernel (and for
// testing the driver). Its products and sums are rounded separately, so its results
// differ in the last bits from the fused vector kernels'.
var genericKernel = &gemmKernel{name: "generic", mr: 4, nr: 4, nc: 256, fn: kernelGeneric4x4}

// gemmKernels lists the kernels this CPU can run, fastest first; generic is last.
var gemmKernels = append(vectorKernels(), genericKernel)

// activeKernel is the kernel Gemm uses, chosen at start-up: the first of gemmKernels,
// or the one named by RINGTRAIN_GEMM_KERNEL.
var activeKernel = chooseKernel(os.Getenv("RINGTRAIN_GEMM_KERNEL"))

func chooseKernel(name string) *gemmKernel {
	if name == "" {
		return gemmKernels[0]
	}
	k, err := findKernel(name)
	if err != nil {
		fmt.Fprintf(os.Stderr, "ringtrain: RINGTRAIN_GEMM_KERNEL: %v; using %s\n", err, gemmKernels[0].name)
		return gemmKernels[0]
	}
	return k
}

func findKernel(name string) (*gemmKernel, error) {
	var names []string
	for _, k := range gemmKernels {
		if k.name == name {
			return k, nil
		}
		names = append(names, k.name)
	}
	return nil, fmt.Errorf("gemm kernel %q is not available on this CPU (available: %v)", name, names)
}

// GemmKernel returns the name of the micro-kernel Gemm uses ("avx512", "avx2" or
// "generic").
func GemmKernel() string { return activeKernel.name }

// GemmKernels returns the names of the micro-kernels this CPU can run, fastest first.
func GemmKernels() []string {
	names := make([]string, len(gemmKernels))
	for i, k := range gemmKernels {
		names[i] = k.name
	}
	return names
}

// SetGemmKernel makes Gemm use the named micro-kernel (one of GemmKernels). It is for
// benchmarks and tests and must not be called while any kernel of the package runs.
func SetGemmKernel(name string) error {
	k, err := findKernel(name)
	if err != nil {
		return err
	}
	activeKernel = k
	return nil
}

// kernelGeneric4x4 is the kernelFunc of genericKernel: a (4,4) tile in sixteen scalar
// accumulators.
func kernelGeneric4x4(kc int, a *float32, ars, aks int, b *float32, bks int, c *float32, ldc int, alpha float32, bias *float32) {
	const nr = 4
	var c00, c01, c02, c03, c10, c11, c12, c13 float32
	var c20, c21, c22, c23, c30, c31, c32, c33 float32
	pa, pb := unsafe.Pointer(a), unsafe.Pointer(b)
	rs, as, bs := uintptr(ars)*4, uintptr(aks)*4, uintptr(bks)*4
	for p := range uintptr(kc) {
		// Addresses are formed from the bases at each step, so that no pointer ever
		// points past the operands.
		ap := unsafe.Add(pa, p*as)
		a0 := *(*float32)(ap)
		a1 := *(*float32)(unsafe.Add(ap, rs))
		a2 := *(*float32)(unsafe.Add(ap, 2*rs))
		a3 := *(*float32)(unsafe.Add(ap, 3*rs))
		bv := (*[nr]float32)(unsafe.Add(pb, p*bs))
		b0, b1, b2, b3 := bv[0], bv[1], bv[2], bv[3]
		// The float32 conversions keep each product rounded on its own on every
		// architecture (the language allows fusing x*y + z otherwise).
		c00 += float32(a0 * b0)
		c01 += float32(a0 * b1)
		c02 += float32(a0 * b2)
		c03 += float32(a0 * b3)
		c10 += float32(a1 * b0)
		c11 += float32(a1 * b1)
		c12 += float32(a1 * b2)
		c13 += float32(a1 * b3)
		c20 += float32(a2 * b0)
		c21 += float32(a2 * b1)
		c22 += float32(a2 * b2)
		c23 += float32(a2 * b3)
		c30 += float32(a3 * b0)
		c31 += float32(a3 * b1)
		c32 += float32(a3 * b2)
		c33 += float32(a3 * b3)
	}
	acc := [4][4]float32{
		{c00, c01, c02, c03}, {c10, c11, c12, c13}, {c20, c21, c22, c23}, {c30, c31, c32, c33},
	}
	for i := range acc {
		row := (*[nr]float32)(unsafe.Add(unsafe.Pointer(c), uintptr(i*ldc)*4))
		for j, v := range acc[i] {
			if bias == nil {
				row[j] += float32(alpha * v)
			} else {
				row[j] = float32(alpha*v) + (*[nr]float32)(unsafe.Pointer(bias))[j]
			}
		}
	}
}
