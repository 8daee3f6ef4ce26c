#include "textflag.h"

// Whole-block AVX2 dot products of Q4_K and Q6_K rows with Q8_K
// activations. The integer sums of a block (sumi, and summ for Q4_K) are
// exact whatever the bytes; the float part repeats dotQ4_K's/dotQ6_K's
// operations in their order (scales read through the Go f16Table), so the
// results are bit-identical to the Go functions.
//
// Q4_K, per block: the 12 packed scale bytes are decoded with 32-bit
// integer operations (as ggml does) into 8 scales and 8 mins; chunk c of 32
// quant bytes gives sub-block 2c (low nibbles) and 2c+1 (high nibbles):
// VPMADDUBSW(q, y) (pairs ≤ 2*15*128), VPMADDWD by the sub-block's scale,
// VPADDD. summ = VPMADDWD(bsums, mins each twice).
// Q6_K, per half h: the 6-bit quants of 4 chunks from ql/qh (the high bits
// masked to 0x30 after a word shift: no bits cross into the kept ones),
// VPMADDUBSW(q, y) (pairs ≤ 2*63*128), VPMADDWD by the two sub-blocks'
// int8 scales (one a 128-bit lane), VPADDD; then Σ (q-32)*y*sc is that minus
// 32*Σ sc*bsum (one VPMADDWD a block).

#define PFK 4096

DATA knib<>+0(SB)/8, $0x0f0f0f0f0f0f0f0f
DATA knib<>+8(SB)/8, $0x0f0f0f0f0f0f0f0f
DATA knib<>+16(SB)/8, $0x0f0f0f0f0f0f0f0f
DATA knib<>+24(SB)/8, $0x0f0f0f0f0f0f0f0f
GLOBL knib<>(SB), RODATA|NOPTR, $32

DATA kx30<>+0(SB)/8, $0x3030303030303030
DATA kx30<>+8(SB)/8, $0x3030303030303030
DATA kx30<>+16(SB)/8, $0x3030303030303030
DATA kx30<>+24(SB)/8, $0x3030303030303030
GLOBL kx30<>(SB), RODATA|NOPTR, $32

// VPSHUFB masks over 8 int16 scales (both lanes): chunk k takes word 2k in
// the low lane and word 2k+1 in the high lane.
DATA ksc<>+0(SB)/8, $0x0100010001000100
DATA ksc<>+8(SB)/8, $0x0100010001000100
DATA ksc<>+16(SB)/8, $0x0302030203020302
DATA ksc<>+24(SB)/8, $0x0302030203020302
DATA ksc<>+32(SB)/8, $0x0504050405040504
DATA ksc<>+40(SB)/8, $0x0504050405040504
DATA ksc<>+48(SB)/8, $0x0706070607060706
DATA ksc<>+56(SB)/8, $0x0706070607060706
DATA ksc<>+64(SB)/8, $0x0908090809080908
DATA ksc<>+72(SB)/8, $0x0908090809080908
DATA ksc<>+80(SB)/8, $0x0b0a0b0a0b0a0b0a
DATA ksc<>+88(SB)/8, $0x0b0a0b0a0b0a0b0a
DATA ksc<>+96(SB)/8, $0x0d0c0d0c0d0c0d0c
DATA ksc<>+104(SB)/8, $0x0d0c0d0c0d0c0d0c
DATA ksc<>+112(SB)/8, $0x0f0e0f0e0f0e0f0e
DATA ksc<>+120(SB)/8, $0x0f0e0f0e0f0e0f0e
GLOBL ksc<>(SB), RODATA|NOPTR, $128

// VPSHUFB masks broadcasting word j (0..7) of a 128-bit lane over it.
DATA kbw<>+0(SB)/8, $0x0100010001000100
DATA kbw<>+8(SB)/8, $0x0100010001000100
DATA kbw<>+16(SB)/8, $0x0100010001000100
DATA kbw<>+24(SB)/8, $0x0100010001000100
DATA kbw<>+32(SB)/8, $0x0302030203020302
DATA kbw<>+40(SB)/8, $0x0302030203020302
DATA kbw<>+48(SB)/8, $0x0302030203020302
DATA kbw<>+56(SB)/8, $0x0302030203020302
DATA kbw<>+64(SB)/8, $0x0504050405040504
DATA kbw<>+72(SB)/8, $0x0504050405040504
DATA kbw<>+80(SB)/8, $0x0504050405040504
DATA kbw<>+88(SB)/8, $0x0504050405040504
DATA kbw<>+96(SB)/8, $0x0706070607060706
DATA kbw<>+104(SB)/8, $0x0706070607060706
DATA kbw<>+112(SB)/8, $0x0706070607060706
DATA kbw<>+120(SB)/8, $0x0706070607060706
DATA kbw<>+128(SB)/8, $0x0908090809080908
DATA kbw<>+136(SB)/8, $0x0908090809080908
DATA kbw<>+144(SB)/8, $0x0908090809080908
DATA kbw<>+152(SB)/8, $0x0908090809080908
DATA kbw<>+160(SB)/8, $0x0b0a0b0a0b0a0b0a
DATA kbw<>+168(SB)/8, $0x0b0a0b0a0b0a0b0a
DATA kbw<>+176(SB)/8, $0x0b0a0b0a0b0a0b0a
DATA kbw<>+184(SB)/8, $0x0b0a0b0a0b0a0b0a
DATA kbw<>+192(SB)/8, $0x0d0c0d0c0d0c0d0c
DATA kbw<>+200(SB)/8, $0x0d0c0d0c0d0c0d0c
DATA kbw<>+208(SB)/8, $0x0d0c0d0c0d0c0d0c
DATA kbw<>+216(SB)/8, $0x0d0c0d0c0d0c0d0c
DATA kbw<>+224(SB)/8, $0x0f0e0f0e0f0e0f0e
DATA kbw<>+232(SB)/8, $0x0f0e0f0e0f0e0f0e
DATA kbw<>+240(SB)/8, $0x0f0e0f0e0f0e0f0e
DATA kbw<>+248(SB)/8, $0x0f0e0f0e0f0e0f0e
GLOBL kbw<>(SB), RODATA|NOPTR, $256

// Y1 += Σ lanes of sc_lo/sc_hi-scaled pairs of q (Yq) with 32 y at yoff(DI).
#define KDOT(yoff, Yq, Ysc) \
	VPMADDUBSW yoff(DI), Yq, Yq; \
	VPMADDWD Ysc, Yq, Yq; \
	VPADDD Yq, Y1, Y1

// Q4_K chunk c: quant bytes at qoff(SI), y at yoff and yoff+32, the 8
// scales as words in both lanes of Y8; s0, s1 the kbw masks of 2c and 2c+1.
#define Q4K_CHUNK(qoff, yoff, s0, s1) \
	VMOVDQU qoff(SI), Y4; \
	VPSRLW $4, Y4, Y5; \
	VPAND Y15, Y4, Y4; \
	VPAND Y15, Y5, Y5; \
	VPSHUFB kbw<>+s0(SB), Y8, Y6; \
	VPSHUFB kbw<>+s1(SB), Y8, Y7; \
	KDOT(yoff, Y4, Y6); \
	KDOT(yoff+32, Y5, Y7)

// func dotQ4_KAsm(x, y *byte, nb int, tab *[1 << 16]float32) float32 (nb > 0)
TEXT ·dotQ4_KAsm(SB), NOSPLIT, $0-36
	MOVQ x+0(FP), SI
	MOVQ y+8(FP), DI
	MOVQ nb+16(FP), CX
	MOVQ tab+24(FP), R9
	VMOVDQU knib<>(SB), Y15
	VXORPS X0, X0, X0
q4kloop:
	PREFETCHT0 PFK(SI)
	PREFETCHT0 PFK+64(SI)
	PREFETCHT0 PFK+128(SI)
	// Scales and mins (ggml's utmp decoding).
	MOVL 4(SI), AX
	MOVL 8(SI), BX
	MOVL 12(SI), DX
	MOVL DX, R8
	SHRL $4, R8
	ANDL $0x0f0f0f0f, R8
	MOVL BX, R10
	SHRL $6, R10
	ANDL $0x03030303, R10
	SHLL $4, R10
	ORL R10, R8
	ANDL $0x0f0f0f0f, DX
	MOVL AX, R10
	SHRL $6, R10
	ANDL $0x03030303, R10
	SHLL $4, R10
	ORL R10, DX
	ANDL $0x3f3f3f3f, BX
	ANDL $0x3f3f3f3f, AX
	SHLQ $32, DX
	ORQ DX, AX
	SHLQ $32, R8
	ORQ R8, BX
	// AX: the 8 scales, BX: the 8 mins (bytes).
	VMOVQ AX, X8
	VPMOVZXBW X8, X8
	VINSERTI128 $1, X8, Y8, Y8
	// summ lanes: mins twice each against the 16 bsums.
	VMOVQ BX, X2
	VPMOVZXBW X2, X2
	VPUNPCKLWD X2, X2, X3
	VPUNPCKHWD X2, X2, X4
	VINSERTI128 $1, X4, Y3, Y3
	VPMADDWD 260(DI), Y3, Y3
	VPXOR Y1, Y1, Y1
	Q4K_CHUNK(16, 4, 0, 32)
	Q4K_CHUNK(48, 68, 64, 96)
	Q4K_CHUNK(80, 132, 128, 160)
	Q4K_CHUNK(112, 196, 192, 224)
	// (sumi, summ) in lanes 0 and 1 of X1.
	VPHADDD Y3, Y1, Y1
	VEXTRACTI128 $1, Y1, X2
	VPADDD X2, X1, X1
	VPHADDD X1, X1, X1
	VCVTDQ2PS X1, X1
	VMOVSHDUP X1, X5
	VMOVSS (DI), X2
	MOVWLZX (SI), AX
	VMOVSS (R9)(AX*4), X3
	VMULSS X2, X3, X3
	VMULSS X1, X3, X3
	MOVWLZX 2(SI), AX
	VMOVSS (R9)(AX*4), X4
	VMULSS X2, X4, X4
	VMULSS X5, X4, X4
	VSUBSS X4, X3, X3
	VADDSS X3, X0, X0
	ADDQ $144, SI
	ADDQ $292, DI
	DECQ CX
	JNZ q4kloop
	VZEROUPPER
	MOVSS X0, ret+32(FP)
	RET

// Q6_K half h: ql at qloff(SI), qh at qhoff(SI), y from yoff(DI), the
// half's 8 scales at scoff(SI).
#define Q6K_HALF(qloff, qhoff, yoff, scoff) \
	VPMOVSXBW scoff(SI), X6; \
	VINSERTI128 $1, X6, Y6, Y6; \
	VMOVDQU qloff(SI), Y2; \
	VMOVDQU qloff+32(SI), Y3; \
	VMOVDQU qhoff(SI), Y7; \
	VPSLLW $4, Y7, Y4; \
	VPAND Y14, Y4, Y4; \
	VPAND Y15, Y2, Y5; \
	VPOR Y5, Y4, Y4; \
	VPSHUFB Y8, Y6, Y5; \
	KDOT(yoff, Y4, Y5); \
	VPSLLW $2, Y7, Y4; \
	VPAND Y14, Y4, Y4; \
	VPAND Y15, Y3, Y5; \
	VPOR Y5, Y4, Y4; \
	VPSHUFB Y9, Y6, Y5; \
	KDOT(yoff+32, Y4, Y5); \
	VPAND Y14, Y7, Y4; \
	VPSRLW $4, Y2, Y5; \
	VPAND Y15, Y5, Y5; \
	VPOR Y5, Y4, Y4; \
	VPSHUFB Y10, Y6, Y5; \
	KDOT(yoff+64, Y4, Y5); \
	VPSRLW $2, Y7, Y4; \
	VPAND Y14, Y4, Y4; \
	VPSRLW $4, Y3, Y5; \
	VPAND Y15, Y5, Y5; \
	VPOR Y5, Y4, Y4; \
	VPSHUFB Y11, Y6, Y5; \
	KDOT(yoff+96, Y4, Y5)

// func dotQ6_KAsm(x, y *byte, nb int, tab *[1 << 16]float32) float32 (nb > 0)
TEXT ·dotQ6_KAsm(SB), NOSPLIT, $0-36
	MOVQ x+0(FP), SI
	MOVQ y+8(FP), DI
	MOVQ nb+16(FP), CX
	MOVQ tab+24(FP), R9
	VMOVDQU knib<>(SB), Y15
	VMOVDQU kx30<>(SB), Y14
	VMOVDQU ksc<>+0(SB), Y8
	VMOVDQU ksc<>+32(SB), Y9
	VMOVDQU ksc<>+64(SB), Y10
	VMOVDQU ksc<>+96(SB), Y11
	VXORPS X0, X0, X0
q6kloop:
	PREFETCHT0 PFK(SI)
	PREFETCHT0 PFK+64(SI)
	PREFETCHT0 PFK+128(SI)
	PREFETCHT0 PFK+192(SI)
	VPXOR Y1, Y1, Y1
	Q6K_HALF(0, 128, 4, 192)
	Q6K_HALF(64, 160, 132, 200)
	// minus 32 * Σ sc*bsum
	VPMOVSXBW 192(SI), Y2
	VPMADDWD 260(DI), Y2, Y2
	VPSLLD $5, Y2, Y2
	VPSUBD Y2, Y1, Y1
	VEXTRACTI128 $1, Y1, X2
	VPADDD X2, X1, X1
	VPSHUFD $0x4e, X1, X2
	VPADDD X2, X1, X1
	VPSHUFD $0xb1, X1, X2
	VPADDD X2, X1, X1
	VCVTDQ2PS X1, X1
	MOVWLZX 208(SI), AX
	VMOVSS (R9)(AX*4), X3
	VMULSS (DI), X3, X3
	VMULSS X1, X3, X3
	VADDSS X3, X0, X0
	ADDQ $210, SI
	ADDQ $292, DI
	DECQ CX
	JNZ q6kloop
	VZEROUPPER
	MOVSS X0, ret+32(FP)
	RET

// One row against four tokens (activation rows ystride bytes apart): the
// weight block is unpacked once for the four. out[t] is bit-identical to
// the single-token kernel's result for token t.
//	SI: row  DI: token 0  R11: ystride  R12: 3*ystride  Y1: scratch
//	Y0, Y3, Y12, Y13: the tokens' int32 lanes

#define T0 (DI)
#define T1 (DI)(R11*1)
#define T2 (DI)(R11*2)
#define T3 (DI)(R12*1)

#define KDOTT(yoff, Yq, Ysc, tb, acc) \
	VPMADDUBSW yoff tb, Yq, Y1; \
	VPMADDWD Ysc, Y1, Y1; \
	VPADDD Y1, acc, acc

#define KDOT4(yoff, Yq, Ysc) \
	KDOTT(yoff, Yq, Ysc, T0, Y0); \
	KDOTT(yoff, Yq, Ysc, T1, Y3); \
	KDOTT(yoff, Yq, Ysc, T2, Y12); \
	KDOTT(yoff, Yq, Ysc, T3, Y13)

#define ZACC4 \
	VPXOR Y0, Y0, Y0; \
	VPXOR Y3, Y3, Y3; \
	VPXOR Y12, Y12, Y12; \
	VPXOR Y13, Y13, Y13

// Q6_K half for four tokens (ql's second 32 bytes re-read from memory).
#define Q6K_HALF4(qloff, qhoff, yoff, scoff) \
	VPMOVSXBW scoff(SI), X6; \
	VINSERTI128 $1, X6, Y6, Y6; \
	VMOVDQU qloff(SI), Y2; \
	VMOVDQU qhoff(SI), Y7; \
	VPSLLW $4, Y7, Y4; \
	VPAND Y14, Y4, Y4; \
	VPAND Y15, Y2, Y5; \
	VPOR Y5, Y4, Y4; \
	VPSHUFB ksc<>+0(SB), Y6, Y5; \
	KDOT4(yoff, Y4, Y5); \
	VPSLLW $2, Y7, Y4; \
	VPAND Y14, Y4, Y4; \
	VPAND qloff+32(SI), Y15, Y5; \
	VPOR Y5, Y4, Y4; \
	VPSHUFB ksc<>+32(SB), Y6, Y5; \
	KDOT4(yoff+32, Y4, Y5); \
	VPAND Y14, Y7, Y4; \
	VPSRLW $4, Y2, Y5; \
	VPAND Y15, Y5, Y5; \
	VPOR Y5, Y4, Y4; \
	VPSHUFB ksc<>+64(SB), Y6, Y5; \
	KDOT4(yoff+64, Y4, Y5); \
	VPSRLW $2, Y7, Y4; \
	VPAND Y14, Y4, Y4; \
	VMOVDQU qloff+32(SI), Y5; \
	VPSRLW $4, Y5, Y5; \
	VPAND Y15, Y5, Y5; \
	VPOR Y5, Y4, Y4; \
	VPSHUFB ksc<>+96(SB), Y6, Y5; \
	KDOT4(yoff+96, Y4, Y5)

// Token tb of Q6_K: acc -= 32*Σ sc*bsum (sc words in Y2), reduce, and
// sum += (d*yd)*float32(sumi), d in X7.
#define Q6K_FIN(tb, acc, Xacc, sum) \
	VPMADDWD 260 tb, Y2, Y1; \
	VPSLLD $5, Y1, Y1; \
	VPSUBD Y1, acc, acc; \
	VEXTRACTI128 $1, acc, X1; \
	VPADDD X1, Xacc, Xacc; \
	VPSHUFD $0x4e, Xacc, X1; \
	VPADDD X1, Xacc, Xacc; \
	VPSHUFD $0xb1, Xacc, X1; \
	VPADDD X1, Xacc, Xacc; \
	VCVTDQ2PS Xacc, Xacc; \
	VMULSS tb, X7, X5; \
	VMULSS Xacc, X5, X5; \
	VADDSS X5, sum, sum

// func dotQ6_Kx4tAsm(x, y *byte, ystride, nb int, tab *[1 << 16]float32, out *[4]float32) (nb > 0)
TEXT ·dotQ6_Kx4tAsm(SB), NOSPLIT, $0-48
	MOVQ x+0(FP), SI
	MOVQ y+8(FP), DI
	MOVQ ystride+16(FP), R11
	LEAQ (R11)(R11*2), R12
	MOVQ nb+24(FP), CX
	MOVQ tab+32(FP), R9
	MOVQ out+40(FP), DX
	VMOVDQU knib<>(SB), Y15
	VMOVDQU kx30<>(SB), Y14
	VXORPS X8, X8, X8
	VXORPS X9, X9, X9
	VXORPS X10, X10, X10
	VXORPS X11, X11, X11
q6k4loop:
	PREFETCHT0 PFK(SI)
	PREFETCHT0 PFK+64(SI)
	PREFETCHT0 PFK+128(SI)
	PREFETCHT0 PFK+192(SI)
	ZACC4
	Q6K_HALF4(0, 128, 4, 192)
	Q6K_HALF4(64, 160, 132, 200)
	VPMOVSXBW 192(SI), Y2
	MOVWLZX 208(SI), AX
	VMOVSS (R9)(AX*4), X7
	Q6K_FIN(T0, Y0, X0, X8)
	Q6K_FIN(T1, Y3, X3, X9)
	Q6K_FIN(T2, Y12, X12, X10)
	Q6K_FIN(T3, Y13, X13, X11)
	ADDQ $210, SI
	ADDQ $292, DI
	DECQ CX
	JNZ q6k4loop
	VMOVSS X8, (DX)
	VMOVSS X9, 4(DX)
	VMOVSS X10, 8(DX)
	VMOVSS X11, 12(DX)
	VZEROUPPER
	RET

// Token tb of Q4_K: summ lanes from the mins (Y2), reduce (sumi, summ),
// sum += (dx*yd)*fi - (dmin*yd)*fm with dx in X4, dmin in X5.
#define Q4K_FIN(tb, acc, Xacc, sum) \
	VPMADDWD 260 tb, Y2, Y1; \
	VPHADDD Y1, acc, acc; \
	VEXTRACTI128 $1, acc, X1; \
	VPADDD X1, Xacc, Xacc; \
	VPHADDD Xacc, Xacc, Xacc; \
	VCVTDQ2PS Xacc, Xacc; \
	VMOVSHDUP Xacc, X1; \
	VMULSS tb, X4, X6; \
	VMULSS Xacc, X6, X6; \
	VMULSS tb, X5, X7; \
	VMULSS X1, X7, X7; \
	VSUBSS X7, X6, X6; \
	VADDSS X6, sum, sum

#define Q4K_CHUNK4(qoff, yoff, s0, s1) \
	VMOVDQU qoff(SI), Y4; \
	VPSRLW $4, Y4, Y5; \
	VPAND Y15, Y4, Y4; \
	VPAND Y15, Y5, Y5; \
	VPSHUFB kbw<>+s0(SB), Y8, Y6; \
	VPSHUFB kbw<>+s1(SB), Y8, Y7; \
	KDOT4(yoff, Y4, Y6); \
	KDOT4(yoff+32, Y5, Y7)

// func dotQ4_Kx4tAsm(x, y *byte, ystride, nb int, tab *[1 << 16]float32, out *[4]float32) (nb > 0)
TEXT ·dotQ4_Kx4tAsm(SB), NOSPLIT, $0-48
	MOVQ x+0(FP), SI
	MOVQ y+8(FP), DI
	MOVQ ystride+16(FP), R11
	LEAQ (R11)(R11*2), R12
	MOVQ nb+24(FP), CX
	MOVQ tab+32(FP), R9
	MOVQ out+40(FP), DX
	VMOVDQU knib<>(SB), Y15
	VXORPS X9, X9, X9
	VXORPS X10, X10, X10
	VXORPS X11, X11, X11
	VXORPS X14, X14, X14
q4k4loop:
	PREFETCHT0 PFK(SI)
	PREFETCHT0 PFK+64(SI)
	PREFETCHT0 PFK+128(SI)
	MOVL 4(SI), AX
	MOVL 8(SI), BX
	MOVL 12(SI), R8
	MOVL R8, R10
	SHRL $4, R10
	ANDL $0x0f0f0f0f, R10
	MOVL BX, R13
	SHRL $6, R13
	ANDL $0x03030303, R13
	SHLL $4, R13
	ORL R13, R10
	ANDL $0x0f0f0f0f, R8
	MOVL AX, R13
	SHRL $6, R13
	ANDL $0x03030303, R13
	SHLL $4, R13
	ORL R13, R8
	ANDL $0x3f3f3f3f, BX
	ANDL $0x3f3f3f3f, AX
	SHLQ $32, R8
	ORQ R8, AX
	SHLQ $32, R10
	ORQ R10, BX
	VMOVQ AX, X8
	VPMOVZXBW X8, X8
	VINSERTI128 $1, X8, Y8, Y8
	VMOVQ BX, X2
	VPMOVZXBW X2, X2
	VPUNPCKLWD X2, X2, X4
	VPUNPCKHWD X2, X2, X5
	VINSERTI128 $1, X5, Y4, Y2
	ZACC4
	Q4K_CHUNK4(16, 4, 0, 32)
	Q4K_CHUNK4(48, 68, 64, 96)
	Q4K_CHUNK4(80, 132, 128, 160)
	Q4K_CHUNK4(112, 196, 192, 224)
	MOVWLZX (SI), AX
	VMOVSS (R9)(AX*4), X4
	MOVWLZX 2(SI), AX
	VMOVSS (R9)(AX*4), X5
	Q4K_FIN(T0, Y0, X0, X9)
	Q4K_FIN(T1, Y3, X3, X10)
	Q4K_FIN(T2, Y12, X12, X11)
	Q4K_FIN(T3, Y13, X13, X14)
	ADDQ $144, SI
	ADDQ $292, DI
	DECQ CX
	JNZ q4k4loop
	VMOVSS X9, (DX)
	VMOVSS X10, 4(DX)
	VMOVSS X11, 8(DX)
	VMOVSS X14, 12(DX)
	VZEROUPPER
	RET
