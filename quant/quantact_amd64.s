#include "textflag.h"

// Activation quantization in AVX-512 (F, BW, VL; TZCNT), bit-identical to
// the Go quantActQ8_0 and quantQ8_K:
//
//	amax: the largest |x| with NaNs skipped (Go: `abs(x) > amax` is false for
//	  a NaN): each |x| enters VMAXPS as the first source, the running maximum
//	  as the second, so a NaN yields the maximum (VMAXPS returns the second
//	  source when either is NaN). Max of non-negative non-NaN floats is exact
//	  in any order.
//	Divisions, products: VDIVSS/VMULPS, IEEE float32 round to nearest, as Go.
//	q = int32(RoundToEven(float64(f))) (Go: ROUNDSD then CVTTSD2SL): here
//	  VCVTPS2DQ under the default MXCSR (round to nearest even). f is a float32
//	  and an integer result fits in int32 or is the "integer indefinite"
//	  0x80000000 in both (±Inf, NaN, out of range); byte(int8(q)) keeps the low
//	  byte: VPMOVDB truncates (0x80000000 → 0, as Go).
//	Q8_0's d: F32ToF16(amax/127) by VCVTPS2PH with round to nearest even
//	  (amax/127 is non-negative, not NaN, possibly +Inf: the two agree there,
//	  checked by TestF16ConvertAsm).
//	Q8_K's bsums: the stored bytes b (int8) XOR 0x80 = b+128 unsigned, summed
//	  by VPSADBW per 8 bytes, minus 16·128: exact.

// func quantActQ8_0Asm(x *float32, dst *byte, nb int)
TEXT ·quantActQ8_0Asm(SB), NOSPLIT, $0-24
	MOVQ x+0(FP), SI
	MOVQ dst+8(FP), DI
	MOVQ nb+16(FP), CX
	MOVL $0x7fffffff, AX
	VPBROADCASTD AX, Z13
	MOVL $0x42fe0000, AX // 127.0
	VMOVD AX, X14
	VPXORD Z15, Z15, Z15

q80loop:
	VMOVUPS (SI), Z0
	VMOVUPS 64(SI), Z1
	VPANDD Z13, Z0, Z2
	VPANDD Z13, Z1, Z3
	VMAXPS Z15, Z2, Z2 // Intel vmaxps z2, z2, z15: NaN → 0
	VMAXPS Z2, Z3, Z2 // vmaxps z2, z3, z2: NaN in z3 → z2
	VEXTRACTF64X4 $1, Z2, Y3
	VMAXPS Y3, Y2, Y2
	VEXTRACTF128 $1, Y2, X3
	VMAXPS X3, X2, X2
	VPERMILPS $0x4e, X2, X3
	VMAXPS X3, X2, X2
	VPERMILPS $0xb1, X2, X3
	VMAXPS X3, X2, X2 // amax in every lane

	VDIVSS X14, X2, X4 // d = amax/127
	VCVTPS2PH $0, X4, X4
	VMOVD X4, AX
	MOVW AX, (DI)
	VDIVSS X2, X14, X5 // 127/amax
	VCMPSS $4, X15, X2, X6 // amax != 0
	VANDPS X6, X5, X5 // id, 0 where amax = 0
	VBROADCASTSS X5, Z5

	VMULPS Z5, Z0, Z0
	VMULPS Z5, Z1, Z1
	VCVTPS2DQ Z0, Z0
	VCVTPS2DQ Z1, Z1
	VPMOVDB Z0, X0
	VPMOVDB Z1, X1
	VMOVDQU X0, 2(DI)
	VMOVDQU X1, 18(DI)

	ADDQ $128, SI
	ADDQ $34, DI
	DECQ CX
	JNZ  q80loop
	VZEROUPPER
	RET

// VPERMW indices putting the bsums back in order: after the unpacks the
// words hold groups 0,4,1,5,2,6,3,7,8,12,9,13,10,14,11,15.
DATA qkperm<>+0(SB)/8, $0x0006000400020000
DATA qkperm<>+8(SB)/8, $0x0007000500030001
DATA qkperm<>+16(SB)/8, $0x000e000c000a0008
DATA qkperm<>+24(SB)/8, $0x000f000d000b0009
GLOBL qkperm<>(SB), RODATA|NOPTR, $32

#define ABSMAX(zx, acc) \
	VPANDD Z15, zx, Z4; \
	VMAXPS acc, Z4, acc

#define CMPABS(zx, k) \
	VPANDD Z15, zx, Z4; \
	VCMPPS $0, Z0, Z4, k

#define QUANT(zx) \
	VMULPS Z6, zx, zx; \
	VCVTPS2DQ zx, zx; \
	VPMINSD Z11, zx, zx

// Four vectors of quants (zA..zD, 16 int32 each) → 64 bytes at off(DI);
// leaves them in zA.
#define STORE4(zA, xA, zB, xB, zC, xC, zD, xD, off) \
	VPMOVDB zA, xA; \
	VPMOVDB zB, xB; \
	VPMOVDB zC, xC; \
	VPMOVDB zD, xD; \
	VINSERTI32X4 $1, xB, zA, zA; \
	VINSERTI32X4 $2, xC, zA, zA; \
	VINSERTI32X4 $3, xD, zA, zA; \
	VMOVDQU64 zA, off(DI)

// func quantQ8_KAsm(x *float32, dst *byte, nb int)
TEXT ·quantQ8_KAsm(SB), NOSPLIT, $0-24
	MOVQ x+0(FP), SI
	MOVQ dst+8(FP), DI
	MOVQ nb+16(FP), CX
	MOVL $0x7fffffff, AX
	VPBROADCASTD AX, Z15
	VPXORD Z14, Z14, Z14
	MOVL $0xc2fe0000, AX // -127.0
	VMOVD AX, X13
	MOVL $0x3f800000, AX // 1.0
	VMOVD AX, X12
	MOVL $127, AX
	VPBROADCASTD AX, Z11
	MOVL $0x80808080, AX
	VPBROADCASTD AX, Z10
	MOVL $0x08000800, AX // 2048 in each word
	VPBROADCASTD AX, Y9
	VMOVDQU qkperm<>(SB), Y8

qkloop:
	VMOVUPS (SI), Z16
	VMOVUPS 64(SI), Z17
	VMOVUPS 128(SI), Z18
	VMOVUPS 192(SI), Z19
	VMOVUPS 256(SI), Z20
	VMOVUPS 320(SI), Z21
	VMOVUPS 384(SI), Z22
	VMOVUPS 448(SI), Z23
	VMOVUPS 512(SI), Z24
	VMOVUPS 576(SI), Z25
	VMOVUPS 640(SI), Z26
	VMOVUPS 704(SI), Z27
	VMOVUPS 768(SI), Z28
	VMOVUPS 832(SI), Z29
	VMOVUPS 896(SI), Z30
	VMOVUPS 960(SI), Z31

	// amax in four accumulators, starting from 0 (NaNs skipped).
	VMOVDQA64 Z14, Z0
	VMOVDQA64 Z14, Z1
	VMOVDQA64 Z14, Z2
	VMOVDQA64 Z14, Z3
	ABSMAX(Z16, Z0); ABSMAX(Z17, Z1); ABSMAX(Z18, Z2); ABSMAX(Z19, Z3)
	ABSMAX(Z20, Z0); ABSMAX(Z21, Z1); ABSMAX(Z22, Z2); ABSMAX(Z23, Z3)
	ABSMAX(Z24, Z0); ABSMAX(Z25, Z1); ABSMAX(Z26, Z2); ABSMAX(Z27, Z3)
	ABSMAX(Z28, Z0); ABSMAX(Z29, Z1); ABSMAX(Z30, Z2); ABSMAX(Z31, Z3)
	VMAXPS Z1, Z0, Z0
	VMAXPS Z3, Z2, Z2
	VMAXPS Z2, Z0, Z0
	VSHUFF64X2 $0x4e, Z0, Z0, Z1
	VMAXPS Z1, Z0, Z0
	VSHUFF64X2 $0xb1, Z0, Z0, Z1
	VMAXPS Z1, Z0, Z0
	VPERMILPS $0x4e, Z0, Z1
	VMAXPS Z1, Z0, Z0
	VPERMILPS $0xb1, Z0, Z1
	VMAXPS Z1, Z0, Z0 // amax in every lane
	VUCOMISS X14, X0
	JEQ  qkzero

	// mx: the first x with |x| = amax (Go keeps the first on ties).
	CMPABS(Z16, K0); CMPABS(Z17, K1); CMPABS(Z18, K2); CMPABS(Z19, K3)
	CMPABS(Z20, K4); CMPABS(Z21, K5); CMPABS(Z22, K6); CMPABS(Z23, K7)
	KUNPCKWD K0, K1, K0 // K0 = K1:K0 (K0 the low half)
	KUNPCKWD K2, K3, K2
	KUNPCKWD K4, K5, K4
	KUNPCKWD K6, K7, K6
	KUNPCKDQ K0, K2, K0
	KUNPCKDQ K4, K6, K4
	KMOVQ K0, R8
	KMOVQ K4, R9
	CMPABS(Z24, K0); CMPABS(Z25, K1); CMPABS(Z26, K2); CMPABS(Z27, K3)
	CMPABS(Z28, K4); CMPABS(Z29, K5); CMPABS(Z30, K6); CMPABS(Z31, K7)
	KUNPCKWD K0, K1, K0
	KUNPCKWD K2, K3, K2
	KUNPCKWD K4, K5, K4
	KUNPCKWD K6, K7, K6
	KUNPCKDQ K0, K2, K0
	KUNPCKDQ K4, K6, K4
	KMOVQ K0, R10
	KMOVQ K4, R11
	TZCNTQ R11, AX
	ADDQ $192, AX
	TZCNTQ R10, DX
	ADDQ $128, DX
	TESTQ R10, R10
	CMOVQNE DX, AX
	TZCNTQ R9, DX
	ADDQ $64, DX
	TESTQ R9, R9
	CMOVQNE DX, AX
	TZCNTQ R8, DX
	TESTQ R8, R8
	CMOVQNE DX, AX
	VMOVSS (SI)(AX*4), X5 // mx

	VDIVSS X5, X13, X6 // iscale = -127/mx
	VDIVSS X6, X12, X7 // d = 1/iscale
	VMOVSS X7, (DI)
	VBROADCASTSS X6, Z6

	QUANT(Z16); QUANT(Z17); QUANT(Z18); QUANT(Z19)
	QUANT(Z20); QUANT(Z21); QUANT(Z22); QUANT(Z23)
	QUANT(Z24); QUANT(Z25); QUANT(Z26); QUANT(Z27)
	QUANT(Z28); QUANT(Z29); QUANT(Z30); QUANT(Z31)
	STORE4(Z16, X16, Z17, X17, Z18, X18, Z19, X19, 4)
	STORE4(Z20, X20, Z21, X21, Z22, X22, Z23, X23, 68)
	STORE4(Z24, X24, Z25, X25, Z26, X26, Z27, X27, 132)
	STORE4(Z28, X28, Z29, X29, Z30, X30, Z31, X31, 196)

	// bsums: per 128-bit lane (one group of 16) two SAD qwords.
	VPXORD Z10, Z16, Z0
	VPXORD Z10, Z20, Z1
	VPXORD Z10, Z24, Z2
	VPXORD Z10, Z28, Z3
	VPSADBW Z14, Z0, Z0
	VPSADBW Z14, Z1, Z1
	VPSADBW Z14, Z2, Z2
	VPSADBW Z14, Z3, Z3
	VPUNPCKLQDQ Z1, Z0, Z4 // lane l: group l low, group 4+l low
	VPUNPCKHQDQ Z1, Z0, Z5
	VPADDQ Z5, Z4, Z4 // qwords: groups 0,4,1,5,2,6,3,7
	VPUNPCKLQDQ Z3, Z2, Z5
	VPUNPCKHQDQ Z3, Z2, Z7
	VPADDQ Z7, Z5, Z5 // groups 8,12,9,13,10,14,11,15
	VPMOVQW Z4, X4
	VPMOVQW Z5, X5
	VINSERTI128 $1, X5, Y4, Y4
	VPERMW Y4, Y8, Y4
	VPSUBW Y9, Y4, Y4
	VMOVDQU Y4, 260(DI)
	JMP  qknext

qkzero:
	VMOVDQU64 Z14, (DI)
	VMOVDQU64 Z14, 64(DI)
	VMOVDQU64 Z14, 128(DI)
	VMOVDQU64 Z14, 192(DI)
	VMOVDQU Y14, 256(DI)
	MOVL $0, 288(DI)

qknext:
	ADDQ $1024, SI
	ADDQ $292, DI
	DECQ CX
	JNZ  qkloop
	VZEROUPPER
	RET

// func f16ConvertAsm(f float32) uint16: VCVTPS2PH with round to nearest
// even, for TestF16ConvertAsm.
TEXT ·f16ConvertAsm(SB), NOSPLIT, $0-10
	VMOVSS f+0(FP), X0
	VCVTPS2PH $0, X0, X0
	VMOVD X0, AX
	MOVW AX, ret+8(FP)
	RET

// func packK16Asm(xq *byte, ab int, nb int, dst *byte, off *[16]int32):
// packK16 (dotk16_amd64.go) for AVX-512 F: per block the sixteen tokens'
// quants copied in token order, their d and bsum pairs gathered in lane order
// (off[l] = kperm[l]*ab).
TEXT ·packK16Asm(SB), NOSPLIT, $0-40
	MOVQ xq+0(FP), SI
	MOVQ ab+8(FP), R8
	MOVQ nb+16(FP), CX
	MOVQ dst+24(FP), DI
	MOVQ off+32(FP), AX
	VMOVDQU32 (AX), Z31

pkblock:
	MOVQ SI, R11
	MOVQ DI, R12
	MOVQ $16, DX

pktok:
	VMOVDQU64 4(R11), Z0
	VMOVDQU64 68(R11), Z1
	VMOVDQU64 132(R11), Z2
	VMOVDQU64 196(R11), Z3
	VMOVDQU64 Z0, (R12)
	VMOVDQU64 Z1, 64(R12)
	VMOVDQU64 Z2, 128(R12)
	VMOVDQU64 Z3, 192(R12)
	ADDQ R8, R11
	ADDQ $256, R12
	DECQ DX
	JNZ  pktok

	KXNORW K1, K1, K1
	VPGATHERDD (SI)(Z31*1), K1, Z4
	KXNORW K2, K2, K2
	VPGATHERDD 260(SI)(Z31*1), K2, Z5
	KXNORW K3, K3, K3
	VPGATHERDD 264(SI)(Z31*1), K3, Z6
	KXNORW K4, K4, K4
	VPGATHERDD 268(SI)(Z31*1), K4, Z7
	KXNORW K5, K5, K5
	VPGATHERDD 272(SI)(Z31*1), K5, Z8
	VMOVDQU32 Z4, 4096(DI)
	VMOVDQU32 Z5, 4160(DI)
	VMOVDQU32 Z6, 4224(DI)
	VMOVDQU32 Z7, 4288(DI)
	VMOVDQU32 Z8, 4352(DI)
	KXNORW K1, K1, K1
	VPGATHERDD 276(SI)(Z31*1), K1, Z4
	KXNORW K2, K2, K2
	VPGATHERDD 280(SI)(Z31*1), K2, Z5
	KXNORW K3, K3, K3
	VPGATHERDD 284(SI)(Z31*1), K3, Z6
	KXNORW K4, K4, K4
	VPGATHERDD 288(SI)(Z31*1), K4, Z7
	VMOVDQU32 Z4, 4416(DI)
	VMOVDQU32 Z5, 4480(DI)
	VMOVDQU32 Z6, 4544(DI)
	VMOVDQU32 Z7, 4608(DI)

	ADDQ $292, SI
	ADDQ $4672, DI
	DECQ CX
	JNZ  pkblock
	VZEROUPPER
	RET
