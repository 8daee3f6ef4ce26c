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
