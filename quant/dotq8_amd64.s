#include "textflag.h"

// AVX2 dot products of Q8_0, Q4_0 and Q5_0 weight rows with Q8_0
// activations. The integer sum of each block is exact (no saturating
// instruction can overflow, whatever the bytes); the float part repeats the
// Go code's operations in its order, per block b:
//	sum += (dx_b*dy_b) * float32(isum_b)
// with the f16 scales read through the Go f16Table, so the result is
// bit-identical to dotQ8_0/dotQ4_0/dotQ5_0. With GOAMD64=v3 or v4 the Go
// compiler fuses that multiply-add into one VFMADD231SS, so then we do too.

#ifdef GOAMD64_v3
#define FUSED
#endif
#ifdef GOAMD64_v4
#define FUSED
#endif

DATA q8nib<>+0(SB)/8, $0x0f0f0f0f0f0f0f0f
DATA q8nib<>+8(SB)/8, $0x0f0f0f0f0f0f0f0f
DATA q8nib<>+16(SB)/8, $0x0f0f0f0f0f0f0f0f
DATA q8nib<>+24(SB)/8, $0x0f0f0f0f0f0f0f0f
GLOBL q8nib<>(SB), RODATA|NOPTR, $32

DATA q8one16<>+0(SB)/8, $0x0001000100010001
DATA q8one16<>+8(SB)/8, $0x0001000100010001
DATA q8one16<>+16(SB)/8, $0x0001000100010001
DATA q8one16<>+24(SB)/8, $0x0001000100010001
GLOBL q8one16<>(SB), RODATA|NOPTR, $32

DATA q8one8<>+0(SB)/8, $0x0101010101010101
DATA q8one8<>+8(SB)/8, $0x0101010101010101
DATA q8one8<>+16(SB)/8, $0x0101010101010101
DATA q8one8<>+24(SB)/8, $0x0101010101010101
GLOBL q8one8<>(SB), RODATA|NOPTR, $32

// VPSHUFB indices spreading byte k of a broadcast dword over bytes 8k..8k+7
// (each 128-bit lane indexes its own copy of the dword).
DATA q8spread<>+0(SB)/8, $0x0000000000000000
DATA q8spread<>+8(SB)/8, $0x0101010101010101
DATA q8spread<>+16(SB)/8, $0x0202020202020202
DATA q8spread<>+24(SB)/8, $0x0303030303030303
GLOBL q8spread<>(SB), RODATA|NOPTR, $32

// Byte i of each 8 has every bit set but bit i: OR-ing it in gives 0xff
// exactly where bit i was set.
DATA q8bits<>+0(SB)/8, $0x7fbfdfeff7fbfdfe
DATA q8bits<>+8(SB)/8, $0x7fbfdfeff7fbfdfe
DATA q8bits<>+16(SB)/8, $0x7fbfdfeff7fbfdfe
DATA q8bits<>+24(SB)/8, $0x7fbfdfeff7fbfdfe
GLOBL q8bits<>(SB), RODATA|NOPTR, $32

DATA q8x10<>+0(SB)/8, $0x1010101010101010
DATA q8x10<>+8(SB)/8, $0x1010101010101010
DATA q8x10<>+16(SB)/8, $0x1010101010101010
DATA q8x10<>+24(SB)/8, $0x1010101010101010
GLOBL q8x10<>(SB), RODATA|NOPTR, $32

// Register use, all kernels:
//	Y0: float accumulator(s)        Y12, Y13: activation block (prepared)
//	Y5, Y6: scratch                 Y7: bytes of 1
//	Y8: q8spread  Y9: 0x10 bytes  Y10: all ones  Y11: q8bits
//	Y14: nibble mask  Y15: int16 ones
#define CONSTS \
	VMOVDQU q8one8<>(SB), Y7; \
	VMOVDQU q8spread<>(SB), Y8; \
	VMOVDQU q8x10<>(SB), Y9; \
	VPCMPEQB Y10, Y10, Y10; \
	VMOVDQU q8bits<>(SB), Y11; \
	VMOVDQU q8nib<>(SB), Y14; \
	VMOVDQU q8one16<>(SB), Y15

// Q8_0 weights: the activation quants sign-extended to int16 in Y12 (0..15)
// and Y13 (16..31); a row's int32 partial sums (8 lanes) in Yd.
#define Y_Q8(y) \
	VPMOVSXBW 2(y), Y12; \
	VPMOVSXBW 18(y), Y13

#define ROW_Q8(lo, hi, Yd) \
	VPMOVSXBW lo, Yd; \
	VPMOVSXBW hi, Y5; \
	VPMADDWD Y12, Yd, Yd; \
	VPMADDWD Y13, Y5, Y5; \
	VPADDD Y5, Yd, Yd

// Q4_0/Q5_0 weights: Y12 = the activation quants, Y13 = 8 (Q4_0) or 16
// (Q5_0) times the sums of adjacent pairs of them (int16, |.| ≤ 4096).
// VPMADDUBSW(q, y) pairs are ≤ 2*31*128 in magnitude: no saturation.
// Then Yd = int32 partial sums of (q - offset)*y.
#define Y_Q4(y, shift) \
	VMOVDQU 2(y), Y12; \
	VPMADDUBSW Y12, Y7, Y13; \
	VPSLLW $shift, Y13, Y13

// The 16 quant bytes at qs, nibbles to [low nibbles | high nibbles] in Yd.
#define NIBBLES(qs, Xd, Yd) \
	VMOVDQU qs, Xd; \
	VPSRLW $4, Xd, X6; \
	VINSERTI128 $1, X6, Yd, Yd; \
	VPAND Y14, Yd, Yd

#define MADD_Q4(Yd) \
	VPMADDUBSW Y12, Yd, Yd; \
	VPSUBW Y13, Yd, Yd; \
	VPMADDWD Y15, Yd, Yd

#define ROW_Q4(qs, Xd, Yd) \
	NIBBLES(qs, Xd, Yd); \
	MADD_Q4(Yd)

// Q5_0: the 32 high bits at qh become 0x10 in byte j where bit j is set.
#define ROW_Q5(qh, qs, Xd, Yd) \
	NIBBLES(qs, Xd, Yd); \
	VPBROADCASTD qh, Y5; \
	VPSHUFB Y8, Y5, Y5; \
	VPOR Y11, Y5, Y5; \
	VPCMPEQB Y10, Y5, Y5; \
	VPAND Y9, Y5, Y5; \
	VPOR Y5, Yd, Yd; \
	MADD_Q4(Yd)

// One row: X0 += (dx*dy) * float32(Σ lanes of Y1), dx at (x), dy at (y).
#define ACC1(x, y) \
	VEXTRACTI128 $1, Y1, X2; \
	VPADDD X2, X1, X1; \
	VPSHUFD $0x4e, X1, X2; \
	VPADDD X2, X1, X1; \
	VPSHUFD $0xb1, X1, X2; \
	VPADDD X2, X1, X1; \
	VCVTDQ2PS X1, X1; \
	MOVWLZX (x), AX; \
	MOVWLZX (y), DX; \
	VMOVSS (R9)(AX*4), X2; \
	VMULSS (R9)(DX*4), X2, X2; \
	MULADD1

#ifdef FUSED
#define MULADD1 VFMADD231SS X1, X2, X0
#define MULADD4 VFMADD231PS X1, X2, X0
#else
#define MULADD1 VMULSS X1, X2, X2; VADDSS X2, X0, X0
#define MULADD4 VMULPS X1, X2, X2; VADDPS X2, X0, X0
#endif

// Four rows at SI, SI+R8, SI+2*R8, SI+R10 (R10 = 3*R8), partial sums in
// Y1..Y4: lane r of X0 += (dx_r*dy) * float32(Σ Y(r+1)). Each lane does
// exactly the single-row operations.
#define ACC4 \
	VPHADDD Y2, Y1, Y1; \
	VPHADDD Y4, Y3, Y3; \
	VPHADDD Y3, Y1, Y1; \
	VEXTRACTI128 $1, Y1, X2; \
	VPADDD X2, X1, X1; \
	VCVTDQ2PS X1, X1; \
	MOVWLZX (SI), AX; \
	VMOVSS (R9)(AX*4), X2; \
	MOVWLZX (SI)(R8*1), AX; \
	VINSERTPS $0x10, (R9)(AX*4), X2, X2; \
	MOVWLZX (SI)(R8*2), AX; \
	VINSERTPS $0x20, (R9)(AX*4), X2, X2; \
	MOVWLZX (SI)(R10*1), AX; \
	VINSERTPS $0x30, (R9)(AX*4), X2, X2; \
	MOVWLZX (DI), AX; \
	VBROADCASTSS (R9)(AX*4), X3; \
	VMULPS X3, X2, X2; \
	MULADD4

#define PROLOGUE1 \
	MOVQ x+0(FP), SI; \
	MOVQ y+8(FP), DI; \
	MOVQ nb+16(FP), CX; \
	MOVQ tab+24(FP), R9; \
	CONSTS; \
	VXORPS X0, X0, X0; \
	TESTQ CX, CX

#define PROLOGUE4 \
	MOVQ x+0(FP), SI; \
	MOVQ stride+8(FP), R8; \
	LEAQ (R8)(R8*2), R10; \
	MOVQ y+16(FP), DI; \
	MOVQ nb+24(FP), CX; \
	MOVQ tab+32(FP), R9; \
	MOVQ out+40(FP), DX; \
	CONSTS; \
	VXORPS X0, X0, X0; \
	TESTQ CX, CX

// func dotQ8_0Asm(x, y *byte, nb int, tab *[1 << 16]float32) float32
TEXT ·dotQ8_0Asm(SB), NOSPLIT, $0-36
	PROLOGUE1
	JLE done1
loop1:
	Y_Q8(DI)
	ROW_Q8(2(SI), 18(SI), Y1)
	ACC1(SI, DI)
	ADDQ $34, SI
	ADDQ $34, DI
	DECQ CX
	JNZ loop1
done1:
	VZEROUPPER
	MOVSS X0, ret+32(FP)
	RET

// func dotQ4_0Asm(x, y *byte, nb int, tab *[1 << 16]float32) float32
TEXT ·dotQ4_0Asm(SB), NOSPLIT, $0-36
	PROLOGUE1
	JLE done2
loop2:
	Y_Q4(DI, 3)
	ROW_Q4(2(SI), X1, Y1)
	ACC1(SI, DI)
	ADDQ $18, SI
	ADDQ $34, DI
	DECQ CX
	JNZ loop2
done2:
	VZEROUPPER
	MOVSS X0, ret+32(FP)
	RET

// func dotQ5_0Asm(x, y *byte, nb int, tab *[1 << 16]float32) float32
TEXT ·dotQ5_0Asm(SB), NOSPLIT, $0-36
	PROLOGUE1
	JLE done3
loop3:
	Y_Q4(DI, 4)
	ROW_Q5(2(SI), 6(SI), X1, Y1)
	ACC1(SI, DI)
	ADDQ $22, SI
	ADDQ $34, DI
	DECQ CX
	JNZ loop3
done3:
	VZEROUPPER
	MOVSS X0, ret+32(FP)
	RET

// func dotQ8_0x4Asm(x *byte, stride int, y *byte, nb int, tab *[1 << 16]float32, out *[4]float32)
TEXT ·dotQ8_0x4Asm(SB), NOSPLIT, $0-48
	PROLOGUE4
	JLE done4
loop4:
	Y_Q8(DI)
	ROW_Q8(2(SI), 18(SI), Y1)
	ROW_Q8(2(SI)(R8*1), 18(SI)(R8*1), Y2)
	ROW_Q8(2(SI)(R8*2), 18(SI)(R8*2), Y3)
	ROW_Q8(2(SI)(R10*1), 18(SI)(R10*1), Y4)
	ACC4
	ADDQ $34, SI
	ADDQ $34, DI
	DECQ CX
	JNZ loop4
done4:
	VMOVUPS X0, (DX)
	VZEROUPPER
	RET

// func dotQ4_0x4Asm(x *byte, stride int, y *byte, nb int, tab *[1 << 16]float32, out *[4]float32)
TEXT ·dotQ4_0x4Asm(SB), NOSPLIT, $0-48
	PROLOGUE4
	JLE done5
loop5:
	Y_Q4(DI, 3)
	ROW_Q4(2(SI), X1, Y1)
	ROW_Q4(2(SI)(R8*1), X2, Y2)
	ROW_Q4(2(SI)(R8*2), X3, Y3)
	ROW_Q4(2(SI)(R10*1), X4, Y4)
	ACC4
	ADDQ $18, SI
	ADDQ $34, DI
	DECQ CX
	JNZ loop5
done5:
	VMOVUPS X0, (DX)
	VZEROUPPER
	RET

// func dotQ5_0x4Asm(x *byte, stride int, y *byte, nb int, tab *[1 << 16]float32, out *[4]float32)
TEXT ·dotQ5_0x4Asm(SB), NOSPLIT, $0-48
	PROLOGUE4
	JLE done6
loop6:
	Y_Q4(DI, 4)
	ROW_Q5(2(SI), 6(SI), X1, Y1)
	ROW_Q5(2(SI)(R8*1), 6(SI)(R8*1), X2, Y2)
	ROW_Q5(2(SI)(R8*2), 6(SI)(R8*2), X3, Y3)
	ROW_Q5(2(SI)(R10*1), 6(SI)(R10*1), X4, Y4)
	ACC4
	ADDQ $22, SI
	ADDQ $34, DI
	DECQ CX
	JNZ loop6
done6:
	VMOVUPS X0, (DX)
	VZEROUPPER
	RET
