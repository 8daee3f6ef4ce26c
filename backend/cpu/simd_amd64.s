#include "textflag.h"

// func dot8AVX(a, b *float32, n8 int) float32
// Eight lanes: Y0 += a*b (VMULPS then VADDPS, as dot8Go), two independent
// accumulators would change the order, so one; n8 > 0 groups of eight.
TEXT ·dot8AVX(SB), NOSPLIT, $0-28
	MOVQ a+0(FP), SI
	MOVQ b+8(FP), DI
	MOVQ n8+16(FP), CX
	VXORPS Y0, Y0, Y0
dotloop:
	VMOVUPS (SI), Y1
	VMULPS (DI), Y1, Y1
	VADDPS Y1, Y0, Y0
	ADDQ $32, SI
	ADDQ $32, DI
	DECQ CX
	JNZ dotloop
	VEXTRACTF128 $1, Y0, X1
	VADDPS X1, X0, X0
	VPERMILPS $0x4e, X0, X1
	VADDPS X1, X0, X0
	VPERMILPS $0xb1, X0, X1
	VADDPS X1, X0, X0
	VZEROUPPER
	MOVSS X0, ret+24(FP)
	RET

// func axpyAVX(out, v *float32, n8 int, w float32)
TEXT ·axpyAVX(SB), NOSPLIT, $0-28
	MOVQ out+0(FP), SI
	MOVQ v+8(FP), DI
	MOVQ n8+16(FP), CX
	VBROADCASTSS w+24(FP), Y2
axpyloop:
	VMULPS (DI), Y2, Y1
	VADDPS (SI), Y1, Y1
	VMOVUPS Y1, (SI)
	ADDQ $32, SI
	ADDQ $32, DI
	DECQ CX
	JNZ axpyloop
	VZEROUPPER
	RET

DATA swsign<>+0(SB)/4, $0x80000000
DATA swlo<>+0(SB)/4, $-87.0
DATA swhi<>+0(SB)/4, $88.0
DATA swlog2e<>+0(SB)/4, $1.44269504088896341
DATA swln2hi<>+0(SB)/4, $0.693359375
DATA swln2lo<>+0(SB)/4, $-2.12194440e-4
DATA swc0<>+0(SB)/4, $1.9875691500e-4
DATA swc1<>+0(SB)/4, $1.3981999507e-3
DATA swc2<>+0(SB)/4, $8.3334519073e-3
DATA swc3<>+0(SB)/4, $4.1665795894e-2
DATA swc4<>+0(SB)/4, $1.6666665459e-1
DATA swc5<>+0(SB)/4, $5.0000001201e-1
DATA swone<>+0(SB)/4, $1.0
DATA swbias<>+0(SB)/4, $127
GLOBL swsign<>(SB), RODATA|NOPTR, $4
GLOBL swlo<>(SB), RODATA|NOPTR, $4
GLOBL swhi<>(SB), RODATA|NOPTR, $4
GLOBL swlog2e<>(SB), RODATA|NOPTR, $4
GLOBL swln2hi<>(SB), RODATA|NOPTR, $4
GLOBL swln2lo<>(SB), RODATA|NOPTR, $4
GLOBL swc0<>(SB), RODATA|NOPTR, $4
GLOBL swc1<>(SB), RODATA|NOPTR, $4
GLOBL swc2<>(SB), RODATA|NOPTR, $4
GLOBL swc3<>(SB), RODATA|NOPTR, $4
GLOBL swc4<>(SB), RODATA|NOPTR, $4
GLOBL swc5<>(SB), RODATA|NOPTR, $4
GLOBL swone<>(SB), RODATA|NOPTR, $4
GLOBL swbias<>(SB), RODATA|NOPTR, $4

// EXPF sets Y5 = expf(Y1) in each lane: the float32 operations of expf
// (simd.go) in its order, Y1 clamped and reduced in place, Y2–Y4 and Y6
// scratch. It needs Y9 = −87, Y10 = 88, Y11 = log2 e, Y12 = ln2 high,
// Y13 = ln2 low, Y14 = 1 and Y15 = 127 (int32 lanes).
#define EXPF \
	VMAXPS Y9, Y1, Y1; \
	VMINPS Y10, Y1, Y1; \
	VMULPS Y11, Y1, Y2; \
	VROUNDPS $0, Y2, Y2; \
	VMULPS Y12, Y2, Y3; \
	VSUBPS Y3, Y1, Y1; \
	VMULPS Y13, Y2, Y3; \
	VSUBPS Y3, Y1, Y1; \
	VMULPS Y1, Y1, Y4; \
	VBROADCASTSS swc0<>(SB), Y5; \
	VMULPS Y1, Y5, Y5; \
	VBROADCASTSS swc1<>(SB), Y6; \
	VADDPS Y6, Y5, Y5; \
	VMULPS Y1, Y5, Y5; \
	VBROADCASTSS swc2<>(SB), Y6; \
	VADDPS Y6, Y5, Y5; \
	VMULPS Y1, Y5, Y5; \
	VBROADCASTSS swc3<>(SB), Y6; \
	VADDPS Y6, Y5, Y5; \
	VMULPS Y1, Y5, Y5; \
	VBROADCASTSS swc4<>(SB), Y6; \
	VADDPS Y6, Y5, Y5; \
	VMULPS Y1, Y5, Y5; \
	VBROADCASTSS swc5<>(SB), Y6; \
	VADDPS Y6, Y5, Y5; \
	VMULPS Y4, Y5, Y5; \
	VADDPS Y1, Y5, Y5; \
	VADDPS Y14, Y5, Y5; \
	VCVTPS2DQ Y2, Y3; \
	VPADDD Y15, Y3, Y3; \
	VPSLLD $23, Y3, Y3; \
	VMULPS Y3, Y5, Y5;

// func swigluAVX2(gate, up *float32, n8 int)
// swigluGo on n8 > 0 groups of eight, the same float32 operations in the
// same order (no fused multiply-add).
TEXT ·swigluAVX2(SB), NOSPLIT, $0-24
	MOVQ gate+0(FP), SI
	MOVQ up+8(FP), DI
	MOVQ n8+16(FP), CX
	VBROADCASTSS swsign<>(SB), Y8
	VBROADCASTSS swlo<>(SB), Y9
	VBROADCASTSS swhi<>(SB), Y10
	VBROADCASTSS swlog2e<>(SB), Y11
	VBROADCASTSS swln2hi<>(SB), Y12
	VBROADCASTSS swln2lo<>(SB), Y13
	VBROADCASTSS swone<>(SB), Y14
	VPBROADCASTD swbias<>(SB), Y15
swloop:
	VMOVUPS (SI), Y0
	VXORPS Y8, Y0, Y1
	EXPF
	VADDPS Y14, Y5, Y5
	VDIVPS Y5, Y0, Y0
	VMULPS (DI), Y0, Y0
	VMOVUPS Y0, (SI)
	ADDQ $32, SI
	ADDQ $32, DI
	DECQ CX
	JNZ swloop
	VZEROUPPER
	RET

// func dotRowsAVX(q, k *float32, stride, n, n8 int, out *float32)
// out[j] = dot8AVX(q, k + j*stride bytes, n8) for j < n (n > 0, n8 > 0):
// each row the same operations in the same order as dot8AVX.
TEXT ·dotRowsAVX(SB), NOSPLIT, $0-48
	MOVQ q+0(FP), SI
	MOVQ k+8(FP), DI
	MOVQ stride+16(FP), R8
	MOVQ n+24(FP), R9
	MOVQ n8+32(FP), R10
	MOVQ out+40(FP), R11
dotrow:
	MOVQ SI, AX
	MOVQ DI, BX
	MOVQ R10, CX
	VXORPS Y0, Y0, Y0
dotrowloop:
	VMOVUPS (AX), Y1
	VMULPS (BX), Y1, Y1
	VADDPS Y1, Y0, Y0
	ADDQ $32, AX
	ADDQ $32, BX
	DECQ CX
	JNZ dotrowloop
	VEXTRACTF128 $1, Y0, X1
	VADDPS X1, X0, X0
	VPERMILPS $0x4e, X0, X1
	VADDPS X1, X0, X0
	VPERMILPS $0xb1, X0, X1
	VADDPS X1, X0, X0
	VMOVSS X0, (R11)
	ADDQ $4, R11
	ADDQ R8, DI
	DECQ R9
	JNZ dotrow
	VZEROUPPER
	RET

// func axpyRowsAVX(out, v *float32, stride, n int, w *float32, n8 int)
// For each group of eight elements of out (n8 > 0 groups), for j < n
// (n > 0) in order: out += w[j] * (v + j*stride bytes), VMULPS then VADDPS
// as axpyAVX, so each element sees the same operations as n axpy calls;
// four groups at a time while at least four are left.
TEXT ·axpyRowsAVX(SB), NOSPLIT, $0-48
	MOVQ out+0(FP), SI
	MOVQ v+8(FP), DI
	MOVQ stride+16(FP), R8
	MOVQ n+24(FP), R9
	MOVQ w+32(FP), R10
	MOVQ n8+40(FP), R11
axquad:
	CMPQ R11, $4
	JLT axsingle
	VMOVUPS (SI), Y0
	VMOVUPS 32(SI), Y1
	VMOVUPS 64(SI), Y2
	VMOVUPS 96(SI), Y3
	MOVQ DI, AX
	MOVQ R10, BX
	MOVQ R9, CX
axquadrow:
	VBROADCASTSS (BX), Y4
	VMULPS (AX), Y4, Y5
	VADDPS Y5, Y0, Y0
	VMULPS 32(AX), Y4, Y5
	VADDPS Y5, Y1, Y1
	VMULPS 64(AX), Y4, Y5
	VADDPS Y5, Y2, Y2
	VMULPS 96(AX), Y4, Y5
	VADDPS Y5, Y3, Y3
	ADDQ R8, AX
	ADDQ $4, BX
	DECQ CX
	JNZ axquadrow
	VMOVUPS Y0, (SI)
	VMOVUPS Y1, 32(SI)
	VMOVUPS Y2, 64(SI)
	VMOVUPS Y3, 96(SI)
	ADDQ $128, SI
	ADDQ $128, DI
	SUBQ $4, R11
	JMP axquad
axsingle:
	TESTQ R11, R11
	JZ axdone
	VMOVUPS (SI), Y0
	MOVQ DI, AX
	MOVQ R10, BX
	MOVQ R9, CX
axsinglerow:
	VBROADCASTSS (BX), Y4
	VMULPS (AX), Y4, Y5
	VADDPS Y5, Y0, Y0
	ADDQ R8, AX
	ADDQ $4, BX
	DECQ CX
	JNZ axsinglerow
	VMOVUPS Y0, (SI)
	ADDQ $32, SI
	ADDQ $32, DI
	DECQ R11
	JMP axsingle
axdone:
	VZEROUPPER
	RET

// func expShiftAVX2(x *float32, n8 int, mx float32)
// x[i] = expf(x[i] - mx) on n8 > 0 groups of eight: float32(x - mx), then
// expf's float32 operations in expf's order, as in swigluAVX2.
TEXT ·expShiftAVX2(SB), NOSPLIT, $0-20
	MOVQ x+0(FP), SI
	MOVQ n8+8(FP), CX
	VBROADCASTSS mx+16(FP), Y7
	VBROADCASTSS swlo<>(SB), Y9
	VBROADCASTSS swhi<>(SB), Y10
	VBROADCASTSS swlog2e<>(SB), Y11
	VBROADCASTSS swln2hi<>(SB), Y12
	VBROADCASTSS swln2lo<>(SB), Y13
	VBROADCASTSS swone<>(SB), Y14
	VPBROADCASTD swbias<>(SB), Y15
exloop:
	VMOVUPS (SI), Y1
	VSUBPS Y7, Y1, Y1
	EXPF
	VMOVUPS Y5, (SI)
	ADDQ $32, SI
	DECQ CX
	JNZ exloop
	VZEROUPPER
	RET

// func dotRows8AVX(q, k *float32, stride, n8rows, n8 int, out *float32)
// out[j] = dot8AVX(q, k + j*stride bytes, n8) for j < 8*n8rows (n8rows > 0,
// n8 > 0), eight rows at a time: row r's lanes in Yr, each the same
// VMULPS/VADDPS sequence as dot8AVX; then the eight rows' trees side by
// side: lo+hi halves (VPERM2F128), lanes (0,1)+(2,3) (VSHUFPS), lane
// 0+1, every add with dot8AVX's operands in dot8AVX's order, so each
// score is bit-identical to dot8AVX's.
TEXT ·dotRows8AVX(SB), NOSPLIT, $0-48
	MOVQ q+0(FP), SI
	MOVQ k+8(FP), DI
	MOVQ stride+16(FP), R8
	MOVQ n8rows+24(FP), R9
	MOVQ n8+32(FP), R10
	MOVQ out+40(FP), R11
	LEAQ (R8)(R8*2), R12 // 3 rows
	MOVQ R8, R13
	SHLQ $3, R13         // 8 rows
dot8row:
	MOVQ SI, AX
	MOVQ DI, BX
	LEAQ (DI)(R8*4), DX // row 4
	MOVQ R10, CX
	VXORPS Y0, Y0, Y0
	VXORPS Y1, Y1, Y1
	VXORPS Y2, Y2, Y2
	VXORPS Y3, Y3, Y3
	VXORPS Y4, Y4, Y4
	VXORPS Y5, Y5, Y5
	VXORPS Y6, Y6, Y6
	VXORPS Y7, Y7, Y7
dot8rowloop:
	VMOVUPS (AX), Y8
	VMULPS (BX), Y8, Y9
	VADDPS Y9, Y0, Y0
	VMULPS (BX)(R8*1), Y8, Y10
	VADDPS Y10, Y1, Y1
	VMULPS (BX)(R8*2), Y8, Y11
	VADDPS Y11, Y2, Y2
	VMULPS (BX)(R12*1), Y8, Y12
	VADDPS Y12, Y3, Y3
	VMULPS (DX), Y8, Y13
	VADDPS Y13, Y4, Y4
	VMULPS (DX)(R8*1), Y8, Y14
	VADDPS Y14, Y5, Y5
	VMULPS (DX)(R8*2), Y8, Y15
	VADDPS Y15, Y6, Y6
	VMULPS (DX)(R12*1), Y8, Y9
	VADDPS Y9, Y7, Y7
	ADDQ $32, AX
	ADDQ $32, BX
	ADDQ $32, DX
	DECQ CX
	JNZ dot8rowloop
	// lo + hi: rows (0,4) (1,5) (2,6) (3,7) in Y0..Y3, row r's
	// t_l = s_l + s_{l+4} in the low half for r < 4, the high half else.
	VPERM2F128 $0x20, Y4, Y0, Y8
	VPERM2F128 $0x31, Y4, Y0, Y9
	VADDPS Y9, Y8, Y0
	VPERM2F128 $0x20, Y5, Y1, Y10
	VPERM2F128 $0x31, Y5, Y1, Y11
	VADDPS Y11, Y10, Y1
	VPERM2F128 $0x20, Y6, Y2, Y12
	VPERM2F128 $0x31, Y6, Y2, Y13
	VADDPS Y13, Y12, Y2
	VPERM2F128 $0x20, Y7, Y3, Y14
	VPERM2F128 $0x31, Y7, Y3, Y15
	VADDPS Y15, Y14, Y3
	// u_0 = t_0 + t_2, u_1 = t_1 + t_3: rows (0,1 | 4,5) in Y0, (2,3 | 6,7) in Y2
	VSHUFPS $0x44, Y1, Y0, Y8
	VSHUFPS $0xEE, Y1, Y0, Y9
	VADDPS Y9, Y8, Y0
	VSHUFPS $0x44, Y3, Y2, Y10
	VSHUFPS $0xEE, Y3, Y2, Y11
	VADDPS Y11, Y10, Y2
	// u_0 + u_1: rows 0..7 in order
	VSHUFPS $0x88, Y2, Y0, Y8
	VSHUFPS $0xDD, Y2, Y0, Y9
	VADDPS Y9, Y8, Y0
	VMOVUPS Y0, (R11)
	ADDQ $32, R11
	ADDQ R13, DI
	DECQ R9
	JNZ dot8row
	VZEROUPPER
	RET

// func scaleAVX(x *float32, n8 int, s float32)
// x[i] *= s on n8 > 0 groups of eight (one VMULPS each, as scaleGo).
TEXT ·scaleAVX(SB), NOSPLIT, $0-20
	MOVQ x+0(FP), SI
	MOVQ n8+8(FP), CX
	VBROADCASTSS s+16(FP), Y1
scloop:
	VMULPS (SI), Y1, Y0
	VMOVUPS Y0, (SI)
	ADDQ $32, SI
	DECQ CX
	JNZ scloop
	VZEROUPPER
	RET
