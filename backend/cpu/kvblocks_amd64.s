#include "textflag.h"

// Attention over runs of whole KV blocks (kvblocks_amd64.go): the same
// operations as dotRows8AVX and axpyRowsAVX (simd_amd64.s) on KVBlockLen
// = 16 rows a block, the blocks' first rows found through the blocks'
// slice headers (24 bytes apart) plus a byte offset.

// func dotBlocksAVX(q *float32, blocks *[]float32, nblocks, off, stride, n8 int, out *float32)
// For each of nblocks > 0 blocks b (blocks[i]'s data pointer + off bytes),
// out[16i+j] = dot8AVX(q, b + j*stride bytes, n8) for j < 16 (n8 > 0): two
// passes of dotRows8AVX's eight rows side by side, its operations in its
// order, so each score is bit-identical to dot8AVX's.
TEXT ·dotBlocksAVX(SB), NOSPLIT, $0-56
	MOVQ q+0(FP), SI
	MOVQ blocks+8(FP), R13
	MOVQ stride+32(FP), R8
	MOVQ n8+40(FP), R10
	MOVQ out+48(FP), R11
	LEAQ (R8)(R8*2), R12 // 3 rows
dbblock:
	MOVQ (R13), DI
	ADDQ off+24(FP), DI
	MOVQ $2, R9          // passes of eight rows a block
dbpass:
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
dbloop:
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
	JNZ dbloop
	// The trees of dotRows8AVX: lo + hi halves, lanes (0,1)+(2,3), lane 0+1.
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
	VSHUFPS $0x44, Y1, Y0, Y8
	VSHUFPS $0xEE, Y1, Y0, Y9
	VADDPS Y9, Y8, Y0
	VSHUFPS $0x44, Y3, Y2, Y10
	VSHUFPS $0xEE, Y3, Y2, Y11
	VADDPS Y11, Y10, Y2
	VSHUFPS $0x88, Y2, Y0, Y8
	VSHUFPS $0xDD, Y2, Y0, Y9
	VADDPS Y9, Y8, Y0
	VMOVUPS Y0, (R11)
	ADDQ $32, R11
	LEAQ (DI)(R8*8), DI // the block's next eight rows
	DECQ R9
	JNZ dbpass
	ADDQ $24, R13
	DECQ nblocks+16(FP)
	JNZ dbblock
	VZEROUPPER
	RET

// func axpyBlocksAVX(out *float32, blocks *[]float32, nblocks, off, stride int, w *float32, n8 int)
// For each group of eight elements of out (n8 > 0 groups), for the 16 rows
// of each of nblocks > 0 blocks in order (row j of block i at blocks[i]'s
// data pointer + off + j*stride bytes, weight w[16i+j]): out += w * row,
// VMULPS then VADDPS as axpyRowsAVX, the sums held in registers from one
// block to the next; four groups at a time while at least four are left.
TEXT ·axpyBlocksAVX(SB), NOSPLIT, $0-56
	MOVQ out+0(FP), SI
	MOVQ stride+32(FP), R8
	MOVQ w+40(FP), R10
	MOVQ n8+48(FP), R11
	MOVQ off+24(FP), R12 // the current group's byte offset in a block
abquad:
	CMPQ R11, $4
	JLT absingle
	VMOVUPS (SI), Y0
	VMOVUPS 32(SI), Y1
	VMOVUPS 64(SI), Y2
	VMOVUPS 96(SI), Y3
	MOVQ blocks+8(FP), R13
	MOVQ nblocks+16(FP), R9
	MOVQ R10, BX
abquadblock:
	MOVQ (R13), AX
	ADDQ R12, AX
	MOVQ $16, CX
abquadrow:
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
	JNZ abquadrow
	ADDQ $24, R13
	DECQ R9
	JNZ abquadblock
	VMOVUPS Y0, (SI)
	VMOVUPS Y1, 32(SI)
	VMOVUPS Y2, 64(SI)
	VMOVUPS Y3, 96(SI)
	ADDQ $128, SI
	ADDQ $128, R12
	SUBQ $4, R11
	JMP abquad
absingle:
	TESTQ R11, R11
	JZ abdone
	VMOVUPS (SI), Y0
	MOVQ blocks+8(FP), R13
	MOVQ nblocks+16(FP), R9
	MOVQ R10, BX
absingleblock:
	MOVQ (R13), AX
	ADDQ R12, AX
	MOVQ $16, CX
absinglerow:
	VBROADCASTSS (BX), Y4
	VMULPS (AX), Y4, Y5
	VADDPS Y5, Y0, Y0
	ADDQ R8, AX
	ADDQ $4, BX
	DECQ CX
	JNZ absinglerow
	ADDQ $24, R13
	DECQ R9
	JNZ absingleblock
	VMOVUPS Y0, (SI)
	ADDQ $32, SI
	ADDQ $32, R12
	DECQ R11
	JMP absingle
abdone:
	VZEROUPPER
	RET
