#include "textflag.h"

// Dot products of Q8_0, Q4_0 and Q5_0 weight rows with Q8_0 activations,
// in AVX2 and in AVX-512 VNNI (VPDPBUSD on 256-bit registers, K masks for
// Q5_0's fifth bits). Both compute vecdot.go's "eight lanes" order exactly:
// lane l of a block is the exact int32 sum over elements 4l..4l+3 of w*y,
// then per block and lane s[l] = fma(d, float32(isum_l), s[l]), d = dx*dy
// (f16 scales read through the Go f16Table; VFMADD231PS rounds once, as the
// Go code's fma32), and at the end
// ((s0+s4)+(s2+s6)) + ((s1+s5)+(s3+s7)). So every kernel here is
// bit-identical to dotQ8_0/dotQ4_0/dotQ5_0.
//
// Integer parts (exact whatever the bytes):
//	Q4_0/Q5_0, AVX2: VPMADDUBSW(q, y) with q in 0..31 (pairs ≤ 7936), minus
//	  off*(y pair sums) in int16, VPMADDWD with ones → lanes of 4.
//	Q4_0/Q5_0, VNNI: VPDPBUSD(q, y) starting from -off*(y sums of 4).
//	Q8_0, VNNI: VPDPBUSD(x^0x80, y) = Σ(x+128)*y, from -128*(y sums of 4).
//	Q8_0, AVX2: x and y sign-extended to int16, VPMADDWD, VPHADDD: lanes in
//	  the order 0,1,4,5 | 2,3,6,7, put back by one VPERMQ at the end.
//
// Each row is prefetched PF bytes ahead: the weights stream from memory and
// a core's own prefetch keeps more misses in flight than the hardware's.

#define PF 8192

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

DATA q8x08<>+0(SB)/8, $0x0808080808080808
DATA q8x08<>+8(SB)/8, $0x0808080808080808
DATA q8x08<>+16(SB)/8, $0x0808080808080808
DATA q8x08<>+24(SB)/8, $0x0808080808080808
GLOBL q8x08<>(SB), RODATA|NOPTR, $32

DATA q8x10<>+0(SB)/8, $0x1010101010101010
DATA q8x10<>+8(SB)/8, $0x1010101010101010
DATA q8x10<>+16(SB)/8, $0x1010101010101010
DATA q8x10<>+24(SB)/8, $0x1010101010101010
GLOBL q8x10<>(SB), RODATA|NOPTR, $32

DATA q8x80<>+0(SB)/8, $0x8080808080808080
DATA q8x80<>+8(SB)/8, $0x8080808080808080
DATA q8x80<>+16(SB)/8, $0x8080808080808080
DATA q8x80<>+24(SB)/8, $0x8080808080808080
GLOBL q8x80<>(SB), RODATA|NOPTR, $32

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

// Registers, all kernels:
//	SI: row 0 (advanced a block at a time)  R8: row stride  R10: 3*stride
//	DI: activation block   CX: blocks left   R9: f16 table   DX: out
//	Y0..Y3: the rows' eight float32 lane sums
//	Y4: weight quants (unsigned)   Y5: per-block activation offset term
//	Y6: dy broadcast   Y7: lane int sums   Y8: d   Y9: scratch
//	AVX2: Y10 all ones, Y11 q8bits, Y12 q8spread (Q8_0: y low int16),
//	      Y13 offset bytes (Q8_0: y high int16), Y14 nibble mask, Y15 int16 ones
//	VNNI: Y13 offset bytes, Y14 nibble mask, K1 fifth bits

#define CONSTS_AVX2(offb) \
	VPCMPEQB Y10, Y10, Y10; \
	VMOVDQU q8bits<>(SB), Y11; \
	VMOVDQU q8spread<>(SB), Y12; \
	VMOVDQU offb, Y13; \
	VMOVDQU q8nib<>(SB), Y14; \
	VMOVDQU q8one16<>(SB), Y15

#define CONSTS_VNNI(offb) \
	VMOVDQU offb, Y13; \
	VMOVDQU q8nib<>(SB), Y14

#define ZERO4 \
	VXORPS Y0, Y0, Y0; \
	VXORPS Y1, Y1, Y1; \
	VXORPS Y2, Y2, Y2; \
	VXORPS Y3, Y3, Y3

// dy for the block at DI.
#define DY \
	MOVWLZX (DI), AX; \
	VBROADCASTSS (R9)(AX*4), Y6

// Per-block activation terms.
#define ACT_Q4_AVX2 \
	DY; \
	VPMADDUBSW 2(DI), Y13, Y5

#define ACT_Q4_VNNI \
	DY; \
	VPXOR Y9, Y9, Y9; \
	VPXOR Y5, Y5, Y5; \
	VPDPBUSD 2(DI), Y13, Y5; \
	VPSUBD Y5, Y9, Y5

#define ACT_Q8_AVX2 \
	DY; \
	VPMOVSXBW 2(DI), Y12; \
	VPMOVSXBW 18(DI), Y13

#define ACT_Q8_VNNI ACT_Q4_VNNI

// 16 quant bytes at qs: nibbles to [low nibbles | high nibbles] in Y4.
#define NIBBLES(qs) \
	VMOVDQU qs, X4; \
	VPSRLW $4, X4, X9; \
	VINSERTI128 $1, X9, Y4, Y4; \
	VPAND Y14, Y4, Y4

// Q5_0 fifth bits (32 at qh) as 0x10 in byte j where bit j is set.
#define HIBITS_AVX2(qh) \
	VPBROADCASTD qh, Y9; \
	VPSHUFB Y12, Y9, Y9; \
	VPOR Y11, Y9, Y9; \
	VPCMPEQB Y10, Y9, Y9; \
	VPAND Y13, Y9, Y9; \
	VPOR Y9, Y4, Y4

#define HIBITS_VNNI(qh) \
	KMOVD qh, K1; \
	VPADDB Y13, Y4, K1, Y4

// Y7 = lane sums of (q - off)*y, q in Y4.
#define IDOT_Q4_AVX2 \
	VPMADDUBSW 2(DI), Y4, Y7; \
	VPSUBW Y5, Y7, Y7; \
	VPMADDWD Y15, Y7, Y7

#define IDOT_VNNI \
	VMOVDQA Y5, Y7; \
	VPDPBUSD 2(DI), Y4, Y7

// Q8_0 rows: Y7 = lane sums of x*y.
#define IDOT_Q8_AVX2(r) \
	VPMOVSXBW 2 r, Y4; \
	VPMOVSXBW 18 r, Y7; \
	VPMADDWD Y12, Y4, Y4; \
	VPMADDWD Y13, Y7, Y7; \
	VPHADDD Y7, Y4, Y7

#define IDOT_Q8_VNNI(r) \
	VPXOR 2 r, Y13, Y4; \
	IDOT_VNNI

// acc = fma(dx*dy, float32(Y7), acc), lane by lane; dx at d.
#define FACC(d, acc) \
	MOVWLZX d, AX; \
	VBROADCASTSS (R9)(AX*4), Y8; \
	VMULPS Y6, Y8, Y8; \
	VCVTDQ2PS Y7, Y7; \
	VFMADD231PS Y8, Y7, acc

#define ROW_Q4_AVX2(r, acc) \
	PREFETCHT0 PF r; \
	NIBBLES(2 r); \
	IDOT_Q4_AVX2; \
	FACC(r, acc)

#define ROW_Q4_VNNI(r, acc) \
	PREFETCHT0 PF r; \
	NIBBLES(2 r); \
	IDOT_VNNI; \
	FACC(r, acc)

#define ROW_Q5_AVX2(r, acc) \
	PREFETCHT0 PF r; \
	NIBBLES(6 r); \
	HIBITS_AVX2(2 r); \
	IDOT_Q4_AVX2; \
	FACC(r, acc)

#define ROW_Q5_VNNI(r, acc) \
	PREFETCHT0 PF r; \
	NIBBLES(6 r); \
	HIBITS_VNNI(2 r); \
	IDOT_VNNI; \
	FACC(r, acc)

#define ROW_Q8_AVX2(r, acc) \
	PREFETCHT0 PF r; \
	IDOT_Q8_AVX2(r); \
	FACC(r, acc)

#define ROW_Q8_VNNI(r, acc) \
	PREFETCHT0 PF r; \
	IDOT_Q8_VNNI(r); \
	FACC(r, acc)

// Lane 0 of Xr = ((s0+s4)+(s2+s6)) + ((s1+s5)+(s3+s7)) of Yr.
#define REDUCE(Yr, Xr) \
	VEXTRACTF128 $1, Yr, X9; \
	VADDPS X9, Xr, Xr; \
	VPERMILPS $0x4e, Xr, X9; \
	VADDPS X9, Xr, Xr; \
	VPERMILPS $0xb1, Xr, X9; \
	VADDPS X9, Xr, Xr

// The AVX2 Q8_0 lanes come in the order 0,1,4,5 | 2,3,6,7.
#define UNPERM(Yr) VPERMQ $0xd8, Yr, Yr
#define NOPERM(Yr)

#define PROLOGUE1 \
	MOVQ x+0(FP), SI; \
	MOVQ y+8(FP), DI; \
	MOVQ nb+16(FP), CX; \
	MOVQ tab+24(FP), R9; \
	VXORPS Y0, Y0, Y0

#define PROLOGUE4 \
	MOVQ x+0(FP), SI; \
	MOVQ stride+8(FP), R8; \
	LEAQ (R8)(R8*2), R10; \
	MOVQ y+16(FP), DI; \
	MOVQ nb+24(FP), CX; \
	MOVQ tab+32(FP), R9; \
	MOVQ out+40(FP), DX; \
	ZERO4

// One-row kernel: func(x, y *byte, nb int, tab *[1 << 16]float32) float32
// (nb > 0).
#define KERNEL1(name, consts, act, row, perm, bs) \
TEXT name(SB), NOSPLIT, $0-36; \
	PROLOGUE1; \
	consts; \
loop:; \
	act; \
	row((SI), Y0); \
	ADDQ $bs, SI; \
	ADDQ $34, DI; \
	DECQ CX; \
	JNZ loop; \
	perm(Y0); \
	REDUCE(Y0, X0); \
	VZEROUPPER; \
	MOVSS X0, ret+32(FP); \
	RET

// Four rows, stride bytes apart: func(x *byte, stride int, y *byte, nb int,
// tab *[1 << 16]float32, out *[4]float32) (nb > 0).
#define KERNEL4(name, consts, act, row, perm, bs) \
TEXT name(SB), NOSPLIT, $0-48; \
	PROLOGUE4; \
	consts; \
loop:; \
	act; \
	row((SI), Y0); \
	row((SI)(R8*1), Y1); \
	row((SI)(R8*2), Y2); \
	row((SI)(R10*1), Y3); \
	ADDQ $bs, SI; \
	ADDQ $34, DI; \
	DECQ CX; \
	JNZ loop; \
	perm(Y0); \
	perm(Y1); \
	perm(Y2); \
	perm(Y3); \
	REDUCE(Y0, X0); \
	REDUCE(Y1, X1); \
	REDUCE(Y2, X2); \
	REDUCE(Y3, X3); \
	VMOVSS X0, (DX); \
	VMOVSS X1, 4(DX); \
	VMOVSS X2, 8(DX); \
	VMOVSS X3, 12(DX); \
	VZEROUPPER; \
	RET

KERNEL1(·dotQ8_0AVX2Asm, CONSTS_AVX2(q8x80<>(SB)), ACT_Q8_AVX2, ROW_Q8_AVX2, UNPERM, 34)
KERNEL1(·dotQ4_0AVX2Asm, CONSTS_AVX2(q8x08<>(SB)), ACT_Q4_AVX2, ROW_Q4_AVX2, NOPERM, 18)
KERNEL1(·dotQ5_0AVX2Asm, CONSTS_AVX2(q8x10<>(SB)), ACT_Q4_AVX2, ROW_Q5_AVX2, NOPERM, 22)
KERNEL1(·dotQ8_0VNNIAsm, CONSTS_VNNI(q8x80<>(SB)), ACT_Q8_VNNI, ROW_Q8_VNNI, NOPERM, 34)
KERNEL1(·dotQ4_0VNNIAsm, CONSTS_VNNI(q8x08<>(SB)), ACT_Q4_VNNI, ROW_Q4_VNNI, NOPERM, 18)
KERNEL1(·dotQ5_0VNNIAsm, CONSTS_VNNI(q8x10<>(SB)), ACT_Q4_VNNI, ROW_Q5_VNNI, NOPERM, 22)

KERNEL4(·dotQ8_0x4AVX2Asm, CONSTS_AVX2(q8x80<>(SB)), ACT_Q8_AVX2, ROW_Q8_AVX2, UNPERM, 34)
KERNEL4(·dotQ4_0x4AVX2Asm, CONSTS_AVX2(q8x08<>(SB)), ACT_Q4_AVX2, ROW_Q4_AVX2, NOPERM, 18)
KERNEL4(·dotQ5_0x4AVX2Asm, CONSTS_AVX2(q8x10<>(SB)), ACT_Q4_AVX2, ROW_Q5_AVX2, NOPERM, 22)
KERNEL4(·dotQ8_0x4VNNIAsm, CONSTS_VNNI(q8x80<>(SB)), ACT_Q8_VNNI, ROW_Q8_VNNI, NOPERM, 34)
KERNEL4(·dotQ4_0x4VNNIAsm, CONSTS_VNNI(q8x08<>(SB)), ACT_Q4_VNNI, ROW_Q4_VNNI, NOPERM, 18)
KERNEL4(·dotQ5_0x4VNNIAsm, CONSTS_VNNI(q8x10<>(SB)), ACT_Q4_VNNI, ROW_Q5_VNNI, NOPERM, 22)

// Tiles of 4 rows × 4 tokens (VNNI only): func(x *byte, stride int, y *byte,
// ystride int, nb int, tab *[1 << 16]float32, out *[16]float32), out[4*t+r]
// bit-identical to the single-row result of row r with token t. Each weight
// block is unpacked once for the four tokens.
//	SI, R8, R10: rows as above   DI: token 0's block, R11: token stride,
//	R12: 3*R11   Y0..Y3: tokens' -off*(y sums)   Y5, Y6, Y10, Y11: tokens' dy
//	Y16 + 4r + t: lane sums of row r, token t   Y4, Y7, Y8, Y9: as above
#define TACT(y, neg, dy) \
	MOVWLZX y, AX; \
	VBROADCASTSS (R9)(AX*4), dy; \
	VPXOR Y9, Y9, Y9; \
	VPXOR neg, neg, neg; \
	VPDPBUSD 2 y, Y13, neg; \
	VPSUBD neg, Y9, neg

#define TACT4 \
	TACT((DI), Y0, Y5); \
	TACT((DI)(R11*1), Y1, Y6); \
	TACT((DI)(R11*2), Y2, Y10); \
	TACT((DI)(R12*1), Y3, Y11)

// One token against the unpacked row in Y4, dx in Y8.
#define TDOT(y, neg, dy, acc) \
	VMOVDQA neg, Y7; \
	VPDPBUSD 2 y, Y4, Y7; \
	VCVTDQ2PS Y7, Y7; \
	VMULPS dy, Y8, Y9; \
	VFMADD231PS Y9, Y7, acc

#define TROW(a0, a1, a2, a3) \
	TDOT((DI), Y0, Y5, a0); \
	TDOT((DI)(R11*1), Y1, Y6, a1); \
	TDOT((DI)(R11*2), Y2, Y10, a2); \
	TDOT((DI)(R12*1), Y3, Y11, a3)

#define LDX(r) \
	MOVWLZX r, AX; \
	VBROADCASTSS (R9)(AX*4), Y8

#define UNPACK_Q4(r) NIBBLES(2 r)
#define UNPACK_Q5(r) NIBBLES(6 r); HIBITS_VNNI(2 r)
#define UNPACK_Q8(r) VPXOR 2 r, Y13, Y4

#define TREDUCE(Yr, Xr, off) \
	VEXTRACTF32X4 $1, Yr, X9; \
	VADDPS X9, Xr, Xr; \
	VPERMILPS $0x4e, Xr, X9; \
	VADDPS X9, Xr, Xr; \
	VPERMILPS $0xb1, Xr, X9; \
	VADDPS X9, Xr, Xr; \
	VMOVSS Xr, off(DX)

#define TILE(name, offb, unpack, bs) \
TEXT name(SB), NOSPLIT, $0-56; \
	MOVQ x+0(FP), SI; \
	MOVQ stride+8(FP), R8; \
	LEAQ (R8)(R8*2), R10; \
	MOVQ y+16(FP), DI; \
	MOVQ ystride+24(FP), R11; \
	LEAQ (R11)(R11*2), R12; \
	MOVQ nb+32(FP), CX; \
	MOVQ tab+40(FP), R9; \
	MOVQ out+48(FP), DX; \
	CONSTS_VNNI(offb); \
	VPXORD Y16, Y16, Y16; VMOVDQA64 Y16, Y17; VMOVDQA64 Y16, Y18; VMOVDQA64 Y16, Y19; \
	VMOVDQA64 Y16, Y20; VMOVDQA64 Y16, Y21; VMOVDQA64 Y16, Y22; VMOVDQA64 Y16, Y23; \
	VMOVDQA64 Y16, Y24; VMOVDQA64 Y16, Y25; VMOVDQA64 Y16, Y26; VMOVDQA64 Y16, Y27; \
	VMOVDQA64 Y16, Y28; VMOVDQA64 Y16, Y29; VMOVDQA64 Y16, Y30; VMOVDQA64 Y16, Y31; \
loop:; \
	TACT4; \
	unpack((SI)); LDX((SI)); TROW(Y16, Y17, Y18, Y19); \
	unpack((SI)(R8*1)); LDX((SI)(R8*1)); TROW(Y20, Y21, Y22, Y23); \
	unpack((SI)(R8*2)); LDX((SI)(R8*2)); TROW(Y24, Y25, Y26, Y27); \
	unpack((SI)(R10*1)); LDX((SI)(R10*1)); TROW(Y28, Y29, Y30, Y31); \
	ADDQ $bs, SI; \
	ADDQ $34, DI; \
	DECQ CX; \
	JNZ loop; \
	TREDUCE(Y16, X16, 0); TREDUCE(Y17, X17, 16); TREDUCE(Y18, X18, 32); TREDUCE(Y19, X19, 48); \
	TREDUCE(Y20, X20, 4); TREDUCE(Y21, X21, 20); TREDUCE(Y22, X22, 36); TREDUCE(Y23, X23, 52); \
	TREDUCE(Y24, X24, 8); TREDUCE(Y25, X25, 24); TREDUCE(Y26, X26, 40); TREDUCE(Y27, X27, 56); \
	TREDUCE(Y28, X28, 12); TREDUCE(Y29, X29, 28); TREDUCE(Y30, X30, 44); TREDUCE(Y31, X31, 60); \
	VZEROUPPER; \
	RET

TILE(·tileQ8_0VNNIAsm, q8x80<>(SB), UNPACK_Q8, 34)
TILE(·tileQ4_0VNNIAsm, q8x08<>(SB), UNPACK_Q4, 18)
TILE(·tileQ5_0VNNIAsm, q8x10<>(SB), UNPACK_Q5, 22)

// Tiles of 4 rows × 8 tokens on 512-bit registers (VNNI only; the FP
// multiply and add units do 16 lanes per instruction), out[4*t+r]
// bit-identical to the single-row result of row r with token t. A register
// holds tokens p and p+4 (p < 4) in its two halves: eight lanes each, the
// same operations lane by lane. The tokens come packed (packQ8PairsAsm).
//	Z4: the row's quants in both halves  Z14: dx  Z15: d  Z9: scratch
//	Z16 + 4r + p: lane sums of row r, pair p  BX: the packed block
#define ZDX(r) \
	MOVWLZX r, AX; \
	VBROADCASTSS (R9)(AX*4), Z14

#define ZNIB(qs) \
	VMOVDQU qs, X4; \
	VPSRLW $4, X4, X9; \
	VINSERTI128 $1, X9, Y4, Y4; \
	VPAND q8nib<>(SB), Y4, Y4

#define ZUNPACK_Q4(r) ZNIB(2 r)
#define ZUNPACK_Q5(r) ZNIB(6 r); KMOVD 2 r, K1; VPADDB q8x10<>(SB), Y4, K1, Y4
#define ZUNPACK_Q8(r) VMOVDQU 2 r, Y4; VPXOR q8x80<>(SB), Y4, Y4

// Packed activations for the 8-token tiles: MatMul prepares each group of
// eight tokens once for all rows. Per block, per pair p (tokens p and p+4),
// 192 bytes at 192p: the two tokens' 32 quants, their 16 int32 lanes of
// -off*(y sums of 4), their dy broadcast over 8 lanes each.
//
#define PACKPAIR(ya, yb, po) \
	VMOVDQU 2 ya, Y0; \
	VINSERTI64X4 $1, 2 yb, Z0, Z0; \
	VMOVDQU64 Z0, po(BX); \
	VPXORD Z1, Z1, Z1; \
	VPDPBUSD Z0, Z13, Z1; \
	VPXORD Z2, Z2, Z2; \
	VPSUBD Z1, Z2, Z1; \
	VMOVDQU64 Z1, 64+po(BX); \
	MOVWLZX ya, AX; \
	VBROADCASTSS (R9)(AX*4), Y2; \
	MOVWLZX yb, AX; \
	VBROADCASTSS (R9)(AX*4), Y3; \
	VINSERTF64X4 $1, Y3, Z2, Z2; \
	VMOVUPS Z2, 128+po(BX)

// func packQ8PairsAsm(y *byte, ystride int, nb int, tab *[1 << 16]float32, off int, dst *byte)
TEXT ·packQ8PairsAsm(SB), NOSPLIT, $0-48
	MOVQ y+0(FP), DI
	MOVQ ystride+8(FP), R11
	LEAQ (R11)(R11*2), R12
	LEAQ (DI)(R11*4), R13
	MOVQ nb+16(FP), CX
	MOVQ tab+24(FP), R9
	MOVQ off+32(FP), AX
	VMOVD AX, X13
	VPBROADCASTB X13, Z13
	MOVQ dst+40(FP), BX
packloop:
	PACKPAIR((DI), (R13), 0)
	PACKPAIR((DI)(R11*1), (R13)(R11*1), 192)
	PACKPAIR((DI)(R11*2), (R13)(R11*2), 384)
	PACKPAIR((DI)(R12*1), (R13)(R12*1), 576)
	ADDQ $34, DI
	ADDQ $34, R13
	ADDQ $768, BX
	DECQ CX
	JNZ packloop
	VZEROUPPER
	RET

#define ZDOTP(po, acc) \
	VMOVDQU64 64+po(BX), Z9; \
	VPDPBUSD po(BX), Z4, Z9; \
	VCVTDQ2PS Z9, Z9; \
	VMULPS 128+po(BX), Z14, Z15; \
	VFMADD231PS Z15, Z9, acc

#define ZROWP(a0, a1, a2, a3) \
	VINSERTI64X4 $1, Y4, Z4, Z4; \
	ZDOTP(0, a0); \
	ZDOTP(192, a1); \
	ZDOTP(384, a2); \
	ZDOTP(576, a3)

// The sixteen accumulators Z16..Z31 (two tokens' eight lanes each) reduced
// together: each token's lanes summed as ((s0+s4)+(s2+s6)) + ((s1+s5)+(s3+s7))
// (sumLanes8) by a tree of shuffles and adds that leaves the 32 results in
// Z16 and Z17, stored to out[0..31] in the tree's order (the Go side knows
// which lane is which row and token: z8Lanes, z16Lanes).
#define ZHSUM32R \
	VSHUFI64X2 $0x88, Z24, Z16, Z0; VSHUFI64X2 $0xdd, Z24, Z16, Z1; VADDPS Z1, Z0, Z16; \
	VSHUFI64X2 $0x88, Z25, Z17, Z2; VSHUFI64X2 $0xdd, Z25, Z17, Z3; VADDPS Z3, Z2, Z17; \
	VSHUFI64X2 $0x88, Z26, Z18, Z0; VSHUFI64X2 $0xdd, Z26, Z18, Z1; VADDPS Z1, Z0, Z18; \
	VSHUFI64X2 $0x88, Z27, Z19, Z2; VSHUFI64X2 $0xdd, Z27, Z19, Z3; VADDPS Z3, Z2, Z19; \
	VSHUFI64X2 $0x88, Z28, Z20, Z0; VSHUFI64X2 $0xdd, Z28, Z20, Z1; VADDPS Z1, Z0, Z20; \
	VSHUFI64X2 $0x88, Z29, Z21, Z2; VSHUFI64X2 $0xdd, Z29, Z21, Z3; VADDPS Z3, Z2, Z21; \
	VSHUFI64X2 $0x88, Z30, Z22, Z0; VSHUFI64X2 $0xdd, Z30, Z22, Z1; VADDPS Z1, Z0, Z22; \
	VSHUFI64X2 $0x88, Z31, Z23, Z2; VSHUFI64X2 $0xdd, Z31, Z23, Z3; VADDPS Z3, Z2, Z23; \
	VPUNPCKLQDQ Z20, Z16, Z0; VPUNPCKHQDQ Z20, Z16, Z1; VADDPS Z1, Z0, Z16; \
	VPUNPCKLQDQ Z21, Z17, Z2; VPUNPCKHQDQ Z21, Z17, Z3; VADDPS Z3, Z2, Z17; \
	VPUNPCKLQDQ Z22, Z18, Z0; VPUNPCKHQDQ Z22, Z18, Z1; VADDPS Z1, Z0, Z18; \
	VPUNPCKLQDQ Z23, Z19, Z2; VPUNPCKHQDQ Z23, Z19, Z3; VADDPS Z3, Z2, Z19; \
	VSHUFPS $0x88, Z18, Z16, Z0; VSHUFPS $0xdd, Z18, Z16, Z1; VADDPS Z1, Z0, Z16; \
	VSHUFPS $0x88, Z19, Z17, Z2; VSHUFPS $0xdd, Z19, Z17, Z3; VADDPS Z3, Z2, Z17

#define ZHSUM32 \
	ZHSUM32R; \
	VMOVUPS Z16, (DX); \
	VMOVUPS Z17, 64(DX)

// ZHSUM32 whose 32 results go straight to their places in the output: lane
// l to DX + 4·at[l] (AX = at, 32 int32 offsets).
#define ZHSUM32SCATTER \
	ZHSUM32R; \
	VMOVDQU32 (AX), Z0; \
	VMOVDQU32 64(AX), Z1; \
	KXNORW K1, K1, K1; \
	KXNORW K2, K2, K2; \
	VSCATTERDPS Z16, K1, (DX)(Z0*4); \
	VSCATTERDPS Z17, K2, (DX)(Z1*4)

// 4 rows × 8 packed tokens: func(x *byte, stride int, p *byte, nb int,
// tab *[1 << 16]float32, out *[32]float32), out in z8Lanes' order.
#define ZTILEP(name, unpack, bs) \
TEXT name(SB), NOSPLIT, $0-48; \
	MOVQ x+0(FP), SI; \
	MOVQ stride+8(FP), R8; \
	LEAQ (R8)(R8*2), R10; \
	MOVQ p+16(FP), BX; \
	MOVQ nb+24(FP), CX; \
	MOVQ tab+32(FP), R9; \
	MOVQ out+40(FP), DX; \
	VPXORD Z16, Z16, Z16; VMOVDQA64 Z16, Z17; VMOVDQA64 Z16, Z18; VMOVDQA64 Z16, Z19; \
	VMOVDQA64 Z16, Z20; VMOVDQA64 Z16, Z21; VMOVDQA64 Z16, Z22; VMOVDQA64 Z16, Z23; \
	VMOVDQA64 Z16, Z24; VMOVDQA64 Z16, Z25; VMOVDQA64 Z16, Z26; VMOVDQA64 Z16, Z27; \
	VMOVDQA64 Z16, Z28; VMOVDQA64 Z16, Z29; VMOVDQA64 Z16, Z30; VMOVDQA64 Z16, Z31; \
loop:; \
	unpack((SI)); ZDX((SI)); ZROWP(Z16, Z17, Z18, Z19); \
	unpack((SI)(R8*1)); ZDX((SI)(R8*1)); ZROWP(Z20, Z21, Z22, Z23); \
	unpack((SI)(R8*2)); ZDX((SI)(R8*2)); ZROWP(Z24, Z25, Z26, Z27); \
	unpack((SI)(R10*1)); ZDX((SI)(R10*1)); ZROWP(Z28, Z29, Z30, Z31); \
	ADDQ $bs, SI; \
	ADDQ $768, BX; \
	DECQ CX; \
	JNZ loop; \
	ZHSUM32; \
	VZEROUPPER; \
	RET

ZTILEP(·tilePQ8_0VNNIAsm, ZUNPACK_Q8, 34)
ZTILEP(·tilePQ4_0VNNIAsm, ZUNPACK_Q4, 18)
ZTILEP(·tilePQ5_0VNNIAsm, ZUNPACK_Q5, 22)

// VPSRLVW counts for a 128-bit block broadcast over a 512-bit register:
// the low nibbles stay in lanes 0 and 2, the high ones come down in 1 and 3.
DATA q8shr<>+0(SB)/8, $0
DATA q8shr<>+8(SB)/8, $0
DATA q8shr<>+16(SB)/8, $0x0004000400040004
DATA q8shr<>+24(SB)/8, $0x0004000400040004
DATA q8shr<>+32(SB)/8, $0
DATA q8shr<>+40(SB)/8, $0
DATA q8shr<>+48(SB)/8, $0x0004000400040004
DATA q8shr<>+56(SB)/8, $0x0004000400040004
GLOBL q8shr<>(SB), RODATA|NOPTR, $64

// Unpacking straight into both halves of Z4 (Z10: q8shr, Z11: nibble
// mask, Z12: 0x10 bytes, Z13: 0x80 bytes; Q5_0's 32 fifth bits twice in K1).
#define Z16UNPACK_Q4(r) \
	VBROADCASTI32X4 2 r, Z4; \
	VPSRLVW Z10, Z4, Z4; \
	VPANDD Z11, Z4, Z4

#define Z16UNPACK_Q5(r) \
	VBROADCASTI32X4 6 r, Z4; \
	VPSRLVW Z10, Z4, Z4; \
	VPANDD Z11, Z4, Z4; \
	MOVL 2 r, AX; \
	MOVQ AX, R12; \
	SHLQ $32, R12; \
	ORQ R12, AX; \
	KMOVQ AX, K1; \
	VPADDB Z12, Z4, K1, Z4

#define Z16UNPACK_Q8(r) \
	VBROADCASTI64X4 2 r, Z4; \
	VPXORD Z13, Z4, Z4

// 2 rows × 16 packed tokens (two groups of eight, each packed as above at
// p and q, the same offsets): each row's block is unpacked once for sixteen
// tokens. out in z16Lanes' order (tokens 0..7 from p, 8..15 from q).
//	Z4: the row's quants  Z14: dx  Z9, Z15: scratch
//	Z16 + 8r + p: row r, pair p of group p/4 (tokens (p&3) and (p&3)+4)
#define ZDOTQ(po, acc) \
	VMOVDQU64 64+po(R11), Z9; \
	VPDPBUSD po(R11), Z4, Z9; \
	VCVTDQ2PS Z9, Z9; \
	VMULPS 128+po(R11), Z14, Z15; \
	VFMADD231PS Z15, Z9, acc

#define ZROW16(a0, a1, a2, a3, a4, a5, a6, a7) \
	ZDOTP(0, a0); \
	ZDOTP(192, a1); \
	ZDOTP(384, a2); \
	ZDOTP(576, a3); \
	ZDOTQ(0, a4); \
	ZDOTQ(192, a5); \
	ZDOTQ(384, a6); \
	ZDOTQ(576, a7)

// func(x *byte, stride int, p, q *byte, nb int, tab *[1 << 16]float32, out *float32, at *[32]int32):
// lane l (z16Lanes' order) stored at out[at[l]].
#define ZTILE16(name, unpack, bs) \
TEXT name(SB), NOSPLIT, $0-64; \
	MOVQ x+0(FP), SI; \
	MOVQ stride+8(FP), R8; \
	MOVQ p+16(FP), BX; \
	MOVQ q+24(FP), R11; \
	MOVQ nb+32(FP), CX; \
	MOVQ tab+40(FP), R9; \
	MOVQ out+48(FP), DX; \
	VMOVDQU64 q8shr<>(SB), Z10; \
	VPBROADCASTD q8nib<>(SB), Z11; \
	VPBROADCASTD q8x10<>(SB), Z12; \
	VPBROADCASTD q8x80<>(SB), Z13; \
	VPXORD Z16, Z16, Z16; VMOVDQA64 Z16, Z17; VMOVDQA64 Z16, Z18; VMOVDQA64 Z16, Z19; \
	VMOVDQA64 Z16, Z20; VMOVDQA64 Z16, Z21; VMOVDQA64 Z16, Z22; VMOVDQA64 Z16, Z23; \
	VMOVDQA64 Z16, Z24; VMOVDQA64 Z16, Z25; VMOVDQA64 Z16, Z26; VMOVDQA64 Z16, Z27; \
	VMOVDQA64 Z16, Z28; VMOVDQA64 Z16, Z29; VMOVDQA64 Z16, Z30; VMOVDQA64 Z16, Z31; \
loop:; \
	unpack((SI)); ZDX((SI)); ZROW16(Z16, Z17, Z18, Z19, Z20, Z21, Z22, Z23); \
	unpack((SI)(R8*1)); ZDX((SI)(R8*1)); ZROW16(Z24, Z25, Z26, Z27, Z28, Z29, Z30, Z31); \
	ADDQ $bs, SI; \
	ADDQ $768, BX; \
	ADDQ $768, R11; \
	DECQ CX; \
	JNZ loop; \
	MOVQ at+56(FP), AX; \
	ZHSUM32SCATTER; \
	VZEROUPPER; \
	RET

ZTILE16(·tile16Q8_0VNNIAsm, Z16UNPACK_Q8, 34)
ZTILE16(·tile16Q4_0VNNIAsm, Z16UNPACK_Q4, 18)
ZTILE16(·tile16Q5_0VNNIAsm, Z16UNPACK_Q5, 22)
