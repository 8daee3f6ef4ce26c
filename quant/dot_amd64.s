#include "textflag.h"

// 32 bytes of 0x0f: the nibble mask.
DATA nibmask<>+0(SB)/8, $0x0f0f0f0f0f0f0f0f
DATA nibmask<>+8(SB)/8, $0x0f0f0f0f0f0f0f0f
DATA nibmask<>+16(SB)/8, $0x0f0f0f0f0f0f0f0f
DATA nibmask<>+24(SB)/8, $0x0f0f0f0f0f0f0f0f
GLOBL nibmask<>(SB), RODATA|NOPTR, $32

// 16 int16 ones: VPMADDWD with it sums adjacent int16 pairs into int32.
DATA ones16<>+0(SB)/8, $0x0001000100010001
DATA ones16<>+8(SB)/8, $0x0001000100010001
DATA ones16<>+16(SB)/8, $0x0001000100010001
DATA ones16<>+24(SB)/8, $0x0001000100010001
GLOBL ones16<>(SB), RODATA|NOPTR, $32

// func q4kSubSumsAVX2(q *byte, y *byte, out *[8]int32)
//
// q: the 128 quant bytes of one Q4_K block; y: the 256 int8 quants of the
// matching Q8_K block. For chunk c (0..3) of 32 quant bytes it stores
//   out[2c]   = Σ_l (q[32c+l] & 15) * y[64c+l]
//   out[2c+1] = Σ_l (q[32c+l] >> 4) * y[64c+32+l]
// VPMADDUBSW multiplies unsigned nibbles by signed bytes and adds pairs into
// int16 (at most 2*15*128 = 3840: no saturation); VPMADDWD widens to int32.
TEXT ·q4kSubSumsAVX2(SB), NOSPLIT, $0-24
	MOVQ q+0(FP), SI
	MOVQ y+8(FP), DI
	MOVQ out+16(FP), DX
	VMOVDQU nibmask<>(SB), Y14
	VMOVDQU ones16<>(SB), Y15
	MOVQ $4, CX

loop:
	VMOVDQU (SI), Y0
	VPSRLW $4, Y0, Y1
	VPAND Y14, Y0, Y0
	VPAND Y14, Y1, Y1
	VMOVDQU (DI), Y2
	VMOVDQU 32(DI), Y3
	VPMADDUBSW Y2, Y0, Y0
	VPMADDUBSW Y3, Y1, Y1
	VPMADDWD Y15, Y0, Y0
	VPMADDWD Y15, Y1, Y1
	// Y0 = [a0+a1 a2+a3 b0+b1 b2+b3 | a4+a5 a6+a7 b4+b5 b6+b7]
	VPHADDD Y1, Y0, Y0
	VEXTRACTI128 $1, Y0, X1
	VPADDD X1, X0, X0
	// X0 = [A B A B]
	VPHADDD X0, X0, X0
	VMOVQ X0, (DX)
	ADDQ $32, SI
	ADDQ $64, DI
	ADDQ $8, DX
	DECQ CX
	JNZ loop
	VZEROUPPER
	RET

// 32 bytes of 0x30: bits 4-5, where Q6_K's high bits go.
DATA mask30<>+0(SB)/8, $0x3030303030303030
DATA mask30<>+8(SB)/8, $0x3030303030303030
DATA mask30<>+16(SB)/8, $0x3030303030303030
DATA mask30<>+24(SB)/8, $0x3030303030303030
GLOBL mask30<>(SB), RODATA|NOPTR, $32

// func q6kSubSumsAVX2(x *byte, y *byte, out *[16]int32)
//
// x: a Q6_K block (ql at 0, qh at 128); y: the 256 int8 quants of a Q8_K
// block. For half h (ql 64 bytes, qh 32 bytes, y 128 bytes) it builds the
// four 32-element vectors of 6-bit quants
//   V0 = ql[0:32]&15  | (qh&3)<<4        elements  0..31
//   V1 = ql[32:64]&15 | (qh>>2&3)<<4     elements 32..63
//   V2 = ql[0:32]>>4  | (qh>>4&3)<<4     elements 64..95
//   V3 = ql[32:64]>>4 | (qh>>6&3)<<4     elements 96..127
// multiplies them with y (VPMADDUBSW: pairs ≤ 2*63*128, no saturation),
// widens to int32 and reduces each 128-bit lane (16 elements, one
// sub-block): out[8h+0..3] = sub-blocks 0,2,4,6; out[8h+4..7] = 1,3,5,7.
TEXT ·q6kSubSumsAVX2(SB), NOSPLIT, $0-24
	MOVQ x+0(FP), SI
	MOVQ y+8(FP), DI
	MOVQ out+16(FP), DX
	LEAQ 128(SI), R8
	VMOVDQU nibmask<>(SB), Y13
	VMOVDQU mask30<>(SB), Y14
	VMOVDQU ones16<>(SB), Y15
	MOVQ $2, CX

half:
	VMOVDQU (SI), Y0
	VMOVDQU 32(SI), Y1
	VMOVDQU (R8), Y2

	// V0 -> Y4
	VPAND Y13, Y0, Y4
	VPSLLW $4, Y2, Y8
	VPAND Y14, Y8, Y8
	VPOR Y8, Y4, Y4

	// V1 -> Y5
	VPAND Y13, Y1, Y5
	VPSLLW $2, Y2, Y8
	VPAND Y14, Y8, Y8
	VPOR Y8, Y5, Y5

	// V2 -> Y6
	VPSRLW $4, Y0, Y6
	VPAND Y13, Y6, Y6
	VPAND Y14, Y2, Y8
	VPOR Y8, Y6, Y6

	// V3 -> Y7
	VPSRLW $4, Y1, Y7
	VPAND Y13, Y7, Y7
	VPSRLW $2, Y2, Y8
	VPAND Y14, Y8, Y8
	VPOR Y8, Y7, Y7

	VPMADDUBSW (DI), Y4, Y4
	VPMADDUBSW 32(DI), Y5, Y5
	VPMADDUBSW 64(DI), Y6, Y6
	VPMADDUBSW 96(DI), Y7, Y7
	VPMADDWD Y15, Y4, Y4
	VPMADDWD Y15, Y5, Y5
	VPMADDWD Y15, Y6, Y6
	VPMADDWD Y15, Y7, Y7

	// [a01 a23 b01 b23 | a45 a67 b45 b67]
	VPHADDD Y5, Y4, Y4
	VPHADDD Y7, Y6, Y6
	// [a0123 b0123 c0123 d0123 | a4567 b4567 c4567 d4567]
	VPHADDD Y6, Y4, Y4
	VMOVDQU Y4, (DX)

	ADDQ $64, SI
	ADDQ $32, R8
	ADDQ $128, DI
	ADDQ $32, DX
	DECQ CX
	JNZ half
	VZEROUPPER
	RET
