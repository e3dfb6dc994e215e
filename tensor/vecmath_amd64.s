//go:build amd64 && !purego

#include "textflag.h"

// Vector versions of scalar float32 code (expf, the GELU of elementwise.go, the AdamW
// update), eight lanes at a time. Every lane performs exactly the float32 operations of
// the scalar code, in the same order and without fused multiply-adds, so the results
// are the same bits; the tests compare them.

DATA vconst<>+0(SB)/4, $0x40000000  // 2
DATA vconst<>+4(SB)/4, $0xbf800000  // -1
DATA vconst<>+8(SB)/4, $0x3f318000  // ln2hi
DATA vconst<>+12(SB)/4, $0xb95e8083 // ln2lo
DATA vconst<>+16(SB)/4, $0x39506967 // expf polynomial c0
DATA vconst<>+20(SB)/4, $0x3ab743ce // c1
DATA vconst<>+24(SB)/4, $0x3c088908 // c2
DATA vconst<>+28(SB)/4, $0x3d2aa9c1 // c3
DATA vconst<>+32(SB)/4, $0x3e2aaaaa // c4
DATA vconst<>+36(SB)/4, $0x3f000000 // c5
DATA vconst<>+40(SB)/4, $0x3e095d4f // 3*0.044715
DATA vconst<>+44(SB)/4, $0x3f800000 // 1
DATA vconst<>+48(SB)/4, $0x3f000000 // 0.5
DATA vconst<>+52(SB)/4, $0x3f4c422a // sqrt(2/pi)
DATA vconst<>+56(SB)/4, $0x3d372713 // 0.044715
DATA vconst<>+60(SB)/4, $0x41100000 // 9
DATA vconst<>+64(SB)/4, $0xc1100000 // -9
DATA vconst<>+68(SB)/4, $0x0000007f // 127 (integer)
DATA vconst<>+72(SB)/4, $0x3fb8aa3b // log2(e)
DATA vconst<>+76(SB)/4, $0x42b17217 // 88.72283: above, expf is +Inf
DATA vconst<>+80(SB)/4, $0xc2aeac4f // -87.33654: below, expf is 0
DATA vconst<>+84(SB)/4, $0x7f800000 // +Inf
GLOBL vconst<>(SB), RODATA|NOPTR, $88

// LOAD_CONSTS keeps the most used constants in Y8..Y15.
#define LOAD_CONSTS \
	VBROADCASTSS vconst<>+44(SB), Y15; \
	VBROADCASTSS vconst<>+48(SB), Y14; \
	VBROADCASTSS vconst<>+52(SB), Y13; \
	VBROADCASTSS vconst<>+56(SB), Y12; \
	VBROADCASTSS vconst<>+60(SB), Y11; \
	VBROADCASTSS vconst<>+64(SB), Y10; \
	VBROADCASTSS vconst<>+68(SB), Y9;  \
	VBROADCASTSS vconst<>+72(SB), Y8

// GELU_U: Y1 = sqrt(2/pi) * (x + 0.044715*x*x*x) for x in Y0.
#define GELU_U \
	VMULPS Y12, Y0, Y1; \
	VMULPS Y0, Y1, Y1;  \
	VMULPS Y0, Y1, Y1;  \
	VADDPS Y1, Y0, Y1;  \
	VMULPS Y13, Y1, Y1

// EXP: Y5 = expf(Y4) for Y4 in expf's finite range, with expf's steps (n =
// floor(x·log2e + 0.5), r = x - n·ln2hi - n·ln2lo, the polynomial, 2^n in two factors).
// Needs LOAD_CONSTS; uses Y3, Y6, Y7.
#define EXP \
	VMULPS       Y8, Y4, Y6;          \
	VADDPS       Y14, Y6, Y6;         \
	VROUNDPS     $9, Y6, Y6;          \
	VBROADCASTSS vconst<>+8(SB), Y3;  \
	VMULPS       Y3, Y6, Y7;          \
	VSUBPS       Y7, Y4, Y7;          \
	VBROADCASTSS vconst<>+12(SB), Y3; \
	VMULPS       Y3, Y6, Y5;          \
	VSUBPS       Y5, Y7, Y7;          \
	VBROADCASTSS vconst<>+16(SB), Y5; \
	VMULPS       Y7, Y5, Y5;          \
	VBROADCASTSS vconst<>+20(SB), Y3; \
	VADDPS       Y3, Y5, Y5;          \
	VMULPS       Y7, Y5, Y5;          \
	VBROADCASTSS vconst<>+24(SB), Y3; \
	VADDPS       Y3, Y5, Y5;          \
	VMULPS       Y7, Y5, Y5;          \
	VBROADCASTSS vconst<>+28(SB), Y3; \
	VADDPS       Y3, Y5, Y5;          \
	VMULPS       Y7, Y5, Y5;          \
	VBROADCASTSS vconst<>+32(SB), Y3; \
	VADDPS       Y3, Y5, Y5;          \
	VMULPS       Y7, Y5, Y5;          \
	VBROADCASTSS vconst<>+36(SB), Y3; \
	VADDPS       Y3, Y5, Y5;          \
	VMULPS       Y7, Y5, Y5;          \
	VMULPS       Y7, Y5, Y5;          \
	VADDPS       Y7, Y5, Y5;          \
	VADDPS       Y15, Y5, Y5;         \
	VCVTTPS2DQ   Y6, Y6;              \
	VPSRAD       $1, Y6, Y7;          \
	VPSUBD       Y7, Y6, Y6;          \
	VPADDD       Y9, Y7, Y7;          \
	VPSLLD       $23, Y7, Y7;         \
	VMULPS       Y7, Y5, Y5;          \
	VPADDD       Y9, Y6, Y6;          \
	VPSLLD       $23, Y6, Y6;         \
	VMULPS       Y6, Y5, Y5

// TANH: Y2 = tanhf(Y1): ±1 for |u| >= 9, else 1 - 2/(expf(2u)+1). Uses Y3..Y7.
#define TANH \
	VMINPS       Y1, Y11, Y4;        \
	VMAXPS       Y4, Y10, Y4;        \
	VADDPS       Y4, Y4, Y4;         \
	EXP;                             \
	VADDPS       Y15, Y5, Y5;        \
	VBROADCASTSS vconst<>+0(SB), Y3; \
	VDIVPS       Y5, Y3, Y5;         \
	VSUBPS       Y5, Y15, Y2;        \
	VCMPPS       $0x1d, Y11, Y1, Y6; \
	VBLENDVPS    Y6, Y15, Y2, Y2;    \
	VCMPPS       $0x12, Y10, Y1, Y6; \
	VBROADCASTSS vconst<>+4(SB), Y3; \
	VBLENDVPS    Y6, Y3, Y2, Y2

// func geluForwardAVX2(out, inp *float32, n int)
TEXT ·geluForwardAVX2(SB), NOSPLIT, $0-24
	MOVQ out+0(FP), DI
	MOVQ inp+8(FP), SI
	MOVQ n+16(FP), CX
	SHRQ $3, CX
	JZ   fdone
	LOAD_CONSTS

floop:
	VMOVUPS (SI), Y0
	GELU_U
	TANH
	VMULPS  Y14, Y0, Y3
	VADDPS  Y15, Y2, Y2
	VMULPS  Y2, Y3, Y3
	VMOVUPS Y3, (DI)
	ADDQ    $32, SI
	ADDQ    $32, DI
	DECQ    CX
	JNZ     floop

fdone:
	VZEROUPPER
	RET

// func geluBackwardAVX2(dinp, inp, dout *float32, n int)
TEXT ·geluBackwardAVX2(SB), NOSPLIT, $0-32
	MOVQ dinp+0(FP), DI
	MOVQ inp+8(FP), SI
	MOVQ dout+16(FP), DX
	MOVQ n+24(FP), CX
	SHRQ $3, CX
	JZ   bdone
	LOAD_CONSTS

bloop:
	VMOVUPS (SI), Y0
	GELU_U
	TANH
	VMULPS       Y2, Y2, Y3
	VSUBPS       Y3, Y15, Y3
	VADDPS       Y15, Y2, Y4
	VMULPS       Y14, Y4, Y4
	VMULPS       Y14, Y0, Y5
	VMULPS       Y3, Y5, Y5
	VMULPS       Y13, Y5, Y5
	VBROADCASTSS vconst<>+40(SB), Y6
	VMULPS       Y0, Y6, Y6
	VMULPS       Y0, Y6, Y6
	VADDPS       Y15, Y6, Y6
	VMULPS       Y6, Y5, Y5
	VADDPS       Y5, Y4, Y4
	VMULPS       (DX), Y4, Y4
	VADDPS       (DI), Y4, Y4
	VMOVUPS      Y4, (DI)
	ADDQ         $32, SI
	ADDQ         $32, DX
	ADDQ         $32, DI
	DECQ         CX
	JNZ          bloop

bdone:
	VZEROUPPER
	RET

// func transpose8AVX2(dst *float32, ld int, src *float32, lds int, n int)
// dst[p*ld + r] = src[r*lds + p] for r < 8, p < n (n a multiple of 8): 8x8 blocks moved
// through registers (unpack, shuffle, swap of 128-bit halves).
TEXT ·transpose8AVX2(SB), NOSPLIT, $0-40
	MOVQ dst+0(FP), DI
	MOVQ ld+8(FP), DX
	SHLQ $2, DX
	MOVQ src+16(FP), SI
	MOVQ lds+24(FP), BX
	SHLQ $2, BX
	MOVQ n+32(FP), CX
	SHRQ $3, CX
	JZ   tdone
	LEAQ (BX)(BX*2), R8 // 3*lds
	LEAQ (DX)(DX*2), R9 // 3*ld

tloop:
	MOVQ    SI, R10
	VMOVUPS (R10), Y0
	VMOVUPS (R10)(BX*1), Y1
	VMOVUPS (R10)(BX*2), Y2
	VMOVUPS (R10)(R8*1), Y3
	LEAQ    (R10)(BX*4), R10
	VMOVUPS (R10), Y4
	VMOVUPS (R10)(BX*1), Y5
	VMOVUPS (R10)(BX*2), Y6
	VMOVUPS (R10)(R8*1), Y7

	VUNPCKLPS Y1, Y0, Y8
	VUNPCKHPS Y1, Y0, Y9
	VUNPCKLPS Y3, Y2, Y10
	VUNPCKHPS Y3, Y2, Y11
	VUNPCKLPS Y5, Y4, Y12
	VUNPCKHPS Y5, Y4, Y13
	VUNPCKLPS Y7, Y6, Y14
	VUNPCKHPS Y7, Y6, Y15

	VSHUFPS $0x44, Y10, Y8, Y0
	VSHUFPS $0xee, Y10, Y8, Y1
	VSHUFPS $0x44, Y11, Y9, Y2
	VSHUFPS $0xee, Y11, Y9, Y3
	VSHUFPS $0x44, Y14, Y12, Y4
	VSHUFPS $0xee, Y14, Y12, Y5
	VSHUFPS $0x44, Y15, Y13, Y6
	VSHUFPS $0xee, Y15, Y13, Y7

	VPERM2F128 $0x20, Y4, Y0, Y8
	VPERM2F128 $0x20, Y5, Y1, Y9
	VPERM2F128 $0x20, Y6, Y2, Y10
	VPERM2F128 $0x20, Y7, Y3, Y11
	VPERM2F128 $0x31, Y4, Y0, Y12
	VPERM2F128 $0x31, Y5, Y1, Y13
	VPERM2F128 $0x31, Y6, Y2, Y14
	VPERM2F128 $0x31, Y7, Y3, Y15

	MOVQ    DI, R10
	VMOVUPS Y8, (R10)
	VMOVUPS Y9, (R10)(DX*1)
	VMOVUPS Y10, (R10)(DX*2)
	VMOVUPS Y11, (R10)(R9*1)
	LEAQ    (R10)(DX*4), R10
	VMOVUPS Y12, (R10)
	VMOVUPS Y13, (R10)(DX*1)
	VMOVUPS Y14, (R10)(DX*2)
	VMOVUPS Y15, (R10)(R9*1)

	ADDQ $32, SI
	LEAQ (DI)(DX*8), DI
	DECQ CX
	JNZ  tloop

tdone:
	VZEROUPPER
	RET

// func addAVX2(out, a, b *float32, n int)
// out[i] = a[i] + b[i] for i < n, n a multiple of 8.
TEXT ·addAVX2(SB), NOSPLIT, $0-32
	MOVQ out+0(FP), DI
	MOVQ a+8(FP), SI
	MOVQ b+16(FP), DX
	MOVQ n+24(FP), CX
	SHRQ $3, CX
	JZ   sdone

sloop:
	VMOVUPS (SI), Y0
	VADDPS  (DX), Y0, Y0
	VMOVUPS Y0, (DI)
	ADDQ    $32, SI
	ADDQ    $32, DX
	ADDQ    $32, DI
	DECQ    CX
	JNZ     sloop

sdone:
	VZEROUPPER
	RET

// func adamwAVX2(p, grad, m, v *float32, n int, c *[8]float32)
// The AdamW update of adamw.do for n elements (a multiple of 8); c holds b1, 1-b1, b2,
// 1-b2, eps, stepSize, invSqrtBC2, decayFactor.
TEXT ·adamwAVX2(SB), NOSPLIT, $0-48
	MOVQ p+0(FP), DI
	MOVQ grad+8(FP), SI
	MOVQ m+16(FP), DX
	MOVQ v+24(FP), BX
	MOVQ n+32(FP), CX
	MOVQ c+40(FP), AX
	SHRQ $3, CX
	JZ   wdone
	VBROADCASTSS 0(AX), Y8   // b1
	VBROADCASTSS 4(AX), Y9   // 1-b1
	VBROADCASTSS 8(AX), Y10  // b2
	VBROADCASTSS 12(AX), Y11 // 1-b2
	VBROADCASTSS 16(AX), Y12 // eps
	VBROADCASTSS 20(AX), Y13 // stepSize
	VBROADCASTSS 24(AX), Y14 // invSqrtBC2
	VBROADCASTSS 28(AX), Y15 // decayFactor

wloop:
	VMOVUPS (SI), Y0        // g
	VMULPS  (DX), Y8, Y1    // b1*m
	VMULPS  Y0, Y9, Y2      // (1-b1)*g
	VADDPS  Y2, Y1, Y1      // m
	VMOVUPS Y1, (DX)
	VMULPS  (BX), Y10, Y3   // b2*v
	VMULPS  Y0, Y11, Y4     // (1-b2)*g
	VMULPS  Y0, Y4, Y4      // *g
	VADDPS  Y4, Y3, Y3      // v
	VMOVUPS Y3, (BX)
	VSQRTPS Y3, Y3
	VMULPS  Y14, Y3, Y3
	VADDPS  Y12, Y3, Y3     // denom
	VMULPS  Y1, Y13, Y1     // stepSize*m
	VDIVPS  Y3, Y1, Y1      // /denom
	VMULPS  (DI), Y15, Y5   // p*decayFactor
	VSUBPS  Y1, Y5, Y5
	VMOVUPS Y5, (DI)
	ADDQ    $32, DI
	ADDQ    $32, SI
	ADDQ    $32, DX
	ADDQ    $32, BX
	DECQ    CX
	JNZ     wloop

wdone:
	VZEROUPPER
	RET

// func expShiftAVX2(dst, src *float32, n int, shift float32)
// dst[i] = expf(src[i] - shift) for i < n, n a multiple of 8, with expf's limits.
TEXT ·expShiftAVX2(SB), NOSPLIT, $0-28
	MOVQ dst+0(FP), DI
	MOVQ src+8(FP), SI
	MOVQ n+16(FP), CX
	SHRQ $3, CX
	JZ   edone
	LOAD_CONSTS
	VBROADCASTSS shift+24(FP), Y0
	VBROADCASTSS vconst<>+76(SB), Y10
	VBROADCASTSS vconst<>+80(SB), Y11
	VBROADCASTSS vconst<>+84(SB), Y12
	VXORPS       Y13, Y13, Y13

eloop:
	VMOVUPS   (SI), Y4
	VSUBPS    Y0, Y4, Y4
	VCMPPS    $0x1e, Y10, Y4, Y1 // x > 88.72283
	VCMPPS    $0x11, Y11, Y4, Y2 // x < -87.33654
	EXP
	VBLENDVPS Y1, Y12, Y5, Y5
	VBLENDVPS Y2, Y13, Y5, Y5
	VMOVUPS   Y5, (DI)
	ADDQ      $32, SI
	ADDQ      $32, DI
	DECQ      CX
	JNZ       eloop

edone:
	VZEROUPPER
	RET

// HSUM: X0 = ((a0+a4)+(a2+a6))+((a1+a5)+(a3+a7)) for Y0 = a0..a7, the combine order of
// sum8 (layernorm.go). Uses X1.
#define HSUM \
	VEXTRACTF128 $1, Y0, X1; \
	VADDPS       X1, X0, X0; \
	VMOVHLPS     X0, X0, X1; \
	VADDPS       X1, X0, X0; \
	VMOVSHDUP    X0, X1;     \
	VADDSS       X1, X0, X0

// func sum8AVX2(x *float32, n int) float32
// sum8 of n floats, n a multiple of 8.
TEXT ·sum8AVX2(SB), NOSPLIT, $0-20
	MOVQ   x+0(FP), SI
	MOVQ   n+8(FP), CX
	SHRQ   $3, CX
	VXORPS Y0, Y0, Y0

s8loop:
	VADDPS (SI), Y0, Y0
	ADDQ   $32, SI
	DECQ   CX
	JNZ    s8loop
	HSUM
	MOVSS  X0, ret+16(FP)
	VZEROUPPER
	RET

// func sumSqDev8AVX2(x *float32, n int, m float32) float32
// sum8 of (x[i]-m)², n a multiple of 8.
TEXT ·sumSqDev8AVX2(SB), NOSPLIT, $0-28
	MOVQ         x+0(FP), SI
	MOVQ         n+8(FP), CX
	SHRQ         $3, CX
	VBROADCASTSS m+16(FP), Y2
	VXORPS       Y0, Y0, Y0

sqloop:
	VMOVUPS (SI), Y1
	VSUBPS  Y2, Y1, Y1
	VMULPS  Y1, Y1, Y1
	VADDPS  Y1, Y0, Y0
	ADDQ    $32, SI
	DECQ    CX
	JNZ     sqloop
	HSUM
	MOVSS   X0, ret+24(FP)
	VZEROUPPER
	RET

// func lnApplyAVX2(o, x, w, b *float32, n int, m, s float32)
// o[i] = (x[i]-m)*s*w[i] + b[i], n a multiple of 8.
TEXT ·lnApplyAVX2(SB), NOSPLIT, $0-48
	MOVQ         o+0(FP), DI
	MOVQ         x+8(FP), SI
	MOVQ         w+16(FP), DX
	MOVQ         b+24(FP), BX
	MOVQ         n+32(FP), CX
	SHRQ         $3, CX
	VBROADCASTSS m+40(FP), Y2
	VBROADCASTSS s+44(FP), Y3

laloop:
	VMOVUPS (SI), Y0
	VSUBPS  Y2, Y0, Y0
	VMULPS  Y3, Y0, Y0
	VMULPS  (DX), Y0, Y0
	VADDPS  (BX), Y0, Y0
	VMOVUPS Y0, (DI)
	ADDQ    $32, SI
	ADDQ    $32, DX
	ADDQ    $32, BX
	ADDQ    $32, DI
	DECQ    CX
	JNZ     laloop
	VZEROUPPER
	RET

// func lnBwdSumsAVX2(x, d, w *float32, n int, m, s float32) (dnormMean, dnormNormMean float32)
// sum8 of dn = w[i]*d[i] and of dn*((x[i]-m)*s), n a multiple of 8 (not yet divided by n).
TEXT ·lnBwdSumsAVX2(SB), NOSPLIT, $0-48
	MOVQ         x+0(FP), SI
	MOVQ         d+8(FP), DX
	MOVQ         w+16(FP), BX
	MOVQ         n+24(FP), CX
	SHRQ         $3, CX
	VBROADCASTSS m+32(FP), Y2
	VBROADCASTSS s+36(FP), Y3
	VXORPS       Y4, Y4, Y4
	VXORPS       Y5, Y5, Y5

lsloop:
	VMOVUPS (SI), Y0
	VSUBPS  Y2, Y0, Y0
	VMULPS  Y3, Y0, Y0 // norm
	VMOVUPS (BX), Y1
	VMULPS  (DX), Y1, Y1 // dn
	VADDPS  Y1, Y4, Y4
	VMULPS  Y0, Y1, Y1
	VADDPS  Y1, Y5, Y5
	ADDQ    $32, SI
	ADDQ    $32, DX
	ADDQ    $32, BX
	DECQ    CX
	JNZ     lsloop
	VMOVUPS Y4, Y0
	HSUM
	MOVSS   X0, dnormMean+40(FP)
	VMOVUPS Y5, Y0
	HSUM
	MOVSS   X0, dnormNormMean+44(FP)
	VZEROUPPER
	RET

// func lnBwdApplyAVX2(di, x, d, w *float32, n int, m, s, dm, dnm float32)
// di[i] += (w[i]*d[i] - dm - (x[i]-m)*s*dnm) * s, n a multiple of 8.
TEXT ·lnBwdApplyAVX2(SB), NOSPLIT, $0-56
	MOVQ         di+0(FP), DI
	MOVQ         x+8(FP), SI
	MOVQ         d+16(FP), DX
	MOVQ         w+24(FP), BX
	MOVQ         n+32(FP), CX
	SHRQ         $3, CX
	VBROADCASTSS m+40(FP), Y2
	VBROADCASTSS s+44(FP), Y3
	VBROADCASTSS dm+48(FP), Y4
	VBROADCASTSS dnm+52(FP), Y5

lbloop:
	VMOVUPS (SI), Y0
	VSUBPS  Y2, Y0, Y0
	VMULPS  Y3, Y0, Y0   // norm
	VMOVUPS (BX), Y1
	VMULPS  (DX), Y1, Y1 // dn
	VSUBPS  Y4, Y1, Y1   // dn - dm
	VMULPS  Y5, Y0, Y0   // norm*dnm
	VSUBPS  Y0, Y1, Y1
	VMULPS  Y3, Y1, Y1
	VADDPS  (DI), Y1, Y1
	VMOVUPS Y1, (DI)
	ADDQ    $32, SI
	ADDQ    $32, DX
	ADDQ    $32, BX
	ADDQ    $32, DI
	DECQ    CX
	JNZ     lbloop
	VZEROUPPER
	RET

// func maxAVX2(x *float32, n int) float32
// The largest of n floats, n a positive multiple of 8 (a maximum is the same in any
// order).
TEXT ·maxAVX2(SB), NOSPLIT, $0-20
	MOVQ    x+0(FP), SI
	MOVQ    n+8(FP), CX
	SHRQ    $3, CX
	VMOVUPS (SI), Y0
	ADDQ    $32, SI
	DECQ    CX
	JZ      mxdone

mxloop:
	VMAXPS (SI), Y0, Y0
	ADDQ   $32, SI
	DECQ   CX
	JNZ    mxloop

mxdone:
	VEXTRACTF128 $1, Y0, X1
	VMAXPS       X1, X0, X0
	VMOVHLPS     X0, X0, X1
	VMAXPS       X1, X0, X0
	VMOVSHDUP    X0, X1
	VMAXSS       X1, X0, X0
	MOVSS        X0, ret+16(FP)
	VZEROUPPER
	RET

// func scaleAVX2(x *float32, n int, c float32)
// x[i] *= c for i < n, n a multiple of 8.
TEXT ·scaleAVX2(SB), NOSPLIT, $0-20
	MOVQ x+0(FP), DI
	MOVQ n+8(FP), CX
	SHRQ $3, CX
	JZ   scdone
	VBROADCASTSS c+16(FP), Y1

scloop:
	VMULPS  (DI), Y1, Y0
	VMOVUPS Y0, (DI)
	ADDQ    $32, DI
	DECQ    CX
	JNZ     scloop

scdone:
	VZEROUPPER
	RET

// func softmaxGradAVX2(ds, p *float32, n int, d, scale float32)
// ds[i] = p[i] * (ds[i] - d) * scale for i < n, n a multiple of 8.
TEXT ·softmaxGradAVX2(SB), NOSPLIT, $0-32
	MOVQ ds+0(FP), DI
	MOVQ p+8(FP), SI
	MOVQ n+16(FP), CX
	SHRQ $3, CX
	JZ   sgdone
	VBROADCASTSS d+24(FP), Y2
	VBROADCASTSS scale+28(FP), Y3

sgloop:
	VMOVUPS (DI), Y0
	VSUBPS  Y2, Y0, Y0
	VMULPS  (SI), Y0, Y0
	VMULPS  Y3, Y0, Y0
	VMOVUPS Y0, (DI)
	ADDQ    $32, SI
	ADDQ    $32, DI
	DECQ    CX
	JNZ     sgloop

sgdone:
	VZEROUPPER
	RET

// func dot8AVX2(a, b *float32, n int) float32
// dot8 of n floats, n a multiple of 8: eight running sums of the products, each
// product rounded before it is added, combined as HSUM does.
TEXT ·dot8AVX2(SB), NOSPLIT, $0-28
	MOVQ   a+0(FP), SI
	MOVQ   b+8(FP), DX
	MOVQ   n+16(FP), CX
	SHRQ   $3, CX
	VXORPS Y0, Y0, Y0
	JZ     d8done

d8loop:
	VMOVUPS (SI), Y1
	VMULPS  (DX), Y1, Y1
	VADDPS  Y1, Y0, Y0
	ADDQ    $32, SI
	ADDQ    $32, DX
	DECQ    CX
	JNZ     d8loop

d8done:
	HSUM
	MOVSS X0, ret+24(FP)
	VZEROUPPER
	RET

// func sumSq8AVX2(x *float32, n int) float64
// sumSq8 of n floats, n a multiple of 8: the squares in float64 (exact), eight running
// sums in Y0 (lanes 0-3) and Y1 (lanes 4-7), combined in sumSq8's order.
TEXT ·sumSq8AVX2(SB), NOSPLIT, $0-24
	MOVQ   x+0(FP), SI
	MOVQ   n+8(FP), CX
	SHRQ   $3, CX
	VXORPD Y0, Y0, Y0
	VXORPD Y1, Y1, Y1
	JZ     ssdone

ssloop:
	VCVTPS2PD (SI), Y2
	VCVTPS2PD 16(SI), Y3
	VMULPD    Y2, Y2, Y2
	VMULPD    Y3, Y3, Y3
	VADDPD    Y2, Y0, Y0
	VADDPD    Y3, Y1, Y1
	ADDQ      $32, SI
	DECQ      CX
	JNZ       ssloop

ssdone:
	VADDPD       Y1, Y0, Y0 // s_j + s_{j+4}
	VEXTRACTF128 $1, Y0, X1
	VADDPD       X1, X0, X0 // (s0+s4)+(s2+s6), (s1+s5)+(s3+s7)
	VUNPCKHPD    X0, X0, X1
	VADDSD       X1, X0, X0
	MOVSD        X0, ret+16(FP)
	VZEROUPPER
	RET
