//go:build amd64 && !purego

#include "textflag.h"

// func addToAVX2(dst, src *float32, n int)
// dst[i] += src[i] for i < n, n a multiple of 8: one VADDPS per eight elements, the
// same float32 addition as the plain loop's.
TEXT ·addToAVX2(SB), NOSPLIT, $0-24
	MOVQ dst+0(FP), DI
	MOVQ src+8(FP), SI
	MOVQ n+16(FP), CX
	SHRQ $3, CX
	JZ   adone

aloop:
	VMOVUPS (SI), Y0
	VADDPS  (DI), Y0, Y0
	VMOVUPS Y0, (DI)
	ADDQ    $32, SI
	ADDQ    $32, DI
	DECQ    CX
	JNZ     aloop

adone:
	VZEROUPPER
	RET
