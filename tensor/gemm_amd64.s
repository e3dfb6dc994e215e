//go:build amd64 && !purego

#include "textflag.h"

// Micro-kernels of Gemm; see kernelFunc in gemm_kernel.go for the contract.
//
// Register use, both kernels:
//   CX  k terms left          BX  B sliver, advanced bks floats (AX bytes) per term
//   R9  ars in bytes          DX  aks in bytes
//   R8, R10, R11, R12, R13: A rows 0, 3, 6, 9, 12, each advanced aks per term; row
//   3q+r is at (R)(R9*r) for r = 0, 1, 2, so fourteen rows need five base registers.
// After the loop: DI walks the rows of C, SI = ldc in bytes.

// A_ROWS sets R10..R13 to rows 3, 6, 9 and 12 of A from R8 and R9.
#define A_ROWS \
	LEAQ (R8)(R9*2), R10; \
	ADDQ R9, R10; \
	LEAQ (R10)(R9*2), R11; \
	ADDQ R9, R11; \
	LEAQ (R11)(R9*2), R12; \
	ADDQ R9, R12; \
	LEAQ (R12)(R9*2), R13; \
	ADDQ R9, R13

// Two accumulators of one row of the (14,32) tile: zlo, zhi += A(row) * (Z28, Z29).
#define FMA_ROW512(addr, zlo, zhi) \
	VFMADD231PS.BCST addr, Z28, zlo; \
	VFMADD231PS.BCST addr, Z29, zhi

// PREFETCH_ROW64 asks for the 64 bytes at DI, and the 64 after, to be brought into L1
// while the k loop runs, then moves DI to the next row of C (stride SI). C lives in L3
// or memory between k blocks; without this, its misses stall the stores at the end.
#define PREFETCH_ROW64 \
	PREFETCHT0 (DI);   \
	PREFETCHT0 64(DI); \
	ADDQ       SI, DI

// One row of C, accumulating: C = alpha*acc + C, alpha in Z30.
#define ACC_ROW512(zlo, zhi) \
	VFMADD213PS (DI), Z30, zlo; \
	VFMADD213PS 64(DI), Z30, zhi; \
	VMOVUPS     zlo, (DI); \
	VMOVUPS     zhi, 64(DI); \
	ADDQ        SI, DI

// One row of C, overwriting: C = alpha*acc + bias, the bias row in Z28, Z29.
#define SET_ROW512(zlo, zhi) \
	VFMADD213PS Z28, Z30, zlo; \
	VFMADD213PS Z29, Z30, zhi; \
	VMOVUPS zlo, (DI); \
	VMOVUPS zhi, 64(DI); \
	ADDQ    SI, DI

// One row of C for the (14,8) tile: accumulating (alpha in Y15), or overwriting with
// the bias row in Y14.
#define ACC_ROW8(y) \
	VFMADD213PS (DI), Y15, y; \
	VMOVUPS     y, (DI);      \
	ADDQ        SI, DI

#define SET_ROW8(y) \
	VFMADD213PS Y14, Y15, y; \
	VMOVUPS     y, (DI);     \
	ADDQ        SI, DI

// func gemmKernelAVX512(kc int, a *float32, ars, aks int, b *float32, bks int, c *float32, ldc int, alpha float32, bias *float32)
TEXT ·gemmKernelAVX512(SB), NOSPLIT, $0-80
	MOVQ kc+0(FP), CX
	MOVQ a+8(FP), R8
	MOVQ ars+16(FP), R9
	SHLQ $2, R9
	MOVQ aks+24(FP), DX
	SHLQ $2, DX
	MOVQ b+32(FP), BX
	MOVQ bks+40(FP), AX
	SHLQ $2, AX
	A_ROWS
	MOVQ c+48(FP), DI
	MOVQ ldc+56(FP), SI
	SHLQ $2, SI
	PREFETCH_ROW64
	PREFETCH_ROW64
	PREFETCH_ROW64
	PREFETCH_ROW64
	PREFETCH_ROW64
	PREFETCH_ROW64
	PREFETCH_ROW64
	PREFETCH_ROW64
	PREFETCH_ROW64
	PREFETCH_ROW64
	PREFETCH_ROW64
	PREFETCH_ROW64
	PREFETCH_ROW64
	PREFETCH_ROW64

	VXORPS Z0, Z0, Z0
	VXORPS Z1, Z1, Z1
	VXORPS Z2, Z2, Z2
	VXORPS Z3, Z3, Z3
	VXORPS Z4, Z4, Z4
	VXORPS Z5, Z5, Z5
	VXORPS Z6, Z6, Z6
	VXORPS Z7, Z7, Z7
	VXORPS Z8, Z8, Z8
	VXORPS Z9, Z9, Z9
	VXORPS Z10, Z10, Z10
	VXORPS Z11, Z11, Z11
	VXORPS Z12, Z12, Z12
	VXORPS Z13, Z13, Z13
	VXORPS Z14, Z14, Z14
	VXORPS Z15, Z15, Z15
	VXORPS Z16, Z16, Z16
	VXORPS Z17, Z17, Z17
	VXORPS Z18, Z18, Z18
	VXORPS Z19, Z19, Z19
	VXORPS Z20, Z20, Z20
	VXORPS Z21, Z21, Z21
	VXORPS Z22, Z22, Z22
	VXORPS Z23, Z23, Z23
	VXORPS Z24, Z24, Z24
	VXORPS Z25, Z25, Z25
	VXORPS Z26, Z26, Z26
	VXORPS Z27, Z27, Z27

loop512:
	VMOVUPS (BX), Z28
	VMOVUPS 64(BX), Z29
	FMA_ROW512((R8), Z0, Z1)
	FMA_ROW512((R8)(R9*1), Z2, Z3)
	FMA_ROW512((R8)(R9*2), Z4, Z5)
	FMA_ROW512((R10), Z6, Z7)
	FMA_ROW512((R10)(R9*1), Z8, Z9)
	FMA_ROW512((R10)(R9*2), Z10, Z11)
	FMA_ROW512((R11), Z12, Z13)
	FMA_ROW512((R11)(R9*1), Z14, Z15)
	FMA_ROW512((R11)(R9*2), Z16, Z17)
	FMA_ROW512((R12), Z18, Z19)
	FMA_ROW512((R12)(R9*1), Z20, Z21)
	FMA_ROW512((R12)(R9*2), Z22, Z23)
	FMA_ROW512((R13), Z24, Z25)
	FMA_ROW512((R13)(R9*1), Z26, Z27)
	ADDQ AX, BX
	ADDQ DX, R8
	ADDQ DX, R10
	ADDQ DX, R11
	ADDQ DX, R12
	ADDQ DX, R13
	DECQ CX
	JNZ  loop512

	MOVQ         c+48(FP), DI
	VBROADCASTSS alpha+64(FP), Z30
	MOVQ         bias+72(FP), AX
	TESTQ        AX, AX
	JNZ          set512
	ACC_ROW512(Z0, Z1)
	ACC_ROW512(Z2, Z3)
	ACC_ROW512(Z4, Z5)
	ACC_ROW512(Z6, Z7)
	ACC_ROW512(Z8, Z9)
	ACC_ROW512(Z10, Z11)
	ACC_ROW512(Z12, Z13)
	ACC_ROW512(Z14, Z15)
	ACC_ROW512(Z16, Z17)
	ACC_ROW512(Z18, Z19)
	ACC_ROW512(Z20, Z21)
	ACC_ROW512(Z22, Z23)
	ACC_ROW512(Z24, Z25)
	ACC_ROW512(Z26, Z27)
	VZEROUPPER
	RET

set512:
	VMOVUPS (AX), Z28
	VMOVUPS 64(AX), Z29
	SET_ROW512(Z0, Z1)
	SET_ROW512(Z2, Z3)
	SET_ROW512(Z4, Z5)
	SET_ROW512(Z6, Z7)
	SET_ROW512(Z8, Z9)
	SET_ROW512(Z10, Z11)
	SET_ROW512(Z12, Z13)
	SET_ROW512(Z14, Z15)
	SET_ROW512(Z16, Z17)
	SET_ROW512(Z18, Z19)
	SET_ROW512(Z20, Z21)
	SET_ROW512(Z22, Z23)
	SET_ROW512(Z24, Z25)
	SET_ROW512(Z26, Z27)
	VZEROUPPER
	RET

// func gemmKernelAVX512x8(kc int, a *float32, ars, aks int, b *float32, bks int, c *float32, ldc int, alpha float32, bias *float32)
// The (14,8) tile: the AVX-512 kernel narrowed to one ymm accumulator per row (with
// AVX-512VL's broadcast operands), for a last column sliver of at most 8 columns, at a
// quarter of the full tile's cost. Same arithmetic per element as gemmKernelAVX512.
TEXT ·gemmKernelAVX512x8(SB), NOSPLIT, $0-80
	MOVQ kc+0(FP), CX
	MOVQ a+8(FP), R8
	MOVQ ars+16(FP), R9
	SHLQ $2, R9
	MOVQ aks+24(FP), DX
	SHLQ $2, DX
	MOVQ b+32(FP), BX
	MOVQ bks+40(FP), AX
	SHLQ $2, AX
	A_ROWS

	VXORPS Y0, Y0, Y0
	VXORPS Y1, Y1, Y1
	VXORPS Y2, Y2, Y2
	VXORPS Y3, Y3, Y3
	VXORPS Y4, Y4, Y4
	VXORPS Y5, Y5, Y5
	VXORPS Y6, Y6, Y6
	VXORPS Y7, Y7, Y7
	VXORPS Y8, Y8, Y8
	VXORPS Y9, Y9, Y9
	VXORPS Y10, Y10, Y10
	VXORPS Y11, Y11, Y11
	VXORPS Y12, Y12, Y12
	VXORPS Y13, Y13, Y13

loop8:
	VMOVUPS          (BX), Y14
	VFMADD231PS.BCST (R8), Y14, Y0
	VFMADD231PS.BCST (R8)(R9*1), Y14, Y1
	VFMADD231PS.BCST (R8)(R9*2), Y14, Y2
	VFMADD231PS.BCST (R10), Y14, Y3
	VFMADD231PS.BCST (R10)(R9*1), Y14, Y4
	VFMADD231PS.BCST (R10)(R9*2), Y14, Y5
	VFMADD231PS.BCST (R11), Y14, Y6
	VFMADD231PS.BCST (R11)(R9*1), Y14, Y7
	VFMADD231PS.BCST (R11)(R9*2), Y14, Y8
	VFMADD231PS.BCST (R12), Y14, Y9
	VFMADD231PS.BCST (R12)(R9*1), Y14, Y10
	VFMADD231PS.BCST (R12)(R9*2), Y14, Y11
	VFMADD231PS.BCST (R13), Y14, Y12
	VFMADD231PS.BCST (R13)(R9*1), Y14, Y13
	ADDQ             AX, BX
	ADDQ             DX, R8
	ADDQ             DX, R10
	ADDQ             DX, R11
	ADDQ             DX, R12
	ADDQ             DX, R13
	DECQ             CX
	JNZ              loop8

	MOVQ         c+48(FP), DI
	MOVQ         ldc+56(FP), SI
	SHLQ         $2, SI
	VBROADCASTSS alpha+64(FP), Y15
	MOVQ         bias+72(FP), AX
	TESTQ        AX, AX
	JNZ          set8
	ACC_ROW8(Y0)
	ACC_ROW8(Y1)
	ACC_ROW8(Y2)
	ACC_ROW8(Y3)
	ACC_ROW8(Y4)
	ACC_ROW8(Y5)
	ACC_ROW8(Y6)
	ACC_ROW8(Y7)
	ACC_ROW8(Y8)
	ACC_ROW8(Y9)
	ACC_ROW8(Y10)
	ACC_ROW8(Y11)
	ACC_ROW8(Y12)
	ACC_ROW8(Y13)
	VZEROUPPER
	RET

set8:
	VMOVUPS (AX), Y14
	SET_ROW8(Y0)
	SET_ROW8(Y1)
	SET_ROW8(Y2)
	SET_ROW8(Y3)
	SET_ROW8(Y4)
	SET_ROW8(Y5)
	SET_ROW8(Y6)
	SET_ROW8(Y7)
	SET_ROW8(Y8)
	SET_ROW8(Y9)
	SET_ROW8(Y10)
	SET_ROW8(Y11)
	SET_ROW8(Y12)
	SET_ROW8(Y13)
	VZEROUPPER
	RET

// Two accumulators of one row of the (6,16) tile: broadcast A(row) into Y14, then
// ylo, yhi += Y14 * (Y12, Y13).
#define FMA_ROW256(addr, ylo, yhi) \
	VBROADCASTSS addr, Y14; \
	VFMADD231PS  Y12, Y14, ylo; \
	VFMADD231PS  Y13, Y14, yhi

#define ACC_ROW256(ylo, yhi) \
	VFMADD213PS (DI), Y15, ylo; \
	VFMADD213PS 32(DI), Y15, yhi; \
	VMOVUPS     ylo, (DI); \
	VMOVUPS     yhi, 32(DI); \
	ADDQ        SI, DI

#define SET_ROW256(ylo, yhi) \
	VFMADD213PS Y12, Y15, ylo; \
	VFMADD213PS Y13, Y15, yhi; \
	VMOVUPS ylo, (DI); \
	VMOVUPS yhi, 32(DI); \
	ADDQ    SI, DI

// func gemmKernelAVX2(kc int, a *float32, ars, aks int, b *float32, bks int, c *float32, ldc int, alpha float32, bias *float32)
TEXT ·gemmKernelAVX2(SB), NOSPLIT, $0-80
	MOVQ kc+0(FP), CX
	MOVQ a+8(FP), R8
	MOVQ ars+16(FP), R9
	SHLQ $2, R9
	MOVQ aks+24(FP), DX
	SHLQ $2, DX
	MOVQ b+32(FP), BX
	MOVQ bks+40(FP), AX
	SHLQ $2, AX
	LEAQ (R8)(R9*2), R10
	ADDQ R9, R10
	MOVQ c+48(FP), DI
	MOVQ ldc+56(FP), SI
	SHLQ $2, SI
	PREFETCH_ROW64
	PREFETCH_ROW64
	PREFETCH_ROW64
	PREFETCH_ROW64
	PREFETCH_ROW64
	PREFETCH_ROW64

	VXORPS Y0, Y0, Y0
	VXORPS Y1, Y1, Y1
	VXORPS Y2, Y2, Y2
	VXORPS Y3, Y3, Y3
	VXORPS Y4, Y4, Y4
	VXORPS Y5, Y5, Y5
	VXORPS Y6, Y6, Y6
	VXORPS Y7, Y7, Y7
	VXORPS Y8, Y8, Y8
	VXORPS Y9, Y9, Y9
	VXORPS Y10, Y10, Y10
	VXORPS Y11, Y11, Y11

loop256:
	VMOVUPS (BX), Y12
	VMOVUPS 32(BX), Y13
	FMA_ROW256((R8), Y0, Y1)
	FMA_ROW256((R8)(R9*1), Y2, Y3)
	FMA_ROW256((R8)(R9*2), Y4, Y5)
	FMA_ROW256((R10), Y6, Y7)
	FMA_ROW256((R10)(R9*1), Y8, Y9)
	FMA_ROW256((R10)(R9*2), Y10, Y11)
	ADDQ AX, BX
	ADDQ DX, R8
	ADDQ DX, R10
	DECQ CX
	JNZ  loop256

	MOVQ         c+48(FP), DI
	VBROADCASTSS alpha+64(FP), Y15
	MOVQ         bias+72(FP), AX
	TESTQ        AX, AX
	JNZ          set256
	ACC_ROW256(Y0, Y1)
	ACC_ROW256(Y2, Y3)
	ACC_ROW256(Y4, Y5)
	ACC_ROW256(Y6, Y7)
	ACC_ROW256(Y8, Y9)
	ACC_ROW256(Y10, Y11)
	VZEROUPPER
	RET

set256:
	VMOVUPS (AX), Y12
	VMOVUPS 32(AX), Y13
	SET_ROW256(Y0, Y1)
	SET_ROW256(Y2, Y3)
	SET_ROW256(Y4, Y5)
	SET_ROW256(Y6, Y7)
	SET_ROW256(Y8, Y9)
	SET_ROW256(Y10, Y11)
	VZEROUPPER
	RET

// One row of the (6,8) tile: broadcast A(row) into y, then acc += Y12 * y.
#define FMA_ROW6x8(addr, y, acc) \
	VBROADCASTSS addr, y; \
	VFMADD231PS  Y12, y, acc

// func gemmKernelAVX2x8(kc int, a *float32, ars, aks int, b *float32, bks int, c *float32, ldc int, alpha float32, bias *float32)
// The (6,8) tile: the AVX2 kernel narrowed to one accumulator per row, for a last
// column sliver of at most 8 columns, at half the full tile's cost. Same arithmetic per
// element as gemmKernelAVX2 (and so as gemmKernelAVX512). The six broadcasts go to six
// registers so that the rows' fused multiply-adds do not wait on one another.
TEXT ·gemmKernelAVX2x8(SB), NOSPLIT, $0-80
	MOVQ kc+0(FP), CX
	MOVQ a+8(FP), R8
	MOVQ ars+16(FP), R9
	SHLQ $2, R9
	MOVQ aks+24(FP), DX
	SHLQ $2, DX
	MOVQ b+32(FP), BX
	MOVQ bks+40(FP), AX
	SHLQ $2, AX
	LEAQ (R8)(R9*2), R10
	ADDQ R9, R10

	VXORPS Y0, Y0, Y0
	VXORPS Y1, Y1, Y1
	VXORPS Y2, Y2, Y2
	VXORPS Y3, Y3, Y3
	VXORPS Y4, Y4, Y4
	VXORPS Y5, Y5, Y5

loop6x8:
	VMOVUPS (BX), Y12
	FMA_ROW6x8((R8), Y6, Y0)
	FMA_ROW6x8((R8)(R9*1), Y7, Y1)
	FMA_ROW6x8((R8)(R9*2), Y8, Y2)
	FMA_ROW6x8((R10), Y9, Y3)
	FMA_ROW6x8((R10)(R9*1), Y10, Y4)
	FMA_ROW6x8((R10)(R9*2), Y11, Y5)
	ADDQ AX, BX
	ADDQ DX, R8
	ADDQ DX, R10
	DECQ CX
	JNZ  loop6x8

	MOVQ         c+48(FP), DI
	MOVQ         ldc+56(FP), SI
	SHLQ         $2, SI
	VBROADCASTSS alpha+64(FP), Y15
	MOVQ         bias+72(FP), AX
	TESTQ        AX, AX
	JNZ          set6x8
	ACC_ROW8(Y0)
	ACC_ROW8(Y1)
	ACC_ROW8(Y2)
	ACC_ROW8(Y3)
	ACC_ROW8(Y4)
	ACC_ROW8(Y5)
	VZEROUPPER
	RET

set6x8:
	VMOVUPS (AX), Y14
	SET_ROW8(Y0)
	SET_ROW8(Y1)
	SET_ROW8(Y2)
	SET_ROW8(Y3)
	SET_ROW8(Y4)
	SET_ROW8(Y5)
	VZEROUPPER
	RET
