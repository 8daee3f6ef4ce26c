#include "textflag.h"

// One Q4_K or Q6_K row against sixteen prompt tokens (AVX-512 BW + VNNI),
// bit-identical to dotQ4_K/dotQ6_K for every token: per block, each token's
// integer sums are exact (as in Go, modulo 2^32) and the float part is
// dotQ4_K's/dotQ6_K's, computed for the sixteen tokens lane by lane.
//
// The tokens come packed by packK16 (dotk16_amd64.go), per block 4672 bytes:
//	0     the 16 tokens' 256 quants, token t at 256t
//	4096  the 16 tokens' Q8_K d (float32), lane L = token kperm[L]
//	4160  8 × 64 bytes: dword L of row i = bsums 2i, 2i+1 of token kperm[L]
//
// Per block and token t, Z16+t accumulates Σ sc·(q·y) in 16 int32 lanes:
// 64 weight quants at a time (both halves of a 512-bit register) against the
// token's 64 activations by VPMADDUBSW (pairs ≤ 2·63·128, no saturation),
// then VPDPWSSD by the quants' scales as words. A tree of shuffles and adds
// sums each token's lanes (exact), leaving token kperm[L] in lane L. Q4_K's
// Σ m·(bsum pairs) and Q6_K's −32·Σ sc·bsum come from the packed bsum pairs
// by VPDPWSSD with the (m, m) or (−32sc, −32sc') pairs broadcast.
//
// The float part, per block, for the 16 lanes: Q4_K
// sum += (dx*yd)*float32(sumi) − (dmin*yd)*float32(summ); Q6_K
// sum += (d*yd)*float32(sumi): dotQ4_K's and dotQ6_K's order.

// VPSRLVW counts: low 256 bits 0, high 256 bits 4 (Q4_K: low nibbles of a
// 32-byte chunk below, high nibbles above).
DATA k16shr4<>+0(SB)/8, $0
DATA k16shr4<>+8(SB)/8, $0
DATA k16shr4<>+16(SB)/8, $0
DATA k16shr4<>+24(SB)/8, $0
DATA k16shr4<>+32(SB)/8, $0x0004000400040004
DATA k16shr4<>+40(SB)/8, $0x0004000400040004
DATA k16shr4<>+48(SB)/8, $0x0004000400040004
DATA k16shr4<>+56(SB)/8, $0x0004000400040004
GLOBL k16shr4<>(SB), RODATA|NOPTR, $64

// Q6_K: VPSLLVW counts 4 | 2 and VPSRLVW counts 0 | 2 (words), the qh masks
// 0x03 | 0x0c and 0x30 | 0xc0 (bytes).
DATA k16shl42<>+0(SB)/8, $0x0004000400040004
DATA k16shl42<>+8(SB)/8, $0x0004000400040004
DATA k16shl42<>+16(SB)/8, $0x0004000400040004
DATA k16shl42<>+24(SB)/8, $0x0004000400040004
DATA k16shl42<>+32(SB)/8, $0x0002000200020002
DATA k16shl42<>+40(SB)/8, $0x0002000200020002
DATA k16shl42<>+48(SB)/8, $0x0002000200020002
DATA k16shl42<>+56(SB)/8, $0x0002000200020002
GLOBL k16shl42<>(SB), RODATA|NOPTR, $64

DATA k16shr02<>+0(SB)/8, $0
DATA k16shr02<>+8(SB)/8, $0
DATA k16shr02<>+16(SB)/8, $0
DATA k16shr02<>+24(SB)/8, $0
DATA k16shr02<>+32(SB)/8, $0x0002000200020002
DATA k16shr02<>+40(SB)/8, $0x0002000200020002
DATA k16shr02<>+48(SB)/8, $0x0002000200020002
DATA k16shr02<>+56(SB)/8, $0x0002000200020002
GLOBL k16shr02<>(SB), RODATA|NOPTR, $64

DATA k16qh0<>+0(SB)/8, $0x0303030303030303
DATA k16qh0<>+8(SB)/8, $0x0303030303030303
DATA k16qh0<>+16(SB)/8, $0x0303030303030303
DATA k16qh0<>+24(SB)/8, $0x0303030303030303
DATA k16qh0<>+32(SB)/8, $0x0c0c0c0c0c0c0c0c
DATA k16qh0<>+40(SB)/8, $0x0c0c0c0c0c0c0c0c
DATA k16qh0<>+48(SB)/8, $0x0c0c0c0c0c0c0c0c
DATA k16qh0<>+56(SB)/8, $0x0c0c0c0c0c0c0c0c
GLOBL k16qh0<>(SB), RODATA|NOPTR, $64

DATA k16qh1<>+0(SB)/8, $0x3030303030303030
DATA k16qh1<>+8(SB)/8, $0x3030303030303030
DATA k16qh1<>+16(SB)/8, $0x3030303030303030
DATA k16qh1<>+24(SB)/8, $0x3030303030303030
DATA k16qh1<>+32(SB)/8, $0xc0c0c0c0c0c0c0c0
DATA k16qh1<>+40(SB)/8, $0xc0c0c0c0c0c0c0c0
DATA k16qh1<>+48(SB)/8, $0xc0c0c0c0c0c0c0c0
DATA k16qh1<>+56(SB)/8, $0xc0c0c0c0c0c0c0c0
GLOBL k16qh1<>(SB), RODATA|NOPTR, $64

DATA k16nib<>+0(SB)/4, $0x0f0f0f0f
GLOBL k16nib<>(SB), RODATA|NOPTR, $4

// VPERMW indices. Q4_K chunk c: words 2c (low half), 2c+1 (high half).
// Q6_K quarter j (64 quants, 4 sub-blocks of 16): words 4j..4j+3, one per
// 128-bit lane.
#define W16(v) $(v*0x0001000100010001)
DATA k16q4i<>+0(SB)/8, W16(0)
DATA k16q4i<>+8(SB)/8, W16(0)
DATA k16q4i<>+16(SB)/8, W16(0)
DATA k16q4i<>+24(SB)/8, W16(0)
DATA k16q4i<>+32(SB)/8, W16(1)
DATA k16q4i<>+40(SB)/8, W16(1)
DATA k16q4i<>+48(SB)/8, W16(1)
DATA k16q4i<>+56(SB)/8, W16(1)
DATA k16q4i<>+64(SB)/8, W16(2)
DATA k16q4i<>+72(SB)/8, W16(2)
DATA k16q4i<>+80(SB)/8, W16(2)
DATA k16q4i<>+88(SB)/8, W16(2)
DATA k16q4i<>+96(SB)/8, W16(3)
DATA k16q4i<>+104(SB)/8, W16(3)
DATA k16q4i<>+112(SB)/8, W16(3)
DATA k16q4i<>+120(SB)/8, W16(3)
DATA k16q4i<>+128(SB)/8, W16(4)
DATA k16q4i<>+136(SB)/8, W16(4)
DATA k16q4i<>+144(SB)/8, W16(4)
DATA k16q4i<>+152(SB)/8, W16(4)
DATA k16q4i<>+160(SB)/8, W16(5)
DATA k16q4i<>+168(SB)/8, W16(5)
DATA k16q4i<>+176(SB)/8, W16(5)
DATA k16q4i<>+184(SB)/8, W16(5)
DATA k16q4i<>+192(SB)/8, W16(6)
DATA k16q4i<>+200(SB)/8, W16(6)
DATA k16q4i<>+208(SB)/8, W16(6)
DATA k16q4i<>+216(SB)/8, W16(6)
DATA k16q4i<>+224(SB)/8, W16(7)
DATA k16q4i<>+232(SB)/8, W16(7)
DATA k16q4i<>+240(SB)/8, W16(7)
DATA k16q4i<>+248(SB)/8, W16(7)
GLOBL k16q4i<>(SB), RODATA|NOPTR, $256

DATA k16q6i<>+0(SB)/8, W16(0)
DATA k16q6i<>+8(SB)/8, W16(0)
DATA k16q6i<>+16(SB)/8, W16(1)
DATA k16q6i<>+24(SB)/8, W16(1)
DATA k16q6i<>+32(SB)/8, W16(2)
DATA k16q6i<>+40(SB)/8, W16(2)
DATA k16q6i<>+48(SB)/8, W16(3)
DATA k16q6i<>+56(SB)/8, W16(3)
DATA k16q6i<>+64(SB)/8, W16(4)
DATA k16q6i<>+72(SB)/8, W16(4)
DATA k16q6i<>+80(SB)/8, W16(5)
DATA k16q6i<>+88(SB)/8, W16(5)
DATA k16q6i<>+96(SB)/8, W16(6)
DATA k16q6i<>+104(SB)/8, W16(6)
DATA k16q6i<>+112(SB)/8, W16(7)
DATA k16q6i<>+120(SB)/8, W16(7)
DATA k16q6i<>+128(SB)/8, W16(8)
DATA k16q6i<>+136(SB)/8, W16(8)
DATA k16q6i<>+144(SB)/8, W16(9)
DATA k16q6i<>+152(SB)/8, W16(9)
DATA k16q6i<>+160(SB)/8, W16(10)
DATA k16q6i<>+168(SB)/8, W16(10)
DATA k16q6i<>+176(SB)/8, W16(11)
DATA k16q6i<>+184(SB)/8, W16(11)
DATA k16q6i<>+192(SB)/8, W16(12)
DATA k16q6i<>+200(SB)/8, W16(12)
DATA k16q6i<>+208(SB)/8, W16(13)
DATA k16q6i<>+216(SB)/8, W16(13)
DATA k16q6i<>+224(SB)/8, W16(14)
DATA k16q6i<>+232(SB)/8, W16(14)
DATA k16q6i<>+240(SB)/8, W16(15)
DATA k16q6i<>+248(SB)/8, W16(15)
GLOBL k16q6i<>(SB), RODATA|NOPTR, $256

#define ZERO16 \
	VPXORD Z16, Z16, Z16; VPXORD Z17, Z17, Z17; VPXORD Z18, Z18, Z18; VPXORD Z19, Z19, Z19; \
	VPXORD Z20, Z20, Z20; VPXORD Z21, Z21, Z21; VPXORD Z22, Z22, Z22; VPXORD Z23, Z23, Z23; \
	VPXORD Z24, Z24, Z24; VPXORD Z25, Z25, Z25; VPXORD Z26, Z26, Z26; VPXORD Z27, Z27, Z27; \
	VPXORD Z28, Z28, Z28; VPXORD Z29, Z29, Z29; VPXORD Z30, Z30, Z30; VPXORD Z31, Z31, Z31

// acc += scale words (Zs) · pair sums of the quants (Zw) with the token's 64
// activations at off(DI).
#define KMAC(off, Zw, Zs, Zt, acc) \
	VPMADDUBSW off(DI), Zw, Zt; \
	VPDPWSSD Zs, Zt, acc

// All sixteen tokens against the 64 quants in Zw (scales Zs); the tokens'
// activations at base + 256t.
#define KMAC16(base, Zw, Zs) \
	KMAC(base+0*256, Zw, Zs, Z6, Z16); KMAC(base+1*256, Zw, Zs, Z7, Z17); \
	KMAC(base+2*256, Zw, Zs, Z6, Z18); KMAC(base+3*256, Zw, Zs, Z7, Z19); \
	KMAC(base+4*256, Zw, Zs, Z6, Z20); KMAC(base+5*256, Zw, Zs, Z7, Z21); \
	KMAC(base+6*256, Zw, Zs, Z6, Z22); KMAC(base+7*256, Zw, Zs, Z7, Z23); \
	KMAC(base+8*256, Zw, Zs, Z6, Z24); KMAC(base+9*256, Zw, Zs, Z7, Z25); \
	KMAC(base+10*256, Zw, Zs, Z6, Z26); KMAC(base+11*256, Zw, Zs, Z7, Z27); \
	KMAC(base+12*256, Zw, Zs, Z6, Z28); KMAC(base+13*256, Zw, Zs, Z7, Z29); \
	KMAC(base+14*256, Zw, Zs, Z6, Z30); KMAC(base+15*256, Zw, Zs, Z7, Z31)

// Sum the lanes of Z16+t (token t) into lane L of Z16 (token kperm[L]).
#define HSUM16 \
	VSHUFI64X2 $0x44, Z24, Z16, Z0; VSHUFI64X2 $0xee, Z24, Z16, Z1; VPADDD Z1, Z0, Z16; \
	VSHUFI64X2 $0x44, Z25, Z17, Z2; VSHUFI64X2 $0xee, Z25, Z17, Z3; VPADDD Z3, Z2, Z17; \
	VSHUFI64X2 $0x44, Z26, Z18, Z0; VSHUFI64X2 $0xee, Z26, Z18, Z1; VPADDD Z1, Z0, Z18; \
	VSHUFI64X2 $0x44, Z27, Z19, Z2; VSHUFI64X2 $0xee, Z27, Z19, Z3; VPADDD Z3, Z2, Z19; \
	VSHUFI64X2 $0x44, Z28, Z20, Z0; VSHUFI64X2 $0xee, Z28, Z20, Z1; VPADDD Z1, Z0, Z20; \
	VSHUFI64X2 $0x44, Z29, Z21, Z2; VSHUFI64X2 $0xee, Z29, Z21, Z3; VPADDD Z3, Z2, Z21; \
	VSHUFI64X2 $0x44, Z30, Z22, Z0; VSHUFI64X2 $0xee, Z30, Z22, Z1; VPADDD Z1, Z0, Z22; \
	VSHUFI64X2 $0x44, Z31, Z23, Z2; VSHUFI64X2 $0xee, Z31, Z23, Z3; VPADDD Z3, Z2, Z23; \
	VSHUFI64X2 $0x88, Z20, Z16, Z0; VSHUFI64X2 $0xdd, Z20, Z16, Z1; VPADDD Z1, Z0, Z16; \
	VSHUFI64X2 $0x88, Z21, Z17, Z2; VSHUFI64X2 $0xdd, Z21, Z17, Z3; VPADDD Z3, Z2, Z17; \
	VSHUFI64X2 $0x88, Z22, Z18, Z0; VSHUFI64X2 $0xdd, Z22, Z18, Z1; VPADDD Z1, Z0, Z18; \
	VSHUFI64X2 $0x88, Z23, Z19, Z2; VSHUFI64X2 $0xdd, Z23, Z19, Z3; VPADDD Z3, Z2, Z19; \
	VPUNPCKLQDQ Z18, Z16, Z0; VPUNPCKHQDQ Z18, Z16, Z1; VPADDD Z1, Z0, Z16; \
	VPUNPCKLQDQ Z19, Z17, Z2; VPUNPCKHQDQ Z19, Z17, Z3; VPADDD Z3, Z2, Z17; \
	VSHUFPS $0x88, Z17, Z16, Z0; VSHUFPS $0xdd, Z17, Z16, Z1; VPADDD Z1, Z0, Z16

// Z9 += the packed bsum pairs (rows 0..7 at 4160(DI)) · the word pairs at
// 0(SP)..28(SP) broadcast.
#define BSUMS(acc) \
	VMOVDQU64 4160(DI), Z0; VPDPWSSD.BCST 0(SP), Z0, acc; \
	VMOVDQU64 4224(DI), Z1; VPDPWSSD.BCST 4(SP), Z1, acc; \
	VMOVDQU64 4288(DI), Z2; VPDPWSSD.BCST 8(SP), Z2, acc; \
	VMOVDQU64 4352(DI), Z3; VPDPWSSD.BCST 12(SP), Z3, acc; \
	VMOVDQU64 4416(DI), Z0; VPDPWSSD.BCST 16(SP), Z0, acc; \
	VMOVDQU64 4480(DI), Z1; VPDPWSSD.BCST 20(SP), Z1, acc; \
	VMOVDQU64 4544(DI), Z2; VPDPWSSD.BCST 24(SP), Z2, acc; \
	VMOVDQU64 4608(DI), Z3; VPDPWSSD.BCST 28(SP), Z3, acc

// Q4_K chunk c: 32 quant bytes at 16+32c(SI) → low nibbles (sub-block 2c)
// in the low half of Z4, high nibbles (2c+1) in the high half; their scales
// in Z5.
#define Q4K16_CHUNK(c) \
	VBROADCASTI64X4 16+32*c(SI), Z4; \
	VPSRLVW Z10, Z4, Z4; \
	VPANDD Z11, Z4, Z4; \
	VMOVDQU64 k16q4i<>+64*c(SB), Z5; \
	VPERMW Z8, Z5, Z5; \
	KMAC16(64*c, Z4, Z5)

// func tile16Q4_KAsm(x, p *byte, nb int, tab *[1 << 16]float32, out *[16]float32) (nb > 0)
TEXT ·tile16Q4_KAsm(SB), NOSPLIT, $32-40
	MOVQ x+0(FP), SI
	MOVQ p+8(FP), DI
	MOVQ nb+16(FP), CX
	MOVQ tab+24(FP), R9
	MOVQ out+32(FP), DX
	VMOVDQU64 k16shr4<>(SB), Z10
	VPBROADCASTD k16nib<>(SB), Z11
	VPXORD Z15, Z15, Z15
q4k16loop:
	// Scales and mins (ggml's utmp decoding, as dotQ4_KAsm).
	MOVL 4(SI), AX
	MOVL 8(SI), BX
	MOVL 12(SI), R8
	MOVL R8, R10
	SHRL $4, R10
	ANDL $0x0f0f0f0f, R10
	MOVL BX, R11
	SHRL $6, R11
	ANDL $0x03030303, R11
	SHLL $4, R11
	ORL R11, R10
	ANDL $0x0f0f0f0f, R8
	MOVL AX, R11
	SHRL $6, R11
	ANDL $0x03030303, R11
	SHLL $4, R11
	ORL R11, R8
	ANDL $0x3f3f3f3f, BX
	ANDL $0x3f3f3f3f, AX
	SHLQ $32, R8
	ORQ R8, AX
	SHLQ $32, R10
	ORQ R10, BX
	// AX: the 8 scales, BX: the 8 mins (bytes). Scales as words in X8;
	// (m, m) word pairs at 0(SP)..28(SP).
	VMOVQ AX, X8
	VPMOVZXBW X8, X8
	VMOVQ BX, X9
	VPMOVZXBW X9, X9
	VPUNPCKLWD X9, X9, X12
	VPUNPCKHWD X9, X9, X13
	VMOVDQU X12, 0(SP)
	VMOVDQU X13, 16(SP)
	ZERO16
	Q4K16_CHUNK(0)
	Q4K16_CHUNK(1)
	Q4K16_CHUNK(2)
	Q4K16_CHUNK(3)
	HSUM16
	VPXORD Z9, Z9, Z9
	BSUMS(Z9)
	VCVTDQ2PS Z16, Z16
	VCVTDQ2PS Z9, Z9
	MOVWLZX (SI), AX
	VBROADCASTSS (R9)(AX*4), Z12
	VMULPS 4096(DI), Z12, Z12
	VMULPS Z16, Z12, Z12
	MOVWLZX 2(SI), AX
	VBROADCASTSS (R9)(AX*4), Z13
	VMULPS 4096(DI), Z13, Z13
	VMULPS Z9, Z13, Z13
	VSUBPS Z13, Z12, Z12
	VADDPS Z12, Z15, Z15
	ADDQ $144, SI
	ADDQ $4672, DI
	DECQ CX
	JNZ q4k16loop
	VMOVUPS Z15, (DX)
	VZEROUPPER
	RET

// Q6_K half h: ql at 64h(SI) (64 bytes), qh at 128+32h(SI) (32 bytes).
// Quarter 2h (quants 0..63 of the half): ql & 15 | (qh & 3|12) << 4|2;
// quarter 2h+1 (64..127): ql >> 4 | (qh & 0x30|0xc0) >> 0|2.
#define Q6K16_HALF(h) \
	VMOVDQU64 64*h(SI), Z0; \
	VBROADCASTI64X4 128+32*h(SI), Z1; \
	VPANDD Z12, Z1, Z2; \
	VPSLLVW Z10, Z2, Z2; \
	VPTERNLOGD $0xec, Z11, Z2, Z0; \
	VPANDD Z13, Z1, Z1; \
	VPSRLVW Z14, Z1, Z1; \
	VPSRLW $4, 64*h(SI), Z3; \
	VPTERNLOGD $0xec, Z11, Z1, Z3; \
	VMOVDQU64 k16q6i<>+128*h(SB), Z4; \
	VPERMW Z8, Z4, Z4; \
	VMOVDQU64 k16q6i<>+128*h+64(SB), Z5; \
	VPERMW Z8, Z5, Z5; \
	KMAC16(128*h, Z0, Z4); \
	KMAC16(128*h+64, Z3, Z5)

// func tile16Q6_KAsm(x, p *byte, nb int, tab *[1 << 16]float32, out *[16]float32) (nb > 0)
TEXT ·tile16Q6_KAsm(SB), NOSPLIT, $32-40
	MOVQ x+0(FP), SI
	MOVQ p+8(FP), DI
	MOVQ nb+16(FP), CX
	MOVQ tab+24(FP), R9
	MOVQ out+32(FP), DX
	VMOVDQU64 k16shl42<>(SB), Z10
	VPBROADCASTD k16nib<>(SB), Z11
	VMOVDQU64 k16qh0<>(SB), Z12
	VMOVDQU64 k16qh1<>(SB), Z13
	VMOVDQU64 k16shr02<>(SB), Z14
	VPXORD Z15, Z15, Z15
q6k16loop:
	// The 16 scales as words in Y8; −32·scale word pairs at 0(SP)..28(SP).
	VPMOVSXBW 192(SI), Y8
	VPSLLW $5, Y8, Y9
	VPXOR Y6, Y6, Y6
	VPSUBW Y9, Y6, Y9
	VMOVDQU Y9, 0(SP)
	ZERO16
	Q6K16_HALF(0)
	Q6K16_HALF(1)
	HSUM16
	BSUMS(Z16)
	VCVTDQ2PS Z16, Z16
	MOVWLZX 208(SI), AX
	VBROADCASTSS (R9)(AX*4), Z9
	VMULPS 4096(DI), Z9, Z9
	VMULPS Z16, Z9, Z9
	VADDPS Z9, Z15, Z15
	ADDQ $210, SI
	ADDQ $4672, DI
	DECQ CX
	JNZ q6k16loop
	VMOVUPS Z15, (DX)
	VZEROUPPER
	RET
